"""Home: balance, class, what is left of today's cap, and the main actions."""

from __future__ import annotations

from kivy.clock import Clock
from kivy.properties import BooleanProperty, StringProperty

from rail_protocol.money import format_fen
from wallet_app.core import present
from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)

NEWS_EVERY_S = 5.0     # how often home looks for payments received


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
        self._looking = False
        self.leave()           # shown again (home -> home): one poller, never two
        self._news = Clock.schedule_interval(self._look_for_news, NEWS_EVERY_S)

    def leave(self) -> None:
        news = getattr(self, "_news", None)
        if news is not None:
            news.cancel()
            self._news = None

    def _look_for_news(self, _dt: float) -> None:
        """A notice when money arrives (polling: a phone keeps no connection open)."""
        if self.app is None or self.manager is None or self.manager.current != self.name:
            self.leave()       # the app stopped, or another screen shows: stop polling
            return
        if self._looking or self.busy or self.wallet.key is None:
            return
        self._looking = True

        def done(result) -> None:
            self._looking = False
            news, names = result
            if news:
                newest = news[0]
                who = names.get(newest.payer_wallet or "",
                                present.short_id(newest.payer_wallet)) or _("your bank")
                self.info = _("Received {amount} from {who}.").format(
                    amount=format_fen(newest.amount_fen), who=who)
                self.run(self.wallet.refresh(), self._show)

        def failed(_exc: BaseException) -> None:
            self._looking = False

        self.app.runner.run(self.wallet.incoming_news(), done, failed)

    def refresh(self) -> None:
        self.run(self.wallet.refresh(), self._show, _("Updating..."), on_error=self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.show_error(exc)
        self._count_pending()

    def _count_pending(self) -> None:
        waiting = len(self.wallet.outbox.pending())
        before = getattr(self, "_waiting", 0)
        self._waiting = waiting
        if waiting < before:     # sent again with the same id, and answered
            self.info = _("{count} payment(s) sent again went through.").format(
                count=before - waiting)
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
