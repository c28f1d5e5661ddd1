"""Merchant-presented QR codes in the EMVCo layout, so any EMVCo-aware wallet can read ours.

A payload is a string of TLV fields: a 2-digit id, a 2-digit length (in characters) and the
value; some values are themselves TLV ("templates"). The last field, 63, is a CRC-16 over
everything before its value, so a misread or altered code is refused instead of paying the
wrong merchant or the wrong amount. Fields of this rail:

  00  payload format indicator "01", first
  01  point of initiation: "11" static (the payer types the amount), "12" dynamic (an order)
  26  merchant account template: 00 "cn.yuanrail", 01 bank id, 02 merchant id
  52  merchant category code, 4 digits
  53  currency "156" (CNY)
  54  amount as yuan text such as "12.50" or "3"; dynamic codes only
  58  country "CN"
  59  merchant name, at most 25 characters
  60  merchant city, at most 15 characters
  62  additional data template: 05 order id (the reference label)
  63  CRC-16/CCITT-FALSE of everything up to and including "6304", 4 uppercase hex digits

Amounts are integer fen in code and converted to and from the yuan text with integer
arithmetic only. `decode` is strict: anything it cannot vouch for is refused with a
`RailError` whose message says exactly what is wrong. Only the standard library is used,
plus `segno` to draw the code."""

from __future__ import annotations

import binascii
import io
import re
from dataclasses import dataclass

import segno

from rail_protocol.errors import RailError

GLOBALLY_UNIQUE_ID = "cn.yuanrail"  # sub-field 00 of our merchant account template
CURRENCY_NUMERIC = "156"  # ISO 4217 numeric code of CNY
COUNTRY = "CN"
FORMAT_INDICATOR = "01"
STATIC = "11"  # the payer types the amount; the code is reused
DYNAMIC = "12"  # one order with its amount
MERCHANT_TEMPLATE_ID = "26"  # the template id we write; we read ours from any of 26..51

MAX_PAYLOAD_CHARS = 512  # EMVCo's ceiling on a whole payload
MAX_AMOUNT_CHARS = 13  # EMVCo's ceiling on field 54
MAX_NAME_CHARS = 25
MAX_CITY_CHARS = 15
MAX_ORDER_ID_CHARS = 25  # EMVCo's ceiling on the reference label (62, sub-field 05)
MAX_BANK_ID_CHARS = 32
MAX_MERCHANT_ID_CHARS = 44  # with the bank id and "cn.yuanrail" it fits a 99-char template

FEN_PER_YUAN = 100

# Ids EMVCo reserves for others: ignored when present. 61 is the merchant's postal code,
# information we do not need. Every other id is one we read, except 55-57 (tip and
# convenience fee): those are refused, since ignoring them would charge the payer a
# different amount than the code asks for.
_IGNORED_IDS = (
    {f"{i:02d}" for i in range(2, 26)}  # other payment networks' merchant accounts
    | {"61", "64"}  # postal code, merchant information in another language
    | {f"{i:02d}" for i in range(65, 80)}  # reserved for future use by EMVCo
    | {f"{i:02d}" for i in range(80, 100)}  # unreserved templates
)
_TEMPLATE_IDS = {f"{i:02d}" for i in range(26, 52)}
_KNOWN_IDS = {"00", "01", "52", "53", "54", "58", "59", "60", "62", "63"}
_MANDATORY_IDS = ("00", "01", "52", "53", "58", "59", "60", "63")

_ID_TEXT = re.compile(r"[!-~]+")  # printable ASCII without spaces
_MCC = re.compile(r"[0-9]{4}")
_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]{1,2})?")
_CRC_TEXT = re.compile(r"[0-9A-F]{4}")


