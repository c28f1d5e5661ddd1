"""Every PostgreSQL session the rail opens (SQLAlchemy engines and the batches' asyncpg
pools) runs without JIT compilation (rail_service/db.py `PG_SESSION_SETTINGS`): a costly
estimate must not buy a compile at every execution of a short query. And the batches'
connections: released without a round trip, and a batch loop's transactions begun ahead
(`transaction_begun_ahead`) commit, roll back and hold nothing between batches."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from rail_service.db import (LoopConnections, make_engine, open_asyncpg_pool,
                             transaction_begun_ahead)

pytestmark = pytest.mark.integration

# Estimated far past jit_above_cost (100,000): 10 million rows of a set-returning function.
COSTLY = "EXPLAIN SELECT sum(g) FROM generate_series(1, 10000000) AS g"


def plan_text(rows) -> str:
    return "\n".join(row[0] for row in rows)


async def test_a_plain_session_would_compile_the_costly_query(pg_url):
    """The server's default, for contrast: this is what the rail's sessions turn off."""
    dsn = pg_url.replace("postgresql+asyncpg", "postgresql")
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SHOW jit") != "on" or not await conn.fetchval(
                "SELECT pg_jit_available()"):
            pytest.skip("this PostgreSQL has no JIT to turn off")
        assert "JIT" in plan_text(await conn.fetch(COSTLY))
    finally:
        await conn.close()


async def test_the_rails_engine_sessions_never_compile(pg_url):
    engine = make_engine(pg_url, pool_size=2)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW jit"))).scalar() == "off"
            plan = plan_text((await conn.execute(text(COSTLY))).all())
        assert "JIT" not in plan
    finally:
        await engine.dispose()


@pytest.mark.parametrize("custom_plans", [False, True])
async def test_the_batches_pool_sessions_never_compile(pg_url, custom_plans):
    engine = make_engine(pg_url, pool_size=1)
    pool = await open_asyncpg_pool(engine, 2, custom_plans=custom_plans)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW jit") == "off"
            assert "JIT" not in plan_text(await conn.fetch(COSTLY))
            assert await conn.fetchval("SHOW plan_cache_mode") == (
                "force_custom_plan" if custom_plans else "auto")
    finally:
        await pool.close()
        await engine.dispose()


async def test_the_batches_pool_releases_without_a_round_trip_but_never_inside_a_transaction(
        pg_url):
    """A release sends no reset query (one round trip fewer per call on the interbank path);
    an open transaction is still rolled back, so the next holder starts clean."""
    engine = make_engine(pg_url, pool_size=1)
    pool = await open_asyncpg_pool(engine, 1)
    try:
        async with pool.acquire() as conn:
            protocol = conn._protocol
            before = protocol.queries_count
        assert protocol.queries_count == before
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_open (n int)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
            assert await conn.fetchval("SHOW jit") == "off"
    finally:
        await pool.close()
        await engine.dispose()


@pytest.fixture
async def batch_pool(pg_url):
    engine = make_engine(pg_url, pool_size=1)
    pool = await open_asyncpg_pool(engine, 2)
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE IF EXISTS begun_ahead; "
                           "CREATE TABLE begun_ahead (n int PRIMARY KEY)")
    try:
        yield pool
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DROP TABLE begun_ahead")
        await pool.close()
        await engine.dispose()


async def test_a_loop_transaction_commits_and_begins_the_next_in_one_round_trip(batch_pool):
    loop = LoopConnections(batch_pool)
    conn = await loop.acquire()
    other = await batch_pool.acquire()
    try:
        async with transaction_begun_ahead(conn):          # the first begins by itself
            await conn.execute("INSERT INTO begun_ahead VALUES (1)")
        assert conn.is_in_transaction(), "the next transaction was not begun"
        assert await other.fetchval("SELECT count(*) FROM begun_ahead") == 1, "not committed"
        before = conn._protocol.queries_count
        async with transaction_begun_ahead(conn):
            await conn.execute("INSERT INTO begun_ahead VALUES (2)")
        assert conn._protocol.queries_count - before == 2, "the statement and the commit only"
        assert await other.fetchval("SELECT count(*) FROM begun_ahead") == 2
    finally:
        await batch_pool.release(other)
        await loop.release(conn)


async def test_between_batches_the_begun_transaction_holds_no_snapshot_lock_or_id(batch_pool):
    """Nothing held back: no xmin for VACUUM, no transaction id, no lock but its own."""
    loop = LoopConnections(batch_pool)
    conn = await loop.acquire()
    other = await batch_pool.acquire()
    try:
        async with transaction_begun_ahead(conn):
            await conn.execute("INSERT INTO begun_ahead VALUES (3)")
        pid = conn.get_server_pid()
        row = await other.fetchrow(
            "SELECT state, backend_xmin, backend_xid FROM pg_stat_activity WHERE pid = $1", pid)
        assert row["state"] == "idle in transaction"
        assert row["backend_xmin"] is None and row["backend_xid"] is None
        locks = await other.fetchval(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype <> 'virtualxid'", pid)
        assert locks == 0
        # Another session writes the same row meanwhile without waiting.
        await asyncio.wait_for(other.execute("DELETE FROM begun_ahead WHERE n = 3"), 2)
    finally:
        await batch_pool.release(other)
        await loop.release(conn)


async def test_a_failed_batch_keeps_nothing_and_the_next_begins_afresh(batch_pool):
    loop = LoopConnections(batch_pool)
    conn = await loop.acquire()
    try:
        with pytest.raises(asyncpg.UniqueViolationError):
            async with transaction_begun_ahead(conn):
                await conn.execute("INSERT INTO begun_ahead VALUES (4)")
                await conn.execute("INSERT INTO begun_ahead VALUES (4)")
        assert not conn.is_in_transaction()
        async with transaction_begun_ahead(conn):
            await conn.execute("INSERT INTO begun_ahead VALUES (5)")
        assert await conn.fetchval("SELECT array_agg(n) FROM begun_ahead") == [5]
    finally:
        await loop.release(conn)


async def test_a_loop_connection_goes_back_with_its_begun_transaction_ended(batch_pool):
    loop = LoopConnections(batch_pool)
    conn = await loop.acquire()
    async with transaction_begun_ahead(conn):
        await conn.execute("INSERT INTO begun_ahead VALUES (6)")
    pid = conn.get_server_pid()
    await loop.release(conn)
    async with batch_pool.acquire() as again:
        state = await again.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
        assert state in ("idle", "active"), state
        assert await again.fetchval("SHOW idle_in_transaction_session_timeout") == "0"


async def test_single_statements_are_refused_on_a_connection_with_a_transaction_begun_ahead(
        batch_pool):
    """They would join the open transaction and wait for the next batch's commit."""
    from bank.adapters.batch_store import PgBatchStore

    store = PgBatchStore(batch_pool)
    conn = await store.loop_pool.acquire()
    try:
        async with store.transaction(conn, begin_next=True) as tx:
            await tx.conn.execute("INSERT INTO begun_ahead VALUES (7)")
        with pytest.raises(RuntimeError, match="open transaction"):
            async with store.single(conn):
                pass
    finally:
        await store.loop_pool.release(conn)
