import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rail_protocol.errors import RailError
from rail_protocol.qr import (
    MerchantQR,
    amount_text,
    crc16_ccitt_false,
    decode,
    encode,
    parse_amount_text,
    to_png,
    to_svg,
)

pytestmark = pytest.mark.unit


# --- an encoder written for the tests, independent of the module --------------------------


def bitwise_crc(text: str) -> int:
    """CRC-16/CCITT-FALSE, one bit at a time, straight from its definition."""
    crc = 0xFFFF
    for byte in text.encode("utf-8"):
        for bit in range(7, -1, -1):
            top = (crc >> 15) & 1
            crc = (crc << 1) & 0xFFFF
            if top ^ ((byte >> bit) & 1):
                crc ^= 0x1021
    return crc


def tlv(field_id: str, value: str) -> str:
    return f"{field_id}{len(value):02d}{value}"


def build(fields: list[tuple[str, str]], crc: str | None = None) -> str:
    """A payload of `fields` in the given order, then field 63 with a correct CRC."""
    body = "".join(tlv(field_id, value) for field_id, value in fields) + "6304"
    return body + (crc if crc is not None else f"{bitwise_crc(body):04X}")


OUR_ACCOUNT = tlv("00", "cn.yuanrail") + tlv("01", "bank-a") + tlv("02", "m-123")


def dynamic_fields() -> list[tuple[str, str]]:
    return [
        ("00", "01"),
        ("01", "12"),
        ("26", OUR_ACCOUNT),
        ("52", "5812"),
        ("53", "156"),
        ("54", "12.50"),
        ("58", "CN"),
        ("59", "Lao Wang Noodles"),
        ("60", "Beijing"),
        ("62", tlv("05", "ord-1")),
    ]


def static_fields() -> list[tuple[str, str]]:
    return [
        (field_id, "11" if field_id == "01" else value)
        for field_id, value in dynamic_fields()
        if field_id not in ("54", "62")
    ]


def replaced(fields, field_id, value):
    return [(i, value if i == field_id else v) for i, v in fields]


def without(fields, field_id):
    return [(i, v) for i, v in fields if i != field_id]


def inserted_before(fields, before_id, field_id, value):
    at = [i for i, _ in fields].index(before_id)
    return fields[:at] + [(field_id, value)] + fields[at:]


def field_ids(payload: str) -> list[str]:
    ids, pos = [], 0
    while pos < len(payload):
        ids.append(payload[pos : pos + 2])
        pos += 4 + int(payload[pos + 2 : pos + 4])
    return ids


def refusal(payload: str) -> RailError:
    with pytest.raises(RailError) as caught:
        decode(payload)
    return caught.value


DYNAMIC = MerchantQR(
    dynamic=True,
    bank_id="bank-a",
    merchant_id="m-123",
    mcc="5812",
    merchant_name="Lao Wang Noodles",
    merchant_city="Beijing",
    amount_fen=1250,
    order_id="ord-1",
)
STATIC = MerchantQR(
    dynamic=False,
    bank_id="bank-a",
    merchant_id="m-123",
    mcc="5812",
    merchant_name="北京烤鸭店",
    merchant_city="北京",
)

# A dynamic payload written out by hand, field by field.
KNOWN_BODY = (
    "000201"
    "010212"
    "2634" "0011cn.yuanrail" "0106bank-a" "0205m-123"
    "52045812"
    "5303156"
    "540512.50"
    "5802CN"
    "5916Lao Wang Noodles"
    "6007Beijing"
    "6209" "0505ord-1"
    "6304"
)


# --- the CRC ----------------------------------------------------------------------------------


def test_the_crc_has_the_standard_check_value():
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_the_crc_of_nothing_is_the_initial_value():
    assert crc16_ccitt_false(b"") == 0xFFFF


def test_the_test_crc_agrees_with_the_standard_check_value():
    assert bitwise_crc("123456789") == 0x29B1


# --- a known-good payload ----------------------------------------------------------------------


