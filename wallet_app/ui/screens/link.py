"""After opening (and from top-up): the wallet's class and limits, and the optional step of
linking a deposit account (account number and ID number), which makes it class 2."""

from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty

from wallet_app.core import present
from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class LinkScreen(WalletScreen):
    heading = StringProperty("")
    class_text = StringProperty("")
    limits_text = StringProperty("")
    linked = BooleanProperty(False)
    demo_counter = BooleanProperty(False)

    def prepare(self, view=None, onboarding: bool = False, **params) -> None:
        super().prepare(**params)
        self.heading = _("Your wallet is open") if onboarding else _("Link your bank account")
        self.demo_counter = self.wallet.demo_counter
        if view is not None:
            self._show(view)
        else:
            self.run(self.wallet.refresh(), self._show)

    def _show(self, view) -> None:
        home = present.home_view(view)
        self.class_text = _("{kyc_class}. Wallet {wallet_id}").format(kyc_class=home.kyc_class,
                                                                    wallet_id=view.wallet_id)
        self.limits_text = home.limits
        self.linked = view.deposit_account_linked

    def link(self) -> None:
        self.run(self.wallet.link_account(self.ids.account.text, self.ids.id_number.text),
                 self._linked, _("Linking..."))

    def _linked(self, view) -> None:
        self._show(view)
        self.info = _("Linked. You can now top up from your bank account.")

    def demo_account(self) -> None:
        """The demo's bank counter opens a deposit account (¥10,000) in this phone's name."""
        self.run(self.wallet.demo_open_deposit_account("Demo Customer", 1_000_000),
                 self._demo_opened, _("At the bank counter..."))

    def _demo_opened(self, account_id: str) -> None:
        self.ids.account.text = account_id
        if not self.ids.id_number.text:
            self.ids.id_number.text = "11010519900101" + account_id[-3:] + "X"
        self.info = _("The bank opened account {account_id} with ¥10,000.00. Now link it.").format(
            account_id=account_id)

    def go_back(self) -> bool:
        self.done()
        return True

    def done(self) -> None:
        self.app.go("home")
