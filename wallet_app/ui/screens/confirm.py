"""Confirm a payment: who is paid (merchant name and city, or the person), how much (the
order's amount, or typed), and the PIN above the no-PIN threshold."""

from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty

from rail_protocol.money import format_fen
from wallet_app.core.amounts import parse_yuan
from wallet_app.core.errors import PaymentPending
from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class ConfirmScreen(WalletScreen):
    payee_name = StringProperty("")
    payee_detail = StringProperty("")
    amount_text = StringProperty("")
    amount_fixed = BooleanProperty(False)
    pin_hint = StringProperty("")
    done = BooleanProperty(False)

    def prepare(self, request=None, **params) -> None:
        super().prepare(**params)
        self.request = request
        self.done = False
        self.ids.amount.text = ""
        self.ids.pin.text = ""
        self.ids.memo.text = ""
        if request is None:
            return
        self.payee_name = request.name
        details = [request.city] if request.city else []
        if request.order_id:
            details.append(_("order {order_id}").format(order_id=request.order_id))
        details.append(request.payee)
        self.payee_detail = ", ".join(details)
        self.amount_fixed = request.amount_fixed
        self.amount_text = format_fen(request.amount_fen) if request.amount_fixed else ""
        threshold = format_fen(self.wallet.no_pin_threshold_fen)
        if request.amount_fixed and self.wallet.needs_pin(request.amount_fen):
            self.pin_hint = _("Above {threshold} your PIN is needed.").format(threshold=threshold)
        elif request.amount_fixed:
            self.pin_hint = ""
        else:
            self.pin_hint = _("PIN needed above {threshold}.").format(threshold=threshold)

    def pay(self) -> None:
        if self.request is None or self.done:
            return
        amount = None if self.amount_fixed else self.guard(parse_yuan, self.ids.amount.text)
        if amount is None and not self.amount_fixed:
            return
        pin = self.ids.pin.text or None
        self.ids.pin.text = ""
        paying = self.wallet.pay(self.request, amount, pin=pin,
                                 memo=self.ids.memo.text.strip() or None)
        self.run(paying, self._paid, _("Paying..."), on_error=self._failed)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, PaymentPending):
            self.done = True  # kept and resent with its id; paying again could pay twice
        self.show_error(exc)

    def _paid(self, result) -> None:
        self.done = True
        text = (_("Paid {amount} to {payee}. Payment {payment_id} (processing).")
                if result.status == "processing" else
                _("Paid {amount} to {payee}. Payment {payment_id}."))
        self.info = text.format(amount=format_fen(result.amount_fen), payee=self.payee_name,
                                payment_id=result.payment_id)

    def go_back(self) -> bool:
        self.finish()  # as Cancel (or Done): nothing is paid by going back
        return True

    def finish(self) -> None:
        self.app.go("home")
