"""Home: balance, class, what is left of today's cap, and the main actions."""

from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty

from wallet_app.core import present
from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class HomeScreen(WalletScreen):
    back_to = None  # the first screen: Back leaves it alone
    balance = StringProperty("")
    kyc_class = StringProperty("")
    limits = StringProperty("")
    today_left = StringProperty("")
    wallet_id = StringProperty("")
    merchant_name = StringProperty("")
    is_merchant = BooleanProperty(False)
    pending = StringProperty("")

    def prepare(self, view=None, **params) -> None:
        super().prepare(**params)
        if view is not None:
            self._show(view)
        self.refresh()

    def refresh(self) -> None:
        self.run(self.wallet.refresh(), self._show, _("Updating..."), on_error=self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.show_error(exc)
        self._count_pending()

    def _count_pending(self) -> None:
        waiting = len(self.wallet.outbox.pending())
        self.pending = _("{count} payment(s) wait for the bank's answer; they are retried "
                         "with the same id.").format(count=waiting) if waiting else ""

    def _show(self, view) -> None:
        home = present.home_view(view)
        self.balance, self.kyc_class = home.balance, home.kyc_class
        self.limits, self.today_left = home.limits, home.today_left
        self.wallet_id, self.merchant_name = home.wallet_id, home.merchant
        self.is_merchant = view.is_merchant
        self._count_pending()

    def lock(self) -> None:
        self.app.lock()
