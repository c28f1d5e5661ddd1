"""The bank's one payment engine: every movement of a wallet's money (`bank.pay`, pay-by-order,
payment-code and mandate charges, to a wallet here or at another bank; merchants' refunds;
top-ups and redemptions) and order creation, decided (bank/domain/payments.py) and written
in batches, many to one transaction, on PostgreSQL and SQLite alike. A single request is a
batch of one.

Why batches: a payment one transaction at a time cost about 17 database round trips and
about 7 ms of Python on a small machine; the signature check is 0.1 ms of it. Here a request
is parsed and its signature verified (the wallet's key looked up once per process: a key
never changes owner), then queued; a batcher takes whatever has queued meanwhile and runs
it in ONE transaction of a fixed number of round trips, whatever its size
(bank/adapters/batch_store.py; on PostgreSQL):

    BEGIN
    lock the mandates charged, the orders paid      (.. ORDER BY id FOR UPDATE)
    lock payers and capped payees, fold credits,    (one statement: FOR UPDATE + DELETE ..
      read what capped payees have in flight to      RETURNING, `wallet_pending_out` after
      other banks, read uncapped payees,             each lock, nextval)
      transaction ids
    lock the deposit accounts of top-up-on-use payers
    -- bank/domain/payments.py decides each payment in turn --
    write everything                                (one statement: transactions ON CONFLICT
                                                     DO NOTHING, postings, wallets, appended
                                                     credits, orders, webhook deliveries;
                                                     then, only if any, deposit accounts,
                                                     the vault, mandates)
    COMMIT

then one Redis pipeline for the batch (outcomes cached for repeats, live notifications).
On SQLite the same steps run as plain statements inside `BEGIN IMMEDIATE`: one writer.

A payee at another bank (docs/interbank.md) joins the same batch: its payer is debited into
`interbank_out`, the row `processing` under a fresh transfer id. After the commit (crash
point `bank.interbank.after_debit`) the batch's message 1s go to central together and their
outcomes come back through `bank/transfer_sender.py`. An interbank outcome is not cached in
Redis (it is not final when the debit commits): a repeat is answered from the row, with its
current status.

Exactly once: the database's unique key (signer, instruction_id). A repeat conflicts, the
batch is redone without it, and the repeat is answered with the first outcome (Redis, else
`Bank.answer_known` from the journal), by the rail's one repeat rule
(rail_service/instructions.py). A refusal is recorded as a rejected transaction under
the instruction's key, so a repeat gets the same refusal. A batch that fails (a database
error: nothing of it was kept) is not retried with others: each of its payments runs again
in a batch of its own, and one that fails alone is answered `service_unavailable`
(retryable: the wallet resends the same envelope). Top-ups on use that find the vault short
draw e-CNY from central and redo the batch.

Wiring: `bank.app.create_app` calls `install(app)`: `PaymentEngine.start(bank, desk, charges)`
in the app's lifespan (the charges pay through it); its routes (`payment_engine_routes()`)
are served by the app's hot edge (rail_service/hot_edge.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import orjson

from bank.adapters import batch_sql as sql
from bank.adapters.batch_store import BatchStore, open_store
from bank.adapters.books_sql import VaultShort
from bank.common import (
    FORWARD_WAIT_MS,
    PROCESSING,
    REJECTED,
    SETTLED,
    check_signed_by,
    parse_payment,
    payment_txn_id,
    wallet_bank,
)
from bank.domain import events, ledger, orders
from bank.domain.payments import (
    LockedBooks,
    Payment,
    PaymentDecision,
    RefundedPayment,
    apply_payment,
    decide_payment,
    decide_redeem,
    decide_refund,
    decide_top_up,
)
from bank.domain.wallets import MERCHANT, DebitPlan, WalletState
from bank.transfer_sender import TransferSender
from rail_protocol import qr
from rail_protocol.envelope import Envelope, check_live, now_ms
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import CREATE_ORDER, PAY, REDEEM, REFUND, TOP_UP
from rail_protocol.keys import PublicKey
from rail_protocol.money import parse_fen
from rail_service.batcher import Batcher, NotDone, fail_all
from rail_service.crash import crash_point
from rail_service.extend import extend_app
from rail_service.instructions import answer_repeat
from rail_service.metrics import CallTimes, Outcomes

log = logging.getLogger("yuanrail.bank.payment_engine")

IDENTITY_CACHE_SIZE = 200_000   # wallets whose key is remembered per process (~200 B each)
MAX_BATCH = 256                 # payments in one transaction at most


@dataclass(frozen=True, slots=True)
class Identity:
    """What never changes about a wallet once opened: its id, key, kind and merchant name."""

    wallet_id: str
    key_id: str
    public_key: PublicKey
    kind: str
    merchant_name: str | None
    mcc: str | None
    city: str | None


class _Undo(Exception):
    """Roll the batch back: these of its payments repeat committed instructions."""

    def __init__(self, items: list) -> None:
        super().__init__(f"{len(items)} repeated instruction(s)")
        self.items = items


@dataclass(slots=True)
class _Payment:
    env: Envelope
    payer_id: str
    payee_id: str
    amount: int
    memo: str | None
    order_id: str | None
    refusal_has_order: bool          # `pay` records the order id on a refusal; `pay_as` does not
    future: asyncio.Future
    mandate_id: str | None = None    # a merchant app's charge under the payer's mandate
    refund_of: int | None = None     # a merchant's refund: the transaction it refunds
    row_order_id: str | None = None  # a refund: the refunded payment's order, for its row
    exchange: str | None = None      # "top_up" or "redeem": deposit money <-> e-CNY
    to_bank: str | None = None       # the payee's bank when it is another one (interbank)
    transfer_id: str | None = None   # interbank: message 1's id, made before the debit
    at: int = 0
    txn_id: int = 0
    outcome: dict | None = None
    error: RailError | None = None
    fallback: bool = False
    repeat: bool = False             # its (signer, id) is already in the journal
    sent: asyncio.Future | None = None   # interbank: message 1's outcome, a status

    @property
    def key(self) -> tuple[str, str]:
        return self.env.signer, self.env.id


def _result(payer: WalletState, item: _Payment, status: str, debit: DebitPlan) -> dict:
    """The start of the result recorded for a decided payment, its debit applied."""
    return {"status": status, "amount_fen": item.amount, "payer_wallet": item.payer_id,
            "payee_wallet": item.payee_id, "balance_after_fen": payer.balance_fen,
            "pulled_from_deposit_fen": debit.pulled_from_deposit_fen}


@dataclass(slots=True)
class _NewOrder:
    values: tuple
    future: asyncio.Future


def _counted(entry_point):
    """Count an entry point's outcome for the operator's dashboard (docs/dashboards.md): one
    in-memory addition after the answer is known; a repeat is not counted again."""

    @functools.wraps(entry_point)
    async def counted(self, *args, **kwargs):
        try:
            outcome = await entry_point(self, *args, **kwargs)
        except RailError as exc:
            self.outcomes.refuse(exc.code)
            raise
        if not outcome.get("repeated"):
            if outcome.get("status") == REJECTED:
                self.outcomes.refuse(outcome.get("code") or REJECTED)
            else:
                amount = outcome.get("amount_fen")
                self.outcomes.accept(amount if type(amount) is int else 0)
        return outcome

    return counted


class PaymentEngine:
    """Payments and orders in batches, through a `BatchStore` of its own (PostgreSQL over
    a small asyncpg pool with no pre-ping, or SQLite). `create_order` has the contract of
    `MerchantDesk.create_order`, which it stands in for on the hot path."""

    def __init__(self, bank, desk=None, charges=None, *, store: BatchStore | None = None,
                 concurrency: int = 2, max_batch: int = MAX_BATCH) -> None:
        self.bank, self.desk, self.charges = bank, desk, charges
        self.store = store
        self._concurrency, self._max_batch = concurrency, max_batch
        self._by_key: OrderedDict[str, Identity] = OrderedDict()
        self._by_id: OrderedDict[str, Identity] = OrderedDict()
        self.payments: Batcher | None = None
        self.orders: Batcher | None = None
        self.sender: TransferSender | None = None   # message 1s of committed batches
        self.outcomes = Outcomes()   # movements accepted per second, refusals by code
        self.calls_in = CallTimes()   # wallets' payments answered, and the time they took

    @classmethod
    async def start(cls, bank, desk=None, charges=None, *, concurrency: int | None = None,
                    pool_size: int | None = None) -> PaymentEngine:
        """The engine for `bank`, on its database (PostgreSQL or SQLite: `open_store`).
        `concurrency`: payment batches in flight at once (YUANRAIL_BANK_FAST_PATH_BATCHES,
        default 1: the next batch forms while one is in the database); SQLite has one
        writer, so one loop there."""
        if concurrency is None:
            concurrency = int(os.environ.get("YUANRAIL_BANK_FAST_PATH_BATCHES", "1"))
        size = pool_size or concurrency + 3   # the batch loops' own, and lookups of keys
        store = await open_store(bank.engine, size)
        if store.loop_pool is None:
            concurrency = 1
        fast = cls(bank, desk, charges, store=store, concurrency=concurrency)
        pool = store.loop_pool
        fast.payments = Batcher(fast._run_payments, fail_all, pool=pool, loops=concurrency,
                                max_items=fast._max_batch, name="pay-batch")
        fast.orders = Batcher(fast._run_orders, fail_all, pool=pool,
                              max_items=fast._max_batch, name="order-batch")
        fast.sender = TransferSender(bank, store, pool=pool, max_batch=fast._max_batch)
        return fast

    def stages(self) -> dict:
        """Its batchers' counts and its calls to central (`Batcher.stats`,
        `ServiceHTTP.stats`): for the dashboard's figures and the load test's report."""
        batchers = [self.payments, self.orders,
                    self.sender.settles if self.sender is not None else None]
        return {"batches": {b.name: b.stats() for b in batchers if b is not None},
                "calls": {"central": self.bank.central.calls.stats(),
                          "from wallets": self.calls_in.stats()}}

    async def aclose(self) -> None:
        if self.sender is not None:
            await self.sender.aclose()
        for batcher in (self.payments, self.orders):
            if batcher is not None:
                await batcher.aclose()
                log.info("%s: %d items in %d batches (largest %d)", batcher.name,
                         batcher.items, batcher.batches, batcher.largest)
        if self.store is not None:
            await self.store.aclose()

    # --- who signed: keys never change owner, so they are looked up once ----------------

    def _remember(self, ident: Identity) -> Identity:
        for cache, key in ((self._by_key, ident.key_id), (self._by_id, ident.wallet_id)):
            cache[key] = ident
            if len(cache) > IDENTITY_CACHE_SIZE:
                cache.popitem(last=False)
        return ident

    async def identity(self, wallet_id: str) -> Identity | None:
        """A wallet of this bank by id (cached), or None."""
        return await self._identity("wallet_id", wallet_id)

    async def _identity(self, column: str, value: str) -> Identity | None:
        cache = self._by_key if column == "key_id" else self._by_id
        ident = cache.get(value)
        if ident is not None:
            return ident
        async with self.store.single() as tx:
            row = await tx.wallet_by(column, value)
        if row is None:
            return None
        return self._remember(Identity(row["wallet_id"], row["key_id"],
                                       PublicKey.from_text(row["public_key"]), row["kind"],
                                       row["merchant_name"], row["mcc"], row["city"]))

    async def signed(self, raw: object, expected_type: str, wallet_field: str):
        """Parse and verify an instruction signed by a wallet's key: (envelope, identity);
        the key comes from the cache (a key never changes owner)."""
        env = Envelope.parse(raw)
        wallet = await self._identity("key_id", env.signer)
        check_signed_by(env, wallet and wallet.wallet_id, wallet and wallet.public_key,
                        expected_type, wallet_field)
        return env, wallet

    # --- payments ------------------------------------------------------------------------

    @_counted
    async def pay(self, raw: object) -> dict:
        """A payment signed by the payer's wallet: to a wallet here, or at another bank
        through central."""
        env, payer = await self.signed(raw, PAY, "payer_wallet")
        payee_id, amount, memo, order_id = parse_payment(env.body)
        if payee_id == payer.wallet_id:
            raise RailError("self_payment")
        return await self._pay(env, payer.wallet_id, payee_id, amount, memo, order_id, True)

    @_counted
    async def pay_as(self, env: Envelope, payer: Any, payee_id: str, amount: int, *,
                     memo: str | None = None, mandate_id: str | None = None) -> dict:
        """A payment whose instruction is not a `bank.pay` but something the payer (a
        payment code) or the payer's mandate (`mandate_id`) authorised; `env` keys its
        idempotency."""
        if payee_id == payer.wallet_id:
            raise RailError("self_payment")
        return await self._pay(env, payer.wallet_id, payee_id, amount, memo, None, False,
                               mandate_id=mandate_id)

    @_counted
    async def top_up(self, raw: object) -> dict:
        """Deposit money -> e-CNY, from the linked deposit account, out of the vault."""
        return await self._exchange(raw, TOP_UP)

    @_counted
    async def redeem(self, raw: object) -> dict:
        """e-CNY -> deposit money, into the linked deposit account, back to the vault."""
        return await self._exchange(raw, REDEEM)

    async def _exchange(self, raw: object, instruction: str) -> dict:
        env, wallet = await self.signed(raw, instruction, "wallet_id")
        amount = parse_fen(env.body.get("amount_fen"))
        kind = "top_up" if instruction == TOP_UP else "redeem"
        return await self._pay(env, wallet.wallet_id, wallet.wallet_id, amount, None, None,
                               False, exchange=kind)

    @_counted
    async def refund(self, raw: object) -> dict:
        """A merchant refunds a payment it received, fully or in part, to the payer: here
        in the batch, at another bank as a new interbank payment back. Exactly once."""
        env, merchant = await self.signed(raw, REFUND, "merchant_wallet")
        if merchant.kind != MERCHANT:
            raise RailError("not_a_merchant")
        payment_id = env.body.get("payment_id")
        original_id = payment_txn_id(payment_id)
        if original_id is None:
            raise RailError("invalid_field", "payment_id must be a payment id like P123")
        amount = parse_fen(env.body.get("amount_fen"))
        outcome = await self._pay(env, merchant.wallet_id, "", amount, None, None, False,
                                  refund_of=original_id)
        if not outcome.get("repeated"):
            self.bank.notify(merchant.wallet_id, events.refund_created(
                outcome.get("payment_id"), amount, payment_id))
        return outcome

    async def _pay(self, env: Envelope, payer_id: str, payee_id: str, amount: int,
                   memo: str | None, order_id: str | None, refusal_has_order: bool, *,
                   mandate_id: str | None = None, refund_of: int | None = None,
                   exchange: str | None = None) -> dict:
        """Exactly once: a repeat is answered with the first outcome (Redis, else the
        journal), a new instruction is decided and written in the next batch."""
        try:
            check_live(env)
        except RailError:
            await self.bank.answer_known(env)  # known: its first outcome's `replayed`
            raise
        hot = self.bank.hot
        if hot.rate_per_s > 0:         # with the rate limit off, the unique key alone suffices
            allowed, seen = await hot.admit(payer_id, env.signer, env.id,
                                            env.expires_ms - now_ms(), now_ms())
            if not allowed:
                raise RailError("rate_limited")
            if seen:
                cached = await hot.recall(env.signer, env.id)
                if cached is not None:
                    return answer_repeat(cached, env)
        to_bank = wallet_bank(payee_id)
        if refund_of is None and exchange is None:
            await self.bank.directory.check_payable(to_bank)
        item = _Payment(env, payer_id, payee_id, amount, memo, order_id, refusal_has_order,
                        asyncio.get_running_loop().create_future(), mandate_id, refund_of,
                        exchange=exchange)
        if refund_of is None and exchange is None and to_bank != self.bank.bank_id:
            item.to_bank = to_bank
            item.transfer_id = f"{self.bank.bank_id}.{secrets.token_hex(16)}"
        self.payments.submit(item)
        try:
            outcome = await asyncio.shield(item.future)
        except NotDone:
            outcome = await self._again(item)
            if outcome.get("repeated"):
                return outcome
        if item.to_bank is None:
            return outcome
        return await self.sender.forward(item, outcome)

    async def _again(self, item: _Payment) -> dict:
        """A payment its batch did not finish. A repeat of a recorded instruction gets the
        first outcome; one whose batch failed (a database error: nothing was kept) is run
        again in a batch of its own, so no other payment can fail it; if that fails too,
        the answer is a retryable `service_unavailable` (the same envelope may be resent)."""
        if not item.repeat:
            alone = replace(item, future=asyncio.get_running_loop().create_future(),
                            fallback=False, outcome=None, error=None, txn_id=0)
            await self._run_payments([alone])
            try:
                return await alone.future
            except NotDone:
                if not alone.repeat:
                    raise RailError("service_unavailable",
                                    "the payment was not recorded; send it again") from None
        cached = await self.bank.hot.recall(item.env.signer, item.env.id)
        if cached is not None:
            return answer_repeat(cached, item.env)
        return await self.bank.answer_known(item.env, required=True)

    async def _run_payments(self, batch: list[_Payment], conn=None) -> None:
        seen: set[tuple[str, str]] = set()
        for item in batch:   # the same instruction twice at once: the second waits its turn
            item.fallback = item.repeat = item.key in seen
            seen.add(item.key)
        live = [item for item in batch if not item.fallback]
        for _attempt in range(4):
            if not live:
                break
            try:
                async with self.store.transaction(conn) as tx:
                    plan = await self._decide(tx, live)
                    written = await tx.write_payments(plan)
                    repeats = [i for i in plan.written if i.txn_id not in written]
                    if repeats:
                        raise _Undo(repeats)
                    await tx.write_extras(plan)
            except VaultShort as short:
                # Top-ups on use need more e-CNY than the vault holds: draw it from central
                # (nothing of the batch was kept) and do the batch again; if central cannot,
                # the payments that pull are refused and the others go on.
                try:
                    await self.bank.vault.refill(short.needed_fen)
                except RailError as exc:
                    for item in live:
                        if item.outcome and (item.outcome.get("pulled_from_deposit_fen")
                                             or item.exchange == "top_up"):
                            item.error, item.outcome = RailError("vault_empty", exc.message), None
                    live = [i for i in live if i.error is None or i.error.code != "vault_empty"]
                continue
            except _Undo as undo:
                # Repeats of committed instructions: answered from their record. The batch is
                # rolled back (nothing of it is kept) and done again without them.
                for item in undo.items:
                    item.fallback = item.repeat = True
                live = [i for i in live if not i.fallback]
                continue
            break
        else:
            for item in live:
                item.fallback = True
        done = [i for i in batch if not i.future.done() and not i.fallback
                and i.error is None and i.outcome is not None]
        away = [i for i in done if i.to_bank is not None]
        if away:
            crash_point("bank.interbank.after_debit")
            self.sender.send_after_commit(away)
        for item in batch:
            if item.future.done():
                continue
            if item.fallback or (item.outcome is None and item.error is None):
                item.future.set_exception(NotDone())
            elif item.error is not None:
                item.future.set_exception(item.error)
            else:
                item.future.set_result(item.outcome)
        # Then Redis (best effort, after the answers: it is not on a payment's path), before
        # the next batch, so that a wallet's notifications stay in the order of its batches.
        settled = [i for i in done if i.to_bank is None]   # interbank ones are processing
        if settled:
            await self._after_commit(settled)

    async def _decide(self, tx, batch: list[_Payment]) -> sql.Plan:
        """Lock (in the order every path takes: refunded payments, mandates, orders,
        wallets by id, deposit accounts), then ask the domain about each payment in turn;
        nothing is written yet."""
        limits = self.bank.limits
        at = now_ms()
        refunded = await tx.lock_payments(
            sorted({i.refund_of for i in batch if i.refund_of is not None}))
        for item in batch:
            if item.refund_of is not None:
                self._route_refund(item, refunded.get(item.refund_of))
        here = [i for i in batch if i.to_bank is None]   # an interbank payee is not ours
        mandates = await tx.lock_mandates(
            sorted({i.mandate_id for i in batch if i.mandate_id is not None}))
        order_ids = sorted({i.order_id for i in here if i.order_id is not None})
        order_rows = {r["order_id"]: r for r in await tx.lock_orders(order_ids)}
        # A refund's payee (the payer it refunds) is locked whatever its class: its credit
        # is decided on its balance, as the refund rules want it.
        payers = sorted({i.payer_id for i in batch} | {
            i.payee_id for i in here if i.refund_of is not None and i.payee_id})
        payees = sorted({i.payee_id for i in here if i.payee_id})
        capped = sorted(c for c, lim in limits.items() if lim.balance_cap_fen is not None)
        states: dict[str, WalletState] = {}
        unlocked: dict[str, Any] = {}
        hooks: dict[str, str | None] = {}
        rows, ids = await tx.lock_wallets(payers, payees, capped, len(batch))
        for r in rows:
            hooks[r["wallet_id"]] = r["webhook_url"]
            if r["locked"]:
                states[r["wallet_id"]] = sql.wallet_state(r)
            else:
                unlocked[r["wallet_id"]] = r
        ids.sort(reverse=True)
        exchanging = {i.payer_id for i in batch if i.exchange is not None}
        linked = sorted({w.deposit_account for w in states.values() if w.deposit_account
                         and (w.topup_on_use or w.wallet_id in exchanging)})
        books = LockedBooks(limits, wallets=states, mandates=mandates,
                            deposits=await tx.lock_deposits(linked), payees={
            r["wallet_id"]: sql.wallet_state(r) for r in unlocked.values()}, orders={
            r["order_id"]: orders.OrderState(r["order_id"], r["merchant_wallet"],
                                             r["amount_fen"], r["status"], r["expires_ms"])
            for r in order_rows.values()})
        # Every locked wallet is written back: its credits were folded.
        plan = sql.Plan(sql.TXN_COLUMNS, wallets=states, at_ms=at)
        for item in batch:
            item.at, item.outcome, item.error, item.txn_id = at, None, None, 0
            payer = states.get(item.payer_id)
            if payer is None:                 # cannot happen: the key named it; be safe
                item.fallback = True
                continue
            if item.refund_of is not None:
                self._decide_refund(plan, item, books, refunded, ids.pop(),
                                    hooks.get(item.payer_id))
                continue
            if item.exchange is not None:
                self._decide_exchange(plan, item, books, ids.pop())
                continue
            payment = Payment(item.payer_id, item.payee_id, item.amount, item.order_id,
                              item.mandate_id, item.to_bank)
            try:
                decision = decide_payment(payment, books, at)
            except RailError as refusal:
                self._refuse(plan, item, ids.pop(), refusal)
                continue
            apply_payment(payment, decision, books)
            txn = ids.pop()
            if item.mandate_id is not None:
                plan.mandates[item.mandate_id] = (decision.mandate_period_key,
                                                  decision.mandate_used_fen)
            pulled = decision.debit.pulled_from_deposit_fen
            if pulled:   # top-up on use: deposit money becomes e-CNY out of the vault
                plan.pulled[txn] = pulled
                plan.move_deposit(payer.deposit_account, -pulled)
                plan.vault_delta_fen -= pulled
            if item.to_bank is not None:
                self._add_debit_for_other_bank(plan, item, payer, decision.debit, txn)
            else:
                self._add_payment(plan, item, payer, books.payee(item.payee_id), decision, txn,
                                  hooks.get(item.payee_id), credit_in_place=item.payee_id in states)
        return plan

    def _decide_exchange(self, plan: sql.Plan, item: _Payment, books: LockedBooks,
                         txn: int) -> None:
        """A top-up or a redemption: deposit money and the wallet's e-CNY trade places,
        through the vault (`decide_top_up`, `decide_redeem`)."""
        wallet = books.wallets[item.payer_id]
        account = wallet.deposit_account
        try:
            if item.exchange == "top_up":
                decide_top_up(wallet, books.limits[wallet.kyc_class], item.amount,
                              books.deposits.get(account, 0))
            else:
                decide_redeem(wallet, item.amount)
        except RailError as refusal:
            self._refuse(plan, item, txn, refusal)
            return
        into_wallet = item.amount if item.exchange == "top_up" else -item.amount
        wallet.balance_fen += into_wallet
        books.deposits[account] = books.deposits.get(account, 0) - into_wallet
        plan.move_deposit(account, -into_wallet)
        plan.vault_delta_fen -= into_wallet
        sql.add_postings(plan.postings, txn, (ledger.top_up if into_wallet > 0 else ledger.redeem)(
            item.payer_id, account, item.amount))
        result = {"status": SETTLED, "amount_fen": item.amount,
                  "balance_after_fen": wallet.balance_fen}
        item.outcome = {**result, "payment_id": f"P{txn}"}
        self._add_txn(plan, item, txn, SETTLED, None, result)

    def _route_refund(self, item: _Payment, original: dict | None) -> None:
        """Where a refund goes, from the payment it refunds: back to its payer, here or at
        the payer's bank (a new interbank payment, under a transfer id of its own)."""
        item.payee_id = (original or {}).get("payer_wallet") or ""
        item.row_order_id = (original or {}).get("order_id")
        if original is not None and original["kind"] == "interbank_in":
            item.to_bank = original["counterparty_bank"]
            item.transfer_id = item.transfer_id or f"{self.bank.bank_id}.{secrets.token_hex(16)}"
        else:
            item.to_bank = None

    def _decide_refund(self, plan: sql.Plan, item: _Payment, books: LockedBooks,
                       refunded: dict[int, dict], txn: int, webhook_url: str | None) -> None:
        """A merchant's refund (`decide_refund`): the merchant debited; the payer credited
        here (what its payment pulled from the deposit account back there first), or paid
        back at its bank through central; the payment (and its order) counts the refund."""
        row = refunded.get(item.refund_of)
        payment = None if row is None else RefundedPayment(
            row["txn_id"], row["kind"], row["status"], row["payer_wallet"],
            row["payee_wallet"], row["amount_fen"], row["refunded_fen"], row["pulled_fen"])
        try:
            decision = decide_refund(item.payer_id, payment, item.amount, books, item.at)
        except RailError as refusal:
            self._refuse(plan, item, txn, refusal)
            return
        shop, debit = books.wallets[item.payer_id], decision.debit
        shop.balance_fen, shop.day = debit.balance_after_fen, debit.day
        shop.spent_today_fen = debit.spent_today_after_fen
        refunded[row["txn_id"]] = {**row, "refunded_fen": decision.refunded_after_fen}
        plan.refunded[row["txn_id"]] = decision.refunded_after_fen
        plan.refund_of[txn] = row["txn_id"]
        if row["order_id"]:
            plan.order_refunds[row["order_id"]] = (decision.refunded_after_fen,
                                                   orders.status_after_refund(
                                                       row["amount_fen"],
                                                       decision.refunded_after_fen))
        payment_id = f"P{row['txn_id']}"
        if item.to_bank is not None:
            shop.pending_out_fen += item.amount
            result = {"status": PROCESSING, "amount_fen": item.amount, "refund_of": payment_id,
                      "refund_of_transfer": row["transfer_id"],
                      "payer_wallet": row["payer_wallet"], "transfer_id": item.transfer_id}
            sql.add_postings(plan.postings, txn, ledger.interbank_out(item.payer_id, None, debit))
            item.outcome = {**result, "payment_id": f"P{txn}"}
            self._add_txn(plan, item, txn, PROCESSING, None, result)
            return
        payer, credit = books.wallets[item.payee_id], decision.credit
        payer.balance_fen += credit.to_wallet_fen
        if credit.swept_to_deposit_fen:   # back to the deposit account it came from
            plan.move_deposit(payer.deposit_account, credit.swept_to_deposit_fen)
            plan.vault_delta_fen += credit.swept_to_deposit_fen
        result = {"status": SETTLED, "amount_fen": item.amount, "refund_of": payment_id,
                  "payer_wallet": item.payee_id, "to_deposit_fen": credit.swept_to_deposit_fen}
        sql.add_postings(plan.postings, txn, ledger.payment(
            item.payer_id, None, debit, item.payee_id, payer.deposit_account, credit))
        if webhook_url:
            body = events.refund_finished(SETTLED, f"P{txn}", item.amount, payment_id,
                                          row["order_id"], item.at)
            plan.add(plan.hooks, sql.HOOK_COLUMNS,
                     (item.payer_id, txn, orjson.dumps(body).decode(), webhook_url, item.at))
        item.outcome = {**result, "payment_id": f"P{txn}"}
        self._add_txn(plan, item, txn, SETTLED, None, result)

    def _add_payment(self, plan: sql.Plan, item: _Payment, payer: WalletState,
                     payee: WalletState, decision: PaymentDecision, txn: int,
                     webhook_url: str | None, *, credit_in_place: bool) -> None:
        """A payment here: settled, the payee credited (in its locked row, or by an appended
        credit; past its cap, the excess swept to its deposit account), the order paid, the
        webhook queued in the payment's own transaction."""
        at, credit = item.at, decision.credit
        result = {**_result(payer, item, SETTLED, decision.debit),
                  "swept_to_deposit_fen": credit.swept_to_deposit_fen}
        if credit.swept_to_deposit_fen:   # e-CNY back to the vault, deposit money out
            plan.move_deposit(payee.deposit_account, credit.swept_to_deposit_fen)
            plan.vault_delta_fen += credit.swept_to_deposit_fen
        if item.order_id is not None:
            result["order_id"] = item.order_id
            plan.add(plan.paid_orders, sql.ORDER_COLUMNS, (item.order_id, item.payer_id, at, txn))
        if webhook_url:   # queued in the payment's own transaction
            body = events.webhook_body(events.payment_received(f"P{txn}", item.amount,
                                                               item.order_id), at)
            plan.add(plan.hooks, sql.HOOK_COLUMNS,
                     (item.payee_id, txn, orjson.dumps(body).decode(), webhook_url, at))
        if not credit_in_place and credit.to_wallet_fen:
            plan.add(plan.credits, sql.CREDIT_COLUMNS, (item.payee_id, credit.to_wallet_fen))
        sql.add_postings(plan.postings, txn, ledger.payment(
            item.payer_id, payer.deposit_account, decision.debit, item.payee_id,
            payee.deposit_account, credit))
        item.outcome = {**result, "payment_id": f"P{txn}", "created_ms": at}
        self._add_txn(plan, item, txn, SETTLED, None, result)

    def _add_debit_for_other_bank(self, plan: sql.Plan, item: _Payment, payer: WalletState,
                                  debit, txn: int) -> None:
        """A payment to another bank: the payer's wallet to `interbank_out`, the row
        `processing` under its transfer id until central answers."""
        result = {**_result(payer, item, PROCESSING, debit), "transfer_id": item.transfer_id}
        if item.order_id is not None:
            result["order_id"] = item.order_id
        sql.add_postings(plan.postings, txn, ledger.interbank_out(item.payer_id,
                                                               payer.deposit_account, debit))
        item.outcome = {**result, "payment_id": f"P{txn}", "created_ms": item.at}
        self._add_txn(plan, item, txn, PROCESSING, None, result)

    def _refuse(self, plan: sql.Plan, item: _Payment, txn: int, refusal: RailError) -> None:
        """A business refusal, recorded under the instruction's (signer, id), so a repeat
        gets the same refusal."""
        item.error = refusal
        self._add_txn(plan, item, txn, REJECTED, refusal.code,
                      {"status": REJECTED, "code": refusal.code})

    def _add_txn(self, plan: sql.Plan, item: _Payment, txn: int, status: str, code: str | None,
                 result: dict) -> None:
        """The instruction's transaction row: a payment (or refund) settled, an interbank
        debit `processing` under its transfer id, or a refusal (a refund's names only its
        merchant)."""
        item.txn_id = txn
        away = item.to_bank is not None and status == PROCESSING
        payer = item.payer_id
        if item.exchange is not None:   # one wallet: credited by a top-up, debited by a redeem
            kind, order_id = item.exchange, None
            payer, payee = (None, item.payee_id) if kind == "top_up" else (item.payer_id, None)
        elif item.refund_of is not None:
            kind = "interbank_out" if away else "refund"
            order_id = item.row_order_id if status != REJECTED else None
            payee = item.payee_id if status != REJECTED else None
        else:
            kind = "interbank_out" if away else "payment"
            order_id = item.order_id if (status != REJECTED or item.refusal_has_order) else None
            payee = item.payee_id
        values = (txn, kind, item.env.signer, item.env.id,
                  item.env.digest(), status, code, item.amount, item.env.expires_ms, item.at,
                  orjson.dumps(result).decode(), payer, payee, item.memo,
                  order_id, item.to_bank if away else None, item.transfer_id if away else None,
                  # the outbox leaves it to the request that forwards it until then
                  item.at + FORWARD_WAIT_MS if away else None)
        plan.add(plan.txn, sql.TXN_COLUMNS, values)
        plan.written.append(item)

    async def _after_commit(self, settled: list[_Payment]) -> None:
        """What follows a payment's commit, for a whole batch: cache each outcome
        for repeats (`HotState.remember`), then publish the live notifications
        (`Bank.notify`)."""
        await self._to_redis(settled, [(item.payee_id, events.payment_received(
            item.outcome["payment_id"], item.amount, item.order_id))
            for item in settled if item.refund_of is None and item.exchange is None])

    async def _to_redis(self, remember: list[_Payment],
                        notices: list[tuple[str, dict]]) -> None:
        """Outcomes to cache and (wallet, event) notifications to publish, in one Redis
        pipeline (`HotState.after_commit`)."""
        at = now_ms()
        await self.bank.hot.after_commit(
            [(i.env.signer, i.env.id, i.env.digest(), i.outcome, i.env.expires_ms - at)
             for i in remember], notices, at)

    # --- orders --------------------------------------------------------------------------

    async def create_order(self, raw: object) -> dict:
        """`MerchantDesk.create_order`: an order and its dynamic QR, inserted in a batch."""
        if self.desk is None:
            return await self.desk.create_order(raw)
        env, merchant = await self.signed(raw, CREATE_ORDER, "merchant_wallet")
        check_live(env)
        if merchant.kind != MERCHANT:
            raise RailError("not_a_merchant")
        request = orders.parse_new_order(env.body)
        amount, reference = request.amount_fen, request.reference
        description, ttl_ms = request.description, request.ttl_ms
        at = now_ms()
        order_id = "O" + secrets.token_hex(8)
        item = _NewOrder((order_id, merchant.wallet_id, reference, description, amount, at,
                          at + ttl_ms), asyncio.get_running_loop().create_future())
        self.orders.submit(item)
        try:
            await asyncio.shield(item.future)
        except NotDone:   # the reference was used before (or the id drawn twice)
            return await self.desk.create_order(raw)
        return {
            "order_id": order_id, "merchant_wallet": merchant.wallet_id,
            "merchant_name": merchant.merchant_name, "merchant_city": merchant.city,
            "amount_fen": amount, "reference": reference, "description": description,
            "refunded_fen": 0,
            "status": orders.effective_status(orders.OrderState(
                order_id, merchant.wallet_id, amount, orders.CREATED, at + ttl_ms), now_ms()),
            "created_ms": at, "expires_ms": at + ttl_ms, "payment_id": None,
            "qr_payload": qr.encode(qr.MerchantQR(
                dynamic=True, bank_id=self.bank.bank_id, merchant_id=merchant.wallet_id,
                mcc=merchant.mcc, merchant_name=merchant.merchant_name,
                merchant_city=merchant.city, amount_fen=amount, order_id=order_id)),
        }

    async def _run_orders(self, batch: list[_NewOrder], conn=None) -> None:
        columns = list(zip(*(item.values for item in batch)))
        async with self.store.single(conn) as tx:
            inserted = await tx.insert_orders(columns)
        for item in batch:
            if item.values[0] in inserted:
                item.future.set_result(None)
            else:
                item.future.set_exception(NotDone())

