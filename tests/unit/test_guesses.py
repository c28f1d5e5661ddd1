"""The brake on guessed credentials (rail_service/guesses.py): wrong ones are counted per
address in windows, an address past the limit waits until its window ends, only requests
that carry a credential are refused, and the memory it takes is bounded."""

from __future__ import annotations

import pytest

from rail_protocol.errors import RailError
from rail_service.guesses import WrongGuesses, carries_credential

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_past_the_limit_waits_until_its_window_ends():
    clock = Clock()
    guesses = WrongGuesses(limit=3, window_s=300, clock=clock)
    for _ in range(2):
        guesses.count("203.0.113.7")
    guesses.check("203.0.113.7")                 # two wrong: still allowed
    clock.now += 10
    guesses.count("203.0.113.7")
    with pytest.raises(RailError) as refused:
        guesses.check("203.0.113.7")
    assert refused.value.code == "too_many_tries" and refused.value.status == 429
    assert refused.value.details["wait_s"] == 290    # the window began at the first wrong one
    guesses.check("198.51.100.1")                # another address is not slowed
    clock.now += 290
    guesses.check("203.0.113.7")                 # the window is over
    guesses.count("203.0.113.7")
    guesses.check("203.0.113.7")                 # and a new one counts from one


def test_a_limit_of_zero_counts_and_refuses_nothing():
    guesses = WrongGuesses(limit=0)
    for _ in range(100):
        guesses.count("203.0.113.7")
    guesses.check("203.0.113.7")
    assert not guesses.watching()


def test_the_addresses_kept_are_bounded_the_oldest_forgotten_first():
    clock = Clock()
    guesses = WrongGuesses(limit=2, window_s=300, max_addresses=3, clock=clock)
    for n in range(3):
        guesses.count(f"10.0.0.{n}")
        guesses.count(f"10.0.0.{n}")
    guesses.count("10.0.0.9")                   # a fourth: the oldest (10.0.0.0) goes
    assert guesses.wait_s("10.0.0.0") == 0
    assert guesses.wait_s("10.0.0.1") > 0 and guesses.wait_s("10.0.0.2") > 0
    clock.now += 300                             # all windows over: they make room first
    guesses.count("10.0.0.8")
    assert guesses.wait_s("10.0.0.1") == 0


@pytest.mark.parametrize(("path", "headers", "expected"), [
    ("/v1/supply", [(b"authorization", b"Bearer x")], True),
    ("/v1/supply", [(b"authorization", b"bearer x")], True),
    ("/dashboard/login", [], True),
    ("/v1/pin-guard/open", [], True),
    ("/v1/wallets/yangtze.1/history", [(b"authorization", b"Rail key=k,ts=1,sig=s")], False),
    ("/v1/payments", [], False),
])
def test_only_requests_that_carry_a_credential_are_watched(path, headers, expected):
    assert carries_credential({"path": path, "headers": headers}) is expected