def test_a_hand_written_dynamic_payload_has_the_independently_computed_crc():
    assert bitwise_crc(KNOWN_BODY) == 0x9335
    assert encode(DYNAMIC) == KNOWN_BODY + "9335"


def test_a_hand_written_dynamic_payload_decodes_to_its_merchant_and_amount():
    assert decode(KNOWN_BODY + f"{bitwise_crc(KNOWN_BODY):04X}") == DYNAMIC


def test_a_payload_built_by_the_test_encoder_decodes():
    assert decode(build(dynamic_fields())) == DYNAMIC


# --- round trips -------------------------------------------------------------------------------


def test_a_dynamic_code_round_trips():
    assert decode(encode(DYNAMIC)) == DYNAMIC


def test_a_static_code_round_trips_with_chinese_name_and_city():
    assert decode(encode(STATIC)) == STATIC


def test_a_static_code_has_no_amount_and_no_order_id():
    assert field_ids(encode(STATIC)) == ["00", "01", "26", "52", "53", "58", "59", "60", "63"]
    qr = decode(build(static_fields()))
    assert (qr.dynamic, qr.amount_fen, qr.order_id) == (False, None, None)


def test_a_static_code_may_carry_an_order_id():
    qr = MerchantQR(False, "bank-a", "m-123", "5812", "Shop", "Shanghai", None, "table-7")
    assert decode(encode(qr)) == qr


def test_lengths_are_counted_in_characters_not_bytes():
    assert "5905北京烤鸭店" in encode(STATIC)


def test_the_crc_of_a_chinese_payload_is_over_its_utf8_bytes():
    payload = encode(STATIC)
    assert payload[-4:] == f"{bitwise_crc(payload[:-4]):04X}"


def test_fields_are_written_in_ascending_id_order():
    ids = field_ids(encode(DYNAMIC))
    assert ids == ["00", "01", "26", "52", "53", "54", "58", "59", "60", "62", "63"]


# --- amounts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fen, text",
    [(1250, "12.50"), (300, "3"), (5, "0.05"), (1, "0.01"), (105, "1.05"), (1999, "19.99")],
)
def test_fen_are_written_as_yuan_text_by_integer_arithmetic(fen, text):
    assert amount_text(fen) == text
    assert parse_amount_text(text) == fen


@pytest.mark.parametrize("text, fen", [("12.5", 1250), ("3.00", 300), ("007", 700)])
def test_other_yuan_spellings_are_read_exactly(text, fen):
    assert parse_amount_text(text) == fen


def test_the_largest_amount_fits_field_54s_13_characters():
    assert amount_text(9_999_999_999_999 * 100) == "9999999999999"
    assert amount_text(999_999_999_999) == "9999999999.99"


@pytest.mark.parametrize("fen", [1_000_000_000_001, 10**15])
def test_an_amount_too_long_for_field_54_is_refused(fen):
    with pytest.raises(RailError) as caught:
        amount_text(fen)
    assert caught.value.code == "qr_invalid_amount"
    assert "over the 13 of field 54" in caught.value.message


@pytest.mark.parametrize("fen", [0, -100, 12.5, "1250", True, None])
def test_an_amount_that_is_not_a_positive_integer_is_refused_when_encoding(fen):
    with pytest.raises(RailError) as caught:
        amount_text(fen)
    assert caught.value.code == "qr_invalid_amount"


# --- what the encoder refuses ----------------------------------------------------------------


