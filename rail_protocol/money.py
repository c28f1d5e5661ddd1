"""Money on the rail: integer fen (1 yuan = 100 fen), currency CNY (ISO 4217 numeric 156).

There is no Money class to wrap: an amount is a plain `int` that has passed `parse_fen`.
Floats, strings, booleans, negatives and absurd values never get in."""

from __future__ import annotations

from rail_protocol.errors import RailError

CURRENCY = "CNY"
CURRENCY_NUMERIC = "156"
FEN_PER_YUAN = 100
# Ceiling on any single amount or balance: 10 trillion yuan. Far above M0, far below 2**63.
MAX_FEN = 10**15


def parse_fen(value: object, *, field: str = "amount_fen", allow_zero: bool = False) -> int:
    """Return `value` as fen, or raise `invalid_amount`. The one gate every amount passes."""
    if isinstance(value, bool) or not isinstance(value, int):
        kind = type(value).__name__
        raise RailError("invalid_amount", f"{field} must be an integer number of fen, not {kind}")
    if value < 0:
        raise RailError("invalid_amount", f"{field} must not be negative")
    if value == 0 and not allow_zero:
        raise RailError("invalid_amount", f"{field} must be greater than zero")
    if value > MAX_FEN:
        raise RailError("invalid_amount", f"{field} exceeds the ceiling of {MAX_FEN} fen")
    return value


def yuan(whole_yuan: int) -> int:
    """Fen for a whole number of yuan: `yuan(2000) == 200_000`. For limits and fixtures."""
    return parse_fen(whole_yuan * FEN_PER_YUAN, field="yuan", allow_zero=True)


def format_fen(fen: int) -> str:
    """'¥1,234.05' style text for people, from integer fen, with no float on the way."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}¥{whole:,}.{part:02d}"
