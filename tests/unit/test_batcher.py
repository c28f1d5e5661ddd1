"""The group-commit batcher (rail_service/batcher.py): what it counts for the dashboards'
`stages` and the load test's report."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from rail_service.batcher import Batcher, fail_all


def item():
    return SimpleNamespace(future=asyncio.get_running_loop().create_future())


async def test_it_counts_batches_items_and_the_time_waited_and_run():
    release = asyncio.Event()
    sizes = []

    async def run(batch):
        sizes.append(len(batch))
        if len(sizes) == 1:
            await release.wait()          # the first batch holds the loop: the rest queue
        for it in batch:
            it.future.set_result(None)

    batcher = Batcher(run, fail_all, max_items=10, name="test-batch")
    first = item()
    batcher.submit(first)
    await asyncio.sleep(0.01)
    queued = [item() for _ in range(3)]
    for it in queued:
        batcher.submit(it)
    await asyncio.sleep(0.05)             # they wait at least this long
    release.set()
    await asyncio.gather(first.future, *(it.future for it in queued))
    stats = batcher.stats()
    await batcher.aclose()
    assert sizes == [1, 3]
    assert stats["batches"] == 2 and stats["items"] == 4 and stats["largest"] == 3
    assert stats["run_us"] >= 50_000      # the first batch ran while the others waited
    assert stats["wait_us"] >= 3 * 40_000
    assert all(isinstance(v, int) for v in stats.values())


def recording_batcher(batches: list, *, ride_s: float) -> Batcher:
    async def run(batch):
        batches.append([it.name for it in batch])
        for it in batch:
            it.future.set_result(None)

    return Batcher(run, fail_all, max_items=10, name="test-batch", ride_s=ride_s)


def named(name: str):
    it = item()
    it.name = name
    return it


async def test_a_rider_goes_with_the_next_batch_that_starts_for_other_items():
    batches: list = []
    batcher = recording_batcher(batches, ride_s=5.0)
    rider = named("rider")
    batcher.submit_rider(rider)
    await asyncio.sleep(0.05)
    assert batches == [], "a rider alone starts no batch before its ride_s"
    other = named("other")
    batcher.submit(other)
    await asyncio.wait_for(asyncio.gather(rider.future, other.future), 1.0)
    await batcher.aclose()
    assert batches == [["other", "rider"]]


async def test_riders_with_no_batch_to_ride_go_alone_after_ride_s():
    batches: list = []
    batcher = recording_batcher(batches, ride_s=0.05)
    riders = [named("r1"), named("r2")]
    for rider in riders:
        batcher.submit_rider(rider)
    await asyncio.sleep(0.01)
    assert batches == []
    await asyncio.wait_for(asyncio.gather(*(r.future for r in riders)), 1.0)
    assert batches == [["r1", "r2"]]
    later = named("r3")             # a new wait starts with the next rider
    batcher.submit_rider(later)
    await asyncio.wait_for(later.future, 1.0)
    await batcher.aclose()
    assert batches == [["r1", "r2"], ["r3"]]
    assert batcher.stats()["wait_us"] >= 3 * 40_000


async def test_riders_still_waiting_at_close_are_failed_not_left_waiting():
    batcher = recording_batcher([], ride_s=5.0)
    rider = named("rider")
    batcher.submit_rider(rider)
    await batcher.aclose()
    assert rider.future.done() and rider.future.exception() is not None
    late = named("late")
    batcher.submit_rider(late)
    assert late.future.done() and late.future.exception() is not None