@pytest.mark.parametrize(
    "change, words",
    [
        ({"merchant_name": "x" * 26}, "merchant_name (field 59) is 26 characters, over 25"),
        ({"merchant_city": "y" * 16}, "merchant_city (field 60) is 16 characters, over 15"),
        ({"merchant_name": "   "}, "merchant_name (field 59) must be printable"),
        ({"merchant_name": "a\nb"}, "merchant_name (field 59) must be printable"),
        ({"mcc": "581"}, "mcc (field 52) must be 4 digits"),
        ({"mcc": "58a2"}, "mcc (field 52) must be 4 digits"),
        ({"bank_id": ""}, "bank_id"),
        ({"bank_id": "bank a"}, "bank_id"),
        ({"merchant_id": "m" * 45}, "merchant_id (field 26, sub-field 02) is 45 characters"),
        ({"order_id": "o" * 26}, "order_id (field 62, sub-field 05) is 26 characters"),
        ({"order_id": None}, "a dynamic QR code needs an order_id"),
        ({"amount_fen": None}, "a dynamic QR code needs amount_fen"),
        ({"dynamic": False}, "a static QR code carries no amount_fen"),
    ],
)
def test_a_merchant_that_does_not_fit_the_layout_is_refused(change, words):
    fields = {**DYNAMIC.__dict__, **change}
    with pytest.raises(RailError) as caught:
        MerchantQR(**fields)
    assert caught.value.code == "qr_malformed"
    assert words in caught.value.message


def test_a_float_amount_is_refused():
    with pytest.raises(RailError) as caught:
        MerchantQR(**{**DYNAMIC.__dict__, "amount_fen": 12.5})
    assert caught.value.code == "qr_invalid_amount"


# --- what the decoder refuses: the CRC ---------------------------------------------------------


def test_a_wrong_crc_is_refused():
    payload = encode(DYNAMIC)
    error = refusal(payload[:-1] + ("0" if payload[-1] != "0" else "1"))
    assert error.code == "qr_bad_crc"
    assert "CRC" in error.message


def test_an_altered_amount_is_refused_by_the_crc():
    payload = encode(DYNAMIC).replace("540512.50", "540592.50")
    assert refusal(payload).code == "qr_bad_crc"


def test_a_payload_without_a_crc_is_refused():
    body = "".join(tlv(i, v) for i, v in dynamic_fields())
    error = refusal(body)
    assert error.code == "qr_malformed"
    assert error.message == "payload has no CRC (field 63)"


def test_a_crc_that_is_not_the_last_field_is_refused():
    fields = dynamic_fields()
    payload = "".join(tlv(i, v) for i, v in fields[:-1]) + "6304ABCD" + tlv(*fields[-1])
    error = refusal(payload)
    assert error.code == "qr_malformed"
    assert error.message == "field 63 (CRC) is not the last field"


def test_a_crc_in_lowercase_hex_is_refused():
    payload = build(dynamic_fields(), crc="9a3f")
    error = refusal(payload)
    assert error.code == "qr_malformed"
    assert "not 4 uppercase hex digits" in error.message


# --- what the decoder refuses: the TLV structure -------------------------------------------------


def test_a_truncated_payload_is_refused():
    error = refusal(encode(DYNAMIC)[:-2])
    assert error.code == "qr_malformed"
    assert error.message == "field 63 claims 4 characters but only 2 remain"


def test_a_length_running_past_the_end_is_refused():
    payload = build(dynamic_fields()).replace("6007Beijing", "6099Beijing")
    error = refusal(payload)
    assert error.code == "qr_malformed"
    assert "field 60 claims 99 characters" in error.message


def test_a_payload_ending_inside_a_field_header_is_refused():
    error = refusal(encode(DYNAMIC) + "64")
    assert error.code == "qr_malformed"
    assert "payload is truncated at character" in error.message


def test_a_non_digit_length_is_refused():
    error = refusal("00A201" + encode(DYNAMIC)[6:])
    assert error.code == "qr_malformed"
    assert error.message == "field 00 has a non-digit length 'A2'"


def test_a_non_digit_id_is_refused():
    error = refusal("0A0201" + encode(DYNAMIC)[6:])
    assert error.code == "qr_malformed"
    assert error.message == "payload has a non-digit id '0A' at character 0"


def test_a_truncated_template_is_refused():
    account = tlv("00", "cn.yuanrail") + tlv("01", "bank-a") + "0209m-123"
    error = refusal(build(replaced(dynamic_fields(), "26", account)))
    assert error.code == "qr_malformed"
    assert "field 26 sub-field 02 claims 9 characters" in error.message


