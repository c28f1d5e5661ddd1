"""What every screen shares: the core, slow work through the runner, and messages.

A screen's methods are what its buttons call. Anything slow goes through `run`, which runs
the coroutine on the runner's loop and comes back on the UI thread (Clock.schedule_once);
any refusal becomes `error`, a sentence on screen (`messages.explain`), never a crash."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.lang import Builder
from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.screenmanager import Screen

from wallet_app.core.messages import UNEXPECTED, explain

log = logging.getLogger("yuanrail.wallet.ui")


def load_kv(module_file: str) -> None:
    """Load the screen's layout, `<module>.kv` beside `<module>.py` (once per process)."""
    Builder.load_file(str(Path(module_file).with_suffix(".kv")))


class WalletScreen(Screen):
    error = StringProperty("")
    info = StringProperty("")
    busy = BooleanProperty(False)
    back_to: str | None = "home"  # where Escape / Android's Back goes; None: nowhere

    @property
    def app(self):
        return App.get_running_app()

    @property
    def wallet(self):
        return self.app.wallet

    def prepare(self, **params: Any) -> None:
        """Called by `app.go` before the screen is shown, with the navigation's params."""
        self.error = ""
        self.info = ""

    def leave(self) -> None:
        """Called by `app.go` when another screen is shown: stop timers here."""

    def go_back(self) -> bool:
        """Escape on a desktop, Back on Android: the screen's own way out, as its Back,
        Cancel or Done button. False where there is none (the app stays where it is)."""
        if self.back_to is None:
            return False
        self.app.go(self.back_to)
        return True

    def run(self, coro: Coroutine[Any, Any, Any], on_ok: Callable[[Any], None] | None = None,
            busy_text: str = "", on_error: Callable[[BaseException], None] | None = None):
        self.busy = True
        self.error = ""
        if busy_text:
            self.info = busy_text

        def ok(result: Any) -> None:
            self.busy = False
            if busy_text and self.info == busy_text:
                self.info = ""
            if on_ok is not None:
                self.guard(on_ok, result)

        def failed(exc: BaseException) -> None:
            self.busy = False
            if busy_text and self.info == busy_text:
                self.info = ""
            if on_error is not None:
                self.guard(on_error, exc)
            else:
                self.show_error(exc)

        return self.app.runner.run(coro, ok, failed)

    def guard(self, action: Callable[..., Any], *args: Any) -> Any:
        """Run a UI-side action; a refusal or a bug becomes a message, not a crash."""
        try:
            return action(*args)
        except Exception as exc:  # noqa: BLE001 - the screen stays up and says what happened
            self.show_error(exc)
            return None

    def show_error(self, exc: BaseException) -> None:
        self.error = explain(exc)
        if self.error == UNEXPECTED:
            log.exception("unexpected error on %s", self.name, exc_info=exc)
            self.app.unexpected.append(exc)
        else:
            log.info("%s: %s", self.name, exc)
