"""PIN guards at a bank node: the bank keeps each wallet's share of its key-file key and
gives it only for the right PIN, counting wrong ones (rail_protocol/pin_guard.py)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable

import sqlalchemy as sa

from bank.adapters import tables as t
from bank.domain.pin_guards import GuardState, try_pin
from bank.services import Bank
from rail_protocol import pin_guard
from rail_protocol.envelope import check_live, now_ms
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import PIN_GUARD


class PinGuards:
    def __init__(self, bank: Bank, clock: Callable[[], int] = now_ms) -> None:
        self.bank, self.clock = bank, clock

    async def register(self, raw: object) -> dict:
        """The wallet (signed by its key) registers the guard its PIN is checked by, and gets
        the share back. It replaces the wallet's guard before it, count and all; a retry of
        the same guard gets the same share."""
        env, wallet = await self.bank.signed_by_wallet(raw, PIN_GUARD, "wallet_id")
        check_live(env, self.clock())
        guard_hash, verifier_hash = env.body.get("guard_hash"), env.body.get("verifier_hash")
        if not pin_guard.is_digest(guard_hash) or not pin_guard.is_digest(verifier_hash):
            raise RailError("invalid_field",
                            "guard_hash and verifier_hash are 64 lowercase hex digits")
        g = t.pin_guards.c
        async with self.bank.engine.begin() as conn:
            row = (await conn.execute(sa.select(t.pin_guards).where(
                g.wallet_id == wallet.wallet_id).with_for_update())).first()
            if row is not None and row.guard_hash == guard_hash \
                    and row.verifier_hash == verifier_hash:
                return {"wallet_id": wallet.wallet_id, "share": row.share}
            taken = (await conn.execute(sa.select(g.wallet_id).where(
                g.guard_hash == guard_hash))).first()
            if taken is not None:
                raise RailError("invalid_field", "that guard id is in use")
            share = secrets.token_hex(pin_guard.SHARE_BYTES)
            values = dict(guard_hash=guard_hash, verifier_hash=verifier_hash, share=share,
                          failures=0, locked_until_ms=0, updated_ms=self.clock())
            if row is None:
                await conn.execute(t.pin_guards.insert().values(
                    wallet_id=wallet.wallet_id, **values))
            else:
                await conn.execute(t.pin_guards.update().where(
                    g.wallet_id == wallet.wallet_id).values(**values))
        return {"wallet_id": wallet.wallet_id, "share": share}

    async def open(self, body: object) -> dict:
        """The share, for the guard id and the right PIN's verifier. The guard's row is read
        locked and the try counted before the answer, so tries sent at once are each counted
        and none passes the limit."""
        guard_id = body.get("guard_id") if isinstance(body, dict) else None
        verifier = body.get("verifier") if isinstance(body, dict) else None
        if not isinstance(body, dict) or set(body) != {"guard_id", "verifier"} \
                or not pin_guard.is_guard_id(guard_id) or not pin_guard.is_verifier(verifier):
            raise RailError("invalid_field", "the body is {guard_id: 32 lowercase hex digits, "
                            "verifier: 64 lowercase hex digits}")
        g = t.pin_guards.c
        async with self.bank.engine.begin() as conn:
            row = (await conn.execute(sa.select(t.pin_guards).where(
                g.guard_hash == pin_guard.digest(guard_id)).with_for_update())).first()
            if row is None:
                raise RailError("unknown_pin_guard")
            right = hmac.compare_digest(row.verifier_hash, pin_guard.digest(verifier))
            before = GuardState(row.failures, row.locked_until_ms)
            after, refusal = try_pin(before, right, self.clock())
            if after != before:
                await conn.execute(t.pin_guards.update().where(
                    g.wallet_id == row.wallet_id).values(
                    failures=after.failures, locked_until_ms=after.locked_until_ms,
                    updated_ms=self.clock()))
        if refusal is not None:     # raised after the commit: the try stays counted
            raise refusal
        return {"wallet_id": row.wallet_id, "share": row.share}
