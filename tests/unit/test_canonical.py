"""One canonical encoding: sorted keys, no whitespace, no floats, bounded and strict parsing."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rail_protocol.canonical import (
    INT_MAX,
    INT_MIN,
    MAX_BODY_BYTES,
    MAX_DEPTH,
    canonical_bytes,
    check_value,
    parse_json,
)
from rail_protocol.errors import RailError

pytestmark = pytest.mark.unit

# What the rail accepts from outside: integers exact in a double, text without control
# characters, object keys within the Basic Multilingual Plane (docs/canonical-json.md).
ints = st.integers(min_value=INT_MIN, max_value=INT_MAX)
text = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=20)
keys = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=["Cc", "Cs"]),
               max_size=10)
scalars = st.one_of(st.none(), st.booleans(), ints, text)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=30,
)
dicts = st.dictionaries(
    keys,
    st.recursive(
        st.one_of(ints, text),
        lambda children: st.dictionaries(keys, children, max_size=4),
        max_leaves=15,
    ),
    max_size=8,
)


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(RailError) as caught:
        call(*args, **kwargs)
    return caught.value.code


def reinserted(value):
    """The same value with every object's keys inserted in reverse order."""
    if isinstance(value, dict):
        return {key: reinserted(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reinserted(item) for item in value]
    return value


def reference_encoding(value) -> bytes:
    """The standard library's compact, key-sorted JSON: an independent oracle."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_keys_are_sorted_and_there_is_no_whitespace():
    value = {"b": 1, "a": [1, 2, {"z": "x y", "y": None}], "c": True}
    assert canonical_bytes(value) == b'{"a":[1,2,{"y":null,"z":"x y"}],"b":1,"c":true}'


def test_keys_sort_by_code_point_not_by_locale():
    value = {"é": 1, "z": 2, "Z": 3, "a": 4, "中": 5}
    assert canonical_bytes(value) == '{"Z":3,"a":4,"z":2,"é":1,"中":5}'.encode()


def test_text_is_utf8_not_ascii_escaped():
    assert canonical_bytes({"name": "人民银行"}) == '{"name":"人民银行"}'.encode("utf-8")


@given(dicts)
def test_dicts_encode_to_the_same_bytes_whatever_the_insertion_order(value):
    assert canonical_bytes(reinserted(value)) == canonical_bytes(value)


@given(json_values)
def test_encoding_equals_compact_sorted_json(value):
    encoded = canonical_bytes(value)
    assert encoded == reference_encoding(value)
    outside_strings = re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', encoded)
    assert not re.search(rb"\s", outside_strings)


@given(json_values)
def test_canonical_bytes_round_trip_through_parse_json(value):
    encoded = canonical_bytes(value)
    if len(encoded) <= MAX_BODY_BYTES:
        assert canonical_bytes(parse_json(encoded)) == encoded
        assert parse_json(encoded) == value


@pytest.mark.parametrize(
    "value",
    [
        5.0,
        0.1,
        {"amount_fen": 5.0},
        [1, 2, 3.5],
        {"a": {"b": {"c": [1, {"d": -0.0}]}}},
        {"body": {"amount_fen": 100, "fee": 1e-9}},
        (1, 2.0),
    ],
)
def test_a_float_anywhere_is_refused(value):
    assert code_of(canonical_bytes, value) == "float_not_allowed"


@given(json_values, st.floats(allow_nan=False), st.data())
def test_a_float_planted_anywhere_is_refused(value, number, data):
    def plant(node):
        if isinstance(node, dict) and node and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(node)))
            return {**node, key: plant(node[key])}
        if isinstance(node, list) and node and data.draw(st.booleans()):
            index = data.draw(st.integers(0, len(node) - 1))
            return [*node[:index], plant(node[index]), *node[index + 1:]]
        return {"float": number} if data.draw(st.booleans()) else [number]

    assert code_of(canonical_bytes, plant(value)) == "float_not_allowed"


@pytest.mark.parametrize("value", [INT_MAX + 1, INT_MIN - 1, 2**63, {"a": [2**64]}])
def test_integers_beyond_what_a_double_holds_exactly_are_refused(value):
    assert code_of(canonical_bytes, value) == "invalid_field"
    assert code_of(parse_json, canonical_bytes_unchecked(value)) in ("invalid_field",
                                                                      "float_not_allowed")


def canonical_bytes_unchecked(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def test_integers_at_the_limits_are_accepted():
    assert (INT_MIN, INT_MAX) == (-(2**53 - 1), 2**53 - 1)
    assert canonical_bytes([INT_MIN, INT_MAX]) == f"[{INT_MIN},{INT_MAX}]".encode()


@pytest.mark.parametrize("value", [{1: "a"}, {"a": {None: 1}}, {"a": {1.5: 1}}])
def test_non_string_keys_are_refused(value):
    assert code_of(canonical_bytes, value) == "malformed_json"


@pytest.mark.parametrize("value", [b"bytes", {1, 2}, object(), {"a": {"b": bytearray(b"x")}}])
def test_values_json_cannot_carry_are_refused(value):
    assert code_of(canonical_bytes, value) == "malformed_json"


def test_nesting_deeper_than_the_limit_is_refused_and_at_the_limit_accepted():
    at_limit: object = 1
    for _ in range(MAX_DEPTH):
        at_limit = [at_limit]
    check_value(at_limit)
    assert canonical_bytes(at_limit) == b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH
    assert code_of(canonical_bytes, [at_limit]) == "malformed_json"
    raw = b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1)
    assert code_of(parse_json, raw) == "malformed_json"


def test_parse_json_refuses_oversized_bodies_with_payload_too_large():
    body = b'{"pad":"' + b"x" * (MAX_BODY_BYTES - 9) + b'"}'
    assert len(body) > MAX_BODY_BYTES
    error = pytest.raises(RailError, parse_json, body).value
    assert error.code == "payload_too_large"
    assert error.status == 413


def test_parse_json_accepts_a_body_of_exactly_the_limit():
    pads = (MAX_BODY_BYTES - 2) // 4_001
    body = b"[" + b",".join(b'"' + b"x" * 3_998 + b'"' for _ in range(pads))
    body += b',"' + b"y" * (MAX_BODY_BYTES - len(body) - 4) + b'"]'
    assert len(body) == MAX_BODY_BYTES
    assert parse_json(body)[0] == "x" * 3_998


def test_parse_json_honours_a_smaller_limit():
    assert code_of(parse_json, b"[1,2,3]", max_bytes=6) == "payload_too_large"
    assert parse_json(b"[1,2,3]", max_bytes=7) == [1, 2, 3]


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"{'a': 1}", b'{"a":1,}', b"NaN", b"Infinity", b"\xff\xfe", b'"\\ud800"',
     b"[1] [2]", b"undefined", b'{"a" 1}'],
)
def test_parse_json_refuses_invalid_json_with_malformed_json(raw):
    error = pytest.raises(RailError, parse_json, raw).value
    assert error.code == "malformed_json"
    assert error.status == 400


@pytest.mark.parametrize(
    "raw",
    [b"5.0", b'{"amount_fen":5.0}', b"1e3", b'[1,[2,{"x":-0.0}]]', b'{"a":{"b":1E-2}}'],
)
def test_parse_json_refuses_floats_with_float_not_allowed(raw):
    assert code_of(parse_json, raw) == "float_not_allowed"


def test_parse_json_keeps_integers_integers():
    value = parse_json(b'{"amount_fen":500,"n":-3}')
    assert value == {"amount_fen": 500, "n": -3}
    assert type(value["amount_fen"]) is int


# --- hostile input: one reading only --------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b'{"amount_fen":1,"amount_fen":100000}',
    b'{"body":{"payee_wallet":"a.b","payee_wallet":"c.d"}}',
    b'[{"a":1},{"b":2,"b":2}]',
    b'{"a":"x:y","a":"z"}',
])
def test_a_duplicate_key_is_refused_never_resolved(raw):
    assert code_of(parse_json, raw) == "malformed_json"


def test_colons_and_escaped_quotes_inside_strings_are_not_mistaken_for_members():
    value = parse_json(b'{"memo":"a:b \\":\\" c","k":{"x":"::"}}')
    assert value == {"memo": 'a:b ":" c', "k": {"x": "::"}}


@pytest.mark.parametrize("raw", [
    b'{"memo":"\\u0000"}', b'{"memo":"a\\nb"}', b'{"holder_name":"\\u007f"}',
    b'{"x\\u0001":1}', b'["\\u009f"]',
])
def test_control_characters_in_strings_are_refused(raw):
    assert code_of(parse_json, raw) == "invalid_field"


def test_an_overlong_string_is_refused():
    assert code_of(parse_json, b'{"memo":"' + b"x" * 5000 + b'"}') == "invalid_field"


def test_object_keys_above_the_basic_multilingual_plane_are_refused():
    assert code_of(parse_json, '{"😀":1}'.encode()) == "invalid_field"
    assert code_of(canonical_bytes, {"😀": 1}) == "invalid_field"


def utf16_sorted_reference(value) -> bytes:
    """RFC 8785's rules written out independently for the values the rail accepts: keys in
    UTF-16 code unit order, integers as ECMAScript prints them, strings with only '"' and
    '\\' escaped (no control characters reach here)."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return b"{" + b",".join(utf16_sorted_reference(k) + b":" + utf16_sorted_reference(v)
                                for k, v in items) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(utf16_sorted_reference(v) for v in value) + b"]"
    if isinstance(value, str):
        return ('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"').encode()
    if value is True or value is False or value is None:
        return {True: b"true", False: b"false", None: b"null"}[value]
    return str(int(value)).encode()


@given(json_values)
def test_the_encoding_is_rfc_8785_on_what_the_rail_accepts(value):
    assert canonical_bytes(value) == utf16_sorted_reference(value)
