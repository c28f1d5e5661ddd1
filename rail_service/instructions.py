"""Exactly-once execution of signed instructions, the same way in every service.

The instruction's outcome is stored in the same database transaction as its effect, keyed by
(signer, instruction id). A retry with the same content returns the stored outcome with no
second effect; the same id with other content is refused; a refusal is stored too, so a
retry gets the same answer even if the world has changed since. Two concurrent tries of one
instruction race on the primary key: one commits, the other rolls back whole and answers
with the winner's outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from rail_protocol.envelope import Envelope, check_live, now_ms
from rail_protocol.errors import RailError


class InstructionLog(Protocol):
    async def find(self, conn: AsyncConnection, signer: str, instruction_id: str) -> Any: ...
    async def record(self, conn: AsyncConnection, env: Envelope, status: str, result: dict) -> None: ...


def stored_outcome(row: Any, env: Envelope, at_ms: int | None = None) -> dict:
    """What a repeat of an already-executed instruction gets: the first outcome, once."""
    if row.digest != env.digest():
        raise RailError("instruction_id_reused")
    if (now_ms() if at_ms is None else at_ms) >= row.expires_ms:
        raise RailError("replayed")
    result = orjson.loads(row.result)
    if row.status == "rejected":
        raise RailError(result["code"], result["message"])
    return {**result, "repeated": True}


async def execute_once(
    engine: AsyncEngine,
    log: InstructionLog,
    env: Envelope,
    apply: Callable[[AsyncConnection], Awaitable[dict]],
) -> dict:
    """Run `apply` for `env` at most once, durably, and return its outcome."""
    async with engine.connect() as conn:
        row = await log.find(conn, env.signer, env.id)
    if row is not None:
        return stored_outcome(row, env)
    check_live(env)  # a new instruction must be live; a known one answered above
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
        row = await log.find(conn, env.signer, env.id)
    if row is None:  # pragma: no cover - the unique key guarantees a row
        raise RailError("upstream_unavailable", "instruction outcome unknown; retry")
    return stored_outcome(row, env)
