"""What every use case of a bank node shares: transaction statuses, the interbank timings,
wallet ids and where they route, a payment's body and what a wallet sees of a payment."""

from __future__ import annotations

from typing import Any

from rail_protocol import envelope
from rail_protocol.envelope import Envelope
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey
from rail_protocol.money import parse_fen

TRANSFER_TTL_MS = 24 * 3600 * 1000
# The request that debits an interbank payment forwards it at once and waits this long for
# the outcome; the outbox leaves the payment alone until then, so they do not race.
FORWARD_WAIT_MS = 5_000
SETTLED, PROCESSING, REJECTED, PENDING = "settled", "processing", "rejected", "pending"
# Refusals from central that mean it did not, and never will, prepare the transfer.
CENTRAL_FINAL_REFUSALS = {"unknown_bank", "invalid_field", "invalid_amount", "expired",
                           "insufficient_holdings", "signer_mismatch"}


def wallet_bank(wallet_id: str) -> str:
    """A wallet id is `<bank id>.<random>`: where to route a payment to it."""
    return wallet_id.split(".", 1)[0]


def check_wallet_id(value: object, field: str = "wallet_id") -> str:
    if not isinstance(value, str) or not 3 <= len(value) <= 64 or "." not in value:
        raise RailError("invalid_field", f"{field} must be a wallet id like 'bank.abc123'")
    return value


def check_memo(memo: object) -> str | None:
    """A payment's or a hold's note to the payee: absent, or at most 140 characters."""
    if memo is not None and (not isinstance(memo, str) or len(memo) > 140):
        raise RailError("invalid_field", "memo must be a string of at most 140 characters")
    return memo


def parse_payment(body: dict) -> tuple[str, int, str | None, str | None]:
    """Check a `bank.pay` body, first error wins: (payee, amount, memo, order id)."""
    payee_id = check_wallet_id(body.get("payee_wallet"), "payee_wallet")
    amount = parse_fen(body.get("amount_fen"))
    memo = check_memo(body.get("memo"))
    order_id = body.get("order_id")
    if order_id is not None and (not isinstance(order_id, str) or not 1 <= len(order_id) <= 25):
        raise RailError("invalid_field", "order_id must be 1-25 characters")
    return payee_id, amount, memo, order_id


def retry_delay_ms(created_ms: int, at_ms: int) -> int:
    """How long the outbox waits before re-sending message 1 of a payment made at
    `created_ms`: soon at first, then more slowly, at most 5 s."""
    return min(200 + max(at_ms - created_ms, 0) // 4, 5_000)


def payment_txn_id(payment_id: object) -> int | None:
    """The transaction id a payment id (`P123`) names, or None when it is not one: a string
    of `P` and 1-18 ASCII digits (a transaction id is a 64-bit integer)."""
    if not isinstance(payment_id, str) or not 2 <= len(payment_id) <= 19 \
            or payment_id[0] != "P" or not payment_id[1:].isascii() \
            or not payment_id[1:].isdigit():
        return None
    return int(payment_id[1:])


def payment_view(row: Any) -> dict:
    """What a wallet sees of one of its transactions."""
    view = {"payment_id": f"P{row.txn_id}", "kind": row.kind, "status": row.status,
            "amount_fen": row.amount_fen, "payer_wallet": row.payer_wallet,
            "payee_wallet": row.payee_wallet, "created_ms": row.created_ms,
            "updated_ms": row.updated_ms, "instruction_id": row.instruction_id}
    if row.counterparty_bank:
        view["counterparty_bank"] = row.counterparty_bank
    if row.memo:
        view["memo"] = row.memo
    if row.code:
        view["code"] = row.code
    if row.order_id:
        view["order_id"] = row.order_id
    if row.refund_of:
        view["refund_of"] = f"P{row.refund_of}"
    if row.refunded_fen:
        view["refunded_fen"] = row.refunded_fen
    return view


def check_signed_by(env: Envelope, wallet_id: str | None, public_key: PublicKey | None,
                    expected_type: str, wallet_field: str) -> None:
    """An instruction signed by a wallet of this bank (`wallet_id`, None when the signer's
    key is no wallet's here) and naming that wallet in `wallet_field`: the one check behind
    every signed wallet instruction, cached identity or fresh row."""
    if wallet_id is None or public_key is None:
        raise RailError("unknown_key", "the signer is not a wallet key of this bank")
    envelope.verify(env, public_key, expected_type=expected_type, check_expiry=False)
    if env.body.get(wallet_field) != wallet_id:
        raise RailError("wrong_key", f"{wallet_field} is not the signing wallet")
