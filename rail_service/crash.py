"""Named crash points for kill tests.

A crash point is a line where a party may die at the worst moment: after a commit, before
the answer that says so. A test starts the process with `YUANRAIL_CRASH_AT=<name>`, the
process SIGKILLs itself on reaching that point (no cleanup, no flush, exactly like a power
cut), and the test restarts it and checks that the protocol still ends fully done or fully
undone. Unset, a crash point costs one dictionary lookup."""

from __future__ import annotations

import os
import signal

CRASH_ENV = "YUANRAIL_CRASH_AT"


def crash_point(name: str) -> None:
    """Kill this process at once when `YUANRAIL_CRASH_AT` names this point. The environment
    is read on every call, so a test may arm a point in a long-running process too."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
