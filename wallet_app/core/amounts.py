"""Amounts a person types, to integer fen, and back, with no float on the way.

"12.5" -> 1250, "¥1,200" -> 120000, "3" -> 300. Refuses negatives, more than two decimals,
exponents, zero and anything above the rail's ceiling, each with a message a person can act
on."""

from __future__ import annotations

import re

from rail_protocol.money import FEN_PER_YUAN, MAX_FEN, format_fen
from wallet_app.core.errors import WalletError
from wallet_app.core.i18n import N_

_YUAN = re.compile(r"^([0-9]{1,13})(?:\.([0-9]{0,2}))?$")


def parse_yuan(text: object) -> int:
    """Integer fen from what a person typed in yuan."""
    if not isinstance(text, str):
        raise WalletError("invalid_amount", N_("type an amount in yuan, like 12.50"))
    cleaned = text.strip().replace(",", "").replace("¥", "").replace("￥", "").strip()
    if not cleaned:
        raise WalletError("invalid_amount", N_("type an amount in yuan, like 12.50"))
    match = _YUAN.match(cleaned)
    if match is None:
        raise WalletError("invalid_amount", N_("use digits and at most 2 decimals"))
    whole, part = match.group(1), (match.group(2) or "")
    fen = int(whole) * FEN_PER_YUAN + int(part.ljust(2, "0"))
    if fen == 0:
        raise WalletError("invalid_amount", N_("the amount must be more than zero"))
    if fen > MAX_FEN:
        raise WalletError("invalid_amount", N_("the amount is too large"))
    return fen


def yuan_text(fen: int) -> str:
    """Plain yuan text for an input field: 1250 -> "12.50"."""
    whole, part = divmod(fen, FEN_PER_YUAN)
    return f"{whole}.{part:02d}"


__all__ = ["format_fen", "parse_yuan", "yuan_text"]
