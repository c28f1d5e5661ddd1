"""View logic, apart from widgets: what each screen shows, as plain strings and rows.

Screens bind labels to these functions' results and hold no formatting of their own, so
what a person reads is unit-tested without Kivy. Every sentence is an English msgid, said in
the chosen language (`i18n`); the placeholders are named, so a translation may reorder them."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rail_protocol.money import format_fen
from wallet_app.core.client import ClassLimits, Mandate, Payment, WalletView
from wallet_app.core.i18n import N_, _

CLASS_NAMES = {1: N_("Class 1 (verified in person)"), 2: N_("Class 2 (ID and bank account)"),
               3: N_("Class 3 (ID)"), 4: N_("Class 4 (phone number only)")}
STATUS_TEXT = {"settled": N_("Done"), "processing": N_("Processing"), "rejected": N_("Refused"),
               "pending": N_("Pending")}
KIND_TEXT = {"payment": N_("Payment"), "interbank_out": N_("Payment"),
             "interbank_in": N_("Payment"),
             "top_up": N_("Top-up"), "redeem": N_("Back to bank account"), "refund": N_("Refund")}


def short_id(wallet_id: str | None) -> str:
    """'yangtze.149310e9f8d0e559' -> 'yangtze.1493...e559': fits a phone's line."""
    if not wallet_id:
        return ""
    bank, _, rest = wallet_id.partition(".")
    return wallet_id if len(rest) <= 10 else f"{bank}.{rest[:4]}...{rest[-4:]}"


def cap(fen: int | None) -> str:
    return _("no limit") if fen is None else format_fen(fen)


def limits_text(limits: ClassLimits) -> str:
    """'Holds up to ¥10,000.00, pays up to ¥2,000.00 at a time and ¥5,000.00 a day.'"""
    if limits.balance_cap_fen is None:
        return _("No limits on balance or payments.")
    return _("Holds up to {balance}, pays up to {per_payment} at a time and {daily} a day."
             ).format(balance=cap(limits.balance_cap_fen),
                      per_payment=cap(limits.per_payment_cap_fen),
                      daily=cap(limits.daily_cap_fen))


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
        left = _("No daily limit")
    else:
        left = _("Left today: {left} of {cap}").format(
            left=format_fen(view.daily_left_fen), cap=format_fen(view.limits.daily_cap_fen or 0))
    merchant = ""
    if view.merchant is not None:
        merchant = f"{view.merchant.name}, {view.merchant.city}"
    return HomeView(
        balance=format_fen(view.balance_fen),
        kyc_class=(_(CLASS_NAMES[view.kyc_class]) if view.kyc_class in CLASS_NAMES
                   else _("Class {number}").format(number=view.kyc_class)),
        limits=limits_text(view.limits), today_left=left, wallet_id=view.wallet_id,
        merchant=merchant,
        topup_on_use=(_("Top-up on use: on") if view.topup_on_use
                      else _("Top-up on use: off")))


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
    refused: bool = False   # nothing moved: shown without a sign, never as money in

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
        kind = (_(KIND_TEXT[item.kind]) if item.kind in KIND_TEXT
                else item.kind.replace("_", " ").title())
        if item.is_refund:
            title = (_("Refund from {who}") if incoming else _("Refund to {who}")).format(who=who)
            if item.refund_of:
                title += _(" (of {payment_id})").format(payment_id=item.refund_of)
        elif item.kind in ("top_up", "redeem"):
            title = kind
        elif item.memo == "payment code":
            title = (_("Payment code: from {who}") if incoming
                     else _("Payment code: to {who}")).format(who=who)
        else:
            title = (_("From {who}") if incoming else _("To {who}")).format(who=who)
        refused = item.status == "rejected"
        sign = "" if refused else ("+" if incoming or item.kind == "top_up" else "-")
        lines = tuple(_("refunded {amount} ({payment_id}, {status})").format(
                          amount=format_fen(r.amount_fen), payment_id=r.payment_id,
                          status=status_text(r.status))
                      for r in refunds.get(item.payment_id, []))
        rows.append(HistoryRow(item.payment_id, title, f"{sign}{format_fen(item.amount_fen)}",
                               status_text(item.status), _when(item.created_ms),
                               incoming and not refused, lines, item.refund_of, refused))
    return rows


def status_text(status: str) -> str:
    return _(STATUS_TEXT[status]) if status in STATUS_TEXT else status


MANDATE_STATES = {"active": N_("active"), "revoked": N_("revoked")}
PERIODS = {"day": N_("day"), "week": N_("week"), "month": N_("month"), "year": N_("year")}


def mandate_text(mandate: Mandate) -> str:
    name = mandate.merchant_name or mandate.merchant_wallet
    state = _(MANDATE_STATES.get(mandate.status, mandate.status))
    return _("{name} ({state})\nUp to {per_payment} a payment, {period_cap} a {period}; "
             "used {used}, left {left}").format(
        name=name, state=state, per_payment=format_fen(mandate.per_payment_cap_fen),
        period_cap=format_fen(mandate.period_cap_fen),
        period=_(PERIODS.get(mandate.period, mandate.period)),
        used=format_fen(mandate.used_this_period_fen),
        left=format_fen(mandate.left_this_period_fen))


def countdown(expires_ms: int, now_ms: int) -> str:
    seconds = max((expires_ms - now_ms) // 1000, 0)
    return _("Refreshes in {seconds} s").format(seconds=seconds)


def receipt_lines(item: Payment, me: str, names: dict[str, str] | None = None) -> list[str]:
    """A payment's receipt, a line each: who, how much, when, its status and its ids."""
    names = names or {}
    incoming = item.payee_wallet == me
    other = item.payer_wallet if incoming else item.payee_wallet
    who = names.get(other or "", other or "")
    lines = [(_("From: {who}") if incoming else _("To: {who}")).format(who=who)] if who else []
    lines += [_("Amount: {amount}").format(amount=format_fen(item.amount_fen)),
              _("Status: {status}").format(status=status_text(item.status)),
              _("Time: {when}").format(when=_when(item.created_ms)),
              _("Payment: {payment_id}").format(payment_id=item.payment_id)]
    if item.order_id:
        lines.append(_("Order: {order_id}").format(order_id=item.order_id))
    if item.memo:
        lines.append(_("Note: {memo}").format(memo=item.memo))
    if item.refund_of:
        lines.append(_("Refund of: {payment_id}").format(payment_id=item.refund_of))
    return lines
