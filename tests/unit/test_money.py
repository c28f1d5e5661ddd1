"""Amounts are integer fen: `parse_fen` is the one gate, and it lets nothing else through."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rail_protocol.errors import RailError
from rail_protocol.money import (
    CURRENCY,
    CURRENCY_NUMERIC,
    FEN_PER_YUAN,
    MAX_FEN,
    format_fen,
    parse_fen,
    yuan,
)

pytestmark = pytest.mark.unit


def refusal(value: object, **kwargs: object) -> RailError:
    with pytest.raises(RailError) as caught:
        parse_fen(value, **kwargs)
    return caught.value


def fen_from_text(text: str) -> int:
    """An independent reader of format_fen's output, for the round trip."""
    negative = text.startswith("-")
    text = text.removeprefix("-")
    assert text.startswith("¥")
    whole, part = text[1:].split(".")
    assert len(part) == 2
    fen = int(whole.replace(",", "")) * FEN_PER_YUAN + int(part)
    return -fen if negative else fen


def test_the_currency_is_cny_iso_4217_numeric_156():
    assert CURRENCY == "CNY"
    assert CURRENCY_NUMERIC == "156"
    assert FEN_PER_YUAN == 100


@pytest.mark.parametrize("value", [1, 5, 100, 123_456, MAX_FEN])
def test_parse_fen_accepts_positive_ints_up_to_the_ceiling_unchanged(value):
    parsed = parse_fen(value)
    assert parsed == value
    assert type(parsed) is int


@pytest.mark.parametrize("value", [5.0, 0.5, 1e3, float("nan"), float("inf"), -1.0])
def test_parse_fen_refuses_floats_even_whole_ones(value):
    error = refusal(value)
    assert error.code == "invalid_amount"
    assert error.status == 422
    assert "float" in error.message


@pytest.mark.parametrize("value", ["5", "5.00", "", "0x10", " 5 "])
def test_parse_fen_refuses_strings_even_numeric_ones(value):
    assert refusal(value).code == "invalid_amount"


@pytest.mark.parametrize("value", [True, False])
def test_parse_fen_refuses_booleans_although_bool_is_an_int(value):
    assert refusal(value).code == "invalid_amount"
    assert refusal(value, allow_zero=True).code == "invalid_amount"


@pytest.mark.parametrize("value", [None, Decimal("5"), Fraction(5, 1), [5], {"fen": 5}, b"5"])
def test_parse_fen_refuses_every_other_type(value):
    assert refusal(value).code == "invalid_amount"


@pytest.mark.parametrize("value", [-1, -100, -MAX_FEN, -(2**70)])
def test_parse_fen_refuses_negatives(value):
    error = refusal(value)
    assert error.code == "invalid_amount"
    assert "negative" in error.message
    assert refusal(value, allow_zero=True).code == "invalid_amount"


def test_parse_fen_refuses_zero_unless_allowed():
    assert refusal(0).code == "invalid_amount"
    assert parse_fen(0, allow_zero=True) == 0


@pytest.mark.parametrize("value", [MAX_FEN + 1, 2**63, 2**200])
def test_parse_fen_refuses_amounts_above_the_ceiling(value):
    assert refusal(value).code == "invalid_amount"
    assert refusal(value, allow_zero=True).code == "invalid_amount"


def test_the_ceiling_fits_a_signed_64_bit_integer():
    assert MAX_FEN < 2**63 - 1


def test_parse_fen_names_the_field_it_refused():
    error = refusal("7", field="price_fen")
    assert "price_fen" in error.message


def test_yuan_converts_whole_yuan_to_fen():
    assert yuan(2000) == 200_000
    assert yuan(0) == 0
    with pytest.raises(RailError) as caught:
        yuan(-1)
    assert caught.value.code == "invalid_amount"


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "¥0.00"),
        (5, "¥0.05"),
        (50, "¥0.50"),
        (100, "¥1.00"),
        (123_405, "¥1,234.05"),
        (-150, "-¥1.50"),
        (-5, "-¥0.05"),
        (MAX_FEN, "¥10,000,000,000,000.00"),
    ],
)
def test_format_fen_writes_yuan_with_two_decimals_and_thousands_separators(fen, text):
    assert format_fen(fen) == text


@given(st.integers(min_value=1, max_value=MAX_FEN))
def test_any_int_in_range_passes_unchanged_and_round_trips_through_its_text(fen):
    assert parse_fen(fen) == fen
    assert parse_fen(fen_from_text(format_fen(fen))) == fen


@given(st.integers(min_value=-MAX_FEN, max_value=MAX_FEN))
def test_format_fen_round_trips_any_signed_amount(fen):
    assert fen_from_text(format_fen(fen)) == fen


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_is_refused(value):
    assert refusal(value).code == "invalid_amount"
    assert refusal(value, allow_zero=True).code == "invalid_amount"


@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_FEN + 1)))
def test_any_int_out_of_range_is_refused(value):
    assert refusal(value, allow_zero=True).code == "invalid_amount"
