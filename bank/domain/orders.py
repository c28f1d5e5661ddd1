"""Merchant orders: what a dynamic QR code stands for, and when it may be paid.

    created --paid once--> paid --refund--> partly_refunded --refund--> refunded
       |--expires_ms passes--> expired      (computed: an unpaid order past its expiry)
       '--merchant cancels---> cancelled
"""

from __future__ import annotations

from dataclasses import dataclass

from rail_protocol.errors import RailError
from rail_protocol.money import parse_fen

CREATED, PAID, CANCELLED, EXPIRED = "created", "paid", "cancelled", "expired"
PARTLY_REFUNDED, REFUNDED = "partly_refunded", "refunded"
MAX_ORDER_TTL_MS = 24 * 3600 * 1000
DEFAULT_ORDER_TTL_MS = 15 * 60 * 1000


@dataclass(frozen=True, slots=True)
class OrderState:
    order_id: str
    merchant_wallet: str
    amount_fen: int
    status: str
    expires_ms: int
    refunded_fen: int = 0


def effective_status(order: OrderState, at_ms: int) -> str:
    """An unpaid order past its expiry is expired, whether or not anyone wrote it down."""
    if order.status == CREATED and at_ms >= order.expires_ms:
        return EXPIRED
    return order.status


def check_payable(order: OrderState, payee_wallet: str, amount_fen: int, at_ms: int) -> None:
    """Refuse paying `order` unless it is open, unexpired, to this payee, for this amount."""
    status = effective_status(order, at_ms)
    if order.merchant_wallet != payee_wallet:
        raise RailError("unknown_order", "the order is not the payee's")
    if status == EXPIRED:
        raise RailError("order_expired")
    if status == CANCELLED:
        raise RailError("order_cancelled")
    if status != CREATED:
        raise RailError("order_paid")
    if amount_fen != order.amount_fen:
        raise RailError("order_amount_mismatch",
                        f"the order is for {order.amount_fen} fen, not {amount_fen}")


def status_after_refund(amount_fen: int, refunded_fen: int) -> str:
    return REFUNDED if refunded_fen >= amount_fen else PARTLY_REFUNDED


def refund_split(refund_fen: int, pulled_fen: int, refunded_before_fen: int) -> tuple[int, int]:
    """Split a refund into (to the deposit account, to the wallet). Money the payment pulled
    from the deposit account by top-up on use goes back there first: back the way it came."""
    still_owed_to_deposit = max(pulled_fen - refunded_before_fen, 0)
    to_deposit = min(refund_fen, still_owed_to_deposit)
    return to_deposit, refund_fen - to_deposit


def check_refund(paid_fen: int, refunded_before_fen: int, refund_fen: int) -> None:
    """Refunds, full or partial, never exceed in total what was paid."""
    if refunded_before_fen + refund_fen > paid_fen:
        raise RailError("refund_exceeds_payment",
                        f"{paid_fen} fen paid, {refunded_before_fen} already refunded")


@dataclass(frozen=True, slots=True)
class NewOrder:
    amount_fen: int
    reference: str
    description: str | None
    ttl_ms: int


def parse_new_order(body: dict) -> NewOrder:
    """Check a merchant's order request, first error wins."""
    amount = parse_fen(body.get("amount_fen"))
    reference = body.get("reference")
    if not isinstance(reference, str) or not 1 <= len(reference) <= 64:
        raise RailError("invalid_field", "reference must be 1-64 characters")
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 140):
        raise RailError("invalid_field", "description must be at most 140 characters")
    ttl_ms = body.get("ttl_ms", DEFAULT_ORDER_TTL_MS)
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) \
            or not 1_000 <= ttl_ms <= MAX_ORDER_TTL_MS:
        raise RailError("invalid_field", "ttl_ms must be 1 s to 24 h in milliseconds")
    return NewOrder(amount, reference, description, ttl_ms)
