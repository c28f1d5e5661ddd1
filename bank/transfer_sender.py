"""An interbank payment after its debit: message 1 to central, then the outcome.

The payment engine (bank/payment_engine.py) debits a payer into `interbank_out` in its batch;
after the commit it hands the batch's interbank payments here (`send_after_commit`). They go
to central in ONE call per MAX_ITEMS (`POST /v1/transfers/batch`), each sealed from what the
batch wrote, with the same content as the outbox's retry from the stored row
(`Outbox.transfer_envelope`). The payments central settled are answered `settled` at once
and finished many to one transaction (the settle batch, only those still processing;
docs/interbank.md, "Answering before the finish"); a refusal goes through
`Outbox.finish_transfer` (rare); no answer within FORWARD_WAIT_MS leaves `processing` to the
outbox. The request of each payment waits for its outcome here (`forward`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson

from bank.adapters.batch_store import BatchStore
from bank.common import (
    CENTRAL_FINAL_REFUSALS,
    FORWARD_WAIT_MS,
    PROCESSING,
    REJECTED,
    SETTLED,
    retry_delay_ms,
)
from bank.domain import events, ledger
from rail_protocol import envelope
from rail_protocol.batches import MAX_ITEMS
from rail_protocol.envelope import now_ms
from rail_protocol.errors import RailError
from rail_service.batcher import Batcher, NotDone, fail_all
from rail_service.crash import crash_point

log = logging.getLogger("yuanrail.bank.transfer_sender")
# The postings of a settled interbank payment, per fen of it (the rule is linear in the
# amount): the settle batch writes them times each payment's recorded amount.
SETTLED_PER_FEN = [(p.account, p.amount_fen) for p in ledger.interbank_out_settled(1)]


def tell(item, status: str) -> None:
    """Give an interbank payment's request its outcome, unless it has one already."""
    if not item.sent.done():
        item.sent.set_result(status)


@dataclass(frozen=True, slots=True)
class _OutRow:
    """The columns of an `interbank_out` row that `Outbox.transfer_envelope` and
    `Outbox._retry_later` read, taken from what the batch wrote instead of read back: message
    1 then has the same content as the outbox's retry sealed from the stored row, and
    central, which keys idempotency on its digest, sees one instruction."""

    txn_id: int
    transfer_id: str
    counterparty_bank: str
    amount_fen: int
    payer_wallet: str
    payee_wallet: str
    order_id: str | None
    created_ms: int
    refund_of: int | None = None     # a refund: the transaction it refunds
    result: str = "{}"               # a refund: names the transfer it refunds


@dataclass(slots=True)
class _Settled:
    """An interbank payment central said settled, waiting for the settle batch."""

    txn_id: int
    payer_id: str
    order_id: str | None
    future: asyncio.Future


