"""The payment code: made on the device with no network, refreshed before it expires (a
short code at every new minute), and the result shown when a merchant charges it (found in the wallet's history by the
code's id). Codes shown in the last minute are all watched: an older one may still be
charged until it expires."""

from __future__ import annotations

from kivy.clock import Clock
from kivy.properties import BooleanProperty, StringProperty

from rail_protocol.envelope import now_ms
from rail_protocol.money import format_fen
from wallet_app.core import present, qrimage
from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)

TICK_S = 1.0
POLL_EVERY_TICKS = 2
WATCH_AFTER_EXPIRY_MS = 15_000


class PayCodeScreen(WalletScreen):
    code_text = StringProperty("")
    digits_text = StringProperty("")      # a short code, grouped for reading aloud
    short = BooleanProperty(False)
    countdown = StringProperty("")
    result = StringProperty("")
    pin_verified = BooleanProperty(False)
    limit_hint = StringProperty("")

    def prepare(self, **params) -> None:
        super().prepare(**params)
        self._tickets = []
        self._ticks = 0
        self._polling = False
        self.result = ""
        self.limit_hint = _("Without the PIN the code pays up to {amount}.").format(
            amount=format_fen(self.wallet.no_pin_threshold_fen))
        self.leave()           # shown again: one ticker, never two
        self._event = Clock.schedule_interval(self._tick, TICK_S)
        # The short code's secret is registered once, which needs the bank; with no answer
        # the signed code (made with no network) is shown instead.
        self.run(self.wallet.enable_short_codes(), lambda _ok: self.new_code(),
                 on_error=lambda _exc: self.new_code())

    def leave(self) -> None:
        event = getattr(self, "_event", None)
        if event is not None:
            event.cancel()
            self._event = None

    def new_code(self, pin: str | None = None) -> None:
        self.result = ""
        if pin:
            self.run(self.wallet.pin_code(pin), self._show, _("Checking the PIN..."))
        else:
            self.guard(lambda: self._show(self.wallet.payment_code()))

    def use_pin(self) -> None:
        pin = self.ids.pin.text
        self.ids.pin.text = ""
        if not pin:
            self.error = _("Type your PIN first.")
            return
        self.new_code(pin)

    def _show(self, ticket) -> None:
        self._tickets.append(ticket)
        self.code_text = ticket.text
        self.short = ticket.short
        self.digits_text = qrimage.group_digits(ticket.text) if ticket.short else ""
        self.pin_verified = ticket.pin_verified
        self.countdown = present.countdown(ticket.refresh_at_ms(), now_ms())

    def _tick(self, _dt: float) -> None:
        if not self._tickets or self.result:
            return
        now = now_ms()
        current = self._tickets[-1]
        if now >= current.refresh_at_ms():
            # a fresh code; one made with the PIN is followed by one without (the PIN is
            # never kept), so the user enters it again for another large payment
            self._show(self.wallet.payment_code())
            current = self._tickets[-1]
        self.countdown = present.countdown(current.refresh_at_ms(), now)
        self._tickets = [t for t in self._tickets if t.expires_ms + WATCH_AFTER_EXPIRY_MS > now]
        self._ticks += 1
        if self._ticks % POLL_EVERY_TICKS == 0 and not self._polling:
            self._polling = True
            self.app.runner.run(self.wallet.code_charges(list(self._tickets)), self._charged,
                                self._poll_failed)

    def _poll_failed(self, exc: BaseException) -> None:
        self._polling = False
        self.show_error(exc)
        self._poll_error = self.error

    def _charged(self, found: dict) -> None:
        self._polling = False
        if not found:
            # The bank answers again: clear the poller's own error, never another one (a
            # wrong PIN stays until the user acts).
            if self.error and self.error == getattr(self, "_poll_error", None):
                self.error = ""
            return
        payment = next(iter(found.values()))
        self.result = _("Paid {amount} to {payee}. Payment {payment_id}.").format(
            amount=format_fen(payment.amount_fen), payee=payment.payee_wallet,
            payment_id=payment.payment_id)
        self.code_text = ""
        self.digits_text = ""
        self.countdown = ""
        self._tickets = []
