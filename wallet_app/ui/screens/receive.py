"""Receive: the wallet's own QR (`yuanrail:pay?wallet=...`, see core/scan.py), optionally
with an amount, for another person's wallet to scan and pay."""

from __future__ import annotations

from kivy.properties import StringProperty

from rail_protocol.money import format_fen
from wallet_app.core.amounts import parse_yuan
from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class ReceiveScreen(WalletScreen):
    payload = StringProperty("")
    wallet_id = StringProperty("")
    amount_label = StringProperty("")

    def prepare(self, **params) -> None:
        super().prepare(**params)
        self.ids.amount.text = ""
        self.wallet_id = self.wallet.wallet_id
        self.amount_label = _("Any amount")
        self.guard(lambda: setattr(self, "payload", self.wallet.receive_code()))

    def set_amount(self) -> None:
        text = self.ids.amount.text.strip()
        if not text:
            self.payload = self.wallet.receive_code()
            self.amount_label = _("Any amount")
            return
        amount = self.guard(parse_yuan, text)
        if amount is None:
            return
        self.error = ""
        self.payload = self.wallet.receive_code(amount)
        self.amount_label = _("Asks for {amount}").format(amount=format_fen(amount))
