"""Restore: a wallet from an encrypted backup (core/backup.py) on a new phone, or on this one
when its PIN is locked, under a new PIN; the bank confirms it knows the key before the
wallet is kept."""

from __future__ import annotations

from pathlib import Path

from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class RestoreScreen(WalletScreen):
    back_to = "onboarding"

    def prepare(self, back: str = "onboarding", **params) -> None:
        """From onboarding (a new phone), or from unlock (this phone's PIN locked or its key
        registered again elsewhere: the same wallet sealed again under a new PIN)."""
        super().prepare(**params)
        self.back_to = back

    def restore(self) -> None:
        path = self.ids.backup_file.text.strip()
        passphrase, pin, again = (self.ids.passphrase.text, self.ids.pin.text,
                                  self.ids.pin_again.text)
        self.ids.pin.text = self.ids.pin_again.text = ""
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError:
            self.error = _("That backup file cannot be read.")
            return
        self.run(self.wallet.restore_backup(data, passphrase, pin, again),
                 lambda _view: self.app.go("home"), _("Restoring..."))

