"""Group commit: many requests, one database transaction.

A request that can be decided together with others is queued; one loop takes whatever has
queued while the previous batch was in the database and hands it to `run` as the next
batch. There is no fixed wait: under light load a batch is one item and adds nothing, under
heavy load batches grow by themselves (up to `max_items`).

A *rider* (`submit_rider`) is work that costs less inside another batch than as a batch of
its own, and that can wait a little: it goes with the next batch that starts for other
items, and starts one itself only after `ride_s`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("yuanrail.batcher")


class NotDone(Exception):
    """Its batch did not finish this item, and nothing of it was kept: the item's caller
    goes its other way (answers a repeat from the record, runs it again alone, or hands it
    to the one-at-a-time path)."""


def fail_all(items: list) -> None:
    """`Batcher`'s `fail` for items that carry a `future`: each not yet answered gets
    `NotDone`."""
    for item in items:
        if not item.future.done():
            item.future.set_exception(NotDone())


class Batcher:
    """`loops` loops over one queue (more than one lets a batch start while another waits
    on the network). `run(batch)` must settle every item it is given; if it raises (or the
    loop is cancelled under it), `fail(items)` gets the batch, and at close it gets
    whatever is still queued, so no request waits for ever.

    With a `pool` (asyncpg's), each loop keeps one connection of its own for its life and
    calls `run(batch, conn)`: no pool round trips between batches. After a failed batch the
    connection goes back and the next batch takes a fresh one."""

    def __init__(self, run: Callable[..., Awaitable[None]],
                 fail: Callable[[list], None], *, max_items: int, name: str,
                 loops: int = 1, pool: Any = None, ride_s: float = 0.0) -> None:
        self._run, self._fail, self._max, self._pool = run, fail, max_items, pool
        self.name = name
        self._queue: asyncio.Queue = asyncio.Queue()
        self._riders: list[tuple[float, Any]] = []   # (queued at, item), for the next batch
        self._ride_s = ride_s
        self._ride_timer: asyncio.TimerHandle | None = None
        self._tasks = [asyncio.get_running_loop().create_task(self._loop(), name=f"{name}-{i}")
                       for i in range(loops)]
        # For tests and measurements (the dashboards' `stages`, the load test's report): the
        # time items waited in the queue and batches took to run, in all.
        self.batches = self.items = self.largest = 0
        self.wait_s = self.run_s = 0.0
        self._closed = False

    def submit(self, item: Any) -> None:
        """Queue `item` for a coming batch; once closed, it goes to `fail` at once."""
        if self._closed:
            self._fail([item])
            return
        self._queue.put_nowait((time.monotonic(), item))

    def submit_rider(self, item: Any) -> None:
        """Queue `item` to go with the next batch that starts for other items; if none has
        started within `ride_s`, the riders waiting then go as a batch of their own."""
        if self._closed:
            self._fail([item])
            return
        self._riders.append((time.monotonic(), item))
        if self._ride_timer is None:
            self._ride_timer = asyncio.get_running_loop().call_later(
                self._ride_s, self._release_riders)

    def _release_riders(self) -> None:
        self._ride_timer = None
        for queued in self._take_riders():
            self._queue.put_nowait(queued)

    def _take_riders(self) -> list[tuple[float, Any]]:
        riders, self._riders = self._riders, []
        if self._ride_timer is not None:
            self._ride_timer.cancel()
            self._ride_timer = None
        return riders

    def stats(self) -> dict[str, int]:
        """Counts since start: batches, items, the largest batch, and the time items waited
        for a batch and batches ran, in microseconds in all (whole numbers: a reader takes
        differences and means)."""
        return {"batches": self.batches, "items": self.items, "largest": self.largest,
                "wait_us": int(self.wait_s * 1e6), "run_us": int(self.run_s * 1e6)}

    async def _loop(self) -> None:
        conn = None
        try:
            while True:
                queued = [await self._queue.get()]
                while len(queued) < self._max and not self._queue.empty():
                    queued.append(self._queue.get_nowait())
                queued += self._take_riders()
                started = time.monotonic()
                batch = [item for _at, item in queued]
                self.batches += 1
                self.items += len(batch)
                self.largest = max(self.largest, len(batch))
                self.wait_s += sum(started - at for at, _item in queued)
                try:
                    if self._pool is None:
                        await self._run(batch)
                    else:
                        if conn is None:
                            conn = await self._pool.acquire()
                        await self._run(batch, conn)
                    self.run_s += time.monotonic() - started
                except asyncio.CancelledError:
                    self._fail(batch)
                    raise
                except Exception:  # noqa: BLE001 - its items go another way; the loop goes on
                    log.exception("%s: a batch of %d failed", self.name, len(batch))
                    self._fail(batch)
                    if conn is not None:
                        await self._pool.release(conn)
                        conn = None
        finally:
            if conn is not None:
                await self._pool.release(conn)

    async def aclose(self) -> None:
        self._closed = True
        riders = [item for _at, item in self._take_riders()]
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        pending = riders
        while not self._queue.empty():
            pending.append(self._queue.get_nowait()[1])
        self._fail(pending)
