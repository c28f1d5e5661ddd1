"""Top up from, and redeem to, the linked deposit account; the top-up-on-use switch."""

from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty

from rail_protocol.money import format_fen
from wallet_app.core.amounts import parse_yuan
from wallet_app.core.i18n import N_, _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class TopUpScreen(WalletScreen):
    balance = StringProperty("")
    linked = BooleanProperty(False)
    topup_on_use = BooleanProperty(False)

    def prepare(self, **params) -> None:
        super().prepare(**params)
        self.ids.amount.text = ""
        self.run(self.wallet.refresh(), self._show)

    def _show(self, view) -> None:
        self.balance = format_fen(view.balance_fen)
        self.linked = view.deposit_account_linked
        self._syncing = True
        self.topup_on_use = view.topup_on_use
        self.ids.topup_switch.active = view.topup_on_use
        self._syncing = False

    def top_up(self) -> None:
        self._exchange(self.wallet.top_up, N_("Topped up {amount}."))

    def redeem(self) -> None:
        self._exchange(self.wallet.redeem, N_("Moved back to your bank account: {amount}."))

    def _exchange(self, action, done_text: str) -> None:
        amount = self.guard(parse_yuan, self.ids.amount.text)
        if amount is None:
            return

        async def go():
            result = await action(amount)
            return result, await self.wallet.refresh()

        def done(answer) -> None:
            result, view = answer
            self._show(view)
            self.info = _(done_text).format(amount=format_fen(result.amount_fen))

        self.run(go(), done, _("Asking the bank..."))

    def switch_changed(self, active: bool) -> None:
        if getattr(self, "_syncing", False) or active == self.topup_on_use:
            return

        def failed(exc: BaseException) -> None:
            self._syncing = True
            self.ids.topup_switch.active = self.topup_on_use
            self._syncing = False
            self.show_error(exc)

        self.run(self.wallet.set_topup_on_use(active), self._switched, on_error=failed)

    def _switched(self, view) -> None:
        self._show(view)
        self.info = (_("Top-up on use is on: a payment short of e-CNY takes the rest from "
                       "your bank account.") if view.topup_on_use
                     else _("Top-up on use is off."))
