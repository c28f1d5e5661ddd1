"""Conditional payments as two-phase transfers: money moved out of a wallet into the bank's
`held` account (pending), then, exactly once, posted to the payee (all or part, the rest
back), voided back, or expired back at the deadline. Two kinds:

- a hold: a prepaid amount frozen for one merchant (a ride, a deposit). The party named by
  `release_by` releases it: "merchant" (the merchant captures the final amount, as for a
  ride) or "payer" (the payer releases it on delivery, as an escrow). The merchant may void
  it; past the deadline it returns to the payer.
- a purse: a wallet's offline reserve (rail_protocol/offline.py), paid out to the receivers
  of its signed notes as they sync, the rest back to the wallet after the sync deadline.
- a voucher: money an issuer's wallet gives a holder to spend at merchants, in parts, only at
  merchants of one category (MCC) when it names one; what is unspent at the deadline returns
  to the issuer. The issuer may void (recall) the unspent rest.

Plain rules, no I/O: each decision takes the hold's state as read under its lock and answers
how much goes where, or refuses."""

from __future__ import annotations

from dataclasses import dataclass

from rail_protocol.errors import RailError
from rail_protocol.money import parse_fen

HOLD, VOUCHER, PURSE = "hold", "voucher", "purse"
HELD_KINDS = (HOLD, VOUCHER, PURSE)     # each pending one has a `processing` row of its kind
PENDING, POSTED, VOIDED, EXPIRED = "pending", "posted", "voided", "expired"
RELEASED_BY = ("merchant", "payer")
MIN_LIFE_MS = 60_000                    # a deadline at least a minute away
MAX_LIFE_MS = 90 * 24 * 3600 * 1000     # and at most 90 days


@dataclass
class HoldState:
    hold_id: str
    kind: str
    funder: str                 # the payer of a hold, the issuer of a voucher
    payee: str | None           # a hold's merchant; None for a voucher
    holder: str | None          # a voucher's holder; None for a hold
    amount_fen: int
    remaining_fen: int
    mcc: str | None
    deadline_ms: int
    release_by: str | None
    status: str


@dataclass(frozen=True, slots=True)
class Movement:
    """Where a decision sends money out of `held`: to the payee, back to the funder."""

    to_payee_fen: int
    back_fen: int
    status_after: str


def check_deadline(deadline_ms: object, at_ms: int, min_life_ms: int = MIN_LIFE_MS) -> int:
    if type(deadline_ms) is not int \
            or not at_ms + min_life_ms <= deadline_ms <= at_ms + MAX_LIFE_MS:
        raise RailError("invalid_field", f"deadline_ms must be {min_life_ms // 1000} s to 90 "
                                         "days ahead")
    return deadline_ms


def check_release_by(value: object) -> str:
    if value not in RELEASED_BY:
        raise RailError("invalid_field", "release_by is 'merchant' or 'payer'")
    return value


def check_mcc(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 4 or not value.isdigit():
        raise RailError("invalid_field", "mcc is 4 digits (ISO 18245)")
    return value


def _open(hold: HoldState, at_ms: int) -> None:
    if hold.status != PENDING:
        raise RailError("hold_closed", f"the {hold.kind} is {hold.status}")
    if at_ms >= hold.deadline_ms:
        raise RailError("hold_expired", f"the {hold.kind}'s deadline has passed")


def decide_release(hold: HoldState, signer: str, amount_fen: object, at_ms: int) -> Movement:
    """A hold released by the party it names: `amount_fen` to the merchant, the rest back to
    the payer; the hold is posted, once."""
    if hold.kind != HOLD:
        raise RailError("unknown_hold", "a voucher is spent, not released")
    releaser = hold.payee if hold.release_by == "merchant" else hold.funder
    if signer != releaser:
        raise RailError("signer_mismatch", f"this hold is released by the {hold.release_by}")
    _open(hold, at_ms)
    amount = parse_fen(amount_fen)
    if amount > hold.remaining_fen:
        raise RailError("release_exceeds_hold", f"{amount} fen is more than the "
                        f"{hold.remaining_fen} fen held")
    return Movement(amount, hold.remaining_fen - amount, POSTED)


def decide_void(hold: HoldState, signer: str, at_ms: int) -> Movement:
    """Everything still held back to the funder: a hold voided by its merchant, a voucher's
    unspent rest recalled by its issuer."""
    allowed = hold.payee if hold.kind == HOLD else hold.funder
    if signer != allowed:
        raise RailError("signer_mismatch", "a hold is voided by its merchant, a voucher by "
                                           "its issuer")
    _open(hold, at_ms)
    return Movement(0, hold.remaining_fen, VOIDED)


def decide_spend(voucher: HoldState, signer: str, payee_mcc: str | None, amount_fen: object,
                 at_ms: int) -> Movement:
    """The holder spends part of a voucher at a merchant of the voucher's category; spent to
    the last fen, it is posted."""
    if voucher.kind != VOUCHER:
        raise RailError("unknown_hold", "a hold is released, not spent")
    if signer != voucher.holder:
        raise RailError("signer_mismatch", "only the voucher's holder spends it")
    _open(voucher, at_ms)
    if voucher.mcc is not None and payee_mcc != voucher.mcc:
        raise RailError("mcc_not_allowed", f"this voucher is spent only at merchants of "
                                           f"category {voucher.mcc}")
    amount = parse_fen(amount_fen)
    if amount > voucher.remaining_fen:
        raise RailError("release_exceeds_hold", f"{amount} fen is more than the "
                        f"{voucher.remaining_fen} fen left on the voucher")
    left = voucher.remaining_fen - amount
    return Movement(amount, 0, POSTED if left == 0 else PENDING)


def decide_claim(purse: HoldState, amount_fen: int, at_ms: int) -> Movement:
    """A receiver syncs an offline note of this purse (its number unused, checked where the
    notes are kept): paid out of what the reserve still holds, or a double spend."""
    if purse.kind != PURSE:
        raise RailError("offline_invalid", "not an offline purse")
    _open(purse, at_ms)
    if amount_fen > purse.remaining_fen:
        raise RailError("offline_double_spend", f"the reserve holds {purse.remaining_fen} fen, "
                                                f"not {amount_fen}")
    left = purse.remaining_fen - amount_fen
    return Movement(amount_fen, 0, POSTED if left == 0 else PENDING)


def decide_expiry(hold: HoldState, at_ms: int) -> Movement | None:
    """At or past its deadline a pending hold or voucher returns what it holds; None when
    it is not due (or already closed)."""
    if hold.status != PENDING or at_ms < hold.deadline_ms:
        return None
    return Movement(0, hold.remaining_fen, EXPIRED)
