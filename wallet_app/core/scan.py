"""What a scanned text asks for. Every QR path of the app (camera, image file, pasted text)
ends in one `on_qr(text)` handler, which calls `read_scanned(text)` here.

Three kinds of code are understood:

1. A merchant-presented code (EMVCo layout, `rail_protocol.qr`): dynamic (an order with its
   amount) or static (the payer types the amount).
2. A wallet's receive code, this wallet's own simple format for paying a person:

       yuanrail:pay?wallet=<wallet id>[&amount_fen=<positive integer>][&name=<url-encoded>]

   `wallet` is the payee's wallet id (`<bank id>.<hex>`), `amount_fen` an optional amount
   in integer fen (no decimals, no sign), `name` an optional label the payee chose, shown
   to the payer but never trusted for anything. Paying it is a person-to-person payment.
   EMVCo's merchant-presented mode is for merchants, so persons get this instead.
3. A customer-presented payment code, signed (`YRPC1.`, `rail_protocol.payment_code`) or
   short (19 digits, `rail_protocol.short_code`, typed with or without spaces): only a
   merchant's POS charges it.

Anything else is refused with a `WalletError` whose code says why (`unreadable_code`), or
the rail's own QR error (`qr_bad_crc`, `qr_wrong_currency`, ...)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

from rail_protocol import qr
from rail_protocol.money import MAX_FEN
from rail_protocol import short_code
from rail_protocol.payment_code import PREFIX as CODE_PREFIX
from rail_protocol.payment_code import read_code
from wallet_app.core.errors import WalletError
from wallet_app.core.i18n import N_

RECEIVE_SCHEME = "yuanrail"
RECEIVE_PATH = "pay"
MAX_SCAN_CHARS = 1200
MAX_NAME_CHARS = 40
_WALLET_ID = re.compile(r"^[a-z0-9_-]{1,32}\.[A-Za-z0-9]{4,48}$")
_FEN = re.compile(r"^[1-9][0-9]{0,15}$")


@dataclass(frozen=True)
class PayMerchant:
    """A merchant's code: pay `merchant_id` (an order's exact amount when dynamic)."""

    code: qr.MerchantQR
    payload: str

    @property
    def payee(self) -> str:
        return self.code.merchant_id

    @property
    def amount_fen(self) -> int | None:
        return self.code.amount_fen

    @property
    def label(self) -> str:
        return f"{self.code.merchant_name}, {self.code.merchant_city}"


@dataclass(frozen=True)
class PayWallet:
    """A person's receive code: pay `wallet_id`, the amount given or typed by the payer."""

    wallet_id: str
    amount_fen: int | None = None
    name: str | None = None

    @property
    def payee(self) -> str:
        return self.wallet_id

    @property
    def label(self) -> str:
        return f"{self.name} ({self.wallet_id})" if self.name else self.wallet_id


@dataclass(frozen=True)
class CustomerCode:
    """A payment code shown by a customer's wallet, for a merchant to charge."""

    text: str
    payer_wallet: str | None      # None for a short code: only the payer's bank knows
    instruction_id: str | None
    expires_ms: int | None


Scanned = PayMerchant | PayWallet | CustomerCode


def receive_payload(wallet_id: str, amount_fen: int | None = None,
                    name: str | None = None) -> str:
    """This wallet's receive code (format in the module docstring)."""
    if not _WALLET_ID.match(wallet_id):
        raise WalletError("invalid_wallet_id", f"{wallet_id!r} is not a wallet id")
    text = f"{RECEIVE_SCHEME}:{RECEIVE_PATH}?wallet={wallet_id}"
    if amount_fen is not None:
        if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) \
                or not 0 < amount_fen <= MAX_FEN:
            raise WalletError("invalid_amount", N_("the amount must be a positive number of fen"))
        text += f"&amount_fen={amount_fen}"
    if name:
        text += f"&name={quote(name[:MAX_NAME_CHARS], safe='')}"
    return text


def read_scanned(text: object) -> Scanned:
    """What `text` (from the camera, an image or the clipboard) asks for, or a refusal."""
    if not isinstance(text, str) or not text.strip():
        raise WalletError("unreadable_code", N_("no code was found"))
    text = text.strip()
    if len(text) > MAX_SCAN_CHARS:
        raise WalletError("unreadable_code", N_("the code is too long to be one of ours"))
    if text.startswith(CODE_PREFIX):
        env = read_code(text)  # RailError payment_code_invalid when garbled
        return CustomerCode(text, env.body["payer_wallet"], env.id, env.expires_ms)
    if short_code.is_short_code(text.replace(" ", "")):
        return CustomerCode(text.replace(" ", ""), None, None, None)
    if text.lower().startswith(RECEIVE_SCHEME + ":"):
        return _read_receive(text)
    if text.startswith("000201"):
        return PayMerchant(qr.decode(text), text)  # RailError qr_* when wrong
    raise WalletError("unreadable_code", N_("this is not a payment code of the e-CNY rail"))


def _read_receive(text: str) -> PayWallet:
    parts = urlsplit(text)
    if parts.scheme.lower() != RECEIVE_SCHEME or parts.path != RECEIVE_PATH:
        raise WalletError("unreadable_code", "a yuanrail code must be yuanrail:pay?...")
    try:
        params = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True,
                                max_num_fields=5))
    except ValueError:
        raise WalletError("unreadable_code", N_("the receive code is garbled")) from None
    unknown = set(params) - {"wallet", "amount_fen", "name"}
    if unknown:
        raise WalletError("unreadable_code", f"unknown fields {sorted(unknown)}")
    wallet_id = params.get("wallet", "")
    if not _WALLET_ID.match(wallet_id):
        raise WalletError("unreadable_code", N_("the receive code names no valid wallet"))
    amount = params.get("amount_fen")
    if amount is not None and (not _FEN.match(amount) or int(amount) > MAX_FEN):
        raise WalletError("unreadable_code", N_("the receive code's amount is not whole fen"))
    name = params.get("name") or None
    if name is not None and (len(name) > MAX_NAME_CHARS or not name.isprintable()):
        raise WalletError("unreadable_code", N_("the receive code's name is not printable"))
    return PayWallet(wallet_id, int(amount) if amount else None, name)
