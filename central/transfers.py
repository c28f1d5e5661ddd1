"""Interbank transfers at central: the outbox with idempotent receivers of docs/interbank.md.

Message 1 (bank A -> central) prepares a transfer in one transaction: the row that records
it and the entry holding:A -> in_flight. Only then is message 2 (central -> bank B) sent, at
once by the request and afterwards by the worker, until B gives an answer; the answer settles
(in_flight -> holding:B) or rejects (in_flight -> holding:A) in one transaction that changes
the status only from `prepared`, so it happens exactly once however many processes deliver.
A repeat of message 1 is how bank A polls: it gets the current status, signed, and nothing
moves. Nothing is decided by a timeout; a party that is down only delays the transfer.

Under load this runs in batches (group commit): message 1s that arrive while a batch is in
the database are prepared together in the next one transaction, their message 2s go to each
payee bank in one batch call, and the answers are finished in the transaction of the next
prepare batch (one commit for both, not two that take turns on the same accounts; bank A
hears `settled` as soon as B has accepted, before that commit: docs/interbank.md, "Answering
before the finish"); every
account (the hot `in_flight` above all) is written once per batch. Each transfer is still decided,
recorded and finished exactly as alone, and anything a batch cannot take goes one at a time."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from central import domain
from central.adapters import registry_sql as sql
from central.adapters import transfers_sql as tsql
from central.adapters.bank_http import BankNodes
from central.adapters.batch_store import BatchStore
from rail_protocol import envelope
from rail_protocol.batches import MAX_ITEMS, open_batch, parse_batch, seal_results
from rail_protocol.envelope import Envelope, check_live, now_ms, sign_statement, unsigned
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey, SigningKey
from rail_service.batcher import Batcher, NotDone, fail_all
from rail_service.crash import crash_point
from rail_service.instructions import same_instruction
from rail_service.metrics import CallTimes, Settlements

log = logging.getLogger("yuanrail.central.transfers")

# Message 2 lives as long as message 1 may (the reconciliation window).
CREDIT_TTL_MS = envelope.MAX_TTL_MS
# A claimed delivery keeps other workers off the transfer this long past its own deadline;
# if the claimer dies mid-delivery, another worker takes the transfer after that.
LEASE_MARGIN_MS = 1_000
# Message 1s prepared in one transaction at most.
MAX_BATCH = 256
# Loops delivering to each payee bank: a batch can start while another waits on the bank.
DELIVERY_LOOPS = 2
# A first delivery's finish rides with the next prepare batch (one commit for both); with
# no prepare batch starting meanwhile, it goes alone after this long. Only a rejection's
# answer to bank A waits for it: an acceptance is answered before the finish.
FINISH_RIDE_S = 0.025


def _is_live(env: Envelope) -> bool:
    try:
        check_live(env)
    except RailError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Status:
    """What the status statement says of a transfer (the fields of its row it reads)."""

    transfer_id: str
    status: str
    amount_fen: int
    from_bank: str
    to_bank: str
    code: str | None = None

    @classmethod
    def of(cls, order: domain.TransferOrder, status: str, code: str | None = None) -> _Status:
        return cls(order.transfer_id, status, order.amount_fen, order.from_bank,
                   order.to_bank, code)


@dataclass(slots=True)
class _Item:
    """A message 1 waiting for its batch: checked, signature and all."""

    env: Envelope
    order: domain.TransferOrder
    digest: str
    future: asyncio.Future
    bank: Any = None  # the payee bank's row, once prepared (where to deliver)
    signed: bool = True  # its answer signed alone (False: in a sealed batch's answer)


@dataclass(slots=True)
class _Finishing:
    """Answered transfers (and unanswered ones to put off) from a first delivery, waiting to
    be finished in the next prepare batch's transaction: one commit for both, and the
    accounts (`in_flight` above all) moved once for both."""

    answered: list[tuple[domain.TransferOrder, domain.CreditAnswer]]
    unanswered: list[tuple[str, int]]
    future: asyncio.Future


# A message 1 its batch did not finish (`NotDone`) goes the one-at-a-time way, which finds
# its row or prepares it: its batch wrote nothing for it, or (closing down) did not get to
# deliver it.


def _batch_answers(outcomes: list) -> list[dict]:
    """A batch's items answered in place (`_answer_or_error`); when every item failed
    unexpectedly (or one was not an Exception), the call fails as a single one would (e.g.
    the database unavailable: 503)."""
    unexpected = [o for o in outcomes if isinstance(o, BaseException)
                  and not isinstance(o, RailError)]
    if unexpected and (len(unexpected) == len(outcomes)
                       or not all(isinstance(o, Exception) for o in unexpected)):
        raise unexpected[0]
    for exc in unexpected:
        log.error("a message 1 in a batch failed", exc_info=exc)
    return [_answer_or_error(o) for o in outcomes]


def _answer_or_error(outcome: dict | BaseException) -> dict:
    """One item of a batch answer: the answer, or the typed error (an unexpected one is
    `service_unavailable`, which commits bank A to nothing)."""
    if isinstance(outcome, RailError):
        return outcome.to_dict()
    if isinstance(outcome, BaseException):
        return RailError("service_unavailable", "this transfer was not handled; retry").to_dict()
    return outcome


class Transfers:
    """Prepare, deliver and finish interbank transfers; answer bank A's polls."""

    def __init__(self, engine: AsyncEngine, key: SigningKey, banks: BankNodes, *,
                 worker_interval_ms: int = 200, batch_size: int = 50,
                 max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.key = key
        self.banks = banks
        self.worker_interval_s = worker_interval_ms / 1000
        self.batch_size = batch_size
        self.max_batch = max_batch
        self.lease_ms = int(banks.timeout_s * 1000) + LEASE_MARGIN_MS
        self.batcher: Batcher | None = None
        self.store: BatchStore | None = None   # where the batches read and write
        self._signers: dict[str, tuple[str, PublicKey]] = {}  # key id -> (bank id, key)
        self._deliveries: dict[str, Batcher] = {}  # payee bank id -> its deliveries
        self._finishers: set[asyncio.Task] = set()  # first deliveries being finished
        self.interbank = Settlements()   # for the dashboard: in memory, this process's
        self.calls_in = CallTimes()   # message 1 batch calls answered, and their time

    async def start(self, store: BatchStore) -> None:
        """Start the batcher of message 1s; the batches read and write through `store`."""
        self.store = store
        self.batcher = Batcher(self._run_batch, fail_all, pool=store.loop_pool,
                               max_items=self.max_batch, name="transfer-batcher",
                               ride_s=FINISH_RIDE_S)

    def stages(self) -> dict:
        """The prepare batcher's and the deliveries' counts and the calls to the banks
        (`Batcher.stats`, `ServiceHTTP.stats`): for the dashboard and the load test."""
        batchers = [self.batcher, *self._deliveries.values()]
        return {"batches": {b.name: b.stats() for b in batchers if b is not None},
                "calls": {"banks": self.banks.calls.stats(),
                          "from banks": self.calls_in.stats()}}

    async def aclose(self) -> None:
        if self.batcher is not None:
            await self.batcher.aclose()
            self.batcher = None
        for deliveries in self._deliveries.values():
            await deliveries.aclose()
        self._deliveries.clear()
        await asyncio.gather(*self._finishers, return_exceptions=True)

    # --- message 1 --------------------------------------------------------------------

    async def submit(self, raw: object) -> dict:
        """Handle message 1: prepare the transfer and try delivering it once, or, for a
        transfer already known, answer its current status. Either way the answer is the
        status statement signed by central. A live message goes into the next batch, which
        also finds the known ones; anything the batch cannot take goes one at a time."""
        env = Envelope.parse(raw)
        bank_id, public_key = await self._signer(env.signer)
        envelope.verify(env, public_key, expected_type=domain.TRANSFER, check_expiry=False)
        return await self._submit_checked(env, bank_id)

    async def _submit_checked(self, env: Envelope, bank_id: str, *,
                              signed: bool = True) -> dict:
        """`submit` once the signature is checked (the envelope's own, or its sealed
        batch's: then the answer's statement is left for the batch's one signature)."""
        if env.type != domain.TRANSFER:
            raise RailError("invalid_field", f"expected a {domain.TRANSFER} instruction")
        order = domain.transfer_order(env.body, env.id, bank_id)
        digest = env.digest()
        if self.batcher is not None and _is_live(env):
            item = _Item(env, order, digest, asyncio.get_running_loop().create_future(),
                         signed=signed)
            self.batcher.submit(item)
            try:
                return await item.future
            except NotDone:
                pass
        return await self._submit_one(env, order, digest, signed=signed)

    async def submit_many(self, raw: object) -> dict:
        """Message 1 in a batch (docs/interbank.md, "Batches"): `{"transfers": [envelope,
        ...]}`, every item submitted at once, so that they land in the same prepare batch,
        and answered in its place exactly as `submit` answers it alone, or with its typed
        error. An item that fails unexpectedly is answered `service_unavailable` (not an
        answer: bank A sends it again); only when every item fails so does the call."""
        with self.calls_in.timing():
            envelopes = parse_batch(raw, "transfers")
            outcomes = await asyncio.gather(*(self.submit(env) for env in envelopes),
                                            return_exceptions=True)
        return {"results": _batch_answers(outcomes)}

    async def submit_sealed(self, raw: object) -> dict:
        """Message 1 in a sealed batch (rail_protocol/batches.py, docs/interbank.md "One
        signature per batch"): one verify of the paying bank's signature for all, each item
        then handled as `submit_many` handles it, and the answers' statements signed
        together."""
        with self.calls_in.timing():
            signer = raw.get("signer") if isinstance(raw, dict) else None
            if not isinstance(signer, str):
                raise RailError("invalid_field", "a sealed batch names its signer")
            bank_id, public_key = await self._signer(signer)
            envelopes = open_batch(raw, "transfers", public_key)
            outcomes = await asyncio.gather(
                *(self._submit_checked(env, bank_id, signed=False) for env in envelopes),
                return_exceptions=True)
        return seal_results(self.key, _batch_answers(outcomes), field="statement")

    async def _signer(self, key_id: str) -> tuple[str, PublicKey]:
        """The bank that registered this key, looked up once per process: a registered key
        never changes bank (`bank_key_conflict`). Unknown keys are not remembered."""
        known = self._signers.get(key_id)
        if known is None:
            async with self.engine.connect() as conn:
                bank = await sql.find_bank_by_key(conn, key_id)
            if bank is None:
                raise RailError("unknown_key", "the signer is not a registered bank's key")
            known = self._signers[key_id] = (bank.bank_id, PublicKey.from_text(bank.public_key))
        return known

    async def _submit_one(self, env: Envelope, order: domain.TransferOrder,
                          digest: str, *, signed: bool = True) -> dict:
        """Message 1 on its own: find, else prepare (in one transaction) and deliver once."""
        row = await self._find(order.transfer_id)
        if row is None:
            check_live(env)  # a new transfer must be live; a known one is answered below
            if await self._prepare(order, digest):
                crash_point("central.transfer.after_prepare")
                try:
                    await self._deliver([(order, 1)])
                except Exception:  # the prepare is durable: answer `prepared`, the worker goes on
                    log.exception("transfer %s: first delivery failed", order.transfer_id)
            row = await self._find(order.transfer_id)
            if row is None:  # pragma: no cover - the primary key guarantees a row
                raise RailError("upstream_unavailable", "transfer outcome unknown; retry")
        same_instruction(row.digest, env)
        return self.status_answer(row, signed=signed)

    async def _prepare(self, order: domain.TransferOrder, digest: str) -> bool:
        """Record the transfer and move A's e-CNY into in_flight, in one transaction; false
        when a concurrent try of the same transfer committed first."""
        now = now_ms()
        try:
            async with self.engine.begin() as conn:
                if await sql.find_bank(conn, order.to_bank) is None:
                    raise domain.unknown_bank(order.to_bank)
                await tsql.insert_prepared(conn, [(order, digest)], now, now + self.lease_ms)
                await sql.post_entry(conn, domain.transfer_prepare(order.from_bank,
                                                                   order.amount_fen),
                                     f"transfer:{order.transfer_id}:prepare")
        except IntegrityError:
            return False
        return True

    async def _run_batch(self, items: list[_Item | _Finishing], conn=None) -> None:
        """Finish what first deliveries brought back (`_Finishing`) and prepare a batch of
        message 1s, in ONE transaction on the batcher's own connection (`conn`, on
        PostgreSQL; its statements do not grow with the batch): the answered transfers
        finished, which ids are known (answered from their rows), which payee banks are
        registered, the paying banks' holdings locked once; the domain decides each new
        transfer in turn; the new rows, the entries of both and one move per account are
        written. Refusals are answered at once; the prepared ones are delivered in the
        background while the next batch is prepared. A second message with an id already
        in the batch waits for the batch and then goes one at a time, as does the whole
        batch on any error (another process preparing one of the same ids, a guard that
        fails), and its finishes go in a transaction of their own: nothing of it was
        committed."""
        finishing = [item for item in items if isinstance(item, _Finishing)]
        firsts: dict[str, _Item] = {}
        again: list[_Item] = []
        for item in items:
            if isinstance(item, _Finishing):
                continue
            if item.order.transfer_id in firsts:
                again.append(item)
            else:
                firsts[item.order.transfer_id] = item
        now = now_ms()
        answered = [pair for f in finishing for pair in f.answered]
        unanswered = [pair for f in finishing for pair in f.unanswered]
        known: dict = {}
        new: list[_Item] = []
        prepared: list = []
        async with self.store.transaction(conn) as tx:
            # The finishes first: they lock their transfers' rows, then (as the prepares)
            # the accounts, the order every transaction at central takes them in.
            finished, entries, prepared_ms = await self._finish_in(tx, answered, unanswered,
                                                                   now)
            banks: dict = {}
            outcomes: list = []
            if firsts:
                # One read: the known ids, the payee banks, and, locked in account order,
                # every account this transaction will move: the paying banks' holdings
                # (those of a repeat too: harmless) and the accounts of the finishes' entries.
                # Locking the latter only later, in the posting, would let this batch hold
                # one holding while waiting for another that a finisher elsewhere (the
                # worker) holds while waiting for this one: a deadlock. Read before the
                # finishes move them: a finish only adds to a holding, so the prepares are
                # decided on no more than there will be.
                accounts = {domain.holding_account(i.order.from_bank) for i in firsts.values()}
                accounts |= {p.account for entry, _ref in entries for p in entry.postings}
                known, banks, balances = await tx.read_for_prepare(
                    firsts, {i.order.to_bank for i in firsts.values()}, accounts)
                new = [item for tid, item in firsts.items() if tid not in known]
                outcomes = domain.prepare_in_turn([i.order for i in new], set(banks),
                                                  balances)
            prepared = [(item, entry) for item, entry in zip(new, outcomes)
                        if isinstance(entry, domain.Entry)]
            if prepared:
                entries += [(entry, f"transfer:{item.order.transfer_id}:prepare")
                            for item, entry in prepared]
                await tx.prepare_and_post([(i.order, i.digest) for i, _ in prepared],
                                          entries, now, now + self.lease_ms)
            elif entries:
                await tx.post_entries(entries, now)
        if finishing:
            self._count_finished(answered, finished, prepared_ms, now)
            for f in finishing:
                f.future.set_result({order.transfer_id: finished[order.transfer_id]
                                     for order, _answer in f.answered
                                     if order.transfer_id in finished})
        for tid, row in known.items():
            item = firsts[tid]
            if not item.future.done():
                try:
                    same_instruction(row.digest, item.env)
                    item.future.set_result(self.status_answer(row, signed=item.signed))
                except RailError as refusal:
                    item.future.set_exception(refusal)
        for item, outcome in zip(new, outcomes):
            if isinstance(outcome, RailError) and not item.future.done():
                item.future.set_exception(outcome)
        fail_all(again)
        if prepared:
            crash_point("central.transfer.after_prepare")
            for item, _entry in prepared:
                item.bank = banks[item.order.to_bank]
                self._deliveries_to(item.order.to_bank).submit(item)

    def _deliveries_to(self, bank_id: str) -> Batcher:
        """The batcher of first deliveries to one payee bank: whatever the prepare batches
        hand it while its previous call and finish were under way goes in its next call, so
        a bank that is slow delays only its own transfers."""
        deliveries = self._deliveries.get(bank_id)
        if deliveries is None:
            deliveries = self._deliveries[bank_id] = Batcher(
                self._deliver_new, fail_all, max_items=MAX_ITEMS,
                name=f"transfer-delivery-{bank_id}", loops=DELIVERY_LOOPS)
        return deliveries

    async def _deliver_new(self, items: list[_Item]) -> None:
        """Deliver newly prepared transfers (to one bank) and answer bank A `settled` for
        those B accepted. Their finish, and the answers that wait for it, go on in a task
        of their own (`_finish_new`): the next delivery need not wait for the prepare batch
        that the finish rides with."""
        try:
            banks = {item.order.to_bank: item.bank for item in items}
            answered, unanswered = await self._call_banks(
                [(item.order, 1) for item in items], banks)
        except Exception:  # the prepare is durable: answer `prepared`, the worker goes on
            log.exception("first delivery of %d transfer(s) failed", len(items))
            self._answer_as_they_stand(items, {})
            return
        self._answer_settled(items, answered)
        task = asyncio.get_running_loop().create_task(
            self._finish_new(items, answered, unanswered))
        self._finishers.add(task)
        task.add_done_callback(self._finishers.discard)

    async def _finish_new(self, items: list[_Item], answered, unanswered) -> None:
        """Finish a first delivery in the next prepare batch, then answer the requests not
        answered yet: with the outcome when this delivery finished them, else with the row
        as it stands."""
        statuses: dict = {}  # _Status of those finished here, rows of the others
        try:
            statuses = await self._finish_with_next_batch(answered, unanswered)
            if answered:
                crash_point("central.transfer.after_settle")
            rest = [item.order.transfer_id for item in items
                    if item.order.transfer_id not in statuses and not item.future.done()]
            if rest:
                async with self.store.reading() as tx:
                    statuses |= await tx.find_transfers(rest)
        except Exception:  # the prepare is durable: answer `prepared`, the worker goes on
            log.exception("finishing a first delivery of %d transfer(s) failed", len(items))
        finally:
            self._answer_as_they_stand(items, statuses)

    def _answer_as_they_stand(self, items: list[_Item], statuses: dict) -> None:
        """Answer each request not answered yet: with its transfer's status as known here,
        else `prepared` (durable; the worker delivers it again)."""
        for item in items:
            if not item.future.done():
                status = statuses.get(item.order.transfer_id)
                item.future.set_result(self.status_answer(
                    status or _Status.of(item.order, domain.TRANSFER_PREPARED),
                    signed=item.signed))

    def _answer_settled(self, items: list[_Item],
                        answered: list[tuple[domain.TransferOrder, domain.CreditAnswer]]
                        ) -> None:
        """Answer bank A `settled` for each transfer bank B accepted, before central's own
        finish commits (docs/interbank.md, "Answering before the finish"): B's signed
        acceptance is durable at B and fixes the outcome, and the finish follows from it
        (in the next prepare batch, or, after a crash, by the worker's redelivery, which B
        answers the same). Rejections wait for the finish: bank A gives a rejected payment's
        money back at once, and central's books must show it back in A's holding first."""
        accepted = {order.transfer_id for order, answer in answered
                    if answer.status == domain.TRANSFER_SETTLED}
        for item in items:
            if item.order.transfer_id in accepted and not item.future.done():
                item.future.set_result(self.status_answer(
                    _Status.of(item.order, domain.TRANSFER_SETTLED), signed=item.signed))

    def status_answer(self, row, *, signed: bool = True) -> dict:
        statement = {
            "type": domain.TRANSFER_STATUS, "transfer_id": row.transfer_id,
            "status": row.status, "amount_fen": row.amount_fen,
            "from_bank": row.from_bank, "to_bank": row.to_bank,
        }
        if row.status == domain.TRANSFER_REJECTED:
            statement["code"] = row.code
        if not signed:   # in a sealed batch's answer, whose one signature covers it
            return {"status": row.status, "statement": statement}
        return {"status": row.status, "statement": sign_statement(self.key, statement)}

    # --- message 2 --------------------------------------------------------------------

    async def _deliver(self, claimed: list[tuple[domain.TransferOrder, int]]
                       ) -> dict[str, _Status]:
        """One delivery of message 2 for transfers this process has claimed (each with its
        try number), then the answers finished in one transaction and the rest put off
        (unless another worker has claimed them since). Returns what this delivery
        finished."""
        async with self.store.reading() as tx:
            banks = await tx.find_banks({order.to_bank for order, _ in claimed})
        answered, unanswered = await self._call_banks(claimed, banks)
        finished = await self._finish(answered, unanswered)
        if answered:
            crash_point("central.transfer.after_settle")
        return finished

    async def _call_banks(self, claimed: list[tuple[domain.TransferOrder, int]], banks: dict
                          ) -> tuple[list[tuple[domain.TransferOrder, domain.CreditAnswer]],
                                     list[tuple[str, int]]]:
        """Message 2 for claimed transfers: one batch call per payee bank, the banks called
        concurrently. Returns the answered transfers with B's answers, and the unanswered
        ones with their try number."""
        calls = []
        for to_bank in sorted({order.to_bank for order, _ in claimed}):
            bank = banks.get(to_bank)
            orders = [order for order, _ in claimed if order.to_bank == to_bank]
            if bank is None or not bank.url:
                log.info("%d transfer(s): %s has no registered url yet", len(orders), to_bank)
                continue
            for start in range(0, len(orders), MAX_ITEMS):
                calls.append(self._credit(bank, orders[start:start + MAX_ITEMS]))
        answered = [pair for pairs in await asyncio.gather(*calls) for pair in pairs]
        if answered:
            crash_point("central.transfer.after_answer")
        done = {order.transfer_id for order, _ in answered}
        unanswered = [(order.transfer_id, attempts) for order, attempts in claimed
                      if order.transfer_id not in done]
        return answered, unanswered

    async def _credit(self, bank, orders: list[domain.TransferOrder]
                      ) -> list[tuple[domain.TransferOrder, domain.CreditAnswer]]:
        """Send one bank a batch of credits; the transfers it answered, with the answer.
        Each result must be B's own statement for that transfer (B's signature)."""
        envs = [unsigned(self.key.key_id, domain.INTERBANK_CREDIT, domain.credit_body(order),
                         id=order.transfer_id, ttl_ms=CREDIT_TTL_MS) for order in orders]
        key = PublicKey.from_text(bank.public_key)
        results, sealed = await self.banks.credits(bank.url, envs, self.key, key)
        answered = []
        for order, result in zip(orders, results or [None] * len(orders)):
            answer = domain.read_credit_result(result, key, order.transfer_id,
                                               signature_checked=sealed)
            if answer is not None:
                answered.append((order, answer))
            elif result is not None:
                log.warning("transfer %s: %s's result is not an answer (forged or malformed)",
                            order.transfer_id, order.to_bank)
        return answered

    async def _finish_with_next_batch(
            self, answered: list[tuple[domain.TransferOrder, domain.CreditAnswer]],
            unanswered: list[tuple[str, int]]) -> dict[str, _Status]:
        """`_finish`, in the next prepare batch's transaction (`_Finishing`, a rider: it
        starts no batch of its own before `FINISH_RIDE_S`); alone when that batch did not
        take it (it failed, or the batcher is closing)."""
        if self.batcher is not None:
            item = _Finishing(answered, unanswered, asyncio.get_running_loop().create_future())
            self.batcher.submit_rider(item)
            try:
                return await item.future
            except NotDone:
                pass
        return await self._finish(answered, unanswered)

    async def _finish(self, answered: list[tuple[domain.TransferOrder, domain.CreditAnswer]],
                      unanswered: list[tuple[str, int]]) -> dict[str, _Status]:
        """Settle or reject the answered transfers, exactly once each, and put the others
        off, in one transaction of their own. Returns the outcome of each transfer finished
        here."""
        now = now_ms()
        async with self.store.transaction() as tx:
            finished, entries, prepared_ms = await self._finish_in(tx, answered, unanswered,
                                                                   now)
            if entries:
                await tx.post_entries(entries, now)
        self._count_finished(answered, finished, prepared_ms, now)
        return finished

    async def _finish_in(self, tx, answered: list[tuple[domain.TransferOrder,
                                                        domain.CreditAnswer]],
                         unanswered: list[tuple[str, int]], now: int
                         ) -> tuple[dict[str, _Status], list, dict[str, int]]:
        """Within `tx`: a status leaves `prepared` only in the statement that returns its id,
        and only those get their entry (returned, for the caller to post with any others);
        one someone finished first is left alone; the unanswered are put off. Returns the
        outcomes, the entries, and when each transfer finished here was prepared."""
        finished: dict[str, _Status] = {}
        entries = []
        prepared_ms: dict[str, int] = {}
        if answered:
            prepared_ms = await tx.finish([(order.transfer_id, answer.status, answer.code)
                                           for order, answer in answered], now)
        for order, answer in answered:
            if order.transfer_id in prepared_ms:
                finished[order.transfer_id] = _Status.of(order, answer.status, answer.code)
                entries.append((domain.transfer_finish(order, answer),
                                f"transfer:{order.transfer_id}:{answer.status}"))
        if unanswered:
            await tx.postpone(unanswered, now)
        return finished, entries, prepared_ms

    def _count_finished(self, answered, finished: dict[str, _Status],
                        prepared_ms: dict[str, int], now: int) -> None:
        """The dashboard's counts and a log line, after the commit."""
        for order, answer in answered:
            if order.transfer_id in finished:
                self.interbank.finished(answer.status, answer.code, order.amount_fen,
                                        now - prepared_ms[order.transfer_id])
        if finished:
            outcomes = Counter(s.status for s in finished.values())
            log.info("finished %d transfer(s): %s", len(finished), dict(outcomes))

    async def deliver_due(self) -> int:
        """One pass of the worker: claim the due prepared transfers (a bounded batch, in one
        statement) and deliver them as `_deliver` does. Returns how many it claimed."""
        now = now_ms()
        async with self.engine.connect() as conn:
            due = await tsql.due(conn, now, self.batch_size)
        if not due:
            return 0
        async with self.engine.begin() as conn:
            claimed = await tsql.claim(conn, [(r.transfer_id, r.attempts) for r in due],
                                       now + self.lease_ms)
        if claimed:
            await self._deliver([(tsql.order_of(row), row.attempts + 1) for row in due
                                 if row.transfer_id in claimed])
        return len(claimed)

    async def run_worker(self) -> None:
        """Deliver due transfers every ~200 ms until cancelled. Several processes may run
        this at once: claims keep them off each other's transfers, and receivers that key on
        the transfer id plus the conditional finish make any overlap harmless."""
        while True:
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("transfer worker pass failed; retrying")
            await asyncio.sleep(self.worker_interval_s)

    # --- views ------------------------------------------------------------------------

    async def _find(self, transfer_id: str):
        async with self.engine.connect() as conn:
            return await tsql.find(conn, transfer_id)

    async def view(self, transfer_id: str) -> dict:
        row = await self._find(transfer_id)
        if row is None:
            raise RailError("not_found", "no transfer with that id")
        return tsql.view(row)

    async def page(self, status: str | None, limit: int) -> dict:
        if status is not None and status not in domain.TRANSFER_STATUSES:
            raise RailError("invalid_field", "status must be prepared, settled or rejected")
        async with self.engine.connect() as conn:
            return {"transfers": await tsql.page(conn, status, min(max(limit, 1), 500))}
