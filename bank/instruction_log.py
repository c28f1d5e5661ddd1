"""The bank's instruction log (rail_service/instructions.py) is its journal: an instruction's
effect is a transaction row under its (signer, instruction_id), unique, so a done instruction
needs no record of its own; a refused one is a rejected row under the same key, with no
postings and no wallet (it is in no one's history), so a repeat gets the same refusal."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from bank.adapters import books_sql as sql
from bank.common import REJECTED, payment_view
from rail_protocol.envelope import Envelope, now_ms
from rail_service.instructions import Recorded


def recorded(row: Any) -> Recorded:
    """What a repeat of the instruction behind transaction `row` is answered with."""
    if row.status == REJECTED:
        return Recorded(row.digest, row.expires_ms, refusal=(row.code or "invalid_field", None))
    return Recorded(row.digest, row.expires_ms,
                    outcome={**orjson.loads(row.result), **payment_view(row)})


class Journal:
    """`InstructionLog` over the bank's transactions. `effects_keyed`: the instructions it
    runs write their effect's own row under their key (money moved); otherwise (a mandate
    made, say) a `done` row with no money and no wallet is the record."""

    def __init__(self, *, effects_keyed: bool) -> None:
        self.effects_keyed = effects_keyed

    @staticmethod
    async def find(conn: AsyncConnection, signer: str, instruction_id: str) -> Recorded | None:
        row = await sql.find_transaction(conn, signer, instruction_id)
        return recorded(row) if row is not None else None

    async def record(self, conn: AsyncConnection, env: Envelope, status: str,
                     result: dict) -> None:
        if status != REJECTED and self.effects_keyed:
            return
        at = now_ms()
        amount = env.body.get("amount_fen")
        await sql.insert_transaction(
            conn, kind=env.type.removeprefix("bank."), signer=env.signer,
            instruction_id=env.id, digest=env.digest(), status=status,
            code=result.get("code") if status == REJECTED else None,
            amount_fen=amount if type(amount) is int and status == REJECTED else 0,
            result="{}" if status == REJECTED else orjson.dumps(result).decode(),
            expires_ms=env.expires_ms, created_ms=at, updated_ms=at)


JOURNAL = Journal(effects_keyed=True)         # payments, holds: the effect is the record
INSTRUCTIONS = Journal(effects_keyed=False)   # instructions that move no money
