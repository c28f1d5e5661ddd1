"""The PIN guard's rule (bank/domain/pin_guards.py) and the rail's repeat rule
(rail_service/instructions.py), as plain functions."""

import pytest

from bank.domain.pin_guards import GuardState, try_pin
from rail_protocol import pin_guard
from rail_protocol.envelope import seal
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey
from rail_service.instructions import Recorded, answer_repeat

NOW = 1_000_000
DAY = pin_guard.LOCK_MS


def test_a_right_pin_clears_the_count():
    assert try_pin(GuardState(3, 0), True, NOW) == (GuardState(0, 0), None)


def test_wrong_pins_count_down_then_lock_for_a_day():
    state = GuardState(0, 0)
    for left in (4, 3, 2, 1):
        state, refusal = try_pin(state, False, NOW)
        assert refusal.code == "wrong_pin" and refusal.details == {"left": left}
        assert state.locked_until_ms == 0
    state, refusal = try_pin(state, False, NOW)
    assert refusal.details == {"left": 0} and state == GuardState(5, NOW + DAY)


def test_while_locked_every_try_is_refused_unseen_and_not_counted():
    locked = GuardState(5, NOW + DAY)
    for right in (True, False):
        after, refusal = try_pin(locked, right, NOW + 1_000)
        assert after == locked and refusal.code == "pin_locked"
        assert refusal.details == {"wait_s": (DAY - 1_000) // 1000}


def test_after_the_lock_one_more_wrong_pin_locks_another_day():
    after, refusal = try_pin(GuardState(5, NOW), False, NOW + 1)
    assert after == GuardState(6, NOW + 1 + DAY) and refusal.details == {"left": 0}
    assert try_pin(GuardState(6, NOW), True, NOW + 1) == (GuardState(0, 0), None)


def test_what_the_bank_stores_is_not_what_the_wallet_shows():
    stretched = bytes(32)
    verifier = pin_guard.verifier(stretched)
    assert pin_guard.is_verifier(verifier) and pin_guard.digest(verifier) != verifier
    assert pin_guard.verifier(bytes([1]) + bytes(31)) != verifier
    assert not pin_guard.is_guard_id("AB" * 16) and pin_guard.is_guard_id("ab" * 16)


@pytest.fixture
def env():
    return seal(SigningKey.generate(), "bank.hold", {"amount_fen": 1})


def test_a_repeat_gets_the_first_outcome_marked_repeated(env):
    recorded = Recorded(env.digest(), env.expires_ms, outcome={"status": "settled"})
    assert answer_repeat(recorded, env, env.created_ms) == {"status": "settled",
                                                            "repeated": True}


def test_a_repeat_of_a_refusal_is_refused_the_same_way(env):
    recorded = Recorded(env.digest(), env.expires_ms, refusal=("hold_closed", "closed"))
    with pytest.raises(RailError) as again:
        answer_repeat(recorded, env, env.created_ms)
    assert again.value.code == "hold_closed"


def test_another_content_under_the_id_and_a_repeat_after_expiry_are_refused(env):
    with pytest.raises(RailError) as reused:
        answer_repeat(Recorded("0" * 64, env.expires_ms, outcome={}), env, env.created_ms)
    assert reused.value.code == "instruction_id_reused"
    with pytest.raises(RailError) as late:
        answer_repeat(Recorded(env.digest(), env.expires_ms, outcome={}), env, env.expires_ms)
    assert late.value.code == "replayed"
    cached = Recorded(env.digest(), None, outcome={"a": 1})   # a cache entry: no expiry here
    assert answer_repeat(cached, env, env.expires_ms + 1)["a"] == 1
