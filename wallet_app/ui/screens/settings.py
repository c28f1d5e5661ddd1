"""Settings: the language (English or Simplified Chinese, or the phone's own), kept in
`<home>/settings.json`. The switch redraws every screen at once (`ui.i18n.tr`)."""

from __future__ import annotations

from kivy.properties import StringProperty

from wallet_app.core import i18n
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class SettingsScreen(WalletScreen):
    language = StringProperty(i18n.SOURCE_LANGUAGE)
    chosen = StringProperty("")     # "" while the wallet follows the system's language
    back_to = StringProperty("home")

    def prepare(self, back: str = "home", **params) -> None:
        super().prepare(**params)
        self.back_to = back
        self.language = i18n.language()
        self.chosen = i18n.saved_language(self.wallet.home) or ""

    def choose(self, code: str | None) -> None:
        """Use `code` from now on; None follows the system's language again."""
        i18n.save_language(self.wallet.home, code or "")
        self.language = i18n.set_language(code or i18n.system_language())
        self.chosen = code or ""
        self.app.title = i18n.gettext(self.app.TITLE)

    def back(self) -> None:
        self.go_back()
