"""Bank B's side of interbank payments with group commit: a batch of message 2s from central
(`POST /v1/interbank/credits/batch`) credited in ONE PostgreSQL transaction.

Why: `Bank.interbank_credits` loops over `Bank.interbank_credit`, each credit its own
transaction of about eight SQLAlchemy statements (~7 ms of Python per credit on a small
machine). Here every envelope is verified and checked exactly as there (`Bank.read_credit`),
then the batch takes a fixed number of round trips, whatever its size:

    transfers already recorded                       (one SELECT .. transfer_id = ANY)
    BEGIN
    lock the orders being paid                       (`batch_sql.LOCK_ORDERS`)
    lock capped payees, fold their credits, read     (`batch_sql.LOCK_WALLETS`)
      the uncapped ones
    transaction ids, what capped payees have in      (`batch_sql.IDS_AND_PENDING`)
      flight to other banks
    -- the domain decides each credit in turn, as `Bank._credit_from_other_bank` does --
    write everything                                 (one statement: transactions ON CONFLICT
                                                      DO NOTHING, postings, wallets, appended
                                                      credits, orders, webhook deliveries)
    COMMIT

then one Redis pipeline of live notifications, and each answer signed by this bank.

Semantics are `Bank.interbank_credit`'s, kept on purpose:
- the same checks in the same order (the order payable, the payee known, its row locked if
  its class is capped and its cap checked on that stable balance counting what it has in
  flight, open, then `plan_credit`), the same refusal codes, each recorded as a rejected
  `interbank_in` row under its transfer id so a repeat gets the same answer;
- a transfer already recorded is answered from the record; a unique-key conflict (the same
  transfer delivered at once by another process) rolls the batch back, and the batch is
  done again without it while `Bank` answers it from the record: never a second credit;
- the same rows (transaction, postings, wallet or appended credit, order, webhook) and the
  same crash points after the commit (`bank.interbank_in.after_credit`, `.after_refusal`).
Anything else goes to `Bank.interbank_credit` unchanged, one by one after the commit and in
the batch's order: a refund (`details.refund_of`), a credit that would sweep past the cap to
the deposit account, the same transfer twice in one batch, fields too long for their columns,
and, for the rest of the batch, whatever comes after such an item for the same payee or
order (so each payee sees its credits in the order central sent them). A database error
sends the whole batch the standard way: nothing of it was committed, or, if the COMMIT's
answer was lost, the records answer.

Wiring: `install(app)` on an app made by `bank.app.create_app` (its lifespan starts
`FastCredits.start(bank)`, its route goes before the API's)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from bank.adapters import batch_sql as sql
from bank.adapters.batch_store import BatchStore, open_store
from bank.domain import events, ledger, orders
from bank.domain.payments import Credit, LockedBooks, apply_credit, decide_credit
from bank.domain.wallets import CreditPlan, WalletState
from bank.services import REJECTED, SETTLED
from rail_protocol.batches import MAX_BODY_BYTES as MAX_BATCH_BODY_BYTES
from rail_protocol.batches import parse_batch
from rail_protocol.envelope import Envelope, now_ms
from rail_protocol.errors import RailError
from rail_service.crash import crash_point
from rail_service.extend import extend_app

log = logging.getLogger("yuanrail.bank.fast_credits")

ATTEMPTS = 3        # a batch redone after conflicts at most this often, then the standard way


def _str_or_none(value: object) -> str | None:
    """How `_credit_from_other_bank` reads an optional text field of `details`."""
    return value if isinstance(value, str) else None


@dataclass(slots=True)
class _Credit:
    """One message 2 of the batch, checked, and what became of it."""

    raw: object
    env: Envelope
    transfer_id: str
    from_bank: Any
    payee_id: str
    amount: int
    details: dict
    sticky: bool = False          # the standard way whatever happens (refund, repeat, odd)
    standard: bool = False        # the standard way in this attempt (sticky, sweep, behind one)
    known: bool = False           # recorded before this batch: answered from the record
    code: str | None = None       # the refusal, once decided or read
    txn_id: int = 0

    @property
    def payer_id(self) -> str | None:
        return _str_or_none(self.details.get("payer_wallet"))

    @property
    def order_id(self) -> str | None:
        return _str_or_none(self.details.get("order_id"))

    @property
    def odd(self) -> bool:
        """What the standard path handles apart, or what would not fit its columns."""
        payer, order_id = self.payer_id, self.order_id
        return (_str_or_none(self.details.get("refund_of")) is not None
                or not isinstance(self.from_bank, str) or len(self.from_bank) > 32
                or (payer is not None and len(payer) > 64)
                or (order_id is not None and len(order_id) > 25))


class _Conflict(Exception):
    """Roll the batch back: these transfers were recorded meanwhile by someone else."""

    def __init__(self, credits: list[_Credit]) -> None:
        super().__init__(f"{len(credits)} transfer(s) recorded concurrently")
        self.credits = credits


class FastCredits:
    """Message 2s in a batch, one transaction per batch, through a `BatchStore` of its own
    (PostgreSQL or SQLite). `interbank_credits` has the contract of `Bank.interbank_credits`."""

    def __init__(self, bank, store: BatchStore | None = None) -> None:
        self.bank, self.store = bank, store
        self.batches = self.fast = self.standard = 0     # counted for tests and logs

    @classmethod
    async def start(cls, bank, *, pool_size: int = 2) -> FastCredits:
        """Batched credits for `bank`, on its database."""
        return cls(bank, await open_store(bank.engine, pool_size))

    async def aclose(self) -> None:
        log.info("fast credits: %d batches, %d credits booked here, %d the standard way",
                 self.batches, self.fast, self.standard)
        if self.store is not None:
            await self.store.aclose()

    @property
    def on(self) -> bool:
        return self.store is not None

    async def interbank_credits(self, raw: object) -> dict:
        """`Bank.interbank_credits`: each credit answered in its place, as
        `Bank.interbank_credit` answers it alone, or with its typed error."""
        items = parse_batch(raw, "credits")
        if not self.on:
            return await self.bank.interbank_credits(raw)
        results: list[dict | None] = [None] * len(items)
        credits: dict[int, _Credit] = {}
        seen: set[str] = set()
        for n, item in enumerate(items):
            try:
                credit = _Credit(item, *self.bank.read_credit(item))
            except RailError as exc:
                results[n] = exc.to_dict()
                continue
            credit.sticky = credit.transfer_id in seen or credit.odd
            seen.add(credit.transfer_id)
            credits[n] = credit
        try:
            booked = await self._book(list(credits.values()))
        except Exception:  # noqa: BLE001 - a database error: nothing of the batch is kept
            log.exception("credit batch of %d failed; it goes the standard way", len(items))
            return await self.bank.interbank_credits(raw)
        self.batches += 1
        if any(c.code is None for c in booked):
            crash_point("bank.interbank_in.after_credit")
        if any(c.code is not None for c in booked):
            crash_point("bank.interbank_in.after_refusal")
        await self._notify([c for c in booked if c.code is None])
        for n, credit in credits.items():
            if credit.standard:
                self.standard += 1
                results[n] = await self._standard(credit.raw)
            else:
                results[n] = self.bank.credit_answer(credit.transfer_id, credit.code)
        self.fast += len(booked)
        return {"results": results}

    async def _standard(self, raw: object) -> dict:
        try:
            return await self.bank.interbank_credit(raw)
        except RailError as exc:
            return exc.to_dict()

    # --- the transaction -------------------------------------------------------------------

    async def _book(self, credits: list[_Credit]) -> list[_Credit]:
        """Answer the known transfers from their records and book the new ones in one
        transaction; return those booked here (credited or refused)."""
        if not credits:
            return []
        async with self.store.connection() as conn:
            async with self.store.single(conn) as tx:
                known = await tx.known_transfers([c.transfer_id for c in credits])
            for credit in credits:
                row = known.get(credit.transfer_id)
                if row is not None:
                    credit.known = True
                    credit.code = row["code"] if row["status"] == REJECTED else None
            new = [c for c in credits if not c.known]
            for _attempt in range(ATTEMPTS):
                if all(c.sticky for c in new):
                    break
                try:
                    async with self.store.transaction(conn) as tx:
                        plan = await self._decide(tx, new)
                        written = await tx.write_credits(plan)
                        conflicts = [c for c in plan.written if c.txn_id not in written]
                        if conflicts:
                            raise _Conflict(conflicts)
                    return plan.written
                except _Conflict as conflict:
                    for credit in conflict.credits:   # `Bank` answers it from the record
                        credit.sticky = True
            for credit in new:
                credit.standard = True
            return []

    async def _decide(self, tx, credits: list[_Credit]) -> sql.Plan:
        """Lock, then ask the domain about each credit in turn, as
        `Bank._credit_from_other_bank` does; nothing is written yet."""
        limits = self.bank.limits
        at = now_ms()
        order_ids = sorted({c.order_id for c in credits if c.order_id is not None})
        order_rows = {r["order_id"]: r for r in await tx.lock_orders(order_ids)}
        payees = sorted({c.payee_id for c in credits})
        capped = sorted(k for k, lim in limits.items() if lim.balance_cap_fen is not None)
        locked: dict[str, WalletState] = {}
        rows: dict[str, Any] = {}
        for r in await tx.lock_wallets([], payees, capped):
            rows[r["wallet_id"]] = r
            if r["locked"]:
                locked[r["wallet_id"]] = WalletState(
                    r["wallet_id"], r["status"], r["kyc_class"], r["balance_fen"] + r["folded"],
                    r["day"], r["spent_today_fen"], r["topup_on_use"], r["deposit_account"])
        needed = sum(1 for c in credits if not c.sticky)
        ids, pending = await tx.ids_and_pending(needed, sorted(locked))
        for wallet_id, fen in pending.items():
            locked[wallet_id].pending_out_fen = fen
        ids.sort(reverse=True)
        books = LockedBooks(limits, wallets=locked, payees={
            r["wallet_id"]: WalletState(r["wallet_id"], r["status"], r["kyc_class"], 0, 0, 0,
                                        r["topup_on_use"], r["deposit_account"])
            for r in rows.values() if not r["locked"]}, orders={
            r["order_id"]: orders.OrderState(r["order_id"], r["merchant_wallet"],
                                             r["amount_fen"], r["status"], r["expires_ms"])
            for r in order_rows.values()})
        # Every locked wallet is written back: its credits were folded.
        plan = sql.Plan(sql.CREDIT_TXN_COLUMNS, wallets=locked)
        behind: set[str] = set()        # payees and orders whose next credits go the standard way
        for credit in credits:
            credit.code, credit.txn_id = None, 0
            credit.standard = credit.sticky or credit.payee_id in behind \
                or (credit.order_id is not None and credit.order_id in behind)
            if not credit.standard:
                inbound = Credit(credit.payee_id, credit.amount, credit.order_id)
                try:
                    decided = decide_credit(inbound, books, at)
                except RailError as refusal:
                    credit.code = refusal.code
                    self._add_txn(plan, credit, ids.pop(), at)
                    continue
                credit.standard = decided.swept_to_deposit_fen > 0   # `Bank` sweeps
            if credit.standard:
                behind.update(k for k in (credit.payee_id, credit.order_id) if k is not None)
                continue
            apply_credit(inbound, decided, books)
            self._add_credit(plan, credit, ids.pop(), at, decided.to_wallet_fen,
                             rows[credit.payee_id], credit.payee_id in locked)
        return plan

    def _add_txn(self, plan: sql.Plan, credit: _Credit, txn: int, at: int) -> None:
        """The `interbank_in` row `_credit_from_other_bank` writes, settled or refused."""
        credit.txn_id = txn
        plan.add(plan.txn, sql.CREDIT_TXN_COLUMNS, (
            txn, credit.env.signer, credit.transfer_id, credit.env.digest(),
            SETTLED if credit.code is None else REJECTED, credit.code, credit.amount,
            credit.env.expires_ms, at, credit.payer_id, credit.payee_id, credit.order_id,
            credit.from_bank))
        plan.written.append(credit)

    def _add_credit(self, plan: sql.Plan, credit: _Credit, txn: int, at: int, to_wallet: int,
                    payee_row: Any, credited_in_place: bool) -> None:
        """A settled credit: its row, postings, the wallet (or an appended credit), the order
        claimed, and the merchant's webhook queued (`Bank._queue_webhook`)."""
        self._add_txn(plan, credit, txn, at)
        sql.add_postings(plan.postings, txn, ledger.interbank_in(
            credit.payee_id, payee_row["deposit_account"], CreditPlan(to_wallet, 0)))
        if not credited_in_place:   # a locked payee's balance is written back whole
            plan.add(plan.credits, sql.CREDIT_COLUMNS, (credit.payee_id, to_wallet))
        if credit.order_id is not None:
            plan.add(plan.paid_orders, sql.ORDER_COLUMNS, (
                credit.order_id, credit.payer_id or f"{credit.from_bank}.?", at, txn))
        if payee_row["webhook_url"]:
            event = events.webhook_body(events.payment_received(
                f"P{txn}", credit.amount, credit.order_id, from_bank=credit.from_bank), at)
            plan.add(plan.hooks, sql.HOOK_COLUMNS, (
                credit.payee_id, txn, orjson.dumps(event).decode(), payee_row["webhook_url"], at))

    async def _notify(self, credited: list[_Credit]) -> None:
        """The payees' live notifications for the credits of a batch, in one Redis pipeline
        (`HotState.after_commit`), best effort, after the commit."""
        if credited:
            await self.bank.hot.after_commit([], [(c.payee_id, events.payment_received(
                f"P{c.txn_id}", c.amount, c.order_id, from_bank=c.from_bank))
                for c in credited], now_ms())


# --- HTTP: the batch route, placed before the API's own ------------------------------------

async def _credits_route(request):
    from rail_service.http import JSON, read_json

    body = await read_json(request, MAX_BATCH_BODY_BYTES)
    return JSON(await request.app.state.fast_credits.interbank_credits(body))


def fast_credit_routes() -> list:
    """A plain Starlette route (no dependency solving) for the batch of message 2s; the API's
    FastAPI route of the same path stays in the OpenAPI page."""
    from starlette.routing import Route

    return [Route("/v1/interbank/credits/batch", _credits_route, methods=["POST"])]


def install(app) -> None:
    """Put fast credits into a bank app made by `bank.app.create_app` (idempotent)."""
    extend_app(app, "fast_credits", lambda a: FastCredits.start(a.state.bank),
               fast_credit_routes())