def test_a_field_that_appears_twice_is_refused():
    error = refusal(build(inserted_before(dynamic_fields(), "58", "54", "1.00")))
    assert error.code == "qr_malformed"
    assert error.message == "field 54 appears twice"


def test_a_sub_field_that_appears_twice_in_a_template_is_refused():
    account = OUR_ACCOUNT + tlv("01", "bank-b")
    error = refusal(build(replaced(dynamic_fields(), "26", account)))
    assert error.code == "qr_malformed"
    assert error.message == "field 26 sub-field 01 appears twice"


def test_a_sub_field_that_appears_twice_in_the_additional_data_is_refused():
    extra = tlv("05", "ord-1") + tlv("05", "ord-2")
    error = refusal(build(replaced(dynamic_fields(), "62", extra)))
    assert error.message == "field 62 sub-field 05 appears twice"


def test_a_non_printable_character_is_refused():
    payload = build(replaced(dynamic_fields(), "59", "Lao Wang\x00Noodles"))
    error = refusal(payload)
    assert error.code == "qr_malformed"
    assert "non-printable character" in error.message


def test_a_payload_over_512_characters_is_refused():
    fields = dynamic_fields()
    for field_id in range(80, 86):
        fields = inserted_before(fields, "62", str(field_id), "z" * 99)
    error = refusal(build(fields))
    assert error.code == "qr_malformed"
    assert "over 512" in error.message


# --- what the decoder refuses: fields ------------------------------------------------------------


@pytest.mark.parametrize("field_id", ["00", "01", "52", "53", "58", "59", "60"])
def test_a_missing_mandatory_field_is_refused(field_id):
    error = refusal(build(without(dynamic_fields(), field_id)))
    assert error.code == "qr_malformed"
    assert error.message == f"mandatory field {field_id} is missing"


def test_a_wrong_payload_format_indicator_is_refused():
    error = refusal(build(replaced(dynamic_fields(), "00", "02")))
    assert error.code == "qr_malformed"
    assert "field 00 (format indicator) is '02'" in error.message


def test_a_format_indicator_that_is_not_first_is_refused():
    fields = dynamic_fields()
    error = refusal(build([fields[1], fields[0]] + fields[2:]))
    assert error.code == "qr_malformed"
    assert error.message == "field 00 must come first, not field 01"


def test_an_unknown_point_of_initiation_is_refused():
    error = refusal(build(replaced(dynamic_fields(), "01", "13")))
    assert error.code == "qr_malformed"
    assert "field 01 (point of initiation) is '13'" in error.message


@pytest.mark.parametrize("currency", ["840", "978", "344", "CNY", "15"])
def test_a_foreign_currency_is_refused(currency):
    error = refusal(build(replaced(dynamic_fields(), "53", currency)))
    assert error.code == "qr_wrong_currency"
    assert f"field 53 (currency) is {currency!r}" in error.message


def test_a_foreign_country_is_refused():
    error = refusal(build(replaced(dynamic_fields(), "58", "HK")))
    assert error.code == "qr_malformed"
    assert "field 58 (country) is 'HK'" in error.message


def test_a_dynamic_code_without_an_amount_is_refused():
    error = refusal(build(without(dynamic_fields(), "54")))
    assert error.code == "qr_malformed"
    assert error.message == "a dynamic code (01=12) has no amount (field 54)"


def test_a_static_code_with_an_amount_is_refused():
    fields = inserted_before(static_fields(), "58", "54", "12.50")
    error = refusal(build(fields))
    assert error.code == "qr_malformed"
    assert error.message == "a static code (01=11) must not carry field 54"


def test_a_dynamic_code_without_an_order_id_is_refused():
    error = refusal(build(without(dynamic_fields(), "62")))
    assert error.code == "qr_malformed"
    assert "no order id (field 62, sub-field 05)" in error.message


