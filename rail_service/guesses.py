"""Wrong credentials per client address: the operator token (the operator API, the dashboards'
login) and the PIN guards (`/v1/pin-guard/open`: a guard id, a PIN's verifier) can be
guessed at, so an address that has sent `limit` wrong ones within `window_s` is refused
every credential-bearing request (429 `too_many_tries`, `details.wait_s`) until its window
ends, the right credential included: a guesser learns nothing more.

Only wrong credentials count (an operator who types the token right is never slowed), and
only requests that carry one are refused (a wallet's signed reads and payments from the
same address go on: a shop's NAT may hold many phones). Each PIN guard also counts its own
wrong PINs and locks (bank/domain/pin_guards.py); this limit is per address across guards
and tokens. In memory, per process (a restart forgets it, and a service run as K workers
allows K x `limit`): a brake on guessing, not a record."""

from __future__ import annotations

import time
from collections.abc import Callable

from rail_protocol.errors import RailError

# The refusals that mean a wrong credential was tried.
GUESS_CODES = frozenset({"unauthorized", "wrong_pin", "unknown_pin_guard"})
# Paths whose credential is in the body rather than an `Authorization: Bearer` header.
GUESS_PATHS = frozenset({"/dashboard/login", "/v1/pin-guard/open"})

LIMIT = 20          # wrong credentials per address per window
WINDOW_S = 300
MAX_ADDRESSES = 10_000


class WrongGuesses:
    """Wrong credentials counted per address in fixed windows (the first wrong one starts
    an address's window); at most `max_addresses` kept, the oldest forgotten first. A
    `limit` of 0 counts nothing and refuses nothing."""

    def __init__(self, limit: int = LIMIT, window_s: int = WINDOW_S, *,
                 max_addresses: int = MAX_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self.max_addresses = limit, window_s, max_addresses
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}   # address -> (window start, count)

    def watching(self) -> bool:
        """Whether any address has a wrong credential counted (else nothing to refuse)."""
        return bool(self._windows)

    def wait_s(self, address: str) -> int:
        """0 if the address may try; else the whole seconds until its window ends."""
        window = self._windows.get(address)
        if window is None or window[1] < self.limit:
            return 0
        left = window[0] + self.window_s - self.clock()
        if left <= 0:
            del self._windows[address]
            return 0
        return max(int(-(-left // 1)), 1)

    def count(self, address: str) -> None:
        """One more wrong credential from `address`."""
        if self.limit <= 0:
            return
        now = self.clock()
        window = self._windows.pop(address, None)
        if window is None or now - window[0] >= self.window_s:
            window = (now, 0)
            if len(self._windows) >= self.max_addresses:
                self._forget(now)
        self._windows[address] = (window[0], window[1] + 1)   # newest last

    def check(self, address: str) -> None:
        """Raise `too_many_tries` if the address has used up its wrong credentials."""
        wait_s = self.wait_s(address)
        if wait_s:
            raise RailError("too_many_tries", f"too many wrong credentials from this address: "
                            f"try again in {wait_s} s", wait_s=wait_s)

    def _forget(self, now: float) -> None:
        """Room for one more: the windows that ended, else the oldest."""
        for address in [a for a, (start, _n) in self._windows.items()
                        if now - start >= self.window_s]:
            del self._windows[address]
        while len(self._windows) >= self.max_addresses:
            del self._windows[next(iter(self._windows))]


def client_address(scope) -> str:
    """The client's address as the server saw it (behind a trusted proxy, the one it
    forwarded: uvicorn's proxy headers)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


def carries_credential(scope) -> bool:
    """Whether a request tries a credential: an operator token, or a body that holds one."""
    if scope.get("path") in GUESS_PATHS:
        return True
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return value[:7].lower() == b"bearer "
    return False
