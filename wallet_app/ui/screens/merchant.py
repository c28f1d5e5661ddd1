"""Merchant mode: collect with a QR for an amount (an order, watched until paid), charge a
customer's payment code, and today's receipts."""

from __future__ import annotations

from kivy.clock import Clock
from kivy.properties import StringProperty

from rail_protocol.money import format_fen
from wallet_app.core import present
from wallet_app.core.amounts import parse_yuan
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
        self.shop_name = merchant.get("name", "Merchant")
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
        self.run(self.wallet.collect(amount, description), self._collecting, "Creating the order...")

    def _collecting(self, order) -> None:
        self._order = order
        self.order_qr = order.qr_payload
        self.order_status = f"Waiting for {format_fen(order.amount_fen)} (order {order.order_id})"
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
            self.order_status = (f"Paid {format_fen(order.amount_fen)} "
                                 f"(order {order.order_id}, payment {order.payment_id})")
            self.load_receipts()
        else:
            self.order_status = f"Order {order.order_id}: {order.status}"

    # --- charge a customer's payment code -------------------------------------------------

    def on_code(self, text: str) -> None:
        """The one QR handler of the charge tab."""
        try:
            scanned = read_scanned(text)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            self.show_error(exc)
            return
        if not isinstance(scanned, CustomerCode):
            self.error = "That is not a customer's payment code."
            return
        self.error = ""
        self.customer_code = scanned.text
        self.code_status = f"Code of {scanned.payer_wallet}. Type the amount and charge."

    def charge(self) -> None:
        if not self.customer_code:
            self.error = "Scan the customer's payment code first."
            return
        amount = self.guard(parse_yuan, self.ids.charge_amount.text)
        if amount is None:
            return
        code, self.customer_code = self.customer_code, ""
        self.run(self.wallet.charge(code, amount), self._charged, "Charging...")

    def _charged(self, result) -> None:
        self.code_status = f"Charged {format_fen(result.amount_fen)}: payment {result.payment_id}."
        self.ids.charge_amount.text = ""
        self.load_receipts()

    # --- today's receipts -----------------------------------------------------------------

    def load_receipts(self) -> None:
        self.run(self.wallet.receipts_today(), self._receipts)

    def _receipts(self, receipts) -> None:
        self.totals = (f"Today: {receipts.count} payment(s), {format_fen(receipts.received_fen)}"
                       f" received, {format_fen(receipts.refunded_fen)} refunded, net "
                       f"{format_fen(receipts.net_fen)}")
        rows = self.ids.receipt_rows
        rows.clear_widgets()
        for row in present.history_rows(receipts.items, self.wallet.wallet_id):
            rows.add_widget(HistoryRowLabel(text=row.text))
