"""Refusals that happen on the device, before anything reaches the bank.

They share the shape of the rail's `RailError` (a snake_case code and a message), so a
screen explains both the same way (`messages.explain`)."""

from __future__ import annotations


class WalletError(Exception):
    """A refusal by the wallet itself: a wrong PIN, an unreadable code, no wallet yet."""

    def __init__(self, code: str, message: str = "", **details: object) -> None:
        self.code = code
        self.message = message or code.replace("_", " ")
        self.details = details
        super().__init__(f"{code}: {self.message}")


class PaymentPending(WalletError):
    """The bank did not answer; the instruction is kept in the outbox and will be sent
    again with the same id, so it can never be paid twice."""

    def __init__(self, instruction_id: str, message: str = "") -> None:
        super().__init__("payment_pending", message or "the bank did not answer yet",
                         instruction_id=instruction_id)
        self.instruction_id = instruction_id
