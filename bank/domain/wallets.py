"""Wallets, their KYC classes and limits, and what a debit or a credit may do.

The rules decide; they never touch a database. A service loads the wallet's state (with its
row locked), asks `plan_debit` / `plan_credit`, and writes exactly what the plan says."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rail_protocol.errors import RailError
from rail_protocol.money import parse_fen, yuan

CHINA_UTC_OFFSET_MS = 8 * 3600 * 1000
DAY_MS = 86_400_000
PERSONAL, MERCHANT = "personal", "merchant"
OPEN, CLOSED = "open", "closed"
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
_MCC = re.compile(r"^[0-9]{4}$")
_ID_NUMBER = re.compile(r"^[0-9]{17}[0-9X]$")  # PRC resident identity card number


@dataclass(frozen=True, slots=True)
class ClassLimits:
    """Caps of one KYC class, in fen; None means no cap (class 1)."""

    kyc_class: int
    balance_cap_fen: int | None
    per_payment_cap_fen: int | None
    daily_cap_fen: int | None

    def to_dict(self) -> dict:
        return {"kyc_class": self.kyc_class, "balance_cap_fen": self.balance_cap_fen,
                "per_payment_cap_fen": self.per_payment_cap_fen,
                "daily_cap_fen": self.daily_cap_fen}


# The e-CNY pilot's figures, the defaults seeded into each bank's `wallet_classes` table.
# They are data: an operator changes them in the table, not here.
DEFAULT_CLASS_LIMITS: dict[int, ClassLimits] = {
    4: ClassLimits(4, yuan(10_000), yuan(2_000), yuan(5_000)),    # phone number only
    3: ClassLimits(3, yuan(20_000), yuan(5_000), yuan(10_000)),   # + identity document
    2: ClassLimits(2, yuan(500_000), yuan(50_000), yuan(100_000)),  # + linked bank account
    1: ClassLimits(1, None, None, None),                           # in person: no caps
}


def china_day(at_ms: int) -> int:
    """The calendar day (days since the epoch, Beijing time) that daily caps count within."""
    return (at_ms + CHINA_UTC_OFFSET_MS) // DAY_MS


def check_phone(phone: object) -> str:
    if not isinstance(phone, str) or not _PHONE.match(phone):
        raise RailError("invalid_field", "phone must be 6-15 digits, optionally with +")
    return phone


def check_id_number(id_number: object) -> str:
    if not isinstance(id_number, str) or not _ID_NUMBER.match(id_number):
        raise RailError("invalid_field", "id_number must be an 18-character resident ID number")
    return id_number


def check_merchant(merchant: object) -> dict:
    """A merchant has what a QR payload needs: a name, an MCC and a city."""
    if not isinstance(merchant, dict):
        raise RailError("invalid_field", "a merchant wallet needs merchant {name, mcc, city}")
    name, mcc, city = merchant.get("name"), merchant.get("mcc"), merchant.get("city")
    if not isinstance(name, str) or not 1 <= len(name) <= 25:
        raise RailError("invalid_field", "merchant name must be 1-25 characters")
    if not isinstance(mcc, str) or not _MCC.match(mcc):
        raise RailError("invalid_field", "merchant mcc must be 4 digits")
    if not isinstance(city, str) or not 1 <= len(city) <= 15:
        raise RailError("invalid_field", "merchant city must be 1-15 characters")
    return {"name": name, "mcc": mcc, "city": city}


# The kinds of transaction rows whose money, out of a wallet, may come back to it while the
# row is `processing`: a payment to another bank (refused), a hold or a voucher (voided,
# expired, released in part). A credit to the wallet counts them (`pending_out_fen`), so what
# comes back always fits under the balance cap.
MAY_COME_BACK = ("interbank_out", "hold", "voucher", "purse")


@dataclass(slots=True)
class WalletState:
    """What the rules need to know of a wallet, read with its row locked."""

    wallet_id: str
    status: str
    kyc_class: int
    balance_fen: int
    day: int
    spent_today_fen: int
    topup_on_use: bool = False
    deposit_account: str | None = None
    pending_out_fen: int = 0  # paid to other banks, not yet settled: may come back

    def spent_on(self, day: int) -> int:
        return self.spent_today_fen if self.day == day else 0


@dataclass(frozen=True, slots=True)
class DebitPlan:
    """How a payment of `amount_fen` is paid: from the wallet, after pulling
    `pulled_from_deposit_fen` from the linked deposit account (top-up on use)."""

    amount_fen: int
    pulled_from_deposit_fen: int
    balance_after_fen: int
    day: int
    spent_today_after_fen: int


@dataclass(frozen=True, slots=True)
class CreditPlan:
    """How a credit lands: `to_wallet_fen` in the wallet, `swept_to_deposit_fen` past the
    balance cap to the linked deposit account (the waterfall)."""

    to_wallet_fen: int
    swept_to_deposit_fen: int


def plan_debit(
    wallet: WalletState,
    limits: ClassLimits,
    amount_fen: int,
    at_ms: int,
    deposit_available_fen: int = 0,
) -> DebitPlan:
    """Decide a debit, first refusal wins: closed, per-payment cap, daily cap, then funds
    (pulling the shortfall from the deposit account when top-up on use is on)."""
    amount = parse_fen(amount_fen)
    if wallet.status != OPEN:
        raise RailError("wallet_closed")
    if limits.per_payment_cap_fen is not None and amount > limits.per_payment_cap_fen:
        raise RailError("per_payment_cap_exceeded",
                        f"class {limits.kyc_class} pays at most {limits.per_payment_cap_fen} "
                        f"fen at a time")
    day = china_day(at_ms)
    spent = wallet.spent_on(day)
    if limits.daily_cap_fen is not None and spent + amount > limits.daily_cap_fen:
        raise RailError("daily_cap_exceeded",
                        f"class {limits.kyc_class} pays at most {limits.daily_cap_fen} fen a "
                        f"day; {spent} fen already paid today")
    pulled = 0
    if wallet.balance_fen < amount:
        shortfall = amount - wallet.balance_fen
        if not (wallet.topup_on_use and wallet.deposit_account):
            raise RailError("insufficient_funds")
        if deposit_available_fen < shortfall:
            raise RailError("insufficient_funds",
                            "the balance and the linked deposit account together are short")
        pulled = shortfall
    return DebitPlan(amount, pulled, wallet.balance_fen + pulled - amount, day, spent + amount)


def plan_credit(wallet: WalletState, limits: ClassLimits, amount_fen: int) -> CreditPlan:
    """Decide a credit: all of it, or up to the balance cap with the excess swept to the
    linked deposit account; with no account to sweep to, refuse before anything moves."""
    amount = parse_fen(amount_fen)
    if wallet.status != OPEN:
        raise RailError("wallet_closed")
    cap = limits.balance_cap_fen
    held = wallet.balance_fen + wallet.pending_out_fen
    if cap is None or held + amount <= cap:
        return CreditPlan(amount, 0)
    if not wallet.deposit_account:
        raise RailError("balance_cap_exceeded",
                        f"the payee's class {limits.kyc_class} holds at most {cap} fen")
    room = max(cap - held, 0)
    return CreditPlan(room, amount - room)


def class_after_upgrade(current: int, has_id: bool, has_account: bool) -> int:
    """KYC evidence raises the class (never lowers it): ID -> 3, ID + account -> 2.
    Class 1 needs a person at a branch, so only an operator grants it."""
    target = 2 if (has_id and has_account) else 3 if has_id else current
    return min(current, target)
