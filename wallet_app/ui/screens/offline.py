"""Offline payments (docs/programmable.md): reserve money online, pay another phone with no
network (the note shown as a QR for the receiver to scan), accept a payer's note with no
network, and sync the accepted notes when online again."""

from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty

from rail_protocol.money import format_fen
from wallet_app.core.amounts import parse_yuan
from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class OfflineScreen(WalletScreen):
    reserve_text = StringProperty("")
    note_text = StringProperty("")       # the note to show the receiver, as a QR
    inbox_text = StringProperty("")
    locked = BooleanProperty(False)      # opened from the unlock screen: pay and accept only
    back_to = StringProperty("home")

    def prepare(self, **params) -> None:
        """`receiver`: a receive code scanned to pay; `incoming`: a payer's note scanned.
        With the wallet locked (no bank to check the PIN) the reserve still pays, with its
        own key, and notes are still accepted; reserving and syncing wait for the PIN."""
        super().prepare(**params)
        self.locked = self.wallet.key is None
        self.back_to = "unlock" if self.locked else "home"
        self.note_text = ""
        if params.get("receiver"):
            self.ids.receiver.text = params["receiver"]
        self._update()
        if params.get("incoming"):
            self.ids.incoming.text = params["incoming"]
            self.accept()

    def _update(self) -> None:
        fen, payments = self.wallet.offline_left()
        self.reserve_text = _("Offline reserve: {amount} for {count} more payments.").format(
            amount=format_fen(fen), count=payments) if payments else \
            _("No offline reserve. Reserve some while online.")
        received = self.wallet.offline_state["received"]
        waiting = [r for r in received if r["status"] == "to_sync"]
        self.inbox_text = _("Received offline, to sync: {count} ({amount}).").format(
            count=len(waiting), amount=format_fen(sum(r["amount_fen"] for r in waiting)))

    def reserve(self) -> None:
        amount = self.guard(parse_yuan, self.ids.reserve_amount.text.strip())
        if amount is None:
            return

        def done(_purse) -> None:
            self.ids.reserve_amount.text = ""
            self._update()
            self.info = _("Reserved {amount} for offline payments.").format(
                amount=format_fen(amount))

        self.run(self.wallet.reserve_offline(amount), done, _("Reserving..."))

    def pay(self) -> None:
        amount = self.guard(parse_yuan, self.ids.pay_amount.text.strip())
        if amount is None:
            return
        note = self.guard(self.wallet.pay_offline, self.ids.receiver.text.strip(), amount)
        if note is None:
            return
        self.error = ""
        self.note_text = note.text
        self.info = _("Show this code to the receiver: {amount}, payment {seq}.").format(
            amount=format_fen(amount), seq=note.seq)
        self._update()

    def accept(self) -> None:
        payment = self.guard(self.wallet.accept_offline, self.ids.incoming.text.strip())
        if payment is None:
            return
        self.error = ""
        self.ids.incoming.text = ""
        self.info = _("Accepted {amount} offline; it is credited when you sync.").format(
            amount=format_fen(payment.amount_fen))
        self._update()

    def sync(self) -> None:
        def done(items) -> None:
            credited = sum(1 for i in items if i["status"] == "credited")
            refused = sum(1 for i in items if i["status"] == "refused")
            self.info = _("Synced: {credited} credited, {refused} refused.").format(
                credited=credited, refused=refused)
            self._update()

        self.run(self.wallet.sync_offline(), done, _("Syncing..."))
