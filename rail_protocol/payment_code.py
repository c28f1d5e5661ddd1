"""The customer-presented payment code: made on the phone with no network, shown as a QR,
scanned by the merchant's POS, charged once.

A code is a signed envelope of type `bank.payment_code` (the payer's wallet id, whether the
user entered the PIN), living at most 60 s, its id unique: the payer's bank treats the code
as the payment instruction itself, so the (signer, id) key that makes every instruction
single-effect also makes every code single-use. Text form: "YRPC1." + base64url(canonical
JSON of the envelope)."""

from __future__ import annotations

from rail_protocol.canonical import canonical_bytes, parse_json
from rail_protocol.envelope import Envelope, seal
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey, b64decode, b64encode

PREFIX = "YRPC1."
CODE_TYPE = "bank.payment_code"
MAX_CODE_TTL_MS = 60_000
DEFAULT_CODE_TTL_MS = 60_000


def make_code(key: SigningKey, wallet_id: str, *, pin_verified: bool = False,
              ttl_ms: int = DEFAULT_CODE_TTL_MS, created_ms: int | None = None) -> str:
    """Sign a fresh single-use code on the device; no network needed."""
    if not 1_000 <= ttl_ms <= MAX_CODE_TTL_MS:
        raise ValueError("a payment code lives 1-60 s")
    env = seal(key, CODE_TYPE, {"payer_wallet": wallet_id, "pin_verified": pin_verified},
               ttl_ms=ttl_ms, created_ms=created_ms)
    return PREFIX + b64encode(canonical_bytes(env.to_dict()))


def read_code(text: object) -> Envelope:
    """Parse a scanned code; says nothing yet about its signature or freshness."""
    if not isinstance(text, str) or not text.startswith(PREFIX) or len(text) > 1200:
        raise RailError("payment_code_invalid", "not a payment code of this rail")
    try:
        env = Envelope.parse(parse_json(b64decode(text[len(PREFIX):], field="code")))
    except RailError:
        raise RailError("payment_code_invalid", "the payment code is unreadable") from None
    if env.type != CODE_TYPE:
        raise RailError("payment_code_invalid", "not a payment code")
    if env.expires_ms - env.created_ms > MAX_CODE_TTL_MS:
        raise RailError("payment_code_invalid", "a payment code may live at most 60 s")
    if not isinstance(env.body.get("payer_wallet"), str) \
            or not isinstance(env.body.get("pin_verified"), bool):
        raise RailError("payment_code_invalid", "the payment code's body is malformed")
    return env
