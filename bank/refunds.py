"""Merchants refund payments they received, fully or in part, to the payer: here in one
transaction, at another bank as a new interbank payment back."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bank.adapters import books_sql as sql
from bank.adapters import tables as t
from bank.common import FORWARD_WAIT_MS, PROCESSING, SETTLED, payment_txn_id
from bank.domain import ledger, orders
from bank.domain.payments import LockedBooks, RefundedPayment, decide_refund
from bank.domain.wallets import MERCHANT, DebitPlan, WalletState
from rail_protocol.envelope import Envelope, now_ms
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import REFUND
from rail_protocol.money import parse_fen


class Refunds:
    """The bank node's refunds (its database, keys and central through `bank`)."""

    def __init__(self, bank) -> None:
        self.bank = bank

    async def _book_refund(self, conn: AsyncConnection, original: Any, refunded: int,
                           at: int) -> None:
        """Count a decided refund against the payment (and its order): `refunded` in all."""
        await conn.execute(t.transactions.update().where(
            t.transactions.c.txn_id == original.txn_id).values(refunded_fen=refunded,
                                                                updated_ms=at))
        if original.order_id:
            await conn.execute(t.orders.update().where(
                t.orders.c.order_id == original.order_id).values(
                refunded_fen=refunded, updated_ms=at,
                status=orders.status_after_refund(original.amount_fen, refunded)))

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

    async def refund(self, raw: object) -> dict:
        """A merchant refunds a payment it received, fully or in part, to the payer: at this
        bank directly, at another bank through central. Idempotent by instruction id."""
        env, merchant = await self.bank.signed_by_wallet(raw, REFUND, "merchant_wallet")
        if merchant.kind != MERCHANT:
            raise RailError("not_a_merchant")
        payment_id = env.body.get("payment_id")
        original_id = payment_txn_id(payment_id)
        if original_id is None:
            raise RailError("invalid_field", "payment_id must be a payment id like P123")
        amount = parse_fen(env.body.get("amount_fen"))

        async def apply(conn: AsyncConnection) -> dict:
            at = now_ms()
            original = (await conn.execute(sa.select(t.transactions).where(
                t.transactions.c.txn_id == original_id).with_for_update())).first()
            refunded = None if original is None else RefundedPayment(
                original.txn_id, original.kind, original.status, original.payer_wallet,
                original.payee_wallet, original.amount_fen, original.refunded_fen or 0,
                original.pulled_fen or 0)
            books = LockedBooks(self.bank.limits)
            local = refunded is not None and refunded.kind == "payment" \
                and refunded.payee_wallet == merchant.wallet_id and refunded.payer_wallet
            for wallet_id in sorted([merchant.wallet_id, original.payer_wallet] if local
                                    else [merchant.wallet_id]):
                _row, books.wallets[wallet_id] = await sql.lock_wallet(conn, wallet_id)
            decision = decide_refund(merchant.wallet_id, refunded, amount, books, at)
            await self._book_refund(conn, original, decision.refunded_after_fen, at)
            shop, debit = books.wallets[merchant.wallet_id], decision.debit
            shop.balance_fen, shop.day = debit.balance_after_fen, debit.day
            shop.spent_today_fen = debit.spent_today_after_fen
            if original.kind == "interbank_in":
                return await self._refund_to_other_bank(conn, env, merchant.wallet_id, original,
                                                        shop, debit, at)
            payer_id, credit = original.payer_wallet, decision.credit
            payer = books.wallets[payer_id]
            payer.balance_fen += credit.to_wallet_fen
            result = {"status": SETTLED, "amount_fen": amount, "refund_of": payment_id,
                      "payer_wallet": payer_id, "to_deposit_fen": credit.swept_to_deposit_fen}
            txn = await sql.insert_transaction(conn, **self.bank.txn_values(
                env, "refund", SETTLED, amount, payer_wallet=merchant.wallet_id,
                payee_wallet=payer_id, refund_of=original.txn_id, order_id=original.order_id,
                result=orjson.dumps(result).decode()))
            await sql.insert_postings(conn, txn, ledger.payment(
                merchant.wallet_id, None, debit, payer_id, payer.deposit_account, credit))
            await self.bank.queue_webhook(conn, merchant.wallet_id, merchant.webhook_url, txn, {
                "event": "refund.settled", "payment_id": f"P{txn}", "amount_fen": amount,
                "status": SETTLED, "refund_of": payment_id, "order_id": original.order_id})
            await sql.save_wallet(conn, shop)
            await sql.save_wallet(conn, payer)
            if credit.swept_to_deposit_fen:
                await sql.move_deposit(conn, payer.deposit_account, credit.swept_to_deposit_fen)
                await sql.move_vault(conn, credit.swept_to_deposit_fen)
            return {**result, "payment_id": f"P{txn}"}

        outcome = await self.bank.execute_once(env, merchant.wallet_id, apply, self.bank.refusal_row(
            env, "refund", amount, payer_wallet=merchant.wallet_id))
        txn_id = outcome.pop("_txn", None)
        if txn_id is not None and not outcome.get("repeated"):
            try:
                outcome["status"] = await asyncio.wait_for(self.bank.outbox.forward_transfer(txn_id),
                                                           FORWARD_WAIT_MS / 1000)
            except (asyncio.TimeoutError, RailError):
                outcome["status"] = PROCESSING
        if not outcome.get("repeated"):
            self.bank.notify(merchant.wallet_id, {"event": "refund.created", "amount_fen": amount,
                                              "payment_id": outcome.get("payment_id"),
                                              "refund_of": payment_id})
        return outcome

    async def _refund_to_other_bank(self, conn: AsyncConnection, env: Envelope, merchant_id: str,
                                    original: Any, shop: WalletState, debit: DebitPlan,
                                    at: int) -> dict:
        """Refund an interbank payment: a new interbank payment back to the payer, naming
        the transfer it refunds so the payer's bank can send it back the way it came."""
        amount = debit.amount_fen
        transfer_id = f"{self.bank.bank_id}.{secrets.token_hex(16)}"
        result = {"status": PROCESSING, "amount_fen": amount, "refund_of": f"P{original.txn_id}",
                  "refund_of_transfer": original.transfer_id,
                  "payer_wallet": original.payer_wallet, "transfer_id": transfer_id}
        txn = await sql.insert_transaction(conn, **self.bank.txn_values(
            env, "interbank_out", PROCESSING, amount, payer_wallet=merchant_id,
            payee_wallet=original.payer_wallet, counterparty_bank=original.counterparty_bank,
            transfer_id=transfer_id, next_attempt_ms=at + FORWARD_WAIT_MS,
            refund_of=original.txn_id, order_id=original.order_id, result=orjson.dumps(result).decode()))
        await sql.insert_postings(conn, txn, ledger.interbank_out(merchant_id, None, debit))
        await sql.save_wallet(conn, shop)
        return {**result, "payment_id": f"P{txn}", "_txn": txn}
