"""Interbank transfers at central: the outbox with idempotent receivers of docs/interbank.md.

Message 1 (bank A -> central) prepares a transfer in one transaction: the row that records
it and the entry holding:A -> in_flight. Only then is message 2 (central -> bank B) sent, at
once by the request and afterwards by the worker, until B gives an answer; the answer settles
(in_flight -> holding:B) or rejects (in_flight -> holding:A) in one transaction that changes
the status only from `prepared`, so it happens exactly once however many processes deliver.
A repeat of message 1 is how bank A polls: it gets the current status, signed, and nothing
moves. Nothing is decided by a timeout; a party that is down only delays the transfer."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from central import domain
from central.adapters import registry_sql as sql
from central.adapters import transfers_sql as tsql
from central.adapters.bank_http import BankNodes
from rail_protocol import envelope
from rail_protocol.envelope import Envelope, check_live, now_ms, seal, sign_statement
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey, SigningKey
from rail_service.crash import crash_point

log = logging.getLogger("yuanrail.central.transfers")

# Message 2 lives as long as message 1 may (the reconciliation window).
CREDIT_TTL_MS = envelope.MAX_TTL_MS
# A claimed delivery keeps other workers off the transfer this long past its own deadline;
# if the claimer dies mid-delivery, another worker takes the transfer after that.
LEASE_MARGIN_MS = 1_000


class Transfers:
    """Prepare, deliver and finish interbank transfers; answer bank A's polls."""

    def __init__(self, engine: AsyncEngine, key: SigningKey, banks: BankNodes, *,
                 worker_interval_ms: int = 200, batch_size: int = 50) -> None:
        self.engine = engine
        self.key = key
        self.banks = banks
        self.worker_interval_s = worker_interval_ms / 1000
        self.batch_size = batch_size
        self.lease_ms = int(banks.timeout_s * 1000) + LEASE_MARGIN_MS

    # --- message 1 --------------------------------------------------------------------

    async def submit(self, raw: object) -> dict:
        """Handle message 1: prepare the transfer and try delivering it once, or, for a
        transfer already known, answer its current status. Either way the answer is the
        status statement signed by central."""
        env = Envelope.parse(raw)
        async with self.engine.connect() as conn:
            bank = await sql.find_bank_by_key(conn, env.signer)
        if bank is None:
            raise RailError("unknown_key", "the signer is not a registered bank's key")
        envelope.verify(env, PublicKey.from_text(bank.public_key),
                        expected_type=domain.TRANSFER, check_expiry=False)
        order = domain.transfer_order(env.body, env.id, bank.bank_id)
        digest = env.digest()
        row = await self._find(order.transfer_id)
        if row is None:
            check_live(env)  # a new transfer must be live; a known one is answered below
            if await self._prepare(order, digest):
                crash_point("central.transfer.after_prepare")
                try:
                    await self._deliver(order, attempts=1)
                except Exception:  # the prepare is durable: answer `prepared`, the worker goes on
                    log.exception("transfer %s: first delivery failed", order.transfer_id)
            row = await self._find(order.transfer_id)
            if row is None:  # pragma: no cover - the primary key guarantees a row
                raise RailError("upstream_unavailable", "transfer outcome unknown; retry")
        if row.digest != digest:
            raise RailError("instruction_id_reused")
        return self.status_answer(row)

    async def _prepare(self, order: domain.TransferOrder, digest: str) -> bool:
        """Record the transfer and move A's e-CNY into in_flight, in one transaction; false
        when a concurrent try of the same transfer committed first."""
        now = now_ms()
        try:
            async with self.engine.begin() as conn:
                if await sql.find_bank(conn, order.to_bank) is None:
                    raise RailError("unknown_bank", f"to_bank {order.to_bank} is not registered")
                await tsql.insert_prepared(conn, order, digest, now, now + self.lease_ms)
                await sql.post_entry(conn, domain.transfer_prepare(order.from_bank,
                                                                   order.amount_fen),
                                     f"transfer:{order.transfer_id}:prepare")
        except IntegrityError:
            return False
        return True

    def status_answer(self, row) -> dict:
        statement = {
            "type": domain.TRANSFER_STATUS, "transfer_id": row.transfer_id,
            "status": row.status, "amount_fen": row.amount_fen,
            "from_bank": row.from_bank, "to_bank": row.to_bank,
        }
        if row.status == domain.TRANSFER_REJECTED:
            statement["code"] = row.code
        return {"status": row.status, "statement": sign_statement(self.key, statement)}

    # --- message 2 --------------------------------------------------------------------

    async def _deliver(self, row: domain.TransferOrder, attempts: int) -> None:
        """One delivery of message 2 for a transfer that this process has claimed as its
        try number `attempts`. B's answer finishes the transfer; no answer puts the next try
        off (unless another worker has claimed it since)."""
        async with self.engine.connect() as conn:
            bank = await sql.find_bank(conn, row.to_bank)
        answer = None
        if bank.url:
            body = {"transfer_id": row.transfer_id, "from_bank": row.from_bank,
                    "to_bank": row.to_bank, "amount_fen": row.amount_fen,
                    "payee_wallet": row.payee_wallet}
            if row.details is not None:
                body["details"] = row.details
            env = seal(self.key, domain.INTERBANK_CREDIT, body, id=row.transfer_id,
                       ttl_ms=CREDIT_TTL_MS)
            result = await self.banks.credit(bank.url, env)
            answer = domain.read_credit_result(result, PublicKey.from_text(bank.public_key),
                                               row.transfer_id)
            if result is not None and answer is None:
                log.warning("transfer %s: %s's result is not an answer (forged or malformed)",
                            row.transfer_id, row.to_bank)
        else:
            log.info("transfer %s: %s has no registered url yet", row.transfer_id, row.to_bank)
        if answer is None:
            now = now_ms()
            async with self.engine.begin() as conn:
                await tsql.postpone(conn, row.transfer_id, attempts,
                                    now + domain.retry_delay_ms(attempts), now)
            return
        crash_point("central.transfer.after_answer")
        await self._finish(row, answer)
        crash_point("central.transfer.after_settle")

    async def _finish(self, row: domain.TransferOrder, answer: domain.CreditAnswer) -> None:
        """Settle or reject, exactly once: the status leaves `prepared` and the entry is
        posted in one transaction; if someone finished the transfer first, nothing is done."""
        if answer.status == domain.TRANSFER_SETTLED:
            entry = domain.transfer_settle(row.to_bank, row.amount_fen)
        else:
            entry = domain.transfer_reject(row.from_bank, row.amount_fen)
        async with self.engine.begin() as conn:
            if not await tsql.finish(conn, row.transfer_id, answer.status, answer.code,
                                     now_ms()):
                return
            await sql.post_entry(conn, entry, f"transfer:{row.transfer_id}:{answer.status}")
        log.info("transfer %s %s%s", row.transfer_id, answer.status,
                 f" ({answer.code})" if answer.code else "")

    async def deliver_due(self) -> int:
        """One pass of the worker: claim the due prepared transfers (a bounded batch) and
        deliver them concurrently. Returns how many it claimed."""
        now = now_ms()
        async with self.engine.connect() as conn:
            due = await tsql.due(conn, now, self.batch_size)
        if not due:
            return 0
        claimed = []
        async with self.engine.begin() as conn:
            # One lock order for every worker (by id), so two claiming passes never deadlock.
            for row in sorted(due, key=lambda r: r.transfer_id):
                if await tsql.claim(conn, row.transfer_id, row.attempts, now + self.lease_ms):
                    claimed.append(row)
        results = await asyncio.gather(
            *(self._deliver(tsql.order_of(row), attempts=row.attempts + 1) for row in claimed),
            return_exceptions=True)
        for row, result in zip(claimed, results):
            if isinstance(result, Exception):
                log.error("transfer %s: delivery failed", row.transfer_id, exc_info=result)
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
