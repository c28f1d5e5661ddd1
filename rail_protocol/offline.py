"""Offline payments: a wallet with no network pays another device-to-device, from an offline
reserve its bank set aside and signed over, within the pilots' risk caps.

1. Online, the wallet reserves up to RESERVE_CAP_FEN for at most MAX_PAYMENTS payments. Its
   bank moves that much out of the wallet (into `held`, bank/holds.py) and signs a **purse**
   statement: the purse id, the wallet and its key, the amount, how many payments, and until
   when they may be made.
2. Offline, each payment is a **note**: an instruction (`bank.offline_pay`) signed by the
   wallet's key, numbered 1..max_payments, naming the payee and the amount. The payer shows
   the purse and the note as one QR (`PREFIX` + base64url of their canonical JSON); the
   receiver checks both signatures, its own name and the caps with no network either.
3. Later, the receiver syncs: it hands the note to its bank, which pays it out of the purse,
   exactly once per (purse, number). A second note under a number already paid, or notes
   adding up to more than the purse, are double spends: refused, nothing credited. The payer
   can never spend more than the reserve, so offline money is never created; what a receiver
   accepted beyond it is the receiver's risk, bounded by the caps.
4. After the purse's sync deadline what is left of the reserve returns to the wallet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rail_protocol.canonical import canonical_bytes, parse_json
from rail_protocol.envelope import MAX_TTL_MS, Envelope, seal, verify, verify_statement
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import OFFLINE_PAY
from rail_protocol.keys import PublicKey, SigningKey, b64decode, b64encode

PREFIX = "YROF1."
PURSE_TYPE = "bank.offline_purse"
RESERVE_CAP_FEN = 50_000          # ¥500 reserved for offline use at most, as the pilots cap it
MAX_PAYMENTS = 10                 # and at most 10 payments from one reserve
PAY_WINDOW_MS = 7 * 24 * 3600 * 1000    # payments made within a week of reserving
SYNC_GRACE_MS = 7 * 24 * 3600 * 1000    # and synced within a week after that
MAX_TEXT_CHARS = 4_000


@dataclass(frozen=True, slots=True)
class OfflinePayment:
    """A note checked against its purse: what the receiver accepts and later syncs."""

    purse: dict[str, Any]
    note: Envelope

    @property
    def purse_id(self) -> str:
        return self.purse["purse_id"]

    @property
    def seq(self) -> int:
        return self.note.body["seq"]

    @property
    def amount_fen(self) -> int:
        return self.note.body["amount_fen"]

    @property
    def payee_wallet(self) -> str:
        return self.note.body["payee_wallet"]

    @property
    def text(self) -> str:
        return encode(self.purse, self.note)


def encode(purse: dict[str, Any], note: Envelope) -> str:
    return PREFIX + b64encode(canonical_bytes({"purse": purse, "note": note.to_dict()}))


def make_note(key: SigningKey, purse: dict[str, Any], seq: int, payee_wallet: str,
              amount_fen: int, *, at_ms: int | None = None) -> OfflinePayment:
    """Sign the `seq`-th payment of `purse` on the device, with no network."""
    if not 1 <= seq <= purse["max_payments"]:
        raise ValueError(f"the purse allows payments 1..{purse['max_payments']}")
    note = seal(key, OFFLINE_PAY, {"purse_id": purse["purse_id"], "seq": seq,
                                   "payee_wallet": payee_wallet, "amount_fen": amount_fen},
                id=f"{purse['purse_id']}.{seq}", created_ms=at_ms, ttl_ms=MAX_TTL_MS)
    return OfflinePayment(purse, note)


def read(text: object, bank_key: PublicKey) -> OfflinePayment:
    """Check a scanned offline payment with no network: the purse signed by the payer's
    bank (`bank_key`), the note signed by the purse's wallet key, numbered within the purse,
    for no more than the purse holds, made before the purse's payment window closed.
    Refused with `offline_invalid` (or a signature code) otherwise."""
    if not isinstance(text, str) or not text.startswith(PREFIX) or len(text) > MAX_TEXT_CHARS:
        raise RailError("offline_invalid", "not an offline payment of this rail")
    try:
        both = parse_json(b64decode(text[len(PREFIX):], field="offline payment"))
        purse, note = both["purse"], Envelope.parse(both["note"])
    except (RailError, KeyError, TypeError):
        raise RailError("offline_invalid", "the offline payment is unreadable") from None
    if not isinstance(purse, dict) or purse.get("type") != PURSE_TYPE:
        raise RailError("offline_invalid", "no purse")
    verify_statement(bank_key, purse)
    verify(note, PublicKey.from_text(purse.get("public_key", "")), expected_type=OFFLINE_PAY,
           check_expiry=False)
    body = note.body
    seq, amount = body.get("seq"), body.get("amount_fen")
    if body.get("purse_id") != purse.get("purse_id") or note.id != f"{purse['purse_id']}.{seq}":
        raise RailError("offline_invalid", "the note is not of this purse")
    if type(seq) is not int or not 1 <= seq <= purse.get("max_payments", 0):
        raise RailError("offline_invalid", "the note's number is outside the purse")
    if type(amount) is not int or not 0 < amount <= purse.get("amount_fen", 0):
        raise RailError("offline_invalid", "the note pays more than the purse holds")
    if not isinstance(body.get("payee_wallet"), str):
        raise RailError("offline_invalid", "the note names no payee")
    if note.created_ms > purse.get("pay_until_ms", 0):
        raise RailError("offline_invalid", "the purse's time to pay offline is over")
    return OfflinePayment(purse, note)
