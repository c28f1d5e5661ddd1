"""In-memory counters for the operator dashboards (docs/dashboards.md), cheap enough for the
hot path: recording is an integer addition into a bounded ring of one-second buckets, with
no lock, no I/O and no allocation beyond the first count of a new refusal code.

The figures are this process's own since it started; a service run as several processes
shows each process's own (the dashboard says so). Nothing here is money: losing it on a
restart loses only a chart's history."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

WINDOW_S = 120          # seconds of per-second history kept
LATENCY_SAMPLES = 512   # latencies kept for percentiles (the latest ones)


def _now_s() -> int:
    return int(time.time())


class PerSecond:
    """Counts and sums per wall-clock second over the last `window_s` seconds: a ring of
    buckets, each stamped with its second so a stale bucket reads as zero."""

    def __init__(self, window_s: int = WINDOW_S, clock=_now_s) -> None:
        self.window_s = window_s
        self._clock = clock
        self._second = [-1] * window_s
        self._count = [0] * window_s
        self._sum = [0] * window_s
        self.total_count = 0
        self.total_sum = 0

    def add(self, amount: int = 0) -> None:
        """Count one event (and add `amount`, in fen, to its second's sum)."""
        now = self._clock()
        slot = now % self.window_s
        if self._second[slot] != now:
            self._second[slot], self._count[slot], self._sum[slot] = now, 0, 0
        self._count[slot] += 1
        self._sum[slot] += amount
        self.total_count += 1
        self.total_sum += amount

    def series(self, seconds: int | None = None) -> list[tuple[int, int, int]]:
        """(second, count, sum) for each of the last `seconds` whole seconds, oldest first,
        the second still running left out (it is not over)."""
        seconds = min(seconds or self.window_s, self.window_s - 1)
        now = self._clock()
        points = []
        for second in range(now - seconds, now):
            slot = second % self.window_s
            if self._second[slot] == second:
                points.append((second, self._count[slot], self._sum[slot]))
            else:
                points.append((second, 0, 0))
        return points

    def recent(self, seconds: int) -> tuple[int, int]:
        """(count, sum) over the last `seconds` whole seconds."""
        points = self.series(seconds)
        return sum(p[1] for p in points), sum(p[2] for p in points)


class Latencies:
    """The latest `size` latencies in ms, for percentiles."""

    def __init__(self, size: int = LATENCY_SAMPLES) -> None:
        self._ring = [0] * size
        self._next = 0
        self._filled = 0

    def add(self, ms: int) -> None:
        self._ring[self._next] = ms
        self._next = (self._next + 1) % len(self._ring)
        self._filled = min(self._filled + 1, len(self._ring))

    def percentile(self, p: int) -> int | None:
        """The p-th percentile (nearest rank) of the kept latencies, or None if none."""
        if not self._filled:
            return None
        ordered = sorted(self._ring[:self._filled])
        rank = max(1, -(-p * len(ordered) // 100))   # ceil(p/100 * n), at least 1
        return ordered[rank - 1]


class Outcomes:
    """Accepted instructions per second and refusals by code, since the process started."""

    def __init__(self, clock=_now_s) -> None:
        self.accepted = PerSecond(clock=clock)
        self.refused = PerSecond(clock=clock)
        self.refusal_codes: Counter[str] = Counter()

    def accept(self, amount_fen: int = 0) -> None:
        self.accepted.add(amount_fen)

    def refuse(self, code: str) -> None:
        self.refused.add()
        self.refusal_codes[code] += 1


class Settlements:
    """Two-step operations (prepared, then settled or rejected): settled per second with
    their amounts, rejections by code, and how long each took from prepared to finished."""

    def __init__(self, clock=_now_s) -> None:
        self.outcomes = Outcomes(clock=clock)
        self.latency_ms = Latencies()

    def finished(self, status: str, code: str | None, amount_fen: int, latency_ms: int) -> None:
        if status == "settled":
            self.outcomes.accept(amount_fen)
        else:
            self.outcomes.refuse(code or status)
        self.latency_ms.add(max(latency_ms, 0))


class CallTimes:
    """Calls between services, made or answered, and the time they took: one of the
    `stages` (docs/dashboards.md) that say where a payment's time goes without a profiler.
    `unreachable` counts the calls that got no answer (the caller says which)."""

    def __init__(self) -> None:
        self.calls = self.unreachable = 0
        self._ns = 0

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Count one call and add the time until the block ends, however it ends."""
        started = time.perf_counter_ns()
        self.calls += 1
        try:
            yield
        finally:
            self._ns += time.perf_counter_ns() - started

    def stats(self) -> dict[str, int]:
        """Counts since start: calls, those without an answer, and their time in
        microseconds in all."""
        return {"calls": self.calls, "unreachable": self.unreachable, "call_us": self._ns // 1000}
