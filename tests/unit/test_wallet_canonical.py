"""The canonical encoding without orjson (the wallet's Android build has no orjson): the
pure-Python encoder and parser give orjson's very bytes and the same refusals."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rail_protocol import canonical
from rail_protocol.canonical import (
    INT_MAX,
    INT_MIN,
    canonical_bytes,
    parse_json,
    python_canonical_bytes,
    python_loads,
)
from rail_protocol.errors import RailError

orjson = pytest.importorskip("orjson")
pytestmark = pytest.mark.unit

# Every code point, surrogates included: a lone surrogate must be refused alike.
any_text = st.text(st.characters() | st.characters(categories=["Cs"]) | st.sampled_from(
    "\x00\x1f\x7f\"\\/\u2028\ufeff中文😀"), max_size=12)
ints = st.one_of(st.integers(INT_MIN, INT_MAX), st.integers(-(2**70), 2**70),
                 st.sampled_from([INT_MIN, INT_MAX, INT_MIN - 1, INT_MAX + 1, 2**64, 0, -1]))
scalars = st.one_of(st.none(), st.booleans(), ints, any_text,
                    st.floats(allow_nan=False) | st.just(float("nan")))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(any_text, inner, max_size=4)), max_leaves=20)


def outcome(encode, value):
    """The bytes, or the refusal's code."""
    try:
        return encode(value)
    except RailError as exc:
        return ("refused", exc.code)


def with_orjson(value):
    return outcome(canonical_bytes, value)


def without_orjson(value):
    saved = canonical.orjson
    canonical.orjson = None
    try:
        return outcome(canonical_bytes, value)
    finally:
        canonical.orjson = saved


@settings(max_examples=600, deadline=None)
@given(values)
def test_both_encoders_give_the_same_bytes_or_the_same_refusal(value):
    assert without_orjson(value) == with_orjson(value)


SAMPLES = [
    {"b": 1, "a": [1, 2, {"é": "中文", "emoji": "😀"}], "": True, "\uffff": False, "Z": "z"},
    "\x00\x01\x1f\x7f\u2028\u2029\"\\/\b\f\n\r\t",
    "元¥€ 支付 ✓", INT_MIN, INT_MAX, [], {}, [[[[[]]]]], (1, "two"),
    {"nested": {"deeper": {"amount_fen": 12_345, "memo": "午饭 lunch"}}},
]
REFUSED = [
    (1.0, "float_not_allowed"), ({"a": 0.5}, "float_not_allowed"),
    (INT_MAX + 1, "invalid_field"), (INT_MIN - 1, "invalid_field"), (2**80, "invalid_field"),
    ({1: "x"}, "malformed_json"), ({"x": {1, 2}}, "malformed_json"), (b"bytes", "malformed_json"),
    ("\ud800", "malformed_json"), ({"\udfff": 1}, "malformed_json"),
    ([[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]], "malformed_json"),
    ({"😀": 1}, "invalid_field"), (2**53, "invalid_field"), (-(2**53), "invalid_field"),
]


@pytest.mark.parametrize("value", SAMPLES)
def test_chosen_values_encode_alike_and_sorted(value):
    encoded = with_orjson(value)
    assert without_orjson(value) == encoded
    assert python_canonical_bytes(value) == encoded
    assert json.loads(encoded) == (list(value) if isinstance(value, tuple) else value)


@pytest.mark.parametrize(("value", "code"), REFUSED)
def test_refusals_alike(value, code):
    assert with_orjson(value) == ("refused", code)
    assert without_orjson(value) == ("refused", code)


def parsed(loads, raw):
    try:
        return loads(raw)
    except RailError as exc:
        return ("refused", exc.code)


def parse_both(raw: bytes):
    first = parsed(parse_json, raw)
    saved = canonical.orjson
    canonical.orjson = None
    try:
        second = parsed(parse_json, raw)
    finally:
        canonical.orjson = saved
    return first, second


RAW = [
    b'{"a":1,"b":[true,false,null],"c":"\\u4e2d\\u6587"}', b' {"a" : 1 }\n', b"[]", b"-0",
    b"9223372036854775807", b"9223372036854775808", b"18446744073709551615",
    b"18446744073709551616", b"-9223372036854775809", b"1" * 400, b"1.5", b"1e2", b"1E400",
    b"NaN", b"Infinity", b"-Infinity", b'"\\ud800"', b'"\\udc00"', b'"\\ud83d\\ude00"',
    b'"\xff"', b'"a\x01"', b"\xef\xbb\xbf{}", b"[1,]", b'{"a":1,"a":2}', b"", b"  ", b"{",
    b"[" * 20 + b"]" * 20, b"[" * 2000 + b"]" * 2000, b'{"\xe4\xb8\xad":"\xe6\x96\x87"}',
    b'"\\u0000"', b"tru", b"01", b'"\\x"',
]


@pytest.mark.parametrize("raw", RAW)
def test_both_parsers_answer_alike(raw):
    first, second = parse_both(raw)
    assert first == second


@settings(max_examples=400, deadline=None)
@given(st.one_of(values.map(lambda v: json.dumps(v, ensure_ascii=False, default=str)
                            .encode("utf-8", "surrogatepass")),
                 st.binary(max_size=40),
                 st.text(alphabet='{}[],:"\\u0123456789.eE-+ tfnaulrsd\ud800', max_size=30)
                 .map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_both_parsers_answer_alike_on_any_bytes(raw):
    first, second = parse_both(raw)
    assert first == second


def test_python_loads_alone_refuses_what_orjson_refuses():
    with pytest.raises(RailError) as info:
        python_loads(b"NaN")
    assert info.value.code == "malformed_json"
