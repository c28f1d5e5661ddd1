"""The one canonical byte encoding of everything the rail signs.

JSON with object keys sorted by code point, no insignificant whitespace, UTF-8, integers in
the signed 64-bit range, and no floats anywhere (a float in a signed payload would let two
parties read different amounts from the same bytes). Signer and verifier both re-encode the
parsed value, so what is verified is exactly what is acted on."""

from __future__ import annotations

import orjson

from rail_protocol.errors import RailError

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 16
MAX_BODY_BYTES = 64 * 1024


def check_value(value: object, depth: int = 0) -> None:
    """Refuse what the canonical encoding cannot carry: floats, huge ints, odd types."""
    if depth > MAX_DEPTH:
        raise RailError("malformed_json", "JSON nested too deeply")
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise RailError("invalid_field", "integer outside the signed 64-bit range")
        return
    if isinstance(value, float):
        raise RailError("float_not_allowed", "floats are not allowed; amounts are integer fen")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RailError("malformed_json", "object keys must be strings")
            check_value(item, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            check_value(item, depth + 1)
        return
    raise RailError("malformed_json", f"type {type(value).__name__} cannot be encoded")


def canonical_bytes(value: object) -> bytes:
    """Encode `value` canonically. Equal values always give equal bytes."""
    check_value(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def parse_json(raw: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> object:
    """Parse untrusted JSON strictly: bounded size, valid UTF-8, no floats."""
    if len(raw) > max_bytes:
        raise RailError("payload_too_large", f"body over {max_bytes} bytes")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RailError("malformed_json", f"not valid JSON: {exc}") from None
    check_value(value)
    return value
