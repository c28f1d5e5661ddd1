"""The one canonical byte encoding of everything the rail signs.

JSON with object keys sorted by code point, no insignificant whitespace, UTF-8, integers in
the signed 64-bit range, and no floats anywhere (a float in a signed payload would let two
parties read different amounts from the same bytes). Signer and verifier both re-encode the
parsed value, so what is verified is exactly what is acted on.

orjson does the work where it is installed (the servers); elsewhere (the wallet on Android,
where python-for-android has no orjson recipe) the standard library's json does it, made to
give the very same bytes and the same refusals: a signature made on a phone must verify on
the server byte for byte. tests/unit/test_wallet_canonical.py compares the two."""

from __future__ import annotations

import json

from rail_protocol.errors import RailError

try:
    import orjson
except ImportError:  # the wallet's build: the pure-Python encoder below
    orjson = None

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
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
    """Encode `value` canonically. Equal values always give equal bytes; a string that is
    not valid Unicode (a lone surrogate) is refused as malformed_json."""
    check_value(value)
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            raise RailError("malformed_json", "a string is not valid Unicode") from None
    return python_canonical_bytes(value)


def parse_json(raw: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> object:
    """Parse untrusted JSON strictly: bounded size, valid UTF-8, no floats."""
    if len(raw) > max_bytes:
        raise RailError("payload_too_large", f"body over {max_bytes} bytes")
    if orjson is not None:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RailError("malformed_json", f"not valid JSON: {exc}") from None
    else:
        value = python_loads(raw)
    check_value(value)
    return value


# --- the pure-Python encoder and parser (orjson's behaviour, byte for byte) -------------------

def python_canonical_bytes(value: object) -> bytes:
    """What orjson.dumps(value, OPT_SORT_KEYS) gives, for a value check_value accepted:
    sort_keys orders by code point, as orjson does (UTF-8 byte order is code point order);
    both escape only '"', '\\' and controls below U+0020, in the same spellings."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                          allow_nan=False)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise RailError("malformed_json", "a string is not valid Unicode") from None


class _Refused(Exception):
    pass


def _parse_int(text: str) -> int | float:
    # orjson reads integers in [-2**63, 2**64 - 1] as ints and larger ones as floats
    # (infinity is refused), so a huge integer is refused as a float by both.
    if len(text.lstrip("-")) <= 20:
        number = int(text)
        if INT_MIN <= number <= UINT64_MAX:
            return number
    return _parse_float(text)


def _parse_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise _Refused("number is infinity when parsed as double")
    return number


def _parse_constant(name: str) -> object:
    raise _Refused(f"{name} is not JSON")


def python_loads(raw: bytes) -> object:
    """orjson.loads' answers with the standard library: UTF-8 only (no BOM), no NaN or
    Infinity, no lone surrogates (json would accept "\\ud800"), bounded nesting."""
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):
            raise _Refused("UTF-8 byte order mark (BOM) is not supported")
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_parse_constant)
    except (ValueError, _Refused, RecursionError) as exc:  # JSONDecodeError, UnicodeError
        raise RailError("malformed_json", f"not valid JSON: {exc}") from None
    _refuse_surrogates(value)
    return value


def _refuse_surrogates(value: object) -> None:
    """Walk without recursion (nesting is checked after this): every string must encode."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise RailError("malformed_json", "not valid JSON: lone surrogate") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