@pytest.mark.parametrize(
    "text",
    ["12.5.0", "-1", "+5", "1e3", "12.345", ".5", "5.", " 5", "5 ", "1,000", "",
     "１２", "0x10", "12345678901.50"],
)
def test_a_malformed_amount_is_refused(text):
    error = refusal(build(replaced(dynamic_fields(), "54", text)))
    assert error.code == "qr_invalid_amount"
    assert "field 54 amount" in error.message


@pytest.mark.parametrize("text", ["0", "0.00", "000.0"])
def test_a_zero_amount_is_refused(text):
    error = refusal(build(replaced(dynamic_fields(), "54", text)))
    assert error.code == "qr_invalid_amount"
    assert error.message == "field 54 amount is zero"


def test_a_payload_without_our_merchant_template_is_refused():
    foreign = tlv("00", "com.example.pay") + tlv("01", "acct-9")
    error = refusal(build(replaced(dynamic_fields(), "26", foreign)))
    assert error.code == "qr_malformed"
    assert error.message == "no merchant account template (26-51) for cn.yuanrail"


def test_a_payload_with_two_templates_of_ours_is_refused():
    fields = inserted_before(dynamic_fields(), "52", "27", OUR_ACCOUNT)
    error = refusal(build(fields))
    assert error.code == "qr_malformed"
    assert error.message == "fields 26, 27 all carry cn.yuanrail; expected one"


def test_our_template_without_a_merchant_id_is_refused():
    account = tlv("00", "cn.yuanrail") + tlv("01", "bank-a")
    error = refusal(build(replaced(dynamic_fields(), "26", account)))
    assert error.message == "field 26 has no merchant id (sub-field 02)"


def test_an_unknown_sub_field_in_our_template_is_refused():
    error = refusal(build(replaced(dynamic_fields(), "26", OUR_ACCOUNT + tlv("03", "x"))))
    assert error.code == "qr_malformed"
    assert error.message == "field 26 sub-field 03 is not known"


@pytest.mark.parametrize("field_id", ["55", "56", "57"])
def test_a_tip_or_convenience_fee_is_refused(field_id):
    fields = inserted_before(dynamic_fields(), "58", field_id, "01")
    error = refusal(build(fields))
    assert error.code == "qr_malformed"
    assert error.message == f"field {field_id} (tip or convenience fee) is not supported"


def test_an_invalid_merchant_name_inside_a_valid_payload_is_refused():
    error = refusal(build(replaced(dynamic_fields(), "59", "N" * 26)))
    assert error.code == "qr_malformed"
    assert "merchant_name (field 59) is 26 characters, over 25" in error.message


# --- what the decoder ignores ---------------------------------------------------------------------


def test_fields_reserved_for_others_are_ignored():
    fields = dynamic_fields()
    fields = inserted_before(fields, "26", "15", "UnionPay-account-123")
    fields = inserted_before(fields, "52", "27", tlv("00", "com.example.pay") + tlv("01", "9"))
    fields = inserted_before(fields, "62", "61", "100000")
    fields += [
        ("64", tlv("00", "ZH") + tlv("01", "老王面馆")),
        ("70", "rfu"),
        ("80", tlv("00", "com.other") + tlv("01", "x")),
    ]
    assert decode(build(fields)) == DYNAMIC


def test_our_template_is_found_under_any_id_from_26_to_51():
    fields = replaced(dynamic_fields(), "26", tlv("00", "com.example.pay"))
    fields = inserted_before(fields, "52", "51", OUR_ACCOUNT)
    assert decode(build(fields)) == DYNAMIC


def test_other_additional_data_is_ignored():
    extra = tlv("01", "bill-7") + tlv("05", "ord-1") + tlv("07", "till-3")
    assert decode(build(replaced(dynamic_fields(), "62", extra))) == DYNAMIC


# --- properties -------------------------------------------------------------------------------

_id_text = st.from_regex(r"[!-~]{1,32}", fullmatch=True)
_label_chars = st.characters(codec="utf-8").filter(str.isprintable)


def _labels(max_size):
    return st.text(_label_chars, min_size=1, max_size=max_size).filter(str.strip)


