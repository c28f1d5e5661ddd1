"""A wallet's money in flight is found through an index of what is in flight (bank
migration 0010): reading it costs the same after a long history as after none. It is read
on every lock of a capped wallet (every interbank credit's payee), inside the lock. And the
outbox's due scan reads a settled payment's leftover entry once, not on every pass."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import sqlalchemy as sa

import bank
from bank.adapters import books_sql
from bank.adapters import tables as t
from bank.domain.wallets import MAY_COME_BACK
from rail_service.db import make_engine, migrate
from tests.support import rail as rail_support
from tests.support.index_reads import entries_read_by_pass

MIGRATIONS = Path(bank.__file__).parent / "migrations"
PAYMENTS = 40_000   # a tenth of them `w-long`'s
# `w-long` has paid PAYMENTS / 10 times (settled at once, as same-bank payments are); 500
# other wallets have made the rest, each payment in flight and then settled (as interbank
# ones are: until vacuum, each leaves a dead entry behind in the indexes of what is in
# flight); two of `w-long`'s payments are in flight now (700 + 50 fen).
WRITE_HISTORY = [f"""
    WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < {PAYMENTS})
    INSERT INTO transactions (kind, signer, instruction_id, digest, status, payer_wallet,
                              amount_fen, result, expires_ms, created_ms, updated_ms)
    SELECT CASE WHEN g % 10 = 0 THEN 'payment' ELSE 'interbank_out' END, 'k', 'old-' || g,
           'd', CASE WHEN g % 10 = 0 THEN 'settled' ELSE 'processing' END,
           CASE WHEN g % 10 = 0 THEN 'w-long' ELSE 'other-' || (g % 500) END, 100, '{{}}',
           0, 0, 0
    FROM n""",
    "UPDATE transactions SET status = 'settled' WHERE status = 'processing'",
    """
    INSERT INTO transactions (kind, signer, instruction_id, digest, status, payer_wallet,
                              amount_fen, result, expires_ms, created_ms, updated_ms)
    VALUES ('interbank_out', 'k', 'now-1', 'd', 'processing', 'w-long', 700, '{}', 0, 0, 0),
           ('hold', 'k', 'now-2', 'd', 'processing', 'w-long', 50, '{}', 0, 0, 0)"""]


async def migrated(url: str) -> None:
    engine = make_engine(url, pool_size=1)
    try:
        await migrate(engine, MIGRATIONS, "bank_alembic_version")
    finally:
        await engine.dispose()


async def test_a_wallets_money_in_flight_is_read_without_walking_its_history(pg_url):
    await migrated(pg_url)
    with psycopg.connect(rail_support.psycopg_url(pg_url), autocommit=True) as conn:
        for sql in WRITE_HISTORY:
            conn.execute(sql)
        conn.execute("ANALYZE transactions")
        for _warm in range(2):
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                                "SELECT wallet_pending_out('w-long')").fetchone()[0]
        top = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
        buffers = top["Shared Hit Blocks"] + top["Shared Read Blocks"]
        assert conn.execute("SELECT wallet_pending_out('w-long')").fetchone()[0] == 750
    # Its two rows in flight, not its settled history nor the other wallets' traffic (read
    # through the payer or the outbox index, 18-34 buffers here, growing with each).
    assert buffers <= 8, f"{buffers} buffers read for two rows in flight"


async def test_sqlite_finds_a_wallets_money_in_flight_through_the_same_index(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'bank.db'}"
    await migrated(url)
    engine = make_engine(url, pool_size=1)
    x = t.transactions.c
    query = sa.select(x.payer_wallet, sa.func.sum(x.amount_fen)).where(
        x.payer_wallet.in_(["w-long"]), x.kind.in_(MAY_COME_BACK),
        x.status == "processing").group_by(x.payer_wallet)   # books_sql.pending_out's
    try:
        async with engine.begin() as conn:
            for sql in WRITE_HISTORY:
                await conn.exec_driver_sql(sql)
            assert await books_sql.pending_out(conn, ["w-long"]) == {"w-long": 750}
            compiled = query.compile(conn.sync_connection,
                                     compile_kwargs={"literal_binds": True})
            plan = " ".join(str(row) for row in (await conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}")).all())
    finally:
        await engine.dispose()
    assert "ix_txn_out_in_flight" in plan, plan


async def test_the_outboxs_due_scan_reads_a_settled_payments_leftover_entry_once(pg_url):
    """Until vacuum, each payment once in flight leaves an entry behind in the index of due
    rows. A bitmap scan (the planner's choice with a few dozen payments in flight, as under
    load) reads them all again on every pass, and the outbox passes up to five times a
    second; an index scan marks them dead the first time."""
    await migrated(pg_url)
    database = rail_support.psycopg_url(pg_url)
    with psycopg.connect(database, autocommit=True) as conn:
        # 20,000 payments sent and settled (their retries would have been due by now), 30
        # in flight (not due yet), one due.
        conn.execute("""
            WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < 20000)
            INSERT INTO transactions (kind, signer, instruction_id, digest, status,
                                      payer_wallet, amount_fen, result, expires_ms,
                                      created_ms, updated_ms, next_attempt_ms)
            SELECT 'interbank_out', 'k', 'old-' || g, 'd', 'processing', 'p-' || (g % 500),
                   100, '{}', 0, g, g, g + 5000 FROM n""")
        conn.execute("UPDATE transactions SET status = 'settled' WHERE status = 'processing'")
        conn.execute("""
            WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < 30)
            INSERT INTO transactions (kind, signer, instruction_id, digest, status,
                                      payer_wallet, amount_fen, result, expires_ms,
                                      created_ms, updated_ms, next_attempt_ms)
            SELECT 'interbank_out', 'k', 'live-' || g, 'd', 'processing', 'p-' || g, 100,
                   '{}', 0, 30000, 30000, 35000 FROM n""")
        due_id = conn.execute(
            "INSERT INTO transactions (kind, signer, instruction_id, digest, status, "
            "payer_wallet, amount_fen, result, expires_ms, created_ms, updated_ms, "
            "next_attempt_ms) VALUES ('interbank_out', 'k', 'due', 'd', 'processing', "
            "'w-due', 100, '{}', 0, 0, 0, 20000) RETURNING txn_id").fetchone()[0]
        conn.execute("ANALYZE transactions")

    async def one_pass(conn) -> None:
        assert await books_sql.due(conn, "processing", 30_000, 50) == [due_id]

    # Index entries the scans of the due index and of the in-flight index read, by pass.
    reads = await entries_read_by_pass(pg_url, ("ix_txn_due", "ix_txn_out_in_flight"),
                                       one_pass)
    again = [later - earlier for earlier, later in zip(reads, reads[1:])]
    assert reads[0] >= 20_000, reads          # the leftovers are there, and read once
    assert all(n <= 100 for n in again), reads
