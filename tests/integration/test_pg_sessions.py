"""Every PostgreSQL session the rail opens (SQLAlchemy engines and the batches' asyncpg
pools) runs without JIT compilation (rail_service/db.py `PG_SESSION_SETTINGS`): a costly
estimate must not buy a compile at every execution of a short query."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from rail_service.db import make_engine, open_asyncpg_pool

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
