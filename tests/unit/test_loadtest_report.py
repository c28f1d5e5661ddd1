"""What `yuanrail loadtest` says of CPU: each service's cores, and each of its busy
processes when it runs several uvicorn workers (`--workers`)."""

from __future__ import annotations

from yuanrail.loadtest_command import CpuMeter, _rail_split


def test_a_bank_with_several_busy_workers_shows_each_and_one_process_shows_none():
    cpu = {"central": 0.4, "central[0]": 0.4,
           "yangtze": 0.37, "yangtze[0]": 0.0, "yangtze[1]": 0.18, "yangtze[2]": 0.19,
           "pearl": 0.3, "pearl[0]": 0.3}
    assert _rail_split(cpu) == "C 0.4 + Y 0.37 [0.18 + 0.19] + P 0.3"


def test_workers_are_shown_in_their_order_past_nine():
    cpu = {"yangtze": 1.1, **{f"yangtze[{n}]": 0.1 * n for n in range(1, 12)}}
    shown = _rail_split(cpu).split("Y 1.1 [", 1)[1].split("]")[0].split(" + ")
    assert [float(c) for c in shown] == [0.1 * n for n in range(1, 12)]


def test_the_meter_counts_each_process_of_a_service_and_their_sum():
    meter = CpuMeter({"central": lambda: [], "yangtze": lambda: [], "generator": lambda: []})
    meter.owner = {30: "yangtze", 10: "yangtze", 20: "yangtze", 40: "generator"}
    meter.first = {10: 0.0, 20: 1.0, 30: 2.0, 40: 0.0}
    meter.last = {10: 0.5, 20: 4.0, 30: 3.5, 40: 2.0}
    used = meter.used()
    assert used["yangtze"] == 5.0
    assert (used["yangtze[0]"], used["yangtze[1]"], used["yangtze[2]"]) == (0.5, 3.0, 1.5)
    assert used["generator"] == 2.0 and "generator[0]" not in used
