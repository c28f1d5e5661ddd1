"""A wallet's money in flight is found through an index of what is in flight (bank
migration 0010): reading it costs the same after a long history as after none. It is read
on every lock of a capped wallet (every interbank credit's payee), inside the lock."""

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
