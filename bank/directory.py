"""The other bank nodes, as central certifies them: where each answers and its key, for
forwarding charges; and whether a bank exists at all, so that a payment to a bank the rail
does not know is refused before any money moves (rather than debited, sent, refused by
central and refunded). Answers are cached: a certified node for a few minutes, an unknown
bank for a few seconds (a bank enrolled a moment ago is soon payable)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from central.domain import check_bank_id
from rail_protocol.envelope import verify_statement
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey

if TYPE_CHECKING:
    from bank.services import Bank

KNOWN_TTL_S = 300.0
UNKNOWN_TTL_S = 5.0



class BankDirectory:
    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self._nodes: dict[str, tuple[float, str, PublicKey]] = {}
        self._unknown: dict[str, float] = {}

    async def node(self, bank_id: str) -> tuple[str, PublicKey]:
        """Another bank node's URL and key, checked against central's certificate;
        `unknown_bank` when central knows no such bank, `unknown_bank_node` when its answer
        cannot be trusted or central cannot be asked."""
        try:
            check_bank_id(bank_id)      # as central enrols them
        except RailError:
            raise RailError("unknown_bank", "not a bank id of this rail") from None
        now = time.monotonic()
        cached = self._nodes.get(bank_id)
        if cached and now - cached[0] < KNOWN_TTL_S:
            return cached[1], cached[2]
        if now - self._unknown.get(bank_id, -UNKNOWN_TTL_S) < UNKNOWN_TTL_S:
            raise RailError("unknown_bank", f"no bank {bank_id!r} on the rail")
        try:
            info = await self.bank.central.request("GET", f"/v1/banks/{bank_id}/node")
            verify_statement(self.bank.central_key, info["certificate"])
        except RailError as exc:
            if exc.code in ("unknown_bank", "not_found"):
                self._unknown[bank_id] = now
                raise RailError("unknown_bank", f"no bank {bank_id!r} on the rail") from None
            raise RailError("unknown_bank_node", f"{bank_id}: {exc.code}") from None
        if not info.get("url") or info["certificate"].get("bank_id") != bank_id:
            raise RailError("unknown_bank_node", f"{bank_id} has no certified node")
        key = PublicKey.from_text(info["certificate"]["public_key"])
        self._nodes[bank_id] = (now, info["url"], key)
        self._unknown.pop(bank_id, None)
        return info["url"], key

    async def check_payable(self, bank_id: str) -> None:
        """Refuse (`unknown_bank`) a payment to a bank central does not know. When central
        cannot be asked, the payment goes ahead: central decides it, exactly once, later."""
        if bank_id == self.bank.bank_id:
            return
        try:
            await self.node(bank_id)
        except RailError as exc:
            if exc.code == "unknown_bank":
                raise
