"""Settings: the language (English or Simplified Chinese, or the phone's own), kept in
`<home>/settings.json`; the switch redraws every screen at once (`ui.i18n.tr`). And an
encrypted backup of the wallet (core/backup.py) and a new PIN, while it is unlocked."""

from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty

from wallet_app.core import i18n
from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class SettingsScreen(WalletScreen):
    language = StringProperty(i18n.SOURCE_LANGUAGE)
    chosen = StringProperty("")     # "" while the wallet follows the system's language
    back_to = StringProperty("home")
    can_back_up = BooleanProperty(False)   # an unlocked wallet: its key can be backed up
    backup_path = StringProperty("")

    def prepare(self, back: str = "home", **params) -> None:
        super().prepare(**params)
        self.back_to = back
        self.can_back_up = self.wallet.key is not None
        self.language = i18n.language()
        self.chosen = i18n.saved_language(self.wallet.home) or ""

    def choose(self, code: str | None) -> None:
        """Use `code` from now on; None follows the system's language again."""
        i18n.save_language(self.wallet.home, code or "")
        self.language = i18n.set_language(code or i18n.system_language())
        self.chosen = code or ""
        self.app.title = i18n.gettext(self.app.TITLE)

    def save_backup(self) -> None:
        """The key and profile, sealed under the passphrase, saved where the user can copy
        them off the phone (the app's backups folder)."""
        pin, passphrase = self.ids.backup_pin.text, self.ids.passphrase.text
        self.ids.backup_pin.text = self.ids.passphrase.text = ""

        async def seal() -> str:        # scrypt: off the UI thread
            data = await self.wallet.export_backup(pin, passphrase)
            folder = self.app.backups_folder
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"yuanrail-wallet-{self.wallet.wallet_id}.backup"
            path.write_bytes(data)
            return str(path)

        def saved(path: str) -> None:
            self.backup_path = path
            self.info = _("Backup saved: {path}. Keep it, and the passphrase, off this "
                          "phone.").format(path=path)

        self.run(seal(), saved, _("Sealing the backup..."))

    def change_pin(self) -> None:
        """A new PIN, checked by the bank from now on; the old one no longer opens the key."""
        ids = self.ids
        old, new, again = ids.old_pin.text, ids.new_pin.text, ids.new_pin_again.text
        ids.old_pin.text = ids.new_pin.text = ids.new_pin_again.text = ""

        def changed(_none) -> None:
            self.info = _("The PIN is changed.")

        self.run(self.wallet.change_pin(old, new, again), changed, _("Changing the PIN..."))

    def back(self) -> None:
        self.go_back()
