"""Slow work off the UI thread: one asyncio loop in a background thread.

A screen never waits on the network. It hands a coroutine to `AsyncRunner.run`, with what
to do on success and on failure; the runner runs the coroutine on its own loop and hands
the outcome back through `dispatch`, which the Kivy app sets to `Clock.schedule_once`, so
callbacks always run on the UI thread. The runner itself knows nothing of Kivy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any

Dispatch = Callable[[Callable[[], None]], None]


def call_now(callback: Callable[[], None]) -> None:
    """The default dispatch: run the callback on the runner's thread (tests, CLI)."""
    callback()


class AsyncRunner:
    def __init__(self, dispatch: Dispatch = call_now) -> None:
        self.dispatch = dispatch
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="wallet-core", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        """Run `coro` on the runner's loop; a future for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 60) -> Any:
        """Run `coro` and wait for it (never from the UI thread)."""
        return self.submit(coro).result(timeout_s)

    def run(self, coro: Coroutine[Any, Any, Any],
            on_ok: Callable[[Any], None] | None = None,
            on_error: Callable[[BaseException], None] | None = None) -> concurrent.futures.Future:
        """Run `coro`; then `on_ok(result)` or `on_error(exc)` through `dispatch`."""
        future = self.submit(coro)

        def done(f: concurrent.futures.Future) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                if on_error is not None:
                    self.dispatch(lambda: on_error(exc))
            elif on_ok is not None:
                result = f.result()
                self.dispatch(lambda: on_ok(result))

        future.add_done_callback(done)
        return future

    def stop(self, closer: Callable[[], Coroutine[Any, Any, Any]] | None = None) -> None:
        """Run `closer()` (closing HTTP clients), then stop the loop and its thread."""
        if not self.loop.is_running():
            return
        if closer is not None:
            try:
                self.call(closer(), timeout_s=5)
            except Exception:  # noqa: BLE001 - closing must not stop the app from exiting
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
