"""Mandates (sub-wallets for merchant apps): the user authorises one merchant to charge up
to a cap per payment and per period, with no interaction, until the user revokes it."""

from __future__ import annotations

from dataclasses import dataclass

from bank.domain.wallets import china_day
from rail_protocol.errors import RailError
from rail_protocol.money import parse_fen

ACTIVE, REVOKED = "active", "revoked"
PERIODS = ("day", "month")


def period_key(period: str, at_ms: int) -> int:
    """Which period `at_ms` falls in (Beijing time): a day number, or year*12+month."""
    day = china_day(at_ms)
    if period == "day":
        return day
    import datetime

    date = datetime.date(1970, 1, 1) + datetime.timedelta(days=day)
    return date.year * 12 + date.month


@dataclass(frozen=True, slots=True)
class MandateTerms:
    per_payment_cap_fen: int
    period: str
    period_cap_fen: int


def check_terms(body: dict) -> MandateTerms:
    per_payment = parse_fen(body.get("per_payment_cap_fen"), field="per_payment_cap_fen")
    period_cap = parse_fen(body.get("period_cap_fen"), field="period_cap_fen")
    period = body.get("period")
    if period not in PERIODS:
        raise RailError("invalid_field", "period is 'day' or 'month'")
    if per_payment > period_cap:
        raise RailError("invalid_field", "the cap per payment exceeds the cap per period")
    return MandateTerms(per_payment, period, period_cap)


def plan_charge(status: str, terms: MandateTerms, used_fen: int, used_period_key: int,
                amount_fen: int, at_ms: int) -> tuple[int, int]:
    """Refuse a charge a mandate does not cover; else return (period key, used after)."""
    if status != ACTIVE:
        raise RailError("mandate_revoked")
    if amount_fen > terms.per_payment_cap_fen:
        raise RailError("mandate_cap_exceeded",
                        f"at most {terms.per_payment_cap_fen} fen per payment")
    key = period_key(terms.period, at_ms)
    used = used_fen if key == used_period_key else 0
    if used + amount_fen > terms.period_cap_fen:
        raise RailError("mandate_cap_exceeded",
                        f"{terms.period_cap_fen - used} fen left this {terms.period}")
    return key, used + amount_fen