@dataclass(frozen=True)
class MerchantQR:
    """What a merchant-presented code says. Valid by construction: a dynamic code has a
    positive amount in fen and an order id; a static code has no amount."""

    dynamic: bool
    bank_id: str
    merchant_id: str
    mcc: str
    merchant_name: str
    merchant_city: str
    amount_fen: int | None = None
    order_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dynamic, bool):
            raise RailError("qr_malformed", "dynamic must be True or False")
        _check_id_text("bank_id (field 26, sub-field 01)", self.bank_id, MAX_BANK_ID_CHARS)
        _check_id_text(
            "merchant_id (field 26, sub-field 02)", self.merchant_id, MAX_MERCHANT_ID_CHARS
        )
        if not isinstance(self.mcc, str) or not _MCC.fullmatch(self.mcc):
            raise RailError("qr_malformed", f"mcc (field 52) must be 4 digits, not {self.mcc!r}")
        _check_label("merchant_name (field 59)", self.merchant_name, MAX_NAME_CHARS)
        _check_label("merchant_city (field 60)", self.merchant_city, MAX_CITY_CHARS)
        if self.order_id is not None:
            _check_id_text("order_id (field 62, sub-field 05)", self.order_id, MAX_ORDER_ID_CHARS)
        if self.dynamic:
            if self.amount_fen is None:
                raise RailError("qr_malformed", "a dynamic QR code needs amount_fen")
            amount_text(self.amount_fen)  # refuses a bad amount
            if self.order_id is None:
                raise RailError("qr_malformed", "a dynamic QR code needs an order_id")
        elif self.amount_fen is not None:
            raise RailError("qr_malformed", "a static QR code carries no amount_fen")


def _check_id_text(name: str, value: object, max_chars: int) -> None:
    if not isinstance(value, str) or not _ID_TEXT.fullmatch(value):
        raise RailError("qr_malformed", f"{name} must be printable ASCII without spaces")
    if len(value) > max_chars:
        raise RailError("qr_malformed", f"{name} is {len(value)} characters, over {max_chars}")


def _check_label(name: str, value: object, max_chars: int) -> None:
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise RailError("qr_malformed", f"{name} must be printable text and not blank")
    if len(value) > max_chars:
        raise RailError("qr_malformed", f"{name} is {len(value)} characters, over {max_chars}")


# --- amounts -------------------------------------------------------------------------------


def amount_text(amount_fen: int) -> str:
    """Yuan text for field 54 from integer fen: 1250 -> "12.50", 300 -> "3". No floats."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        kind = type(amount_fen).__name__
        raise RailError("qr_invalid_amount", f"amount_fen must be an integer, not {kind}")
    if amount_fen <= 0:
        raise RailError("qr_invalid_amount", f"amount_fen must be positive, not {amount_fen}")
    whole, part = divmod(amount_fen, FEN_PER_YUAN)
    text = str(whole) if part == 0 else f"{whole}.{part:02d}"
    if len(text) > MAX_AMOUNT_CHARS:
        raise RailError(
            "qr_invalid_amount",
            f"amount_fen {amount_fen} needs {len(text)} characters, "
            f"over the {MAX_AMOUNT_CHARS} of field 54",
        )
    return text


def parse_amount_text(text: str) -> int:
    """Integer fen from field 54's yuan text: "12.50" -> 1250, "3" -> 300. Refuses signs,
    exponents, more than 2 decimals, more than 13 characters and zero."""
    if len(text) > MAX_AMOUNT_CHARS:
        raise RailError(
            "qr_invalid_amount",
            f"field 54 amount is {len(text)} characters, over {MAX_AMOUNT_CHARS}",
        )
    if not _AMOUNT.fullmatch(text):
        raise RailError(
            "qr_invalid_amount",
            f"field 54 amount {text!r} is not digits with an optional '.' and 1-2 decimals",
        )
    whole, _, part = text.partition(".")
    fen = int(whole) * FEN_PER_YUAN + int(part.ljust(2, "0") if part else "0")
    if fen == 0:
        raise RailError("qr_invalid_amount", "field 54 amount is zero")
    return fen


# --- CRC and TLV -----------------------------------------------------------------------------


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0), the check
    EMVCo puts in field 63. Check value: crc16_ccitt_false(b"123456789") == 0x29B1."""
    return binascii.crc_hqx(data, 0xFFFF)  # the same CRC, computed in C


def _tlv(field_id: str, value: str) -> str:
    if len(value) > 99:
        raise RailError("qr_malformed", f"field {field_id} is {len(value)} characters, over 99")
    return f"{field_id}{len(value):02d}{value}"