@st.composite
def merchants(draw, labels=_labels):
    dynamic = draw(st.booleans())
    return MerchantQR(
        dynamic=dynamic,
        bank_id=draw(_id_text),
        merchant_id=draw(st.from_regex(r"[!-~]{1,44}", fullmatch=True)),
        mcc=draw(st.from_regex(r"[0-9]{4}", fullmatch=True)),
        merchant_name=draw(labels(25)),
        merchant_city=draw(labels(15)),
        amount_fen=draw(st.integers(1, 999_999_999_999)) if dynamic else None,
        order_id=draw(st.from_regex(r"[!-~]{1,25}", fullmatch=True))
        if dynamic
        else draw(st.none() | st.from_regex(r"[!-~]{1,25}", fullmatch=True)),
    )


def _ascii_labels(max_size):
    return st.from_regex(rf"[ -~]{{1,{max_size}}}", fullmatch=True).filter(str.strip)


@settings(max_examples=300)
@given(merchants())
def test_any_valid_merchant_survives_encode_then_decode(qr):
    payload = encode(qr)
    assert len(payload) <= 512
    assert payload[-4:] == f"{bitwise_crc(payload[:-4]):04X}"
    assert decode(payload) == qr


@settings(max_examples=300)
@given(st.integers(1, 999_999_999_999) | st.integers(1, 9_999_999_999_999).map(lambda y: y * 100))
def test_any_amount_that_fits_13_characters_survives_text_and_back(fen):
    text = amount_text(fen)
    assert len(text) <= 13
    assert parse_amount_text(text) == fen


@settings(max_examples=500)
@given(merchants(labels=_ascii_labels), st.data())
def test_changing_any_single_character_of_a_payload_is_refused(qr, data):
    payload = encode(qr)
    index = data.draw(st.integers(0, len(payload) - 1), label="index")
    char = data.draw(
        st.sampled_from([chr(c) for c in range(0x20, 0x7F) if chr(c) != payload[index]]),
        label="replacement",
    )
    altered = payload[:index] + char + payload[index + 1 :]
    with pytest.raises(RailError) as caught:
        decode(altered)
    assert caught.value.code in ("qr_bad_crc", "qr_malformed")


# --- images -----------------------------------------------------------------------------------


def _read_png(png: bytes) -> list[str]:
    zxingcpp = pytest.importorskip("zxingcpp")
    image = pytest.importorskip("PIL.Image")
    return [result.text for result in zxingcpp.read_barcodes(image.open(io.BytesIO(png)))]


def test_a_png_of_a_dynamic_code_scans_back_to_the_identical_payload():
    payload = encode(DYNAMIC)
    png = to_png(payload)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert _read_png(png) == [payload]


def test_a_png_of_a_chinese_static_code_scans_back_to_the_identical_payload():
    payload = encode(STATIC)
    assert _read_png(to_png(payload, scale=4)) == [payload]


def test_a_larger_scale_draws_a_larger_png():
    image = pytest.importorskip("PIL.Image")
    payload = encode(DYNAMIC)
    small = image.open(io.BytesIO(to_png(payload, scale=2))).size
    large = image.open(io.BytesIO(to_png(payload, scale=8))).size
    assert large == (small[0] * 4, small[1] * 4)


def test_the_svg_is_a_standalone_svg_element():
    svg = to_svg(encode(DYNAMIC))
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")


def test_a_payload_the_decoder_refuses_is_never_drawn():
    broken = encode(DYNAMIC)[:-1] + "0"
    if broken == encode(DYNAMIC):
        broken = encode(DYNAMIC)[:-1] + "1"
    with pytest.raises(RailError):
        to_png(broken)
    with pytest.raises(RailError):
        to_svg(broken)


@pytest.mark.parametrize("scale", [0, -1, 65, 2.5, True])
def test_a_nonsense_scale_is_refused(scale):
    with pytest.raises(ValueError):
        to_png(encode(DYNAMIC), scale=scale)
