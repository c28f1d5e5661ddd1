"""The short payment code: 19 digits, shown as digits, a Code 128 barcode and a small QR
(version 1), like the codes Chinese wallets show at the till. The cashier's scanner reads any
of the three; the merchant's bank sends it, with the amount, to the payer's bank, which
resolves it and charges it once.

    8 BB SSSSSSSS D OOOOOOO
    | |  |        | one-time value: HMAC-SHA256(secret, "yrsc1:<minute>:<D>"), truncated
    | |  |        |   as HOTP does (RFC 4226) to 7 digits
    | |  |        D: the code's number within its minute, 0-4; plus 5 when the PIN was entered
    | |  the wallet's slot at its bank: 8 digits the bank assigned when the secret was registered
    | the payer's bank: its number in the rail's issuer table (like a card's BIN)
    the rail's mark

The secret is derived on the device from the wallet's signing key (nothing more to keep) and
registered once with the wallet's bank in a signed instruction. A code is made with no
network, and is good in the minute it was made and the next one (a code shown at 0:59 is
still charged at 1:10). The payer's bank books the charge under the instruction id
`sc.<minute>.<D>` of the wallet's key, so the rail's single-effect rule for instructions
makes each code single use. The PIN flag is the device's word, as it is in the signed code
(rail_protocol.payment_code): it is bound into the one-time value, so it cannot be flipped."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey

LENGTH = 19
MARK = "8"
MINUTE_MS = 60_000
CODES_PER_MINUTE = 5
OTP_DIGITS = 7
SECRET_BYTES = 32
_SHAPE = re.compile(r"^8(\d{2})(\d{8})(\d)(\d{7})$")
_ISSUER = re.compile(r"^\d{2}$")


@dataclass(frozen=True, slots=True)
class ShortCode:
    issuer: str        # two digits: the payer's bank
    slot: str          # eight digits: the wallet at that bank
    digit: int         # 0-9: the number within the minute, +5 with the PIN
    otp: str           # seven digits

    @property
    def pin_verified(self) -> bool:
        return self.digit >= CODES_PER_MINUTE

    @property
    def text(self) -> str:
        return f"{MARK}{self.issuer}{self.slot}{self.digit}{self.otp}"


def derive_secret(key: SigningKey) -> bytes:
    """The wallet's short-code secret, derived from its signing key: the device keeps one
    secret, and restoring the key restores the codes."""
    return hmac.new(key.secret_text().encode(), b"yuanrail short code secret v1",
                    hashlib.sha256).digest()


def minute_of(at_ms: int) -> int:
    return at_ms // MINUTE_MS


def one_time_value(secret: bytes, minute: int, digit: int) -> str:
    mac = hmac.new(secret, f"yrsc1:{minute}:{digit}".encode(), hashlib.sha256).digest()
    offset = mac[-1] & 0x0F
    number = int.from_bytes(mac[offset:offset + 4], "big") & 0x7FFF_FFFF
    return f"{number % 10**OTP_DIGITS:0{OTP_DIGITS}d}"


def make_short_code(secret: bytes, issuer: str, slot: str, *, at_ms: int, sequence: int,
                    pin_verified: bool = False) -> ShortCode:
    """The `sequence`-th code (0-4) of the minute holding `at_ms`, made on the device."""
    if not _ISSUER.match(issuer) or not re.fullmatch(r"\d{8}", slot):
        raise ValueError("issuer is 2 digits and slot 8")
    if not 0 <= sequence < CODES_PER_MINUTE:
        raise ValueError(f"at most {CODES_PER_MINUTE} codes a minute")
    digit = sequence + (CODES_PER_MINUTE if pin_verified else 0)
    return ShortCode(issuer, slot, digit, one_time_value(secret, minute_of(at_ms), digit))


def is_short_code(text: object) -> bool:
    return isinstance(text, str) and text.isascii() and _SHAPE.fullmatch(text) is not None


def parse_short_code(text: object) -> ShortCode:
    """The parts of a scanned or typed short code; says nothing yet about its value."""
    match = _SHAPE.fullmatch(text) if isinstance(text, str) and text.isascii() else None
    if match is None:
        raise RailError("payment_code_invalid", "not a short payment code of this rail")
    issuer, slot, digit, otp = match.groups()
    return ShortCode(issuer, slot, int(digit), otp)


def matching_minute(secret: bytes, code: ShortCode, now_ms: int) -> int | None:
    """The minute `code` was made in, if it was made with `secret` this minute or the last;
    None otherwise (compared in constant time)."""
    now = minute_of(now_ms)
    for minute in (now, now - 1):
        if hmac.compare_digest(one_time_value(secret, minute, code.digit), code.otp):
            return minute
    return None


def instruction_id(minute: int, digit: int) -> str:
    """The id the payer's bank books a short code's charge under (per wallet key)."""
    return f"sc.{minute}.{digit}"
