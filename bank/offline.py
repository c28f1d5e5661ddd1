"""Offline payments at a bank node (the protocol: rail_protocol/offline.py).

A wallet's offline reserve is a purse: a hold with no payee (bank/holds.py), debited from the
wallet under the caps and signed over by the bank. Receivers sync the notes they accepted;
each note is paid out of the purse once per (purse, number), in the transaction that moves
the money. A note whose number was paid to a different note, or that asks for more than the
purse still holds, is a double spend: refused, nothing credited. What is left returns to the
wallet at the purse's sync deadline, as any hold expires."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bank.adapters import tables as t
from bank.domain import holds as rules
from bank.holds import Holds
from bank.services import Bank
from rail_protocol import offline
from rail_protocol.envelope import check_live, sign_statement
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import OFFLINE_CLAIM, OFFLINE_RESERVE
from rail_protocol.keys import PublicKey
from rail_protocol.money import parse_fen


class Offline:
    def __init__(self, bank: Bank, holds: Holds) -> None:
        self.bank, self.holds = bank, holds

    async def reserve(self, raw: object) -> dict:
        """Set aside up to ¥500 for at most 10 offline payments; the purse, signed. The notes
        are signed by the purse's key: the wallet's own, or `purse_key`, a key the device
        made for this purse alone (so a phone locked with no network can still pay offline
        without ever opening the wallet's key)."""
        env, wallet = await self.bank.signed_by_wallet(raw, OFFLINE_RESERVE, "wallet_id")
        at = self.holds.clock()
        check_live(env, at)
        amount = parse_fen(env.body.get("amount_fen"))
        purse_key = env.body.get("purse_key")
        if purse_key is not None:       # a key of its own, so paying offline needs no PIN
            PublicKey.from_text(purse_key)
        count = env.body.get("max_payments")
        if type(count) is not int or not 1 <= count <= offline.MAX_PAYMENTS:
            raise RailError("invalid_field", f"max_payments is 1 to {offline.MAX_PAYMENTS}")

        async def within_cap(conn: AsyncConnection) -> None:
            """All the wallet's pending reserves together, read under its lock: two reserves
            at once cannot both pass."""
            h = t.holds.c
            reserved = int((await conn.execute(sa.select(sa.func.coalesce(
                sa.func.sum(h.remaining_fen), 0)).where(
                h.funder_wallet == wallet.wallet_id, h.kind == rules.PURSE,
                h.status == rules.PENDING))).scalar_one())
            if reserved + amount > offline.RESERVE_CAP_FEN:
                raise RailError("invalid_amount", f"at most {offline.RESERVE_CAP_FEN} fen may "
                                f"be reserved offline; {reserved} fen already is")

        pay_until = at + offline.PAY_WINDOW_MS
        view = await self.holds.open(env, rules.PURSE, wallet.wallet_id, at, amount=amount,
                                     deadline=pay_until + offline.SYNC_GRACE_MS,
                                     max_payments=count, memo="offline reserve",
                                     guard=within_cap)
        return {"purse": self.purse(view, purse_key or wallet.public_key), "reserve": view}

    def purse(self, view: dict, public_key: str) -> dict:
        """The bank's signed word on a purse: what a receiver checks with no network."""
        return sign_statement(self.bank.key, {
            "type": offline.PURSE_TYPE, "purse_id": view["hold_id"],
            "bank_id": self.bank.bank_id, "wallet_id": view["funder_wallet"],
            "public_key": public_key, "amount_fen": view["amount_fen"],
            "max_payments": view["max_payments"],
            "pay_until_ms": view["deadline_ms"] - offline.SYNC_GRACE_MS})

    async def claim(self, raw: object) -> dict:
        """A receiver syncs an offline payment it accepted: credited once, out of the purse."""
        env, payee = await self.bank.signed_by_wallet(raw, OFFLINE_CLAIM, "payee_wallet")
        at = self.holds.clock()
        check_live(env, at)
        try:
            payment = offline.read(env.body.get("payment"), self.bank.key.public_key)
        except RailError as exc:
            if exc.code == "unknown_key":   # a purse of another bank: not synced here (yet)
                raise RailError("offline_invalid", "the purse is not of this bank") from None
            raise
        if payment.payee_wallet != payee.wallet_id:
            raise RailError("signer_mismatch", "the note pays another wallet")
        digest = payment.note.digest()
        first = await self._note(payment.purse_id, payment.seq)
        if first is None and not await self.bank.answer_known(env):
            async def record(conn: AsyncConnection) -> None:
                await conn.execute(t.offline_notes.insert().values(
                    purse_id=payment.purse_id, seq=payment.seq, digest=digest,
                    payee_wallet=payee.wallet_id, amount_fen=payment.amount_fen,
                    claimed_ms=at))
            try:
                await self.holds.move(
                    payment.purse_id, lambda purse, _mcc, when: rules.decide_claim(
                        purse, payment.amount_fen, when), at, env=env, kind="offline_pay",
                    payee=payee.wallet_id, record=record)
            except IntegrityError:   # the same number synced at the same moment
                pass
            first = await self._note(payment.purse_id, payment.seq)
        if first is None:
            raise RailError("offline_double_spend", "the note was not credited")
        if first.digest != digest:
            raise RailError("offline_double_spend", f"note {payment.seq} of this purse was "
                                                    "already paid to another note")
        return {"purse_id": first.purse_id, "seq": first.seq, "status": "credited",
                "payee_wallet": first.payee_wallet, "amount_fen": first.amount_fen,
                "claimed_ms": first.claimed_ms}

    async def _note(self, purse_id: str, seq: int):
        async with self.bank.engine.connect() as conn:
            return (await conn.execute(sa.select(t.offline_notes).where(
                t.offline_notes.c.purse_id == purse_id,
                t.offline_notes.c.seq == seq))).first()
