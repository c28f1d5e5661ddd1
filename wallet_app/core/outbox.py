"""The outbox: money-moving instructions the wallet has signed but not yet seen answered.

A payment's response can be lost (the train enters a tunnel after the bank has paid). The
wallet must then neither pay again nor forget: it keeps the signed envelope, on disk, before
the first byte is sent, and sends exactly that envelope again until the bank answers. The
bank keys every instruction by (signer, id), so a resend has one effect at most and answers
with the first outcome (`repeated: true`).

When a resend comes after the envelope's expiry, the bank says which case it is in:
- `replayed`: it executed the instruction earlier; the outcome is in the wallet's history,
  found by its instruction id;
- `expired`: it never saw it; nothing moved, and nothing ever will under that id.
Any other refusal is final too: nothing moved. Only "no answer" keeps an entry pending."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rail_protocol.envelope import Envelope
from rail_protocol.errors import RailError
from wallet_app.core.errors import PaymentPending
from wallet_app.core.files import read_json, write_json

# No answer came, or the bank could not act just now: the outcome is not known yet.
UNANSWERED = frozenset({"upstream_unavailable", "service_unavailable"})
# Refusals that mean "not executed, try again later": the same envelope is resent.
RETRYABLE = UNANSWERED | {"rate_limited", "vault_empty"}
MAX_PENDING = 100  # a wallet with this many unanswered instructions stops signing new ones


@dataclass
class Entry:
    """One pending instruction: where it goes and the exact signed envelope."""

    instruction_id: str
    kind: str                      # "pay", "top_up", "redeem"
    path: str
    envelope: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)  # for the screen: payee, amount
    created_ms: int = 0
    attempts: int = 0


@dataclass(frozen=True)
class Outcome:
    """How a pending instruction ended: `answer` (the bank's result), `executed_earlier`
    (replayed: look it up in history), or `refusal` (nothing moved)."""

    entry: Entry
    answer: dict | None = None
    executed_earlier: bool = False
    refusal: RailError | None = None


class Outbox:
    def __init__(self, path: Path, send: Callable[[str, dict], Awaitable[dict]], *,
                 attempts: int = 3, backoff_s: float = 0.25,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.path = path
        self._send = send
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._lock = asyncio.Lock()

    # --- the file ---------------------------------------------------------------------

    def pending(self) -> list[Entry]:
        data = read_json(self.path) or []
        return [Entry(**item) for item in data]

    def _save(self, entries: list[Entry]) -> None:
        write_json(self.path, [asdict(e) for e in entries])

    def _put(self, entry: Entry) -> None:
        entries = [e for e in self.pending() if e.instruction_id != entry.instruction_id]
        self._save(entries + [entry])

    def _drop(self, instruction_id: str) -> None:
        self._save([e for e in self.pending() if e.instruction_id != instruction_id])

    # --- sending ----------------------------------------------------------------------

    async def submit(self, kind: str, path: str, envelope: Envelope,
                     summary: dict | None = None) -> Outcome:
        """Record, then send, `envelope`, retrying a few times on no answer. Raises
        `PaymentPending` when the bank stays silent (the entry stays for `flush`)."""
        if len(self.pending()) >= MAX_PENDING:
            raise RailError("rate_limited", "too many payments wait for an answer")
        entry = Entry(envelope.id, kind, path, envelope.to_dict(), summary or {},
                      created_ms=time.time_ns() // 1_000_000)
        self._put(entry)  # on disk before the first byte leaves the device
        outcome = await self._deliver(entry, self.attempts)
        if outcome is None:
            raise PaymentPending(entry.instruction_id)
        return outcome

    async def flush(self) -> list[Outcome]:
        """Resend every pending instruction once; what ended (the rest stay pending)."""
        async with self._lock:
            ended = []
            for entry in self.pending():
                outcome = await self._deliver(entry, 1)
                if outcome is not None:
                    ended.append(outcome)
            return ended

    async def _deliver(self, entry: Entry, attempts: int) -> Outcome | None:
        for attempt in range(attempts):
            if attempt:
                await self._sleep(self.backoff_s * 2 ** (attempt - 1))
            entry.attempts += 1
            try:
                answer = await self._send(entry.path, entry.envelope)
            except RailError as exc:
                if exc.code in RETRYABLE:
                    continue
                self._drop(entry.instruction_id)
                if exc.code == "replayed":
                    return Outcome(entry, executed_earlier=True)
                return Outcome(entry, refusal=exc)
            self._drop(entry.instruction_id)
            return Outcome(entry, answer=answer)
        self._put(entry)
        return None
