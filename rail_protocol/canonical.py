"""The one canonical byte encoding of everything the rail signs.

JSON with object keys sorted, no insignificant whitespace, UTF-8, and no floats anywhere (a
float in a signed payload would let two parties read different amounts from the same
bytes). Signer and verifier both re-encode the parsed value, so what is verified is exactly
what is acted on.

This is RFC 8785 (the JSON Canonicalization Scheme) on every value the rail accepts, as
docs/canonical-json.md argues: integers stay within +-(2**53 - 1) (I-JSON, RFC 7493: exact
in an IEEE double, so a JavaScript verifier reads the same number), object keys hold no
character above U+FFFF (so sorting by code point, as here, is sorting by UTF-16 code unit,
as RFC 8785 does), and strings from outside hold no control characters (so no escaping
choice arises). Untrusted JSON is parsed strictly: duplicate keys are refused, never
resolved (a signed `amount_fen` must not be readable two ways).

orjson does the work where it is installed (the servers); elsewhere (the wallet on Android,
where python-for-android has no orjson recipe) the standard library's json does it, made to
give the very same bytes and the same refusals: a signature made on a phone must verify on
the server byte for byte. tests/unit/test_wallet_canonical.py compares the two."""

from __future__ import annotations

import json
import re

from rail_protocol.errors import RailError

try:
    import orjson
except ImportError:  # the wallet's build: the pure-Python encoder below
    orjson = None

INT_MIN, INT_MAX = -(2**53 - 1), 2**53 - 1
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1    # what orjson reads as an integer
MAX_DEPTH = 16
MAX_BODY_BYTES = 64 * 1024
MAX_STRING_CHARS = 4096
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")      # Unicode category Cc
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def check_value(value: object, depth: int = 0) -> None:
    """Refuse what the canonical encoding cannot carry: floats, huge ints, odd types."""
    _walk(value, depth, untrusted=False)


def _walk(value: object, depth: int, *, untrusted: bool) -> int:
    """Check `value` (and, when `untrusted`, its strings); the number of object members."""
    if depth > MAX_DEPTH:
        raise RailError("malformed_json", "JSON nested too deeply")
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, str):
        if untrusted:
            _check_text(value)
        return 0
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise RailError("invalid_field", "integer outside +-(2**53 - 1), what JSON "
                                             "carries exactly")
        return 0
    if isinstance(value, float):
        raise RailError("float_not_allowed", "floats are not allowed; amounts are integer fen")
    if isinstance(value, dict):
        members = len(value)
        for key, item in value.items():
            if not isinstance(key, str):
                raise RailError("malformed_json", "object keys must be strings")
            if _ASTRAL.search(key):
                raise RailError("invalid_field", "object keys may not hold characters above "
                                                 "U+FFFF")
            if untrusted:
                _check_text(key)
            members += _walk(item, depth + 1, untrusted=untrusted)
        return members
    if isinstance(value, (list, tuple)):
        return sum(_walk(item, depth + 1, untrusted=untrusted) for item in value)
    raise RailError("malformed_json", f"type {type(value).__name__} cannot be encoded")


def _check_text(text: str) -> None:
    if len(text) > MAX_STRING_CHARS:
        raise RailError("invalid_field", f"a string is longer than {MAX_STRING_CHARS} "
                                         "characters")
    if _CONTROL.search(text):
        raise RailError("invalid_field", "strings may not contain control characters "
                                         "(U+0000-U+001F, U+007F-U+009F)")


def check_text(text: str) -> None:
    """The rule for a string that comes from outside (a path, a query value): bounded, no
    control characters."""
    _check_text(text)


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
    """Parse untrusted JSON strictly: bounded size, valid UTF-8, no floats, no duplicate
    keys, no control characters in strings."""
    if len(raw) > max_bytes:
        raise RailError("payload_too_large", f"body over {max_bytes} bytes")
    if orjson is not None:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RailError("malformed_json", f"not valid JSON: {exc}") from None
    else:
        value = python_loads(raw)
    members = _walk(value, 0, untrusted=True)
    # Every ':' outside a string separates one object member: fewer members parsed than
    # written means a key came twice and one of its values was silently dropped.
    if members != _JSON_STRING.sub(b"", raw).count(b":"):
        raise RailError("malformed_json", "an object has a duplicate key")
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
        if INT64_MIN <= number <= UINT64_MAX:
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
