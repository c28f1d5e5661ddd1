"""Merchant mode: collect with a QR for an amount (an order, watched until paid), charge a
customer's payment code, and today's receipts."""

from __future__ import annotations

from kivy.clock import Clock
from kivy.properties import StringProperty

from rail_protocol.money import format_fen
from wallet_app.core import present
from wallet_app.core.amounts import parse_yuan
from wallet_app.core.i18n import _
from wallet_app.core.scan import CustomerCode, read_scanned
from wallet_app.ui import scanner  # noqa: F401 - registers QrScanner for the .kv
from wallet_app.ui.screens.base import WalletScreen, load_kv
from wallet_app.ui.screens.history import HistoryRowLabel

load_kv(__file__)

ORDER_POLL_S = 1.0


class MerchantScreen(WalletScreen):
    shop_name = StringProperty("")
    order_qr = StringProperty("")
    order_status = StringProperty("")
    customer_code = StringProperty("")
    code_status = StringProperty("")
    totals = StringProperty("")

    def prepare(self, mode: str = "collect", **params) -> None:
        super().prepare(**params)
        profile = self.wallet.profile
        merchant = (profile.merchant or {}) if profile else {}
        self.shop_name = merchant.get("name", _("Merchant"))
        self._order = None
        self._poll = None
        self._polling = False
        self.order_qr = self.order_status = ""
        self.customer_code = self.code_status = ""
        self.show_mode(mode)

    def leave(self) -> None:
        self._stop_poll()
        self.ids.code_scanner.stop_camera()

    def show_mode(self, mode: str) -> None:
        self.ids.modes.current = mode
        for name in ("collect", "charge", "today"):
            self.ids[f"{name}_tab"].state = "down" if name == mode else "normal"
        if mode == "today":
            self.load_receipts()

    # --- collect: an order and its QR ------------------------------------------------------

    def collect(self) -> None:
        amount = self.guard(parse_yuan, self.ids.collect_amount.text)
        if amount is None:
            return
        self._stop_poll()
        description = self.ids.description.text.strip() or None
        self.run(self.wallet.collect(amount, description), self._collecting,
                 _("Creating the order..."))

    def _collecting(self, order) -> None:
        self._order = order
        self.order_qr = order.qr_payload
        self.order_status = _("Waiting for {amount} (order {order_id})").format(
            amount=format_fen(order.amount_fen), order_id=order.order_id)
        self._poll = Clock.schedule_interval(self._check_order, ORDER_POLL_S)

    def _stop_poll(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None

    def _check_order(self, _dt: float) -> None:
        if self._order is None or self._polling:
            return
        self._polling = True
        self.app.runner.run(self.wallet.order_status(self._order.order_id), self._order_seen,
                            self._order_failed)

    def _order_failed(self, exc: BaseException) -> None:
        self._polling = False
        self.show_error(exc)

    def _order_seen(self, order) -> None:
        self._polling = False
        if self._order is None or order.order_id != self._order.order_id:
            return
        if order.status == "created":
            return
        self._stop_poll()
        self.order_qr = ""
        if order.status == "paid":
            self.order_status = _("Paid {amount} (order {order_id}, payment {payment_id})"
                                  ).format(amount=format_fen(order.amount_fen),
                                           order_id=order.order_id, payment_id=order.payment_id)
            self.load_receipts()
        else:
            self.order_status = _("Order {order_id}: {status}").format(
                order_id=order.order_id, status=present.status_text(order.status))

    # --- charge a customer's payment code -------------------------------------------------

    def on_code(self, text: str) -> None:
        """The one QR handler of the charge tab."""
        try:
            scanned = read_scanned(text)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            self.show_error(exc)
            return
        if not isinstance(scanned, CustomerCode):
            self.error = _("That is not a customer's payment code.")
            return
        self.error = ""
        self.customer_code = scanned.text
        if scanned.payer_wallet is None:       # a short code names no wallet
            self.code_status = _("Payment code {code}. Type the amount and charge.").format(
                code=scanned.text)
        else:
            self.code_status = _("Code of {wallet}. Type the amount and charge.").format(
                wallet=scanned.payer_wallet)

    def charge(self) -> None:
        if not self.customer_code:
            self.error = _("Scan the customer's payment code first.")
            return
        amount = self.guard(parse_yuan, self.ids.charge_amount.text)
        if amount is None:
            return
        # The scanned code stays until a charge succeeds: after a refusal (the PIN needed,
        # the funds short) the cashier charges again without asking for a new scan.
        self.run(self.wallet.charge(self.customer_code, amount), self._charged,
                 _("Charging..."))

    def _charged(self, result) -> None:
        self.customer_code = ""
        self.code_status = _("Charged {amount}: payment {payment_id}.").format(
            amount=format_fen(result.amount_fen), payment_id=result.payment_id)
        self.ids.charge_amount.text = ""
        self.load_receipts()

    # --- today's receipts -----------------------------------------------------------------

    def load_receipts(self) -> None:
        self.run(self.wallet.receipts_today(), self._receipts)

    def _receipts(self, receipts) -> None:
        self.totals = _("Today: {count} payment(s), {received} received, {refunded} refunded, "
                        "net {net}").format(count=receipts.count,
                                            received=format_fen(receipts.received_fen),
                                            refunded=format_fen(receipts.refunded_fen),
                                            net=format_fen(receipts.net_fen))
        rows = self.ids.receipt_rows
        rows.clear_widgets()
        for row in present.history_rows(receipts.items, self.wallet.wallet_id):
            rows.add_widget(HistoryRowLabel(text=row.text))
