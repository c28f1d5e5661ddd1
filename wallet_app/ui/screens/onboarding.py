"""Onboarding: choose a bank, give a phone number and a PIN; the key is made here and the
wallet opens in class 4 (the next screen says its limits and offers linking an account)."""

from __future__ import annotations

from kivy.properties import BooleanProperty, ListProperty

from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class OnboardingScreen(WalletScreen):
    back_to = None  # the first screen: Back leaves it alone
    bank_labels = ListProperty([])
    merchant = BooleanProperty(False)

    def prepare(self, **params) -> None:
        super().prepare(**params)
        self._choices = []
        self.run(self.wallet.list_banks(), self._banks, _("Looking for banks..."))

    def _banks(self, choices) -> None:
        self._choices = choices
        self.bank_labels = [c.label for c in choices]
        online = [c for c in choices if c.info is not None]
        if online and self.ids.bank.text not in self.bank_labels:
            self.ids.bank.text = online[0].label
        if not choices:
            self.info = _("Add your bank: type its address or scan its code below.")
        elif not online:
            self.error = _("No bank answers. Check the connection and try again.")

    def add_bank(self) -> None:
        """A bank typed or scanned; once it answers it is listed and chosen."""
        text = self.ids.bank_url.text

        def added(choice) -> None:
            self.ids.bank_url.text = ""
            self._choices = [c for c in self._choices if c.url != choice.url] + [choice]
            self.bank_labels = [c.label for c in self._choices]
            self.ids.bank.text = choice.label
            self.error = ""
            self.info = _("Added {bank}.").format(bank=choice.label)

        self.run(self.wallet.add_bank(text), added, _("Asking the bank..."))

    def _chosen_url(self) -> str | None:
        for choice in self._choices:
            if choice.label == self.ids.bank.text and choice.info is not None:
                return choice.url
        return None

    def open_wallet(self) -> None:
        url = self._chosen_url()
        if url is None:
            self.error = _("Choose a bank that answers.")
            return
        merchant = None
        kind = "personal"
        if self.merchant:
            kind = "merchant"
            merchant = {"name": self.ids.merchant_name.text.strip(),
                        "mcc": self.ids.merchant_mcc.text.strip() or "5812",
                        "city": self.ids.merchant_city.text.strip()}
        opening = self.wallet.open_wallet(url, self.ids.phone.text, self.ids.pin.text,
                                          self.ids.pin_again.text, kind=kind, merchant=merchant)
        self.run(opening, self._opened, _("Making your key and opening the wallet..."))

    def _opened(self, view) -> None:
        self.ids.pin.text = self.ids.pin_again.text = ""
        self.app.go("link", view=view, onboarding=True)
