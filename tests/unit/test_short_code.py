"""The short payment code (rail_protocol/short_code.py): 19 digits made on the device from a
secret derived from the wallet's key, good this minute and the next, the PIN flag bound into
its one-time value."""

import pytest

from rail_protocol import short_code as sc
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey

NOW = 1_796_000_000_000
SECRET = bytes(range(32))


def code(**kwargs) -> sc.ShortCode:
    args = {"at_ms": NOW, "sequence": 0, **kwargs}
    return sc.make_short_code(SECRET, "11", "01234567", **args)


def test_a_code_is_19_digits_laid_out_mark_issuer_slot_digit_value():
    text = code(sequence=3).text
    assert len(text) == sc.LENGTH == 19 and text.isdigit()
    assert text[0] == "8" and text[1:3] == "11" and text[3:11] == "01234567" and text[11] == "3"
    assert sc.parse_short_code(text) == code(sequence=3)


def test_the_secret_is_derived_from_the_key_and_differs_between_keys():
    key = SigningKey.generate()
    assert sc.derive_secret(key) == sc.derive_secret(SigningKey.from_text(key.secret_text()))
    assert sc.derive_secret(key) != sc.derive_secret(SigningKey.generate())
    assert len(sc.derive_secret(key)) == sc.SECRET_BYTES


def test_each_code_of_a_minute_differs_and_the_pin_flag_changes_the_value():
    values = {code(sequence=n, pin_verified=p).otp for n in range(5) for p in (False, True)}
    assert len(values) == 10
    assert code(pin_verified=True).pin_verified and not code().pin_verified
    # Flipping the PIN digit of a code without the PIN does not make a valid one.
    plain = code()
    forged = sc.ShortCode(plain.issuer, plain.slot, plain.digit + 5, plain.otp)
    assert sc.matching_minute(SECRET, forged, NOW) is None


def test_a_code_is_good_this_minute_and_the_next_only():
    made = code()
    minute = sc.minute_of(NOW)
    assert sc.matching_minute(SECRET, made, NOW) == minute
    assert sc.matching_minute(SECRET, made, NOW + sc.MINUTE_MS) == minute
    assert sc.matching_minute(SECRET, made, NOW + 2 * sc.MINUTE_MS) is None
    assert sc.matching_minute(SECRET, made, NOW - sc.MINUTE_MS) is None
    assert sc.matching_minute(bytes(32), made, NOW) is None


def test_the_charge_is_keyed_by_minute_and_digit():
    assert sc.instruction_id(29_933_333, 7) == "sc.29933333.7"


@pytest.mark.parametrize("text", ["", "8110123456700000000", "811012345670000000",
                                  "91101234567000000000"[:19], "8110123456７0000000",
                                  "81101234567000000a0", "8110123456700000000\n",
                                  8110123456700000000, None])
def test_anything_else_is_not_a_short_code(text):
    if sc.is_short_code(text):
        sc.parse_short_code(text)        # the shape is right: only its value can be wrong
        return
    with pytest.raises(RailError) as refused:
        sc.parse_short_code(text)
    assert refused.value.code == "payment_code_invalid"


def test_at_most_five_codes_a_minute_and_issuer_and_slot_are_digits():
    with pytest.raises(ValueError):
        code(sequence=5)
    with pytest.raises(ValueError):
        sc.make_short_code(SECRET, "1a", "01234567", at_ms=NOW, sequence=0)