def _parse_tlv(text: str, parent: str | None = None) -> dict[str, str]:
    """Fields of a TLV string, in their order; refuses truncation and duplicate ids.
    `parent` is the id of the template being read, None for the payload itself."""
    whole = "payload" if parent is None else f"field {parent}"
    item = "field" if parent is None else f"field {parent} sub-field"
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        head = text[pos : pos + 4]
        if len(head) < 4:
            raise RailError("qr_malformed", f"{whole} is truncated at character {pos}")
        field_id, length = head[:2], head[2:]
        if not (field_id.isascii() and field_id.isdigit()):
            raise RailError(
                "qr_malformed", f"{whole} has a non-digit id {field_id!r} at character {pos}"
            )
        if not (length.isascii() and length.isdigit()):
            raise RailError("qr_malformed", f"{item} {field_id} has a non-digit length {length!r}")
        end = pos + 4 + int(length)
        if end > len(text):
            raise RailError(
                "qr_malformed",
                f"{item} {field_id} claims {int(length)} characters "
                f"but only {len(text) - pos - 4} remain",
            )
        if field_id in fields:
            raise RailError("qr_malformed", f"{item} {field_id} appears twice")
        fields[field_id] = text[pos + 4 : end]
        pos = end
    return fields


# --- encode and decode -------------------------------------------------------------------------


def encode(qr: MerchantQR) -> str:
    """The EMVCo payload for `qr`: fields in ascending id order, CRC last."""
    if not isinstance(qr, MerchantQR):
        raise RailError("qr_malformed", "encode takes a MerchantQR")
    account = (
        _tlv("00", GLOBALLY_UNIQUE_ID) + _tlv("01", qr.bank_id) + _tlv("02", qr.merchant_id)
    )
    parts = [
        _tlv("00", FORMAT_INDICATOR),
        _tlv("01", DYNAMIC if qr.dynamic else STATIC),
        _tlv(MERCHANT_TEMPLATE_ID, account),
        _tlv("52", qr.mcc),
        _tlv("53", CURRENCY_NUMERIC),
    ]
    if qr.amount_fen is not None:
        parts.append(_tlv("54", amount_text(qr.amount_fen)))
    parts += [
        _tlv("58", COUNTRY),
        _tlv("59", qr.merchant_name),
        _tlv("60", qr.merchant_city),
    ]
    if qr.order_id is not None:
        parts.append(_tlv("62", _tlv("05", qr.order_id)))
    body = "".join(parts) + "6304"
    return body + f"{crc16_ccitt_false(body.encode('utf-8')):04X}"


