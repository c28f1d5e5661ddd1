"""Bank A's side of an interbank payment after the debit: message 1 to central, sent and
sent again until central gives a final answer, which settles or refunds the payment
exactly once (docs/interbank.md)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bank.adapters import books_sql as sql
from bank.adapters import tables as t
from bank.common import (
    CENTRAL_FINAL_REFUSALS,
    PROCESSING,
    REJECTED,
    SETTLED,
    TRANSFER_TTL_MS,
    retry_delay_ms,
)
from bank.domain import events, ledger, orders
from bank.domain.wallets import china_day
from rail_protocol import envelope
from rail_protocol.envelope import Envelope, now_ms, seal, unsigned
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import TRANSFER
from rail_service.crash import crash_point

log = logging.getLogger("yuanrail.bank")


class Outbox:
    """The bank node's outbox (its database, keys and central through `bank`)."""

    def __init__(self, bank) -> None:
        self.bank = bank

    def transfer_envelope(self, row: Any, *, signed: bool = True) -> Envelope:
        """Message 1, rebuilt the same way on every retry so central sees one instruction
        (unsigned for a sealed batch, whose one signature covers it)."""
        details = {"payer_wallet": row.payer_wallet}
        if row.order_id and not row.refund_of:
            details["order_id"] = row.order_id
        if row.refund_of:
            details["refund_of"] = orjson.loads(row.result).get("refund_of_transfer")
        body = {"transfer_id": row.transfer_id, "from_bank": self.bank.bank_id,
                "to_bank": row.counterparty_bank, "amount_fen": row.amount_fen,
                "payee_wallet": row.payee_wallet, "details": details}
        if not signed:
            return unsigned(self.bank.key.key_id, TRANSFER, body, id=row.transfer_id,
                            ttl_ms=TRANSFER_TTL_MS, created_ms=row.created_ms)
        return seal(self.bank.key, TRANSFER, body, id=row.transfer_id, ttl_ms=TRANSFER_TTL_MS,
                    created_ms=row.created_ms)

    async def forward_transfer(self, txn_id: int) -> str:
        """Send (or re-send) message 1 for a processing payment; record a final answer."""
        async with self.bank.engine.connect() as conn:
            row = await sql.transaction_by_id(conn, txn_id)
        if row is None or row.status != PROCESSING:
            return row.status if row is not None else REJECTED
        try:
            answer = await self.bank.central.request("POST", "/v1/transfers",
                                                self.transfer_envelope(row).to_dict())
        except RailError as exc:
            if exc.code in CENTRAL_FINAL_REFUSALS:
                await self.finish_transfer(txn_id, REJECTED, exc.code)
                return REJECTED
            await self._retry_later(txn_id, row)
            raise
        statement = answer.get("statement", {})
        envelope.verify_statement(self.bank.central_key, statement)
        if statement.get("transfer_id") != row.transfer_id:
            raise RailError("bad_signature", "central answered about another transfer")
        status = statement.get("status")
        if status in (SETTLED, REJECTED):
            crash_point("bank.interbank.before_outcome")
            await self.finish_transfer(txn_id, status, statement.get("code"))
            return status
        await self._retry_later(txn_id, row)
        return PROCESSING

    async def _retry_later(self, txn_id: int, row: Any) -> None:
        at = now_ms()
        async with self.bank.engine.begin() as conn:
            await conn.execute(t.transactions.update().where(
                t.transactions.c.txn_id == txn_id).values(
                    next_attempt_ms=at + retry_delay_ms(row.created_ms, at)))

    async def finish_transfer(self, txn_id: int, status: str, code: str | None) -> None:
        """Settle (the money has left) or reject (back to the payer), exactly once."""
        async with self.bank.engine.begin() as conn:
            row = await sql.transaction_by_id(conn, txn_id)
            at = now_ms()
            payer = None
            if status == REJECTED and row.status == PROCESSING:
                # Take the locks in the order every other path takes them (the refunded
                # payment, then the wallet, then the row), or a retry of this very
                # payment waiting on its row would deadlock with us.
                if row.refund_of is not None:
                    await conn.execute(sa.select(t.transactions.c.txn_id).where(
                        t.transactions.c.txn_id == row.refund_of).with_for_update())
                _wrow, payer = await sql.lock_wallet(conn, row.payer_wallet)
            if not await sql.set_transaction_status(conn, txn_id, from_status=PROCESSING,
                                                    to_status=status, now_ms=at, code=code):
                return
            if row.refund_of is not None:
                shop = await sql.wallet_row(conn, row.payer_wallet)
                await self.bank.queue_webhook(
                    conn, row.payer_wallet, shop.webhook_url, txn_id, events.refund_finished(
                        status, f"P{txn_id}", row.amount_fen, f"P{row.refund_of}",
                        row.order_id))
            if status == SETTLED:
                await sql.insert_postings(conn, txn_id, ledger.interbank_out_settled(row.amount_fen))
            else:
                if row.refund_of is not None:
                    await self.unbook_refund(conn, row.refund_of, row.amount_fen, at)
                # The balance cap counted this payment while it was in flight (see
                # `lock_wallet(for_credit=True)`), so the money always fits back in.
                payer.balance_fen += row.amount_fen
                if payer.day == china_day(row.created_ms):
                    payer.spent_today_fen = max(payer.spent_today_fen - row.amount_fen, 0)
                await sql.save_wallet(conn, payer)
                await sql.insert_postings(conn, txn_id, ledger.interbank_out_rejected(
                    row.payer_wallet, row.amount_fen))
        self.bank.notify(row.payer_wallet,
                         events.payment_finished(status, f"P{txn_id}", row.order_id))

    async def run_once(self, limit: int = 50) -> int:
        """Re-send message 1 for due processing payments; how many were tried."""
        async with self.bank.engine.connect() as conn:
            due = await sql.due(conn, PROCESSING, now_ms(), limit)
        for txn_id in due:
            try:
                await self.forward_transfer(txn_id)
            except RailError as exc:
                log.info("transfer of P%s not finished yet: %s", txn_id, exc.code)
        return len(due)

    async def unbook_refund(self, conn: AsyncConnection, original_txn: int, amount: int,
                             at: int) -> None:
        """The payer's bank refused a refund: it no longer counts against the payment."""
        original = (await conn.execute(sa.select(t.transactions).where(
            t.transactions.c.txn_id == original_txn).with_for_update())).first()
        refunded = max(original.refunded_fen - amount, 0)
        await conn.execute(t.transactions.update().where(
            t.transactions.c.txn_id == original_txn).values(refunded_fen=refunded, updated_ms=at))
        if original.order_id:
            await conn.execute(t.orders.update().where(
                t.orders.c.order_id == original.order_id).values(
                refunded_fen=refunded, updated_ms=at,
                status=orders.PAID if refunded == 0 else orders.status_after_refund(
                    original.amount_fen, refunded)))
