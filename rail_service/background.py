"""Background loops of a service (outbox, webhooks, vault), run by ONE process of a node.

A node runs as several uvicorn workers; every loop is safe to run in all of them at once
(claims and conditional updates), but each poll costs a pooled connection and its pre-ping,
so N workers pay N times for the same idle polling. One process leads: the one holding a
PostgreSQL session advisory lock, on a connection of its own kept for the process's life.
If the leader dies, its connection and lock go with it and another worker takes over within
`retry_s`. On SQLite (the embedded demo, one process) the only process leads.

A loop that found nothing to do waits longer next time (doubling up to its `idle_s`), and
at once goes back to its `busy_s` when it finds work: idle nodes stay idle."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("yuanrail.background")


@dataclass(frozen=True)
class Loop:
    """`work()` returns how many items it handled (None counts as some work)."""

    name: str
    work: Callable[[], Awaitable[int | None]]
    busy_s: float
    idle_s: float


def next_wait(loop: Loop, handled: int | None, waited: float) -> float:
    """How long to sleep after a pass: `busy_s` after work, doubling towards `idle_s` while
    there is none."""
    if handled is None or handled > 0:
        return loop.busy_s
    return min(max(waited, loop.busy_s) * 2, loop.idle_s)


async def run_loop(loop: Loop) -> None:
    """Run one loop until cancelled; a pass that fails is logged and retried (a worker must
    outlive any one failure)."""
    waited = loop.busy_s
    while True:
        try:
            handled = await loop.work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: %r", loop.name, exc)
            handled = None
        waited = next_wait(loop, handled, waited)
        await asyncio.sleep(waited)


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for `name` (PostgreSQL takes a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Background:
    """Leads (or waits to lead) and, while leading, runs the loops."""

    def __init__(self, engine: AsyncEngine, lock_name: str, loops: list[Loop], *,
                 retry_s: float = 2.0, check_s: float = 5.0) -> None:
        self.engine, self.key, self.loops = engine, lock_key(lock_name), loops
        self.retry_s, self.check_s = retry_s, check_s
        self.leading = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="background")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        if self.engine.dialect.name != "postgresql":
            await self._lead(None)
            return
        while True:
            try:
                async with self.engine.connect() as conn:
                    if await self._try_lock(conn):
                        try:
                            await self._lead(conn)
                        finally:   # the lock goes with its connection, never back to the pool
                            await conn.invalidate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database went away: contend again
                log.warning("background leadership lost or not taken: %r", exc)
            self.leading.clear()
            await asyncio.sleep(self.retry_s)

    async def _try_lock(self, conn: AsyncConnection) -> bool:
        got = (await conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"),
                                  {"key": self.key})).scalar_one()
        await conn.commit()   # the session lock outlives the transaction; do not sit in one
        return bool(got)

    async def _lead(self, conn: AsyncConnection | None) -> None:
        """Run the loops until cancelled or, on PostgreSQL, until the lock's connection
        fails a check (then the lock may be someone else's: stop and contend again)."""
        tasks = [asyncio.get_running_loop().create_task(run_loop(loop), name=loop.name)
                 for loop in self.loops]
        self.leading.set()
        log.info("leading the background loops: %s", ", ".join(lp.name for lp in self.loops))
        try:
            while True:
                await asyncio.sleep(self.check_s)
                if conn is not None:
                    await conn.execute(sa.text("SELECT 1"))
                    await conn.commit()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
