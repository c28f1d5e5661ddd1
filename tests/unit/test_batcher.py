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
