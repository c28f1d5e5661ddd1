"""View logic, apart from widgets: what each screen shows, as plain strings and rows.

Screens bind labels to these functions' results and hold no formatting of their own, so
what a person reads is unit-tested without Kivy."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rail_protocol.money import format_fen
from wallet_app.core.client import ClassLimits, Mandate, Payment, WalletView

CLASS_NAMES = {1: "Class 1 (verified in person)", 2: "Class 2 (ID and bank account)",
               3: "Class 3 (ID)", 4: "Class 4 (phone number only)"}
STATUS_TEXT = {"settled": "Done", "processing": "Processing", "rejected": "Refused",
               "pending": "Pending"}
KIND_TEXT = {"payment": "Payment", "interbank_out": "Payment", "interbank_in": "Payment",
             "top_up": "Top-up", "redeem": "Back to bank account", "refund": "Refund"}


def short_id(wallet_id: str | None) -> str:
    """'yangtze.149310e9f8d0e559' -> 'yangtze.1493...e559': fits a phone's line."""
    if not wallet_id:
        return ""
    bank, _, rest = wallet_id.partition(".")
    return wallet_id if len(rest) <= 10 else f"{bank}.{rest[:4]}...{rest[-4:]}"


def cap(fen: int | None) -> str:
    return "no limit" if fen is None else format_fen(fen)


def limits_text(limits: ClassLimits) -> str:
    """'Holds up to ¥10,000.00, pays up to ¥2,000.00 at a time and ¥5,000.00 a day.'"""
    if limits.balance_cap_fen is None:
        return "No limits on balance or payments."
    return (f"Holds up to {cap(limits.balance_cap_fen)}, pays up to "
            f"{cap(limits.per_payment_cap_fen)} at a time and {cap(limits.daily_cap_fen)} a day.")


@dataclass(frozen=True)
class HomeView:
    balance: str
    kyc_class: str
    limits: str
    today_left: str
    wallet_id: str
    merchant: str
    topup_on_use: str


def home_view(view: WalletView) -> HomeView:
    if view.daily_left_fen is None:
        left = "No daily limit"
    else:
        left = (f"Left today: {format_fen(view.daily_left_fen)} of "
                f"{format_fen(view.limits.daily_cap_fen or 0)}")
    merchant = ""
    if view.merchant is not None:
        merchant = f"{view.merchant.name}, {view.merchant.city}"
    return HomeView(
        balance=format_fen(view.balance_fen),
        kyc_class=CLASS_NAMES.get(view.kyc_class, f"Class {view.kyc_class}"),
        limits=limits_text(view.limits), today_left=left, wallet_id=view.wallet_id,
        merchant=merchant,
        topup_on_use=("Top-up on use: on" if view.topup_on_use else "Top-up on use: off"))


@dataclass(frozen=True)
class HistoryRow:
    """One line of the history list. `refund_lines` lists refunds of this payment."""

    payment_id: str
    title: str
    amount: str
    status: str
    when: str
    incoming: bool
    refund_lines: tuple[str, ...] = ()
    refund_of: str | None = None

    @property
    def text(self) -> str:
        lines = [f"{self.title}   {self.amount}   {self.status}", f"{self.when}  {self.payment_id}"]
        lines += [f"  {line}" for line in self.refund_lines]
        return "\n".join(lines)


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def history_rows(items: list[Payment], me: str, names: dict[str, str] | None = None
                 ) -> list[HistoryRow]:
    """Rows for `items` (newest first). A refund whose payment is on the page is shown
    under that payment ("refunded ¥30.00 (P12)"), and also as its own incoming row."""
    names = names or {}
    refunds: dict[str, list[Payment]] = {}
    for item in items:
        if item.refund_of:
            refunds.setdefault(item.refund_of, []).append(item)
    rows = []
    for item in items:
        incoming = item.payee_wallet == me
        other = item.payer_wallet if incoming else item.payee_wallet
        who = names.get(other or "", short_id(other))
        kind = KIND_TEXT.get(item.kind, item.kind.replace("_", " ").title())
        if item.is_refund:
            title = f"Refund from {who}" if incoming else f"Refund to {who}"
            if item.refund_of:
                title += f" (of {item.refund_of})"
        elif item.kind in ("top_up", "redeem"):
            title = kind
        elif item.memo == "payment code":
            title = f"Payment code: {'from' if incoming else 'to'} {who}"
        else:
            title = f"{'From' if incoming else 'To'} {who}"
        sign = "+" if incoming or item.kind == "top_up" else "-"
        lines = tuple(f"refunded {format_fen(r.amount_fen)} ({r.payment_id}, "
                      f"{STATUS_TEXT.get(r.status, r.status)})"
                      for r in refunds.get(item.payment_id, []))
        rows.append(HistoryRow(item.payment_id, title, f"{sign}{format_fen(item.amount_fen)}",
                               STATUS_TEXT.get(item.status, item.status), _when(item.created_ms),
                               incoming, lines, item.refund_of))
    return rows


def mandate_text(mandate: Mandate) -> str:
    name = mandate.merchant_name or mandate.merchant_wallet
    state = "active" if mandate.status == "active" else mandate.status
    return (f"{name} ({state})\nUp to {format_fen(mandate.per_payment_cap_fen)} a payment, "
            f"{format_fen(mandate.period_cap_fen)} a {mandate.period}; used "
            f"{format_fen(mandate.used_this_period_fen)}, left "
            f"{format_fen(mandate.left_this_period_fen)}")


def countdown(expires_ms: int, now_ms: int) -> str:
    seconds = max((expires_ms - now_ms) // 1000, 0)
    return f"Refreshes in {seconds} s"
