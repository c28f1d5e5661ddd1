"""Exactly-once execution of signed instructions: one rule and one executor for central and
every bank node.

The instruction's outcome is stored in the same database transaction as its effect, keyed by
(signer, instruction id). A retry with the same content gets the stored outcome with no
second effect (`answer_repeat`); the same id with other content is refused; a refusal is
stored too, so a retry gets the same answer even if the world has changed since. Two
concurrent tries of one instruction race on the unique key: one commits, the other rolls
back whole and answers with the winner's outcome.

Where the outcome is kept is each service's `InstructionLog`: central keeps a table of
instructions; a bank's log is its journal (an instruction's effect is a transaction row under
its key, bank/instruction_log.py). Batches (the bank's payment and credit engines, central's
transfers) decide many instructions in one transaction, but answer a repeat with the same
`answer_repeat`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from rail_protocol.envelope import Envelope, check_live, now_ms
from rail_protocol.errors import RailError


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a service kept of an instruction it executed: enough to answer a repeat."""

    digest: str
    expires_ms: int | None          # None: kept only while live (a cache with a TTL)
    outcome: dict | None = None     # the first answer, when it was done
    refusal: tuple[str, str | None] | None = None   # (code, message), when it was refused


class InstructionLog(Protocol):
    async def find(self, conn: AsyncConnection, signer: str,
                   instruction_id: str) -> Recorded | None: ...

    async def record(self, conn: AsyncConnection, env: Envelope, status: str,
                     result: dict) -> None: ...


def same_instruction(digest: str, env: Envelope) -> None:
    """An id is one instruction: another content under a known id is refused."""
    if digest != env.digest():
        raise RailError("instruction_id_reused")


def answer_repeat(recorded: Recorded, env: Envelope, at_ms: int | None = None) -> dict:
    """What a repeat of an already-executed instruction gets: the first outcome, once marked
    `repeated`, or the first refusal again; after the instruction's expiry, `replayed`."""
    same_instruction(recorded.digest, env)
    if recorded.expires_ms is not None \
            and (now_ms() if at_ms is None else at_ms) >= recorded.expires_ms:
        raise RailError("replayed")
    if recorded.refusal is not None:
        raise RailError(*recorded.refusal)
    return {**(recorded.outcome or {}), "repeated": True}


async def execute_once(
    engine: AsyncEngine,
    log: InstructionLog,
    env: Envelope,
    apply: Callable[[AsyncConnection], Awaitable[dict]],
    *,
    at_ms: int | None = None,
) -> dict:
    """Run `apply` for `env` at most once, durably, and return its outcome. `apply` must
    key its effect under the instruction (the log's record, or its own row), so that two
    tries at once collide on a unique key."""
    async with engine.connect() as conn:
        recorded = await log.find(conn, env.signer, env.id)
    if recorded is not None:
        return answer_repeat(recorded, env, at_ms)
    check_live(env, at_ms)  # a new instruction must be live; a known one answered above
    try:
        async with engine.begin() as conn:
            result = await apply(conn)
            await log.record(conn, env, "done", result)
        return result
    except RailError as refusal:
        # `apply` moved nothing that survived: its transaction has rolled back.
        try:
            async with engine.begin() as conn:
                await log.record(conn, env, "rejected", {"code": refusal.code,
                                                         "message": refusal.message})
        except IntegrityError:
            pass  # a concurrent try got there first; fall through to its outcome
        else:
            raise
    except IntegrityError:
        pass  # a concurrent try of the same instruction committed first
    async with engine.connect() as conn:
        recorded = await log.find(conn, env.signer, env.id)
    if recorded is None:  # a unique key other than the instruction's: a race; retry it
        raise RailError("upstream_unavailable", "a concurrent change; retry the same id")
    return answer_repeat(recorded, env, at_ms)