class TransferSender:
    """Message 1s of committed batches, and their outcomes. Its items are the payment
    engine's: an interbank payment's txn_id, transfer_id, to_bank, amount, payer, payee,
    order, time, refund_of, outcome, and `sent` (the future its request waits on)."""

    def __init__(self, bank, store: BatchStore, *, pool=None, max_batch: int) -> None:
        self.bank, self.store = bank, store
        self.settles = Batcher(self._run_settles, fail_all, pool=pool, max_items=max_batch,
                               name="settle-batch")   # payments central said settled
        self._sending: set[asyncio.Task] = set()

    async def aclose(self) -> None:
        for task in list(self._sending):   # their payments stay processing: the outbox's
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        await self.settles.aclose()
        log.info("%s: %d items in %d batches (largest %d)", self.settles.name,
                 self.settles.items, self.settles.batches, self.settles.largest)

    async def forward(self, item, outcome: dict) -> dict:
        """An interbank payment (or refund) once the batch has debited: message 1 went with
        the batch's others in one call (`_send_transfers`); the outcome it brought within
        FORWARD_WAIT_MS, or `processing` (the outbox finishes it)."""
        return {**outcome, "status": await asyncio.shield(item.sent)}

    def send_after_commit(self, items: list) -> None:
        """Start sending the message 1s of a committed batch; each item's `sent` gets its
        outcome. The payment batcher goes on meanwhile."""
        loop = asyncio.get_running_loop()
        for item in items:
            item.sent = loop.create_future()
        task = loop.create_task(self._send_transfers(items), name="send-transfers")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_transfers(self, items: list) -> None:
        """`Outbox.forward_transfer` for a batch's payments just debited, without reading their
        rows back: ONE call to central per MAX_ITEMS of them (`POST /v1/transfers/batch`),
        bounded by FORWARD_WAIT_MS from the commit. Whatever has no outcome by then, or
        when anything fails, stays `processing` for the outbox, as a single send would."""
        try:
            async with asyncio.timeout(FORWARD_WAIT_MS / 1000):
                await asyncio.gather(*(self._send_chunk(items[start:start + MAX_ITEMS])
                                       for start in range(0, len(items), MAX_ITEMS)))
        except TimeoutError:
            log.info("%d transfer(s) left to the outbox: no outcome in time", len(items))
        except Exception:  # noqa: BLE001 - the rows are processing: the outbox goes on
            log.exception("%d transfer(s) left to the outbox", len(items))
        finally:
            for item in items:
                tell(item, PROCESSING)

    async def _send_chunk(self, items: list) -> None:
        """One batch call, each answer handled as `Outbox.forward_transfer` handles it alone:
        central's statement checked (its key, this transfer); settled goes to the settle
        batch, rejected (or a refusal that means central never prepared it) to
        `Outbox.finish_transfer`; anything else, or the call failing, leaves the payment
        processing and the outbox due soon (`_retry_later`)."""
        bank = self.bank
        envs = [bank.outbox.transfer_envelope(_OutRow(
            item.txn_id, item.transfer_id, item.to_bank, item.amount, item.payer_id,
            item.payee_id, item.row_order_id or item.order_id, item.at, item.refund_of,
            orjson.dumps(item.outcome).decode() if item.refund_of else "{}"), signed=False)
            for item in items]
        try:
            if bank.central_key is None:
                raise RailError("upstream_unavailable", "central's key is not known yet")
            # One sealed batch (rail_protocol/batches.py): one signature here, one verify
            # of central's answer; each statement is still read as alone.
            answers, sealed = await bank.central.transfers_sealed(bank.key, bank.central_key,
                                                                  envs)
        except RailError as exc:   # no answer for any of them, whatever the code
            log.info("%d transfer(s) left to the outbox: %r", len(items), exc)
            await self._retry_later(items)
            return
        later, final, stated = [], [], False
        for item, answer in zip(items, answers):
            if isinstance(answer, RailError):
                if answer.code in CENTRAL_FINAL_REFUSALS:   # central never prepared it
                    final.append((item, REJECTED, answer.code))
                else:
                    later.append(item)
                continue
            try:
                status, code = self._read_statement(item, answer, signature_checked=sealed)
            except RailError as exc:
                log.info("transfer %s left to the outbox: %r", item.transfer_id, exc)
                tell(item, PROCESSING)
                continue
            if status in (SETTLED, REJECTED):
                final.append((item, status, code))
                stated = True
            else:
                later.append(item)
        for item in later:
            tell(item, PROCESSING)
        if stated:
            crash_point("bank.interbank.before_outcome")
        failed = [r for r in await asyncio.gather(
            self._retry_later(later),
            *(self._record(item, status, code) for item, status, code in final),
            return_exceptions=True) if isinstance(r, BaseException)]
        if failed:   # those payments stay processing (`_send_transfers`): the outbox's
            raise failed[0]

    def _read_statement(self, item, answer: dict, *,
                        signature_checked: bool = False) -> tuple[str, str | None]:
        """Central's signed status of this very transfer: (status, code).
        `signature_checked`: it came in a sealed answer, whose one signature was checked."""
        statement = answer.get("statement", {})
        if not signature_checked:
            envelope.verify_statement(self.bank.central_key, statement)
        elif not isinstance(statement, dict) or \
                statement.get("issuer") != self.bank.central_key.key_id:
            raise RailError("bad_signature", "the statement is not central's")
        if statement.get("transfer_id") != item.transfer_id:
            raise RailError("bad_signature", "central answered about another transfer")
        return statement.get("status"), statement.get("code")

    async def _record(self, item, status: str, code: str | None) -> None:
        """A final outcome: settled by the settle batch; rejected, or any refund's outcome
        (its webhook, or the refund taken back), by `Outbox.finish_transfer` (rare: one
        transaction of its own, shared with the outbox)."""
        if status == REJECTED or item.refund_of is not None:
            await self.bank.outbox.finish_transfer(item.txn_id, status, code)
            tell(item, status)
            return
        settled = _Settled(item.txn_id, item.payer_id, item.order_id,
                           asyncio.get_running_loop().create_future())
        self.settles.submit(settled)
        # The payer hears `settled` now, not after the settle batch commits: central's
        # signed statement is final, and the debit it settles is durable here. Should the
        # settle fail, the row stays processing and the outbox gets the same statement
        # again (docs/interbank.md, "Answering before the finish").
        tell(item, SETTLED)
        try:
            await asyncio.shield(settled.future)
        except NotDone:        # the batch failed: the row is processing, the outbox retries
            log.info("transfer %s: settle left to the outbox", item.transfer_id)

    async def _retry_later(self, items: list) -> None:
        """`Outbox._retry_later` for many payments, in one statement."""
        if not items:
            return
        at = now_ms()
        async with self.store.single() as tx:
            await tx.retry_later([i.txn_id for i in items],
                                 [at + retry_delay_ms(i.at, at) for i in items])

    async def _run_settles(self, batch: list[_Settled], conn=None) -> None:
        """`Outbox.finish_transfer(.., settled)` for many payments in one statement, each
        exactly once; then the payers' live notifications in one Redis pipeline. One that
        another finisher (the outbox) recorded first is settled all the same: central's
        answer is final."""
        at = now_ms()
        async with self.store.single(conn) as tx:   # one statement on PostgreSQL
            rows = await tx.settle_with_postings([i.txn_id for i in batch], at,
                                                 SETTLED_PER_FEN)
        finished = {r["txn_id"] for r in rows}
        for item in batch:
            if not item.future.done():
                item.future.set_result(None)
        # The payers' notifications after the answers (best effort, in batch order).
        await self.bank.hot.after_commit([], [
            (i.payer_id, events.payment_finished(SETTLED, f"P{i.txn_id}", i.order_id))
            for i in batch if i.txn_id in finished], now_ms())

