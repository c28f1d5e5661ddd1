"""Conditional payments at a bank node: holds and vouchers (the rules: bank/domain/holds.py).

Each step is one database transaction on either database: the hold's row locked first, then
the wallets it moves money between (in id order), so two steps on one hold are serialized
and the second finds it closed. Opening debits the funder into `held` under the instruction's
(signer, id) unique key, so a retry opens nothing twice; each release, spend or void is keyed
the same way; expiry is the bank's own step, once, guarded by the hold's status.

While a hold is pending its `processing` row (kind `hold` or `voucher`) carries what it still
holds: a credit to the funder then counts it, as it counts a payment in flight to another
bank, so what comes back always fits under the funder's balance cap."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bank.adapters import books_sql as sql
from bank.adapters import tables as t
from bank.common import check_memo, check_wallet_id, wallet_bank
from bank.domain import holds as rules
from bank.domain import ledger
from bank.domain.wallets import MERCHANT, china_day, plan_credit, plan_debit
from bank.instruction_log import JOURNAL
from bank.services import Bank
from rail_protocol.envelope import Envelope, check_live, now_ms
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import HOLD, HOLD_RELEASE, HOLD_VOID, VOUCHER, VOUCHER_SPEND
from rail_protocol.money import parse_fen
from rail_service.instructions import execute_once

log = logging.getLogger("yuanrail.bank.holds")

# The status a pending hold's own row ends with, by how the hold closed.
ROW_STATUS = {rules.POSTED: "settled", rules.VOIDED: "voided", rules.EXPIRED: "expired"}


class Holds:
    """Holds and vouchers of one bank node. `clock` gives the time every rule is decided at
    (tests move it past deadlines)."""

    def __init__(self, bank: Bank, clock: Callable[[], int] = now_ms,
                 min_life_ms: int = rules.MIN_LIFE_MS) -> None:
        self.bank = bank
        self.clock = clock
        self.min_life_ms = min_life_ms

    # --- opening ---------------------------------------------------------------------------

    async def open_hold(self, raw: object) -> dict:
        """The payer freezes an amount for a merchant of this bank, until `deadline_ms`."""
        env, payer = await self.bank.signed_by_wallet(raw, HOLD, "payer_wallet")
        body, at = env.body, self.clock()
        check_live(env, at)
        return await self.open(env, rules.HOLD, payer.wallet_id, at,
                                payee=check_wallet_id(body.get("payee_wallet"), "payee_wallet"),
                                amount=parse_fen(body.get("amount_fen")),
                                deadline=rules.check_deadline(body.get("deadline_ms"), at,
                                                              self.min_life_ms),
                                release_by=rules.check_release_by(body.get("release_by")),
                                memo=check_memo(body.get("memo")))

    async def open_voucher(self, raw: object) -> dict:
        """An issuer's wallet gives a holder here money to spend by `deadline_ms`, only at
        merchants of `mcc` when it names one."""
        env, issuer = await self.bank.signed_by_wallet(raw, VOUCHER, "issuer_wallet")
        body, at = env.body, self.clock()
        check_live(env, at)
        return await self.open(env, rules.VOUCHER, issuer.wallet_id, at,
                                holder=check_wallet_id(body.get("holder_wallet"),
                                                       "holder_wallet"),
                                amount=parse_fen(body.get("amount_fen")),
                                deadline=rules.check_deadline(body.get("deadline_ms"), at,
                                                              self.min_life_ms),
                                mcc=rules.check_mcc(body.get("mcc")),
                                memo=check_memo(body.get("memo")))

    async def open(self, env: Envelope, kind: str, funder: str, at: int, *, amount: int,
                   deadline: int, payee: str | None = None, holder: str | None = None,
                   release_by: str | None = None, mcc: str | None = None,
                   memo: str | None = None, max_payments: int | None = None,
                   guard: Callable[[AsyncConnection], Awaitable[None]] | None = None) -> dict:
        """Open a hold, a voucher or an offline purse (bank/offline.py) for a checked
        instruction: the funder debited into `held`, once per instruction. `guard` checks,
        with the funder's row locked, what must not race (an offline reserve's cap)."""
        other = payee or holder
        if other is not None and wallet_bank(other) != self.bank.bank_id:
            raise RailError("unknown_wallet", "holds and vouchers stay within one bank")
        if other == funder:
            raise RailError("self_payment")
        hold_id = "H" + hashlib.sha256(f"{env.signer}:{env.id}".encode()).hexdigest()[:24]

        async def apply(conn: AsyncConnection) -> dict:
            row = await sql.wallet_row(conn, other) if other is not None else None
            if other is not None and row is None:
                raise RailError("unknown_wallet")
            if row is not None and row.status != "open":
                raise RailError("wallet_closed")
            if payee is not None and row.kind != MERCHANT:
                raise RailError("not_a_merchant", "a hold is for a merchant")
            _row, state = await sql.lock_wallet(conn, funder)
            if guard is not None:
                await guard(conn)
            debit = plan_debit(state, self.bank.limits[state.kyc_class], amount, at)
            state.balance_fen, state.day = debit.balance_after_fen, debit.day
            state.spent_today_fen = debit.spent_today_after_fen
            await sql.save_wallet(conn, state)
            txn = await sql.insert_transaction(
                conn, kind=kind, signer=env.signer, instruction_id=env.id,
                digest=env.digest(), status="processing", amount_fen=amount,
                payer_wallet=funder, payee_wallet=other, memo=memo,
                result=orjson.dumps({"hold_id": hold_id}).decode(),
                expires_ms=env.expires_ms, created_ms=at, updated_ms=at)
            await sql.insert_postings(conn, txn, ledger.hold_opened(funder, amount))
            await conn.execute(t.holds.insert().values(
                hold_id=hold_id, kind=kind, funder_wallet=funder, payee_wallet=payee,
                holder_wallet=holder, amount_fen=amount, remaining_fen=amount, mcc=mcc,
                deadline_ms=deadline, release_by=release_by, status=rules.PENDING,
                txn_id=txn, memo=memo, created_ms=at, max_payments=max_payments))
            return {"hold_id": hold_id}

        await execute_once(self.bank.engine, JOURNAL, env, apply, at_ms=at)
        return await self.view(hold_id)

    # --- closing ---------------------------------------------------------------------------

    async def release(self, hold_id: str, raw: object) -> dict:
        """The hold's releaser posts it: `amount_fen` to the merchant, the rest back."""
        env, signer = await self.bank.signed_by_wallet(raw, HOLD_RELEASE, "signer_wallet")
        return await self._step(hold_id, env, "hold_release", lambda hold, _mcc, at:
                                rules.decide_release(hold, signer.wallet_id,
                                                     env.body.get("amount_fen"), at))

    async def void(self, hold_id: str, raw: object) -> dict:
        """Everything held back to the funder: by a hold's merchant, a voucher's issuer."""
        env, signer = await self.bank.signed_by_wallet(raw, HOLD_VOID, "signer_wallet")
        return await self._step(hold_id, env, "hold_void", lambda hold, _mcc, at: rules.decide_void(
            hold, signer.wallet_id, at))

    async def spend(self, hold_id: str, raw: object) -> dict:
        """The voucher's holder pays a merchant here with part of it."""
        env, holder = await self.bank.signed_by_wallet(raw, VOUCHER_SPEND, "holder_wallet")
        payee = check_wallet_id(env.body.get("payee_wallet"), "payee_wallet")
        return await self._step(hold_id, env, "voucher_spend", lambda hold, mcc, at:
                                rules.decide_spend(hold, holder.wallet_id, mcc,
                                                   env.body.get("amount_fen"), at),
                                payee=payee, merchant_only=True)

    async def _step(self, hold_id: str, env: Envelope, kind: str, decide,
                    payee: str | None = None, merchant_only: bool = False) -> dict:
        at = self.clock()
        check_live(env, at)
        if env.body.get("hold_id") != hold_id:
            raise RailError("invalid_field", "the signed hold_id is not the one in the path")
        if len(hold_id) > 32:
            raise RailError("unknown_hold")

        async def apply(conn: AsyncConnection) -> dict:
            await self.move_on(conn, hold_id, decide, at, env=env, kind=kind, payee=payee,
                               merchant_only=merchant_only)
            return {"hold_id": hold_id}

        await execute_once(self.bank.engine, JOURNAL, env, apply, at_ms=at)
        return await self.view(hold_id)

    async def expire_due(self, at_ms: int | None = None, limit: int = 100) -> int:
        """Return what every hold and voucher past its deadline still holds; how many."""
        at = self.clock() if at_ms is None else at_ms
        async with self.bank.engine.connect() as conn:
            due = (await conn.execute(sa.select(t.holds.c.hold_id).where(
                t.holds.c.status == rules.PENDING, t.holds.c.deadline_ms <= at)
                .order_by(t.holds.c.deadline_ms).limit(limit))).scalars().all()
        expired = 0
        for hold_id in due:
            try:
                if await self.move(hold_id, lambda hold, _mcc, when: rules.decide_expiry(
                        hold, when), at):
                    expired += 1
            except RailError as exc:   # closed meanwhile by its releaser: nothing to do
                log.info("hold %s not expired: %s", hold_id, exc.code)
        return expired

    async def move(self, hold_id: str, decide, at: int, **step) -> bool:
        """`move_on`, in a transaction of its own."""
        async with self.bank.engine.begin() as conn:
            return await self.move_on(conn, hold_id, decide, at, **step)

    async def move_on(self, conn: AsyncConnection, hold_id: str, decide, at: int, *,
                      env: Envelope | None = None, kind: str = "hold_return",
                      payee: str | None = None, merchant_only: bool = False,
                      record=None) -> bool:
        """One decision on a locked hold, and the money it sends out of `held`; `record`
        (given the connection) writes what else the step must write in its transaction."""
        row = (await conn.execute(sa.select(t.holds).where(
            t.holds.c.hold_id == hold_id).with_for_update())).first()
        if row is None:
            raise RailError("unknown_hold")
        hold = _state(row)
        to = payee or hold.payee
        mcc = None
        if payee is not None:
            shop = await sql.wallet_row(conn, payee)
            if shop is None:
                raise RailError("unknown_wallet")
            if merchant_only and shop.kind != MERCHANT:
                raise RailError("not_a_merchant", "a voucher is spent at a merchant")
            mcc = shop.mcc
        move = decide(hold, mcc, at)
        if move is None:
            return False
        if record is not None:
            await record(conn)
        credits = {}
        for wallet_id in sorted({w for w, n in ((to, move.to_payee_fen),
                                                (hold.funder, move.back_fen)) if n}):
            _r, state = await sql.lock_wallet(conn, wallet_id, for_credit=True)
            if wallet_id == hold.funder:   # this hold is in its pending: it comes back now
                state.pending_out_fen -= hold.remaining_fen
            credits[wallet_id] = state
        # The step's own row carries its instruction's key (a retry finds it); the bank's
        # return of what is left, once per hold, is keyed by the hold.
        bank_key = ("bank", f"return:{hold_id}", "", at)
        signer = (env.signer, env.id, env.digest(), env.expires_ms) if env else bank_key
        if move.to_payee_fen:
            await self._credit(conn, credits[to], move.to_payee_fen, at, kind,
                               payer=hold.holder or hold.funder, signer=signer)
            signer = bank_key
        if move.back_fen:
            funder = credits[hold.funder]
            if funder.day == china_day(row.created_ms):   # as a refused payment does
                funder.spent_today_fen = max(funder.spent_today_fen - move.back_fen, 0)
            await self._credit(conn, funder, move.back_fen, at, "hold_return",
                               payer=None, signer=signer, closing=kind)
        if env is not None and not move.to_payee_fen and not move.back_fen:
            raise RailError("hold_closed", "nothing is left to move")
        remaining = hold.remaining_fen - move.to_payee_fen - move.back_fen
        closed = move.status_after != rules.PENDING
        await conn.execute(t.holds.update().where(t.holds.c.hold_id == hold_id).values(
            remaining_fen=remaining, status=move.status_after,
            closed_ms=at if closed else None))
        await conn.execute(t.transactions.update().where(
            t.transactions.c.txn_id == row.txn_id).values(
            amount_fen=remaining if not closed else row.amount_fen,
            status=ROW_STATUS[move.status_after] if closed else "processing",
            updated_ms=at))
        return True

    async def _credit(self, conn: AsyncConnection, state, amount: int, at: int, kind: str, *,
                      payer: str | None, signer: tuple, closing: str = "") -> None:
        """Credit a locked wallet out of `held`, past its cap swept to its deposit account,
        in a transaction row of its own (the instruction's key on the first of them)."""
        plan = plan_credit(state, self.bank.limits[state.kyc_class], amount)
        state.balance_fen += plan.to_wallet_fen
        await sql.save_wallet(conn, state)
        if plan.swept_to_deposit_fen:
            await sql.move_vault(conn, plan.swept_to_deposit_fen)
            await sql.move_deposit(conn, state.deposit_account, plan.swept_to_deposit_fen)
        key, instruction, digest, expires = signer
        txn = await sql.insert_transaction(
            conn, kind=kind, signer=key, instruction_id=instruction, digest=digest,
            status="settled", amount_fen=amount, payer_wallet=payer,
            payee_wallet=state.wallet_id, memo=closing or None, result="{}",
            expires_ms=expires, created_ms=at, updated_ms=at)
        await sql.insert_postings(conn, txn, ledger.held_out(state.wallet_id,
                                                             state.deposit_account, plan))

    # --- reads -----------------------------------------------------------------------------

    async def view(self, hold_id: str) -> dict:
        async with self.bank.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.holds).where(
                t.holds.c.hold_id == hold_id))).first()
        if row is None:
            raise RailError("unknown_hold")
        return _view(row)

    async def of_wallet(self, wallet_id: str) -> dict:
        """The holds and vouchers a wallet funds, is paid by, or holds, newest first."""
        h = t.holds.c
        async with self.bank.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.holds).where(sa.or_(
                h.funder_wallet == wallet_id, h.payee_wallet == wallet_id,
                h.holder_wallet == wallet_id)).order_by(h.created_ms.desc()).limit(100))).all()
        return {"holds": [_view(r) for r in rows]}


def _state(row: Any) -> rules.HoldState:
    return rules.HoldState(row.hold_id, row.kind, row.funder_wallet, row.payee_wallet,
                           row.holder_wallet, row.amount_fen, row.remaining_fen, row.mcc,
                           row.deadline_ms, row.release_by, row.status)


def _view(row: Any) -> dict:
    return {"hold_id": row.hold_id, "kind": row.kind, "status": row.status,
            "funder_wallet": row.funder_wallet, "payee_wallet": row.payee_wallet,
            "holder_wallet": row.holder_wallet, "amount_fen": row.amount_fen,
            "remaining_fen": row.remaining_fen, "mcc": row.mcc, "deadline_ms": row.deadline_ms,
            "release_by": row.release_by, "memo": row.memo, "created_ms": row.created_ms,
            "closed_ms": row.closed_ms, "max_payments": row.max_payments}
