"""The PIN guard's rule: how a try of a wallet's PIN is answered and counted (the protocol:
rail_protocol/pin_guard.py). Plain Python: the use case reads the guard's row locked, asks
`try_pin`, writes the new state and only then answers, so a wrong try is counted even though
it is refused."""

from __future__ import annotations

from dataclasses import dataclass

from rail_protocol.errors import RailError
from rail_protocol.pin_guard import FREE_FAILURES, LOCK_MS


@dataclass(frozen=True, slots=True)
class GuardState:
    failures: int           # wrong PINs since the last right one (or the guard's registering)
    locked_until_ms: int


def try_pin(state: GuardState, right: bool, now_ms: int) -> tuple[GuardState, RailError | None]:
    """The guard after one try, and the refusal to answer it with (None: the PIN is right).

    While locked every try is refused unseen, the right PIN too, and not counted. A right PIN
    clears the count. A wrong one counts; the `FREE_FAILURES`th and every one after it lock
    the guard for `LOCK_MS`."""
    if state.locked_until_ms > now_ms:
        wait_s = -(-(state.locked_until_ms - now_ms) // 1000)
        return state, RailError("pin_locked", f"too many wrong PINs: try again in {wait_s} s",
                                wait_s=wait_s)
    if right:
        return GuardState(0, 0), None
    failures = state.failures + 1
    left = max(FREE_FAILURES - failures, 0)
    locked_until = now_ms + LOCK_MS if left == 0 else 0
    return GuardState(failures, locked_until), RailError(
        "wrong_pin", "the PIN is wrong" + (f" ({left} tries left)" if left else
                                           "; the PIN is now locked for a day"), left=left)
