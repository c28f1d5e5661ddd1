"""How many index entries a repeated read makes PostgreSQL visit, pass after pass: what
shows a scan that keeps re-reading entries it could have marked dead (docs/performance.md,
twelfth and thirteenth sessions)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import psycopg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rail_service.db import make_engine
from tests.support.polling import eventually
from tests.support.rail import psycopg_url


async def entries_read_by_pass(url: str, indexes: tuple[str, ...],
                               one_pass: Callable[[AsyncConnection], Awaitable[None]],
                               passes: int = 3) -> list[int]:
    """Run `one_pass` `passes` times, each on a connection of its own; after each, the index
    entries of `indexes` read so far (summed over them; the statistics come a little
    later, so each figure waits until that pass's scans are counted)."""
    database = psycopg_url(url)

    def read_so_far(after_scans: int) -> int | None:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            scans, read = conn.execute(
                "SELECT sum(idx_scan), sum(idx_tup_read) FROM pg_stat_user_indexes "
                "WHERE indexrelname = ANY(%s)", (list(indexes),)).fetchone()
        return read if scans is not None and scans >= after_scans else None

    engine = make_engine(url, pool_size=1)
    reads = []
    try:
        for done in range(1, passes + 1):
            async with engine.connect() as conn:
                await one_pass(conn)
                await conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
            reads.append(await eventually(lambda n=done: read_so_far(n), timeout_s=10,
                                          what="the index statistics"))
    finally:
        await engine.dispose()
    return reads