def decode(payload: str) -> MerchantQR:
    """The merchant and amount a scanned payload asks to be paid, or a `RailError`
    (qr_malformed, qr_bad_crc, qr_wrong_currency, qr_invalid_amount) naming what is wrong."""
    if not isinstance(payload, str):
        raise RailError("qr_malformed", "a QR payload is text")
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise RailError(
            "qr_malformed", f"payload is {len(payload)} characters, over {MAX_PAYLOAD_CHARS}"
        )
    for index, char in enumerate(payload):
        if not char.isprintable():
            raise RailError(
                "qr_malformed", f"payload has a non-printable character at position {index}"
            )

    fields = _parse_tlv(payload)
    ids = list(fields)

    # The CRC first: a misread code should say so, not report whatever it garbled.
    if "63" not in fields:
        raise RailError("qr_malformed", "payload has no CRC (field 63)")
    if ids[-1] != "63":
        raise RailError("qr_malformed", "field 63 (CRC) is not the last field")
    stated = fields["63"]
    if len(stated) != 4 or not _CRC_TEXT.fullmatch(stated):
        raise RailError("qr_malformed", f"field 63 (CRC) {stated!r} is not 4 uppercase hex digits")
    computed = crc16_ccitt_false(payload[:-4].encode("utf-8"))
    if int(stated, 16) != computed:
        raise RailError(
            "qr_bad_crc", f"CRC is {stated} but the payload's CRC-16 is {computed:04X}"
        )

    for field_id in ids:
        if field_id not in _KNOWN_IDS | _TEMPLATE_IDS | _IGNORED_IDS:
            raise RailError(
                "qr_malformed", f"field {field_id} (tip or convenience fee) is not supported"
            )
    for field_id in _MANDATORY_IDS:
        if field_id not in fields:
            raise RailError("qr_malformed", f"mandatory field {field_id} is missing")
    if ids[0] != "00":
        raise RailError("qr_malformed", f"field 00 must come first, not field {ids[0]}")
    if fields["00"] != FORMAT_INDICATOR:
        raise RailError(
            "qr_malformed", f"field 00 (format indicator) is {fields['00']!r}, not '01'"
        )
    if fields["01"] not in (STATIC, DYNAMIC):
        raise RailError(
            "qr_malformed",
            f"field 01 (point of initiation) is {fields['01']!r}, not '11' or '12'",
        )
    dynamic = fields["01"] == DYNAMIC
    if fields["53"] != CURRENCY_NUMERIC:
        raise RailError(
            "qr_wrong_currency", f"field 53 (currency) is {fields['53']!r}, not '156' (CNY)"
        )
    if fields["58"] != COUNTRY:
        raise RailError("qr_malformed", f"field 58 (country) is {fields['58']!r}, not 'CN'")

    account = _our_account(fields)

    amount_fen = None
    if "54" in fields:
        if not dynamic:
            raise RailError("qr_malformed", "a static code (01=11) must not carry field 54")
        amount_fen = parse_amount_text(fields["54"])
    elif dynamic:
        raise RailError("qr_malformed", "a dynamic code (01=12) has no amount (field 54)")

    order_id = None
    if "62" in fields:
        order_id = _parse_tlv(fields["62"], "62").get("05")
    if dynamic and order_id is None:
        raise RailError(
            "qr_malformed", "a dynamic code (01=12) has no order id (field 62, sub-field 05)"
        )

    return MerchantQR(
        dynamic=dynamic,
        bank_id=account["01"],
        merchant_id=account["02"],
        mcc=fields["52"],
        merchant_name=fields["59"],
        merchant_city=fields["60"],
        amount_fen=amount_fen,
        order_id=order_id,
    )


def _our_account(fields: dict[str, str]) -> dict[str, str]:
    """Sub-fields of the one 26..51 template whose id is ours. Other schemes' templates are
    ignored, but must still be well-formed TLV: a garbled one means a garbled payload."""
    ours: list[tuple[str, dict[str, str]]] = []
    for field_id, value in fields.items():
        if field_id in _TEMPLATE_IDS:
            template = _parse_tlv(value, field_id)
            if template.get("00") == GLOBALLY_UNIQUE_ID:
                ours.append((field_id, template))
    if not ours:
        raise RailError(
            "qr_malformed", f"no merchant account template (26-51) for {GLOBALLY_UNIQUE_ID}"
        )
    if len(ours) > 1:
        found = ", ".join(field_id for field_id, _ in ours)
        raise RailError(
            "qr_malformed", f"fields {found} all carry {GLOBALLY_UNIQUE_ID}; expected one"
        )
    field_id, template = ours[0]
    for sub_id in template:
        if sub_id not in {"00", "01", "02"}:
            raise RailError("qr_malformed", f"field {field_id} sub-field {sub_id} is not known")
    for sub_id, name in (("01", "bank id"), ("02", "merchant id")):
        if sub_id not in template:
            raise RailError(
                "qr_malformed", f"field {field_id} has no {name} (sub-field {sub_id})"
            )
    return template


# --- images ----------------------------------------------------------------------------------


def _qr_code(payload: str, scale: int) -> segno.QRCode:
    decode(payload)  # never draw a payload that a wallet would refuse
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 64:
        raise ValueError(f"scale must be an integer from 1 to 64, not {scale!r}")
    return segno.make_qr(payload, error="m", encoding="utf-8")


def to_png(payload: str, scale: int = 8) -> bytes:
    """A PNG image of the payload's QR code (error correction M, a quiet zone of 4 modules),
    `scale` pixels per module."""
    out = io.BytesIO()
    _qr_code(payload, scale).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def to_svg(payload: str, scale: int = 8) -> str:
    """The payload's QR code as a standalone `<svg>` element, `scale` units per module."""
    out = io.BytesIO()
    _qr_code(payload, scale).save(out, kind="svg", scale=scale, border=4, xmldecl=False)
    return out.getvalue().decode("utf-8")
