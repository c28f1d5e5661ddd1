"""Bank B's side of interbank payments: message 2s from central credited in batches, ONE
transaction per batch on PostgreSQL or SQLite (bank/adapters/batch_store.py), whether they
come many at once (`POST /v1/interbank/credits/batch`) or one (`POST /v1/interbank/credits`,
a batch of one). The one way this bank credits money from another bank.

Every envelope is verified as central's and checked (`read_credit`), then:

    BEGIN                                            (no read of recorded transfers first:
                                                      a repeat is a unique-key conflict, below)
    lock the payments refunded (a refund back)       (`batch_sql.LOCK_REFUNDED`)
    lock the orders being paid                       (`batch_sql.LOCK_ORDERS`)
    lock capped payees, fold their credits, read     (`batch_sql.LOCK_WALLETS`)
      what each has in flight to other banks (read
      after its lock), read the uncapped ones,
      transaction ids
    -- bank/domain/payments.py decides each credit in turn --
    write everything                                 (one statement: transactions ON CONFLICT
                                                      DO NOTHING, postings, wallets, appended
                                                      credits, orders, webhook deliveries;
                                                      then, only if any, refunds booked,
                                                      deposit accounts and the vault swept)
    COMMIT

then each answer signed by this bank, and after the answer one Redis pipeline of live
notifications (in the order of the batches).

- A refusal (unknown payee, closed, order not payable, past the cap with no deposit account
  to sweep to, a refund of nothing refundable, details that are not what a payment carries)
  is recorded as a rejected `interbank_in` row under its transfer id: every repeat gets the
  same signed answer, and central returns the money to the payer.
- Exactly once: the transfer id is a unique key. A transfer already recorded is answered
  from the record; one recorded meanwhile by another delivery (a unique-key conflict) rolls
  the batch back, and the batch is done again without it, which is then answered from the
  record. The same transfer twice in one batch is booked once and answered twice.
- Crash points after the commit: `bank.interbank_in.after_credit`, `.after_refusal`.
- A batch that fails (a database error: nothing of it was kept) is done again credit by
  credit; one that fails alone gets a typed `service_unavailable` (not an answer: central
  sends it again).

Wiring: `install(app)` on an app made by `bank.app.create_app` (its lifespan starts
`CreditEngine.start(bank)`); its route (`credit_engine_routes()`) is served by the app's
hot edge (rail_service/hot_edge.py)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

import orjson

from bank.adapters import batch_sql as sql
from bank.adapters.batch_store import BatchStore, open_store
from bank.common import REJECTED, SETTLED, check_wallet_id
from bank.domain import events, ledger, orders
from bank.domain.payments import (
    Credit,
    LockedBooks,
    apply_credit,
    decide_credit,
    decide_refund_back,
)
from bank.domain.wallets import CreditPlan, WalletState
from rail_protocol import envelope
from rail_protocol.batches import MAX_BODY_BYTES as MAX_BATCH_BODY_BYTES
from rail_protocol.batches import open_batch, parse_batch, seal_results
from rail_protocol.envelope import Envelope, now_ms, sign_statement
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import CREDIT_RESULT, INTERBANK_CREDIT
from rail_protocol.money import parse_fen
from rail_service.crash import crash_point
from rail_service.extend import extend_app
from rail_service.metrics import CallTimes

log = logging.getLogger("yuanrail.bank.credit_engine")

ATTEMPTS = 3        # a batch redone after conflicts at most this often


def _str_or_none(value: object) -> str | None:
    """An optional text field of `details`: the text, or None."""
    return value if isinstance(value, str) else None


@dataclass(slots=True)
class _Credit:
    """One message 2, checked, and what became of it."""

    raw: object
    env: Envelope
    transfer_id: str
    from_bank: Any
    payee_id: str
    amount: int
    details: dict
    done: bool = False            # answered: recorded before, or booked here
    code: str | None = None       # the refusal, once decided or read
    error: RailError | None = None   # no answer (central sends it again)
    txn_id: int = 0

    @property
    def payer_id(self) -> str | None:
        return _str_or_none(self.details.get("payer_wallet"))

    @property
    def order_id(self) -> str | None:
        return _str_or_none(self.details.get("order_id"))

    @property
    def refund_of(self) -> str | None:
        return _str_or_none(self.details.get("refund_of"))

    @property
    def odd(self) -> bool:
        """Details no payment carries: fields too long for their columns, a bank id that is
        not text. Refused (and the odd fields left out of the record)."""
        payer, order_id, refund_of = self.payer_id, self.order_id, self.refund_of
        return (not isinstance(self.from_bank, str) or len(self.from_bank) > 32
                or (payer is not None and len(payer) > 64)
                or (order_id is not None and len(order_id) > 25)
                or (refund_of is not None and len(refund_of) > 80))


class _Conflict(Exception):
    """Roll the batch back: these transfers were recorded meanwhile by someone else."""

    def __init__(self, credits: list[_Credit]) -> None:
        super().__init__(f"{len(credits)} transfer(s) recorded concurrently")
        self.credits = credits


class CreditEngine:
    """Message 2s in batches, one transaction per batch, through a `BatchStore` of its own
    (PostgreSQL or SQLite)."""

    def __init__(self, bank, store: BatchStore | None = None) -> None:
        self.bank, self.store = bank, store
        self.batches = self.booked = 0     # counted for tests, logs and `stats`
        self.calls_in = CallTimes()   # batch calls answered, and the time they took
        self._notifying: asyncio.Task | None = None   # the latest batch's notifications

    @classmethod
    async def start(cls, bank, *, pool_size: int = 2) -> CreditEngine:
        """Batched credits for `bank`, on its database."""
        return cls(bank, await open_store(bank.engine, pool_size))

    async def aclose(self) -> None:
        log.info("credits: %d booked in %d batches", self.booked, self.batches)
        if self._notifying is not None:
            await asyncio.gather(self._notifying, return_exceptions=True)
        if self.store is not None:
            await self.store.aclose()

    # --- the messages ----------------------------------------------------------------------

    def read_credit(self, raw: object) -> tuple[Envelope, str, Any, str, int, dict]:
        """Message 2 verified as central's and checked, first error wins: (envelope,
        transfer id, from bank, payee, amount, details)."""
        env = Envelope.parse(raw)
        envelope.verify(env, self._central_key(), expected_type=INTERBANK_CREDIT,
                        check_expiry=False)
        return self.check_credit(env)

    def _central_key(self):
        if self.bank.central_key is None:
            raise RailError("upstream_unavailable", "this bank has not learned central's key")
        return self.bank.central_key

    def check_credit(self, env: Envelope) -> tuple[Envelope, str, Any, str, int, dict]:
        """Message 2 whose signature is checked (its own, or its sealed batch's): its type
        and body, first error wins."""
        if env.type != INTERBANK_CREDIT:
            raise RailError("invalid_field", f"expected a {INTERBANK_CREDIT} instruction")
        body = env.body
        transfer_id = body.get("transfer_id")
        if not isinstance(transfer_id, str) or not 3 <= len(transfer_id) <= 80:
            raise RailError("invalid_field", "transfer_id")
        if body.get("to_bank") != self.bank.bank_id:
            raise RailError("invalid_field", "this transfer is for another bank")
        amount = parse_fen(body.get("amount_fen"))
        payee_id = check_wallet_id(body.get("payee_wallet"), "payee_wallet")
        details = body.get("details") or {}
        if not isinstance(details, dict):
            raise RailError("invalid_field", "details must be an object")
        return env, transfer_id, body.get("from_bank"), payee_id, amount, details

    def credit_answer(self, transfer_id: str, code: str | None, *, signed: bool = True) -> dict:
        """The answer to message 2, signed by this bank: accepted, or refused with `code`
        (unsigned for a sealed batch's answer, whose one signature covers it)."""
        statement = {"type": CREDIT_RESULT, "transfer_id": transfer_id, "accepted": code is None,
                     **({"code": code} if code else {})}
        return {"result": sign_statement(self.bank.key, statement) if signed else statement}

    async def sealed_credits(self, raw: object) -> dict:
        """A sealed batch (rail_protocol/batches.py, docs/interbank.md "One signature per
        batch"): one verify of central's signature for all, each item then checked and
        answered as in `interbank_credits`, and the answers signed together."""
        envelopes = open_batch(raw, "credits", self._central_key())
        results = await self.credit_all(envelopes, sealed=True)
        return seal_results(self.bank.key, [r.to_dict() if isinstance(r, RailError) else r
                                            for r in results])

    async def interbank_credits(self, raw: object) -> dict:
        """A batch (docs/interbank.md): `{"credits": [envelope, ...]}`, each answered in its
        place, or with its typed error (`{"error": {...}}`, not an answer)."""
        results = await self.credit_all(parse_batch(raw, "credits"))
        return {"results": [r.to_dict() if isinstance(r, RailError) else r for r in results]}

    async def interbank_credit(self, raw: object) -> dict:
        """One message 2: a batch of one; its typed error raised."""
        [result] = await self.credit_all([raw])
        if isinstance(result, RailError):
            raise result
        return result

    def stages(self) -> dict:
        """For the dashboard's `stages`: the credit batches written and credits booked, and
        the batch calls answered with their time (from the first check to the signed
        answers)."""
        return {"batches": {"credit-batch": {"batches": self.batches, "items": self.booked}},
                "calls": {"from central": self.calls_in.stats()}}

    async def credit_all(self, items: list, *, sealed: bool = False) -> list[dict | RailError]:
        """Each item's signed answer, or its typed error, in its place; `sealed`: the items
        are the envelopes of a sealed batch, its signature checked, and the answers are
        left for the batch's one signature."""
        with self.calls_in.timing():
            return await self._credit_all(items, sealed)

    async def _credit_all(self, items: list, sealed: bool) -> list[dict | RailError]:
        results: list[dict | RailError | None] = [None] * len(items)
        first: dict[str, _Credit] = {}
        placed: list[tuple[int, str]] = []
        for n, item in enumerate(items):
            try:
                credit = _Credit(item, *(self.check_credit(item) if sealed
                                         else self.read_credit(item)))
            except RailError as exc:
                results[n] = exc
                continue
            first.setdefault(credit.transfer_id, credit)   # a repeat in the batch: once
            placed.append((n, credit.transfer_id))
        credits = list(first.values())
        try:
            await self._book(credits)
        except Exception:  # noqa: BLE001 - nothing of the batch was kept: credit by credit
            log.exception("a credit batch of %d failed; each goes again alone", len(credits))
            for credit in credits:
                if credit.done or credit.error is not None:
                    continue
                try:
                    await self._book([credit])
                except Exception:  # noqa: BLE001 - central sends it again
                    log.exception("credit %s failed alone", credit.transfer_id)
                    credit.error = RailError("service_unavailable",
                                             "the credit was not recorded; send it again")
        for n, transfer_id in placed:
            credit = first[transfer_id]
            results[n] = credit.error or self.credit_answer(transfer_id, credit.code,
                                                            signed=not sealed)
        return results

    # --- the transaction -------------------------------------------------------------------

    async def _book(self, credits: list[_Credit]) -> None:
        """Book the credits in one transaction; a transfer already recorded (a repeat of
        message 2) makes its row's insert conflict, and then the transaction is rolled back,
        the recorded ones are answered from their records and the rest booked again. No
        read comes first: a repeat is rare (central sends again only what went unanswered)
        and a read before every batch is a round trip on every interbank payment's path."""
        if not credits:
            return
        async with self.store.connection() as conn:
            new = list(credits)
            for _attempt in range(ATTEMPTS):
                if not new:
                    return
                try:
                    async with self.store.transaction(conn) as tx:
                        plan = await self._decide(tx, new)
                        written = await tx.write_credits(plan)
                        conflicts = [c for c in plan.written if c.txn_id not in written]
                        if conflicts:
                            raise _Conflict(conflicts)
                        await tx.write_extras(plan)
                except _Conflict as conflict:
                    await self._read_known(conn, conflict.credits)
                    for credit in conflict.credits:
                        if not credit.done:   # another unique key: a race; send it again
                            credit.error = RailError("service_unavailable",
                                                     "a concurrent change; send it again")
                    new = [c for c in new if not c.done and c.error is None]
                    continue
                for credit in plan.written:
                    credit.done = True
                self.batches += 1
                self.booked += len(plan.written)
                accepted = [c for c in plan.written if c.code is None]
                if accepted:
                    crash_point("bank.interbank_in.after_credit")
                if len(accepted) < len(plan.written):
                    crash_point("bank.interbank_in.after_refusal")
                self._notify_later(accepted)
                return
            for credit in new:
                credit.error = RailError("service_unavailable", "too many concurrent changes")

    async def _read_known(self, conn, credits: list[_Credit]) -> None:
        """Mark the credits whose transfer is recorded, with the recorded answer."""
        async with self.store.single(conn) as tx:
            known = await tx.known_transfers([c.transfer_id for c in credits])
        for credit in credits:
            row = known.get(credit.transfer_id)
            if row is not None:
                credit.done = True
                credit.code = row["code"] if row["status"] == REJECTED else None

    async def _decide(self, tx, credits: list[_Credit]) -> sql.Plan:
        """Lock (the refunded payments, the orders, the payees, in that order as everywhere),
        then ask the domain about each credit in turn; nothing is written yet."""
        limits = self.bank.limits
        at = now_ms()
        fit = [c for c in credits if not c.odd]
        refunded = await tx.lock_refunded(sorted({c.refund_of for c in fit if c.refund_of}))
        order_rows = {r["order_id"]: r for r in await tx.lock_orders(
            sorted({c.order_id for c in fit if c.order_id is not None}))}
        payees = sorted({c.payee_id for c in credits})
        capped = sorted(k for k, lim in limits.items() if lim.balance_cap_fen is not None)
        locked: dict[str, WalletState] = {}
        rows: dict[str, Any] = {}
        found, ids = await tx.lock_wallets([], payees, capped, len(credits))
        for r in found:
            rows[r["wallet_id"]] = r
            if r["locked"]:
                locked[r["wallet_id"]] = sql.wallet_state(r)
        ids.sort(reverse=True)
        books = LockedBooks(limits, wallets=locked, payees={
            r["wallet_id"]: sql.wallet_state(r)
            for r in rows.values() if not r["locked"]}, orders={
            r["order_id"]: orders.OrderState(r["order_id"], r["merchant_wallet"],
                                             r["amount_fen"], r["status"], r["expires_ms"])
            for r in order_rows.values()})
        # Every locked wallet is written back: its credits were folded.
        plan = sql.Plan(sql.CREDIT_TXN_COLUMNS, wallets=locked, at_ms=at)
        for credit in credits:
            credit.code, credit.txn_id = None, 0
            try:
                if credit.odd:
                    raise RailError("invalid_field", "the transfer's details are malformed")
                original = refunded.get(credit.refund_of) if credit.refund_of else None
                to_deposit = decide_refund_back(credit.payee_id, original, credit.amount) \
                    if credit.refund_of else 0
                inbound = Credit(credit.payee_id, credit.amount, credit.order_id, to_deposit)
                decided = decide_credit(inbound, books, at)
            except RailError as refusal:
                credit.code = refusal.code
                self._add_txn(plan, credit, ids.pop(), at)
                continue
            apply_credit(inbound, decided, books)
            txn = ids.pop()
            if original is not None:   # the refund counts against the payment it refunds
                refunded[credit.refund_of] = replace(
                    original, refunded_fen=original.refunded_fen + credit.amount)
                plan.refunded[original.txn_id] = original.refunded_fen + credit.amount
                plan.refund_of[txn] = original.txn_id
            self._add_credit(plan, credit, txn, at, decided, rows[credit.payee_id],
                             credit.payee_id in locked)
        return plan

    def _add_txn(self, plan: sql.Plan, credit: _Credit, txn: int, at: int) -> None:
        """The `interbank_in` row, settled or refused (an odd credit's odd fields left out)."""
        credit.txn_id = txn
        fit = not credit.odd
        plan.add(plan.txn, sql.CREDIT_TXN_COLUMNS, (
            txn, credit.env.signer, credit.transfer_id, credit.env.digest(),
            SETTLED if credit.code is None else REJECTED, credit.code, credit.amount,
            credit.env.expires_ms, at, credit.payer_id if fit else None, credit.payee_id,
            credit.order_id if fit else None, credit.from_bank if fit else None))
        plan.written.append(credit)

    def _add_credit(self, plan: sql.Plan, credit: _Credit, txn: int, at: int,
                    decided: CreditPlan, payee_row: Any, credited_in_place: bool) -> None:
        """A settled credit: its row, postings, the wallet (or an appended credit), past the
        cap the excess (and a refund's deposit share) to the deposit account, the order
        claimed, and the merchant's webhook queued."""
        self._add_txn(plan, credit, txn, at)
        sql.add_postings(plan.postings, txn, ledger.interbank_in(
            credit.payee_id, payee_row["deposit_account"], decided))
        if not credited_in_place and decided.to_wallet_fen:   # a locked payee is written whole
            plan.add(plan.credits, sql.CREDIT_COLUMNS, (credit.payee_id, decided.to_wallet_fen))
        if decided.swept_to_deposit_fen:   # e-CNY back to the vault, deposit money out
            plan.move_deposit(payee_row["deposit_account"], decided.swept_to_deposit_fen)
            plan.vault_delta_fen += decided.swept_to_deposit_fen
        if credit.order_id is not None:
            plan.add(plan.paid_orders, sql.ORDER_COLUMNS, (
                credit.order_id, credit.payer_id or f"{credit.from_bank}.?", at, txn))
        if payee_row["webhook_url"]:
            event = events.webhook_body(events.payment_received(
                f"P{txn}", credit.amount, credit.order_id, from_bank=credit.from_bank), at)
            plan.add(plan.hooks, sql.HOOK_COLUMNS, (
                credit.payee_id, txn, orjson.dumps(event).decode(), payee_row["webhook_url"], at))

    def _notify_later(self, credited: list[_Credit]) -> None:
        """`_notify`, off the credit call's path (central waits for B's answer, not for
        Redis), in the order of the batches: each batch's pipeline waits for the one
        before."""
        if not credited:
            return
        before = self._notifying

        async def notify() -> None:
            if before is not None:
                await asyncio.gather(before, return_exceptions=True)
            await self._notify(credited)

        self._notifying = asyncio.get_running_loop().create_task(notify())

    async def _notify(self, credited: list[_Credit]) -> None:
        """The payees' live notifications for the credits of a batch, in one Redis pipeline
        (`HotState.after_commit`), best effort, after the commit."""
        if credited:
            await self.bank.hot.after_commit([], [(c.payee_id, events.payment_received(
                f"P{c.txn_id}", c.amount, c.order_id, from_bank=c.from_bank))
                for c in credited], now_ms())


# --- HTTP: the batch route, served by the app's hot edge (rail_service/hot_edge.py) --------

async def credits_route(body: object, state) -> dict:
    """`POST /v1/interbank/credits/batch`."""
    return await state.credits.interbank_credits(body)


async def sealed_credits_route(body: object, state) -> dict:
    """`POST /v1/interbank/credits/sealed-batch`."""
    return await state.credits.sealed_credits(body)


def credit_engine_routes() -> dict:
    """The batch of message 2s in the bank's hot edge (no middleware, no routing, no
    dependency solving). The API's FastAPI route of the same path calls the same handler
    (for a request the edge passes on) and stays in the OpenAPI page."""
    from rail_service.hot_edge import HotRoute

    return {"/v1/interbank/credits/batch": HotRoute(credits_route,
                                                    max_bytes=MAX_BATCH_BODY_BYTES),
            "/v1/interbank/credits/sealed-batch": HotRoute(sealed_credits_route,
                                                           max_bytes=MAX_BATCH_BODY_BYTES)}


def install(app) -> None:
    """Put the credit engine into a bank app made by `bank.app.create_app` (idempotent)."""
    extend_app(app, "credits", lambda a: CreditEngine.start(a.state.bank))
