"""What merchants and wallets are told, in one place: every live event (Redis stream, the
cashier page, the wallet's notices) and every webhook body has its shape here, whichever
path booked the payment. The adapters only deliver them (`HotState`, the webhook worker)."""

from __future__ import annotations

SETTLED = "settled"


def payment_received(payment_id: str, amount_fen: int, order_id: str | None = None, *,
                     from_bank: str | None = None) -> dict:
    """A payment (or a credit from another bank) landed in the payee's wallet."""
    event = {"event": "payment.received", "payment_id": payment_id, "amount_fen": amount_fen,
             "order_id": order_id}
    if from_bank is not None:
        event["from_bank"] = from_bank
    return event


def webhook_body(event: dict, at_ms: int) -> dict:
    """The merchant's webhook for a settled event: the live event, its status and time."""
    return {**event, "status": SETTLED, "at_ms": at_ms}


def payment_finished(status: str, payment_id: str, order_id: str | None) -> dict:
    """An interbank payment's final outcome, to its payer (settled or rejected)."""
    return {"event": f"payment.{status}", "payment_id": payment_id, "order_id": order_id}


def refund_created(payment_id: str | None, amount_fen: int, refund_of: str) -> dict:
    """A merchant's refund accepted (to the merchant's live stream)."""
    return {"event": "refund.created", "amount_fen": amount_fen, "payment_id": payment_id,
            "refund_of": refund_of}


def refund_finished(status: str, payment_id: str, amount_fen: int, refund_of: str,
                    order_id: str | None, at_ms: int | None = None) -> dict:
    """A refund's final outcome, the merchant's webhook (`at_ms` added when it is queued)."""
    body = {"event": f"refund.{status}", "payment_id": payment_id, "amount_fen": amount_fen,
            "status": status, "refund_of": refund_of, "order_id": order_id}
    if at_ms is not None:
        body["at_ms"] = at_ms
    return body


def order_cancelled(order_id: str) -> dict:
    return {"event": "order.cancelled", "order_id": order_id}
