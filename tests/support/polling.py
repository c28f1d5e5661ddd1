"""Waiting, bounded, for something the rail does a moment after it answers (a finish that
commits after the payer heard `settled`, a webhook, a background pass): one place for the
poll-until-deadline loop the tests would otherwise each write."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def poll(read: Callable[[], Any], done: Callable[[Any], bool] = bool, *,
               timeout_s: float, interval_s: float = 0.05) -> Any:
    """Call `read` (sync or async) until `done` holds for what it returned, or `timeout_s`
    has passed; the last value read either way, for the caller's assertion to show."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if inspect.isawaitable(value):
            value = await value
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval_s)


async def eventually(check: Callable[[], Any], *, timeout_s: float, what: str,
                     interval_s: float = 0.05) -> Any:
    """`check`'s first truthy value within `timeout_s`; fails the test, saying `what` it
    waited for, if none came."""
    value = await poll(check, timeout_s=timeout_s, interval_s=interval_s)
    if not value:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}: {value!r}")
    return value


async def lock_waiters(monitor, query_like: str) -> int:
    """How many other sessions of `monitor`'s database (a psycopg async connection in
    autocommit) wait on a lock in a statement that matches `query_like` (ILIKE): what a test
    that holds a row polls for before it lets go."""
    row = await (await monitor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query ILIKE %s",
        (query_like,))).fetchone()
    return row[0]
