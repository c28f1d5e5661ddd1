"""Holds and vouchers (docs/programmable.md): money frozen for a merchant, vouchers this
wallet holds or gave, offline reserves; spend a voucher at a scanned merchant, release an
escrow this wallet is the releaser of."""

from __future__ import annotations

from kivy.properties import StringProperty
from kivy.uix.boxlayout import BoxLayout

from rail_protocol.money import format_fen
from wallet_app.core.amounts import parse_yuan
from wallet_app.core.i18n import N_, _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)

KIND_NAMES = {"hold": N_("Hold"), "voucher": N_("Voucher"), "purse": N_("Offline reserve")}
STATUS_NAMES = {"pending": N_("open"), "posted": N_("paid out"), "voided": N_("voided"),
                "expired": N_("expired")}


class HoldRow(BoxLayout):
    text = StringProperty("")
    hold_id = StringProperty("")


class HoldsScreen(WalletScreen):
    selected = StringProperty("")
    selected_text = StringProperty("")

    def prepare(self, **params) -> None:
        super().prepare(**params)
        self.selected = ""
        self.selected_text = _("Tap a voucher or a hold to use it.")
        self.load()

    def load(self) -> None:
        self.run(self.wallet.holds(), self._show, _("Loading..."))

    def _show(self, holds) -> None:
        rows = self.ids.rows
        rows.clear_widgets()
        self._holds = {h.hold_id: h for h in holds}
        for hold in holds:
            row = HoldRow(text=self.describe(hold), hold_id=hold.hold_id)
            row.screen = self
            rows.add_widget(row)
        if not holds:
            self.info = _("No holds or vouchers.")

    def describe(self, hold) -> str:
        return _("{kind}: {left} of {amount} left, {status}").format(
            kind=_(KIND_NAMES.get(hold.kind, hold.kind)), left=format_fen(hold.remaining_fen),
            amount=format_fen(hold.amount_fen), status=_(STATUS_NAMES.get(hold.status,
                                                                           hold.status)))

    def select(self, hold_id: str) -> None:
        self.selected = hold_id
        self.selected_text = self.describe(self._holds[hold_id])

    def use(self) -> None:
        """Spend the selected voucher at the scanned merchant, or release the selected hold."""
        hold = self._holds.get(self.selected)
        if hold is None:
            self.error = _("Tap a voucher or a hold to use it.")
            return
        amount = self.guard(parse_yuan, self.ids.amount.text.strip())
        if amount is None:
            return
        if hold.kind == "voucher":
            action = self.wallet.spend_voucher(hold.hold_id, self.ids.merchant.text.strip(),
                                               amount)
        else:
            action = self.wallet.release_hold(hold.hold_id, amount)

        async def then_list():
            done = await action
            return done, await self.wallet.holds()

        def shown(result) -> None:
            done, holds = result
            self._show(holds)
            self.select(done.hold_id)
            self.info = _("Done: {text}").format(text=self.describe(done))

        self.run(then_list(), shown, _("Sending..."))
