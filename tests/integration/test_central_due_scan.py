"""Central's delivery worker finds the prepared transfers that are due (every ~200 ms, in
every process) by reading a settled transfer's leftover index entry once, not on every pass:
until vacuum, each transfer once prepared leaves its prepared version's entry behind in the
index of due transfers, and only an index scan marks such an entry dead for the scans after
it (docs/performance.md, thirteenth session; the bank's outbox had the same, twelfth). And
the prepare batch's finishes never go through that index, whatever the statistics say."""

from __future__ import annotations

import psycopg
import pytest

from central.adapters import batch_store, transfers_sql
from central.services import MIGRATIONS
from rail_service.db import make_engine, migrate
from tests.support import rail as rail_support
from tests.support.index_reads import entries_read_by_pass

pytestmark = pytest.mark.integration

SETTLED_BEFORE = 20_000
INSERT_TRANSFERS = """
    WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < %(count)s)
    INSERT INTO transfers (transfer_id, from_bank, to_bank, amount_fen, payee_wallet, digest,
                           status, created_ms, updated_ms, attempts, next_attempt_ms)
    SELECT %(prefix)s || g, 'yangtze', 'pearl', 100, 'w', 'd', 'prepared', g, g, 1,
           %(next_attempt)s FROM n"""


async def migrated(url: str) -> None:
    engine = make_engine(url, pool_size=1)
    try:
        await migrate(engine, MIGRATIONS, "central_alembic_version")
    finally:
        await engine.dispose()


async def test_the_workers_due_scan_reads_a_settled_transfers_leftover_entry_once(pg_url):
    await migrated(pg_url)
    database = rail_support.psycopg_url(pg_url)
    with psycopg.connect(database, autocommit=True) as conn:
        # 20,000 transfers prepared and settled (their retries would have been due by now),
        # 30 prepared and not due yet, one due.
        conn.execute(INSERT_TRANSFERS, {"count": SETTLED_BEFORE, "prefix": "old-",
                                        "next_attempt": 5_000})
        conn.execute("UPDATE transfers SET status = 'settled'")
        conn.execute(INSERT_TRANSFERS, {"count": 30, "prefix": "live-", "next_attempt": 35_000})
        conn.execute(INSERT_TRANSFERS, {"count": 1, "prefix": "due-", "next_attempt": 20_000})
        # No ANALYZE: the statistics as a busy database has them between two of
        # autovacuum's (or a load test's, on a server with it off): the planner then takes
        # a bitmap scan, which never marks an entry dead.

    async def one_pass(conn) -> None:
        due = await transfers_sql.due(conn, 30_000, 50)
        assert [row.transfer_id for row in due] == ["due-1"]

    # Index entries the scans of the due index read, by pass.
    reads = await entries_read_by_pass(pg_url, ("ix_transfers_due",), one_pass)
    again = [later - earlier for earlier, later in zip(reads, reads[1:])]
    assert reads[0] >= SETTLED_BEFORE, reads      # the leftovers are there, and read once
    assert all(n <= 100 for n in again), reads


@pytest.mark.parametrize("statement, types, args", [
    (batch_store.FINISH, "text[], text[], text[], bigint",
     "%s::text[], %s::text[], %s::text[], 1"),
    (batch_store.POSTPONE, "text[], int[], bigint[], bigint",
     "%s::text[], %s::int[], %s::bigint[], 1"),
])
async def test_a_finish_finds_its_transfers_by_primary_key_whatever_the_statistics(
        pg_url, statement, types, args):
    """Once ANALYZE has seen nearly every transfer settled, a test of `status = 'prepared'`
    looks like the cheapest way in, through the index of due transfers, which holds an entry
    for every transfer settled since the last vacuum (1.1 ms against 0.2 for 14 transfers
    with 500 such entries). The batch's finish and postpone find their rows by primary key
    and test the status of the rows they locked."""
    await migrated(pg_url)
    ids = [f"live-{n}" for n in range(1, 15)]
    with psycopg.connect(rail_support.psycopg_url(pg_url), autocommit=True) as conn:
        conn.execute(INSERT_TRANSFERS, {"count": SETTLED_BEFORE, "prefix": "old-",
                                        "next_attempt": 5_000})
        conn.execute("UPDATE transfers SET status = 'settled'")
        conn.execute("VACUUM ANALYZE transfers")
        conn.execute(INSERT_TRANSFERS, {"count": 30, "prefix": "live-", "next_attempt": 35_000})
        conn.execute("SET plan_cache_mode = force_custom_plan")   # as central's pool has it
        conn.execute(f"PREPARE batch_statement({types}) AS {statement.strip()}")
        values = (ids, ["settled"] * 14, [None] * 14) if statement is batch_store.FINISH \
            else (ids, [1] * 14, [100] * 14)
        plan = "\n".join(row[0] for row in psycopg.ClientCursor(conn).execute(
            f"EXPLAIN (COSTS OFF) EXECUTE batch_statement({args})", values))
    assert "ix_transfers_due" not in plan and "transfers_pkey" in plan, plan
