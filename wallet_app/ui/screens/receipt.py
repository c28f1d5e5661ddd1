"""A payment's receipt, opened from a history row: the merchant's name (or the wallet), the
amount, the time, the status and the ids to quote to the bank."""

from __future__ import annotations

from kivy.properties import StringProperty

from wallet_app.core import present
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class ReceiptScreen(WalletScreen):
    text = StringProperty("")

    def prepare(self, payment=None, names: dict | None = None, **params) -> None:
        super().prepare(**params)
        self.text = "\n".join(present.receipt_lines(payment, self.wallet.wallet_id, names)) \
            if payment is not None else ""

    def go_back(self) -> bool:
        self.app.go("history")
        return True
