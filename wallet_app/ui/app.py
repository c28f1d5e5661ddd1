"""The Kivy app: a screen manager over the screens, the core, and the runner.

The app is small on purpose: it wires the core (`Wallet`) and the runner, registers the
screens and navigates between them with `go(name, **params)`. The money logic is in the
core, the layouts in the .kv files, the view logic in `core/present.py`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from kivy.app import App
from kivy.base import ExceptionHandler, ExceptionManager
from kivy.clock import Clock
from kivy.uix.screenmanager import NoTransition, ScreenManager

from wallet_app.core import i18n
from wallet_app.core.messages import UNEXPECTED
from wallet_app.core.runner import AsyncRunner
from wallet_app.core.wallet import Wallet
from wallet_app.ui import widgets  # noqa: F401 - loads the shared styles first
from wallet_app.ui.i18n import register_font

log = logging.getLogger("yuanrail.wallet.ui")
ESCAPE = 27  # Kivy's key code for Escape, and for Android's Back button
AUTO_LOCK_S = 120.0   # idle this long with the key open, the wallet locks itself
UNLOCKED_FREE = ("unlock", "onboarding")   # screens shown while the key is closed


class _StayUp(ExceptionHandler):
    """A bug in a callback shows a message on the current screen instead of closing the
    app; the exception is logged and kept in `app.unexpected` (tests check it is empty)."""

    def __init__(self, app: WalletApp) -> None:
        self.app = app

    def handle_exception(self, exception: BaseException):
        log.exception("unexpected error", exc_info=exception)
        self.app.unexpected.append(exception)
        if self.app.root is not None and self.app.root.current_screen is not None:
            self.app.root.current_screen.error = UNEXPECTED
        return ExceptionManager.PASS


class WalletApp(App):
    TITLE = i18n.N_("yuanrail wallet")
    title = TITLE

    def __init__(self, wallet: Wallet, *, images_folder: Path | None = None,
                 language: str | None = None, auto_lock_s: float = AUTO_LOCK_S,
                 **kwargs) -> None:
        """`language`: the UI's language; by default the one chosen in Settings, else the
        system's. `auto_lock_s`: idle seconds before the key is closed again."""
        super().__init__(**kwargs)
        self.auto_lock_s = auto_lock_s
        self.last_activity = time.monotonic()
        self.wallet = wallet
        self.images_folder = images_folder
        self.backups_folder = wallet.home / "backups"
        self.language = language
        self.unexpected: list[BaseException] = []
        self.runner = AsyncRunner(dispatch=lambda callback: Clock.schedule_once(
            lambda _dt: callback()))
        self._handler = _StayUp(self)

    def build(self) -> ScreenManager:
        from wallet_app.ui.screens import screen_classes

        register_font()  # before the first label: Chinese needs the bundled CJK font
        i18n.set_language(self.language or i18n.saved_language(self.wallet.home)
                          or i18n.system_language())
        self.title = i18n.gettext(self.TITLE)
        manager = ScreenManager(transition=NoTransition())
        for cls in screen_classes():
            manager.add_widget(cls())
        return manager

    def on_start(self) -> None:
        from kivy.core.window import Window

        ExceptionManager.add_handler(self._handler)
        # The on-screen keyboard pushes the screen up to keep the field typed in visible.
        Window.softinput_mode = "below_target"
        Window.bind(on_keyboard=self.on_key, on_touch_down=self._active, on_key_down=self._active)
        self._idle_check = Clock.schedule_interval(self._lock_when_idle, 1.0)
        self.go("unlock" if self.wallet.has_wallet() else "onboarding")

    def _active(self, *_args) -> None:
        self.last_activity = time.monotonic()

    def _lock_when_idle(self, _dt: float) -> None:
        """Close the key after `auto_lock_s` without a touch or a key: a phone left on a
        table is not an open wallet."""
        if self.wallet.key is None or self.root is None:
            return
        if time.monotonic() - self.last_activity >= self.auto_lock_s:
            self.lock(i18n.gettext("Locked after a while without use. Enter the PIN."))

    def lock(self, why: str = "") -> None:
        self.wallet.lock()
        self.go("unlock")
        self.root.current_screen.info = why

    def on_pause(self) -> bool:
        """Android: the app goes to the background; its key is closed (the PIN opens it)."""
        if self.wallet.key is not None and self.root is not None:
            self.lock()
        return True

    def go(self, name: str, **params) -> None:
        """Show screen `name`, prepared with `params`."""
        manager = self.root
        current = manager.current_screen
        if current is not None and current.name != name:
            current.leave()
        screen = manager.get_screen(name)
        screen.prepare(**params)
        manager.current = name

    def on_key(self, _window, key: int, *_args) -> bool:
        """Escape (and Android's Back, which Kivy reports as 27) goes back a screen."""
        if key != ESCAPE or self.root is None or self.root.current_screen is None:
            return False
        return bool(self.root.current_screen.go_back())

    def screen(self, name: str):
        return self.root.get_screen(name)

    def on_stop(self) -> None:
        from kivy.core.window import Window

        Window.unbind(on_keyboard=self.on_key, on_touch_down=self._active,
                      on_key_down=self._active)
        if getattr(self, "_idle_check", None) is not None:
            self._idle_check.cancel()
        if self.root is not None and self.root.current_screen is not None:
            self.root.current_screen.leave()
        if self._handler in ExceptionManager.handlers:
            ExceptionManager.remove_handler(self._handler)
        self.runner.stop(self.wallet.aclose)
