"""Background loops run in one process of a node (the holder of a PostgreSQL advisory lock),
and back off while there is nothing to do."""

from __future__ import annotations

import asyncio

import pytest

from rail_service.background import Background, Loop, next_wait
from rail_service.db import make_engine
from tests.support.polling import poll

pytestmark = pytest.mark.integration


class Counter:
    def __init__(self) -> None:
        self.passes = 0

    async def work(self) -> int:
        self.passes += 1
        return 0


async def _wait_until(predicate, timeout_s: float) -> bool:
    return await poll(predicate, timeout_s=timeout_s)


async def test_of_two_processes_one_leads_and_the_other_takes_over_when_it_stops(pg_url):
    engines = [make_engine(pg_url, pool_size=2) for _ in range(2)]
    counters = [Counter(), Counter()]
    nodes = [Background(engine, "yuanrail:test:background",
                        [Loop("count", counter.work, busy_s=0.05, idle_s=0.05)],
                        retry_s=0.2, check_s=0.2)
             for engine, counter in zip(engines, counters, strict=True)]
    try:
        nodes[0].start()
        assert await _wait_until(nodes[0].leading.is_set, 5)
        nodes[1].start()
        await asyncio.sleep(0.6)   # several of its tries at the lock
        assert not nodes[1].leading.is_set()
        assert counters[1].passes == 0 and counters[0].passes > 0

        await nodes[0].aclose()    # the leader stops: its lock goes with its connection
        assert await _wait_until(nodes[1].leading.is_set, 5)
        assert await _wait_until(lambda: counters[1].passes > 0, 5)
    finally:
        for node in nodes:
            await node.aclose()
        for engine in engines:
            await engine.dispose()


async def test_on_sqlite_the_only_process_leads(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'node.sqlite'}")
    counter = Counter()
    node = Background(engine, "yuanrail:test:background",
                      [Loop("count", counter.work, busy_s=0.02, idle_s=0.02)])
    try:
        node.start()
        assert await _wait_until(lambda: counter.passes >= 3, 5)
    finally:
        await node.aclose()
        await engine.dispose()


def test_an_idle_loop_waits_longer_each_pass_and_work_brings_it_back():
    loop = Loop("outbox", Counter().work, busy_s=0.2, idle_s=1.0)
    waits, waited = [], 0.2
    for handled in (0, 0, 0, 0, 3, 0):
        waited = next_wait(loop, handled, waited)
        waits.append(waited)
    assert waits == [0.4, 0.8, 1.0, 1.0, 0.2, 0.4]
    assert next_wait(loop, None, 1.0) == 0.2   # a pass that says nothing counts as work
