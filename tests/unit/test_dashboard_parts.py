"""The dashboards' pure parts (docs/dashboards.md): the in-memory counters, the session
cookie, the check of a bank's signed finding at central, and the server-side charts."""

from __future__ import annotations

import time

import pytest

from central.dashboard import read_finding
from rail_protocol.envelope import sign_statement
from rail_protocol.instruction_types import CHECKPOINT_FINDING
from rail_protocol.keys import SigningKey
from rail_service.dashboard import Sessions, bar_chart, line_chart, yuan_axis
from rail_service.metrics import CallTimes, Latencies, Outcomes, PerSecond, Settlements

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self, now_s: int = 1_000) -> None:
        self.now_s = now_s

    def __call__(self) -> int:
        return self.now_s


# --- counters -------------------------------------------------------------------------------

def test_per_second_counts_land_in_their_second_and_the_running_one_is_left_out():
    clock = Clock()
    rate = PerSecond(window_s=10, clock=clock)
    rate.add(100)
    rate.add(250)
    clock.now_s += 1
    rate.add(5)
    assert rate.series(3) == [(998, 0, 0), (999, 0, 0), (1000, 2, 350)]
    clock.now_s += 1
    assert rate.recent(2) == (3, 355)
    assert (rate.total_count, rate.total_sum) == (3, 355)


def test_a_second_older_than_the_window_reads_as_zero_not_as_its_slot_reused():
    clock = Clock()
    rate = PerSecond(window_s=10, clock=clock)
    rate.add()
    clock.now_s += 10          # the same slot, ten seconds later
    rate.add()
    clock.now_s += 1
    assert rate.recent(9) == (1, 0)
    assert rate.total_count == 2


def test_a_call_is_counted_with_its_time_whether_it_answers_or_raises():
    times = CallTimes()
    with times.timing():
        time.sleep(0.002)
    with pytest.raises(TimeoutError), times.timing():
        times.unreachable += 1
        raise TimeoutError
    stats = times.stats()
    assert (stats["calls"], stats["unreachable"]) == (2, 1)
    assert stats["call_us"] >= 2_000


def test_refusals_are_counted_by_code():
    outcomes = Outcomes(clock=Clock())
    outcomes.accept(1_000)
    for code in ("insufficient_funds", "bad_signature", "insufficient_funds"):
        outcomes.refuse(code)
    assert outcomes.refusal_codes == {"insufficient_funds": 2, "bad_signature": 1}
    assert (outcomes.accepted.total_count, outcomes.refused.total_count) == (1, 3)


def test_latency_percentiles_are_nearest_rank_over_the_latest_samples():
    latencies = Latencies(size=4)
    assert latencies.percentile(50) is None
    for ms in (40, 10, 30, 20, 1_000):      # the first (40) falls out of the ring
        latencies.add(ms)
    assert latencies.percentile(50) == 20
    assert latencies.percentile(95) == 1_000


def test_settlements_count_settled_amounts_and_rejections_by_code():
    tally = Settlements(clock=Clock())
    tally.finished("settled", None, 500, 12)
    tally.finished("rejected", "unknown_wallet", 700, 30)
    assert tally.outcomes.accepted.total_sum == 500
    assert tally.outcomes.refusal_codes == {"unknown_wallet": 1}
    assert tally.latency_ms.percentile(100) == 30


# --- sessions -------------------------------------------------------------------------------

def test_a_session_is_valid_only_at_the_service_and_token_that_issued_it():
    central = Sessions("central", "central-operator-token-0001")
    cookie = central.issue()
    assert central.valid(cookie)
    assert not Sessions("yangtze", "central-operator-token-0001").valid(cookie)
    assert not Sessions("central", "another-operator-token-01").valid(cookie)
    assert not central.valid(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"))
    assert not central.valid("")
    assert not central.valid(None)


def test_a_session_expires():
    sessions = Sessions("central", "central-operator-token-0001", max_age_s=-1)
    assert not sessions.valid(sessions.issue())


# --- a bank's finding, at central -------------------------------------------------------------

def finding(key: SigningKey, **changes) -> dict:
    return sign_statement(key, {"type": CHECKPOINT_FINDING, "bank_id": "pearl",
                                "status": "mismatch", "alarm": True,
                                "detail": "books 1701 != 1700",
                                "checked_ms": 5_000, "checkpoint_seq": 9, "alarms": 1,
                                "last_alarm": None, "at_ms": 10_000, **changes})


def test_a_finding_signed_by_the_bank_is_shown_as_it_says():
    key = SigningKey.generate()
    shown = read_finding(finding(key), "pearl", key.public_key, 10_500)
    assert shown["status"] == "mismatch" and shown["alarm"] is True
    assert shown["checkpoint_seq"] == 9


def test_a_finding_not_signed_by_the_bank_is_an_alarm_whatever_it_says():
    key, other = SigningKey.generate(), SigningKey.generate()
    shown = read_finding(finding(other, status="match", alarm=False), "pearl",
                         key.public_key, 10_500)
    assert shown["status"] == "unverified" and shown["alarm"] is True


def test_a_finding_about_another_bank_or_too_old_is_not_believed():
    key = SigningKey.generate()
    calm = {"status": "match", "alarm": False}
    assert read_finding(finding(key, bank_id="yangtze", **calm), "pearl", key.public_key,
                        10_500)["alarm"] is True
    assert read_finding(finding(key, **calm), "pearl", key.public_key,
                        10_000 + 61_000)["alarm"] is True


def test_no_answer_from_a_bank_is_shown_as_unreachable():
    shown = read_finding(None, "pearl", SigningKey.generate().public_key, 10_000)
    assert shown["status"] == "unreachable"


# --- charts ---------------------------------------------------------------------------------

def test_charts_are_inline_svg_with_no_script_from_elsewhere():
    line = line_chart("supply", ["10:00:00", "10:00:05"], [100, 250], formatter=yuan_axis)
    bars = bar_chart("held", {"pearl": 1_700, "yangtze": 98_300}, formatter=yuan_axis)
    for svg in (line, bars):
        assert svg.startswith("<svg") and "<?xml" not in svg
        assert "src=" not in svg and "http://kozea" not in svg and "//kozea" not in svg
    assert "¥2.50" in line            # the axis in yuan, from fen
    assert bars.count('class="rect reactive tooltip-trigger"') == 2
