"""SQLite as the demo runs it (rail_service/db.py): every transaction that may write holds the
single write lock from its first read (so read-check-write never races), while a read-only
snapshot (`read_snapshot`: audits, checkpoints, dashboard figures) takes none, so a long
audit no longer stops payments."""

import asyncio
import sqlite3

import pytest
import sqlalchemy as sa

from rail_service.db import make_engine, read_snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/books.sqlite")
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE books (n INTEGER)")
        await conn.exec_driver_sql("INSERT INTO books VALUES (1)")
    yield engine
    await engine.dispose()


async def write(engine, n: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO books VALUES (:n)"), {"n": n})


async def count(conn) -> int:
    return (await conn.exec_driver_sql("SELECT count(*) FROM books")).scalar_one()


async def test_a_snapshot_being_read_does_not_stop_a_writer_and_sees_one_moment(engine):
    async with read_snapshot(engine) as reading:
        assert await count(reading) == 1                  # the snapshot starts here
        await asyncio.wait_for(write(engine, 2), timeout=2)   # the writer goes on meanwhile
        assert await count(reading) == 1                  # ... unseen by the snapshot
    async with read_snapshot(engine) as later:
        assert await count(later) == 2


def write_lock_is_free(path) -> bool:
    """Whether another writer could start now (asked with no wait)."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:    # database is locked
        return False
    finally:
        other.close()


async def test_a_transaction_that_may_write_holds_the_lock_from_its_first_read(engine):
    async with engine.connect() as deciding:              # read, check, then maybe write
        assert await count(deciding) == 1
        assert not write_lock_is_free(engine.url.database)        # a second writer waits its turn
        await deciding.rollback()
    assert write_lock_is_free(engine.url.database)
    async with read_snapshot(engine) as reading:
        assert await count(reading) == 1
        assert write_lock_is_free(engine.url.database)            # a snapshot holds no write lock
