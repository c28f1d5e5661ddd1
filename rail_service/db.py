"""Database engines and migrations, one way for every service.

PostgreSQL (asyncpg) in tests, CI and production; SQLite (aiosqlite) only as the demo's
embedded default. Schema changes go through each service's Alembic migrations."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


# Every PostgreSQL session of the rail runs without JIT compilation. PostgreSQL compiles a
# query whose estimated cost passes `jit_above_cost` (100,000; and inlines and optimizes it
# past 500,000), and it does so again at every execution. The rail's queries are short,
# but the estimates of some grow with the tables (central's sealer reads postings once per
# unsealed entry): in a load test's third round its read crossed 500,000 and took 60-170 ms
# of compiling each pass for under 1 ms of work (docs/performance.md, "A compiler in the
# sealer's read"). Short transactions gain nothing from JIT; pgbench's never reach it.
PG_SESSION_SETTINGS = {"jit": "off"}


def make_engine(url: str, *, pool_size: int = 10, pool_timeout_s: float = 10) -> AsyncEngine:
    """An async engine for `url`; SQLite gets WAL, a busy timeout and foreign keys;
    PostgreSQL sessions `PG_SESSION_SETTINGS`. A request waits at most `pool_timeout_s` for
    a free connection, then gets a typed 503."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        serialize_sqlite_writers(engine)
        return engine
    connect_args = ({"server_settings": dict(PG_SESSION_SETTINGS)}
                    if url.startswith("postgresql+asyncpg") else {})
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size,
                               pool_timeout=pool_timeout_s, pool_pre_ping=True,
                               connect_args=connect_args)


async def open_asyncpg_pool(engine: AsyncEngine, size: int, *, custom_plans: bool = False):
    """A small asyncpg pool on `engine`'s PostgreSQL database, for the batches' raw
    statements over arrays (bank/adapters/batch_store.py, central/adapters/batch_store.py):
    no SQLAlchemy between, no pre-ping per checkout; its sessions `PG_SESSION_SETTINGS`.

    `custom_plans`: every execution planned for its own arguments (`plan_cache_mode =
    force_custom_plan`). A prepared statement's generic plan is made once, after its fifth
    run, and kept for the connection's life; made on a new database before the first
    ANALYZE, it saw empty tables and scanned them whole, so a batch cost more with every
    row the day added (central's prepare batch read all of `transfers` every time:
    docs/performance.md, "A generic plan made on empty tables"). Planning each run costs
    some tens of microseconds of PostgreSQL's CPU per statement: worth it at central; the
    banks' batches showed no such plan, and pay that cost on every payment.

    A connection goes back to the pool without asyncpg's reset query (advisory locks, cursors,
    LISTEN, `RESET ALL`): the batches' statements leave no session state, and that query was
    a round trip on every release, one on every interbank payment's path (bank B's credit
    batch takes a connection per call from central). An open transaction is still rolled
    back on release (asyncpg does that before any custom reset)."""
    import asyncpg

    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    settings = dict(PG_SESSION_SETTINGS)
    if custom_plans:
        settings["plan_cache_mode"] = "force_custom_plan"
    return await asyncpg.create_pool(dsn, min_size=min(2, size), max_size=size,
                                     server_settings=settings, reset=_keep_session)


async def _keep_session(conn) -> None:
    """`open_asyncpg_pool`'s release: nothing to undo (see there)."""


def serialize_sqlite_writers(engine: AsyncEngine) -> None:
    """Make SQLite as safe as PostgreSQL by construction: every transaction starts with
    `BEGIN IMMEDIATE`, so it holds the database's single write lock from its first read.

    Why: SQLite ignores `SELECT .. FOR UPDATE`. With its default deferred transactions two
    requests read the same balance, order or mandate, both pass the check, and both write
    (an order paid twice, a cap passed, a payee's credit lost). With one writer at a time
    every read-check-write runs alone, as the row locks make it run on PostgreSQL; other
    connections wait (busy timeout 30 s) rather than fail. WAL keeps readers outside a
    transaction unblocked; the demo's throughput is bounded by one writer, by design."""

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        # Hand transaction control to SQLAlchemy's "begin" event below (the sqlite3
        # module would otherwise issue a deferred BEGIN of its own before a write).
        dbapi_conn.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(conn):  # noqa: ANN001
        # `read_snapshot` only: a read-only transaction takes no write lock (WAL gives it a
        # snapshot from its first read), so a long audit does not stop the single writer.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


READ_ONLY = "yuanrail_read_only"


@asynccontextmanager
async def read_snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only connection over one consistent snapshot, for audits and figures:
    REPEATABLE READ READ ONLY on PostgreSQL; on SQLite a deferred transaction (WAL: its
    snapshot is fixed at its first read) that holds no write lock. Nothing may be written
    through it."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        else:
            await conn.execution_options(**{READ_ONLY: True})
        yield conn


async def index_scans_only(conn: AsyncConnection) -> None:
    """No bitmap scans for the rest of this transaction (PostgreSQL; SQLite has none): for a
    queue's scan of its index of what is due. A row leaves such a queue by an update whose
    old version's entry stays in the index until vacuum; an index scan marks that entry dead
    the first time it meets it, a bitmap scan never does, so by bitmap (the planner's choice
    while its statistics are stale) every pass read again everything that left the queue
    since the last vacuum (docs/performance.md, twelfth and thirteenth sessions)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))


async def migrate(engine: AsyncEngine, migrations_dir: Path, version_table: str) -> None:
    """Bring the schema to the newest migration (idempotent: a no-op when current)."""

    def _upgrade(sync_conn) -> None:  # noqa: ANN001
        cfg = Config()
        cfg.set_main_option("script_location", str(migrations_dir))
        cfg.attributes["connection"] = sync_conn
        cfg.attributes["version_table"] = version_table
        command.upgrade(cfg, "head")

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


def run_migrations_online(context) -> None:  # noqa: ANN001
    """The body of every service's Alembic env.py: migrate the connection it was handed."""
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        version_table=context.config.attributes.get("version_table", "alembic_version"),
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