# --- HTTP: the three routes, served by the app's hot edge (rail_service/hot_edge.py) --------

async def pay_route(body: object, state) -> dict:
    """`POST /v1/payments`."""
    with state.payments.calls_in.timing():
        return await state.payments.pay(body)


async def order_route(body: object, state) -> dict:
    """`POST /v1/merchant/orders` (201)."""
    return await state.payments.create_order(body)


async def charge_route(body: object, state) -> dict:
    """`POST /v1/merchant/charges`."""
    return await state.charges.charge_code(body)


def payment_engine_routes() -> dict:
    """The batched calls' table for the bank's hot edge (no middleware, no routing, no
    dependency solving). The API's FastAPI routes of the same paths call the same handlers
    (for a request the edge passes on) and stay in the OpenAPI page."""
    from rail_service.hot_edge import HotRoute

    return {"/v1/payments": HotRoute(pay_route),
            "/v1/merchant/orders": HotRoute(order_route, status=201),
            "/v1/merchant/charges": HotRoute(charge_route)}


def install(app) -> None:
    """Put the payment engine into a bank app made by `bank.app.create_app` (idempotent);
    the app's charges (payment codes, mandates) pay through it."""

    async def start(a) -> PaymentEngine:
        engine = await PaymentEngine.start(a.state.bank, a.state.desk, a.state.charges)
        a.state.charges.payments = engine
        return engine

    extend_app(app, "payments", start)
