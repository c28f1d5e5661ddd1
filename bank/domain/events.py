"""What a merchant and a wallet are told when money arrives: one shape for the live event
(Redis stream, the cashier page) and the webhook, whichever path booked the payment."""

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
