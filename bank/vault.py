"""The vault: the bank's e-CNY that top-ups, redemptions and top-up on use move through
(bank/payment_engine.py), refilled from and returned to central."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from bank.adapters import books_sql as sql
from bank.adapters import tables as t
from bank.common import PENDING, REJECTED, SETTLED, TRANSFER_TTL_MS
from bank.domain import ledger
from rail_protocol import envelope
from rail_protocol.envelope import now_ms, seal
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import CENTRAL_ISSUE, CENTRAL_REDEEM

VAULT_DUE_LIMIT = 100   # pending vault instructions finished per pass (the rest next pass)


class Vault:
    """The bank node's vault (its database, keys and central through `bank`)."""

    def __init__(self, bank) -> None:
        self.bank = bank
        self._lock = asyncio.Lock()

    async def refill(self, needed_fen: int) -> None:
        """Draw e-CNY from central: at least `needed_fen`, up to the target level. The
        instruction is recorded before it is sent, so a crash never loses track of it."""
        async with self._lock:
            async with self.bank.engine.connect() as conn:
                vault = await sql.vault_balance(conn)
            # This request's need on top of what the vault holds: requests racing for the
            # vault each bring their own e-CNY, so none takes another's refill. The keeper
            # returns any surplus above the high mark.
            amount = needed_fen + max(self.bank.vault_target_fen - vault, 0)
            await self._vault_op("vault_issue", amount)

    async def _vault_op(self, kind: str, amount: int) -> None:
        op_type = CENTRAL_ISSUE if kind == "vault_issue" else CENTRAL_REDEEM
        env = seal(self.bank.key, op_type, {"bank_id": self.bank.bank_id, "amount_fen": amount},
                   ttl_ms=TRANSFER_TTL_MS)
        at = now_ms()
        async with self.bank.engine.begin() as conn:
            txn = await sql.insert_transaction(
                conn, kind=kind, signer=self.bank.key.key_id, instruction_id=env.id,
                digest=env.digest(), status=PENDING, amount_fen=amount,
                expires_ms=env.expires_ms, created_ms=at, updated_ms=at,
                next_attempt_ms=at, result=orjson.dumps(env.to_dict()).decode())
            if kind == "vault_redeem":
                await sql.move_vault(conn, -amount)
                await sql.insert_postings(conn, txn, ledger.vault_redeem_started(amount))
        await self.settle_vault_op(txn)

    async def settle_vault_op(self, txn_id: int) -> None:
        """Send (or re-send) a pending vault instruction to central and record its answer."""
        async with self.bank.engine.connect() as conn:
            row = await sql.transaction_by_id(conn, txn_id)
        if row is None or row.status != PENDING:
            return
        path = "/v1/issuance" if row.kind == "vault_issue" else "/v1/redemption"
        try:
            answer = await self.bank.central.request("POST", path, orjson.loads(row.result))
        except RailError as exc:
            if exc.code in ("insufficient_reserves", "insufficient_holdings"):
                await self._finish_vault_op(row, REJECTED, exc.code)
                raise RailError("vault_empty", f"central refused: {exc.code}") from None
            async with self.bank.engine.begin() as conn:
                await conn.execute(t.transactions.update().where(
                    t.transactions.c.txn_id == txn_id).values(next_attempt_ms=now_ms() + 2000))
            raise RailError("vault_empty", f"central unreachable: {exc.code}") from None
        envelope.verify_statement(self.bank.central_key, answer["receipt"])
        await self._finish_vault_op(row, SETTLED, None)

    async def _finish_vault_op(self, row: Any, status: str, code: str | None) -> None:
        async with self.bank.engine.begin() as conn:
            if not await sql.set_transaction_status(conn, row.txn_id, from_status=PENDING,
                                                    to_status=status, now_ms=now_ms(), code=code):
                return
            amount = row.amount_fen
            if row.kind == "vault_issue" and status == SETTLED:
                await sql.move_vault(conn, amount)
                await sql.insert_postings(conn, row.txn_id, ledger.vault_issue(amount))
            elif row.kind == "vault_redeem":
                postings = ledger.vault_redeem_done(amount) if status == SETTLED \
                    else ledger.vault_redeem_refused(amount)
                if status != SETTLED:
                    await sql.move_vault(conn, amount)
                await sql.insert_postings(conn, row.txn_id, postings)

    async def keep(self) -> None:
        """Refill below the low mark, return the surplus above the high mark; finish any
        vault instruction a crash left pending."""
        async with self.bank.engine.connect() as conn:
            pending = await sql.due(conn, PENDING, now_ms(), VAULT_DUE_LIMIT)
            vault = await sql.vault_balance(conn)
        for txn_id in pending:
            try:
                await self.settle_vault_op(txn_id)
            except RailError:
                pass
        if pending:
            return
        if vault < self.bank.vault_low_fen:
            await self.refill(self.bank.vault_target_fen)
        elif vault > self.bank.vault_high_fen:
            async with self._lock:
                await self._vault_op("vault_redeem", vault - self.bank.vault_target_fen)
