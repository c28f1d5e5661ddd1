"""What a wallet, a merchant or the operator reads: a wallet's rows, its history and one
payment, and the bank's conservation audit."""

from __future__ import annotations

import sqlalchemy as sa

from bank.adapters import books_sql as sql
from bank.adapters import tables as t
from bank.common import PENDING, SETTLED, payment_txn_id, payment_view
from bank.domain import audit as bank_audit
from bank.domain.ledger import CENTRAL, REDEEM_OUT
from rail_protocol.errors import RailError
from rail_service.db import read_snapshot


class Reads:
    """The bank node's reads (its database, keys and central through `bank`)."""

    def __init__(self, bank) -> None:
        self.bank = bank

    async def wallet_for_read(self, wallet_id: str):
        async with self.bank.engine.connect() as conn:
            row = await sql.wallet_row(conn, wallet_id)
        if row is None:
            raise RailError("unknown_wallet")
        return row

    async def history(self, wallet_id: str, *, before_id: int | None, limit: int,
                      since_ms: int | None, until_ms: int | None,
                      counterparty: str | None, status: str | None = None) -> dict:
        """A wallet's transactions, newest first, a page at a time."""
        c = t.transactions.c
        stmt = sa.select(t.transactions).where(
            sa.or_(c.payer_wallet == wallet_id, c.payee_wallet == wallet_id))
        if before_id is not None:
            stmt = stmt.where(c.txn_id < before_id)
        if since_ms is not None:
            stmt = stmt.where(c.created_ms >= since_ms)
        if until_ms is not None:
            stmt = stmt.where(c.created_ms < until_ms)
        if counterparty:
            stmt = stmt.where(sa.or_(c.payer_wallet == counterparty, c.payee_wallet == counterparty))
        if status:
            stmt = stmt.where(c.status == status)
        stmt = stmt.order_by(c.txn_id.desc()).limit(min(max(limit, 1), 100))
        async with self.bank.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
            others = {w for r in rows for w in (r.payer_wallet, r.payee_wallet)
                      if w and w != wallet_id}
            # Merchants are shown by name (a person stays a wallet id: not theirs to tell).
            names = {r.wallet_id: r.merchant_name for r in await conn.execute(
                sa.select(t.wallets.c.wallet_id, t.wallets.c.merchant_name).where(
                    t.wallets.c.wallet_id.in_(sorted(others)),
                    t.wallets.c.merchant_name.is_not(None)))} if others else {}
        items = [payment_view(r) for r in rows]
        return {"items": items, "names": names,
                "next_before": rows[-1].txn_id if len(rows) == limit else None}

    async def payment(self, wallet_id: str, payment_id: str) -> dict:
        txn_id = payment_txn_id(payment_id)
        if txn_id is None:
            raise RailError("not_found", "no such payment")
        async with self.bank.engine.connect() as conn:
            row = await sql.transaction_by_id(conn, txn_id)
        if row is None or wallet_id not in (row.payer_wallet, row.payee_wallet):
            raise RailError("not_found", "no such payment")
        return payment_view(row)

    async def audit(self) -> dict:
        async with read_snapshot(self.bank.engine) as conn:
            inputs = await sql.audit_inputs(conn)
            pending_vault = await sql.count_status(conn, PENDING)
        report = bank_audit.audit(**inputs).to_dict()
        return {"bank_id": self.bank.bank_id, **report, "pending_vault_ops": pending_vault}

    async def position(self, *, with_books: bool) -> dict:
        """What the checkpoint watch compares with central's line (bank/domain/registry.py),
        in one snapshot: the money in flight between the bank and central, read by index,
        and, only when `with_books` and none is in flight, the bank's books: its position
        accounts as appended at posting (migration 0011; a few rows, folded), not a sum of
        every posting. The whole audit (`audit`) stays the operator's."""
        async with read_snapshot(self.bank.engine) as conn:
            processing = await sql.processing_out(conn)
            pending_vault = await sql.count_status(conn, PENDING)
            books = redeem_out = None
            if with_books and not processing and not pending_vault:
                sums = await sql.position(conn)
                books, redeem_out = -sums.get(CENTRAL, 0), sums.get(REDEEM_OUT, 0)
        return {"books_fen": books, "redeem_out_fen": redeem_out,
                "processing_out": processing, "pending_vault_ops": pending_vault}

    async def credited_transfers(self, transfer_ids: list[str]) -> list[str]:
        """Which of these inbound transfers this bank has credited (for the rail audit)."""
        if not transfer_ids:
            return []
        async with self.bank.engine.connect() as conn:
            rows = await conn.execute(sa.select(t.transactions.c.transfer_id).where(
                t.transactions.c.transfer_id.in_(transfer_ids[:1000]),
                t.transactions.c.kind == "interbank_in",
                t.transactions.c.status == SETTLED))
            return [r.transfer_id for r in rows]
