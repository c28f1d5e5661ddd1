"""Charges a merchant starts: a customer-presented payment code scanned at the POS (the
signed code, or the short numeric one: rail_protocol/short_code.py), and a merchant app
charging under a mandate. Either way the money moves from the payer's wallet
at the payer's bank; when that is another bank, the merchant's bank forwards the charge
there, signed with its certified key, and the payer's bank pays through central as usual."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bank.adapters import tables as t
from bank.common import check_wallet_id, wallet_bank
from bank.domain import mandates
from bank.domain.payments import check_code_pin
from bank.domain.wallets import MERCHANT
from bank.instruction_log import INSTRUCTIONS
from bank.services import Bank
from rail_protocol import envelope
from rail_protocol.envelope import Envelope, check_live, now_ms, seal
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import (  # noqa: E402
    CHARGE_CODE,
    INTERBANK_CHARGE,
    MANDATE,
    MANDATE_CHARGE,
    REVOKE_MANDATE,
    SHORT_CODE_SECRET,
)
from rail_protocol.keys import PublicKey
from rail_protocol.money import parse_fen
from rail_protocol import short_code
from rail_protocol.payment_code import CODE_TYPE, read_code
from rail_service.client import JSONClient
from rail_service.instructions import execute_once


class Charges:
    """Payment codes and mandate charges; the money moves through `payments`, the bank's
    payment engine (bank/payment_engine.py), set when it starts."""

    # Wrong short codes a slot may be tried with before it is locked for LOCK_MS: seven
    # digits and at most MAX_FAILURES guesses per lock make a guessed charge a 1-in-10^6 event.
    MAX_FAILURES = 10
    LOCK_MS = 10 * 60_000

    def __init__(self, bank: Bank, *, transport=None,
                 code_issuers: dict[str, str] | None = None) -> None:
        self.bank = bank
        self.payments = None
        self._transport = transport
        self.code_issuers = dict(code_issuers or {})
        self.code_issuer = next((number for number, bank_id in self.code_issuers.items()
                                 if bank_id == bank.bank_id), None)

    async def _forward(self, payer_bank: str, body: dict) -> dict:
        url, _key = await self.bank.directory.node(payer_bank)
        env = seal(self.bank.key, INTERBANK_CHARGE, {**body, "merchant_bank": self.bank.bank_id})
        async with JSONClient(url, transport=self._transport, timeout_s=15) as other:
            return await other.request("POST", "/v1/interbank/charges", env.to_dict())

    async def interbank_charge(self, raw: object) -> dict:
        """A charge forwarded by a merchant's bank: check that bank's certified key, then
        run it here, where the payer's wallet is."""
        env = Envelope.parse(raw)
        merchant_bank = env.body.get("merchant_bank")
        if not isinstance(merchant_bank, str):
            raise RailError("invalid_field", "merchant_bank")
        _url, key = await self.bank.directory.node(merchant_bank)
        envelope.verify(env, key, expected_type=INTERBANK_CHARGE)
        merchant = check_wallet_id(env.body.get("merchant_wallet"), "merchant_wallet")
        if wallet_bank(merchant) != merchant_bank:
            raise RailError("signer_mismatch", "the merchant is not at the forwarding bank")
        if "code" in env.body:
            return await self.pay_code(env.body["code"], merchant, env.body.get("amount_fen"))
        return await self.pay_mandate(env.body.get("charge"))

    # --- payment codes ----------------------------------------------------------------

    async def charge_code(self, raw: object) -> dict:
        """The merchant's POS scanned a payment code: charge it through the payer's bank."""
        env, merchant = await self.payments.signed(raw, CHARGE_CODE, "merchant_wallet")
        check_live(env)
        if merchant.kind != MERCHANT:
            raise RailError("not_a_merchant")
        amount = parse_fen(env.body.get("amount_fen"))
        payer_bank = self._payer_bank(env.body.get("code"))
        if payer_bank != self.bank.bank_id:
            return await self._forward(payer_bank, {"code": env.body["code"],
                                                    "merchant_wallet": merchant.wallet_id,
                                                    "amount_fen": amount})
        return await self.pay_code(env.body["code"], merchant.wallet_id, amount)

    def _payer_bank(self, code_text: object) -> str:
        """Where the payer of a scanned code banks: named in a signed code; for a short code,
        the bank its issuer number stands for in the rail's table."""
        if short_code.is_short_code(code_text):
            bank_id = self.code_issuers.get(short_code.parse_short_code(code_text).issuer)
            if bank_id is None:
                raise RailError("payment_code_invalid", "no bank of this rail issues that code")
            return bank_id
        return wallet_bank(read_code(code_text).body["payer_wallet"])

    async def pay_code(self, code_text: object, merchant_id: str, amount_fen: object) -> dict:
        """Pay a code at the payer's bank: the payer's signature (or, for a short code, its
        one-time value), freshness, single use, the no-PIN threshold and the class caps, all
        checked before anything moves."""
        amount = parse_fen(amount_fen)
        if short_code.is_short_code(code_text):
            code, payer = await self._resolve_short_code(code_text)
        else:
            code = read_code(code_text)
            payer = await self.payments.identity(code.body["payer_wallet"])
            if payer is None:
                raise RailError("unknown_wallet")
            envelope.verify(code, payer.public_key, check_expiry=False)
        check_code_pin(amount, code.body["pin_verified"], self.bank.no_pin_threshold_fen)
        outcome = await self.payments.pay_as(code, payer, merchant_id, amount,
                                             memo="payment code")
        if outcome.get("repeated") and (outcome.get("payee_wallet") != merchant_id
                                        or outcome.get("amount_fen") != amount):
            raise RailError("payment_code_used")
        return outcome

    # --- short payment codes -----------------------------------------------------------

    async def register_short_code(self, raw: object) -> dict:
        """The wallet registers the secret its short codes are made with; the bank gives it
        a slot (8 digits, unique here) once, kept when the secret is registered again."""
        env, wallet = await self.bank.signed_by_wallet(raw, SHORT_CODE_SECRET, "wallet_id")
        check_live(env)
        if self.code_issuer is None:
            raise RailError("invalid_field", "this bank issues no short payment codes")
        secret = env.body.get("secret")
        if not isinstance(secret, str) or len(secret) != 2 * short_code.SECRET_BYTES \
                or any(c not in "0123456789abcdef" for c in secret):
            raise RailError("invalid_field", "secret must be 64 lowercase hex digits")
        for _attempt in range(20):
            async with self.bank.engine.begin() as conn:
                row = (await conn.execute(sa.select(t.short_codes.c.slot).where(
                    t.short_codes.c.wallet_id == wallet.wallet_id))).first()
                if row is not None:
                    await conn.execute(t.short_codes.update().where(
                        t.short_codes.c.wallet_id == wallet.wallet_id).values(
                        secret=secret, failures=0, locked_until_ms=0))
                    return self._slot_view(wallet.wallet_id, row.slot)
                slot = f"{secrets.randbelow(10**8):08d}"
                taken = (await conn.execute(sa.select(t.short_codes.c.wallet_id).where(
                    t.short_codes.c.slot == slot))).first()
                if taken is None:
                    try:
                        await conn.execute(t.short_codes.insert().values(
                            wallet_id=wallet.wallet_id, slot=slot, secret=secret, failures=0,
                            locked_until_ms=0, created_ms=now_ms()))
                        return self._slot_view(wallet.wallet_id, slot)
                    except IntegrityError:
                        pass   # the same wallet, or the same slot, at the same moment: again
        raise RailError("service_unavailable", "no free short-code slot was found; retry")

    def _slot_view(self, wallet_id: str, slot: str) -> dict:
        return {"wallet_id": wallet_id, "issuer": self.code_issuer, "slot": slot,
                "length": short_code.LENGTH}

    async def _resolve_short_code(self, text: str) -> tuple[Envelope, Any]:
        """The charge's instruction for a short code: keyed `sc.<minute>.<digit>` under the
        payer's key, so it is booked once, however often the code is presented. A wrong
        value counts against its slot; past MAX_FAILURES the slot is locked a while."""
        code = short_code.parse_short_code(text)
        if code.issuer != self.code_issuer:
            raise RailError("payment_code_invalid", "the code is not of this bank")
        async with self.bank.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.short_codes).where(
                t.short_codes.c.slot == code.slot))).first()
        now = now_ms()
        if row is None:
            raise RailError("payment_code_invalid", "no wallet has that code")
        if row.locked_until_ms > now:
            raise RailError("rate_limited", "too many wrong codes for this wallet; wait")
        minute = short_code.matching_minute(bytes.fromhex(row.secret), code, now)
        if minute is None:
            await self._count_failure(row.wallet_id, now)
            raise RailError("payment_code_invalid", "the code is wrong or expired")
        payer = await self.payments.identity(row.wallet_id)
        if payer is None:
            raise RailError("unknown_wallet")
        start = minute * short_code.MINUTE_MS
        charge = Envelope(id=short_code.instruction_id(minute, code.digit), type=CODE_TYPE,
                          signer=payer.key_id, created_ms=start,
                          expires_ms=start + 2 * short_code.MINUTE_MS,
                          body={"payer_wallet": payer.wallet_id,
                                "pin_verified": code.pin_verified})
        return charge, payer

    async def _count_failure(self, wallet_id: str, now: int) -> None:
        async with self.bank.engine.begin() as conn:
            await conn.execute(t.short_codes.update().where(
                t.short_codes.c.wallet_id == wallet_id).values(
                failures=t.short_codes.c.failures + 1))
            await conn.execute(t.short_codes.update().where(
                t.short_codes.c.wallet_id == wallet_id,
                t.short_codes.c.failures >= self.MAX_FAILURES).values(
                failures=0, locked_until_ms=now + self.LOCK_MS))

    # --- mandates ---------------------------------------------------------------------

    async def create_mandate(self, raw: object) -> dict:
        """The user authorises a merchant app; the mandate names the merchant's key, so the
        payer's bank can check a charge even from a merchant at another bank."""
        env, payer = await self.bank.signed_by_wallet(raw, MANDATE, "payer_wallet")
        check_live(env)
        body = env.body
        merchant = check_wallet_id(body.get("merchant_wallet"), "merchant_wallet")
        merchant_key = PublicKey.from_text(body.get("merchant_public_key", ""))
        terms = mandates.check_terms(body)
        name = body.get("merchant_name")
        if name is not None and (not isinstance(name, str) or len(name) > 64):
            raise RailError("invalid_field", "merchant_name must be at most 64 characters")
        mandate_id = "M" + hashlib.sha256(f"{env.signer}:{env.id}".encode()).hexdigest()[:24]
        at = now_ms()

        async def apply(conn: AsyncConnection) -> dict:
            await conn.execute(t.mandates.insert().values(
                mandate_id=mandate_id, payer_wallet=payer.wallet_id,
                merchant_wallet=merchant, merchant_key=merchant_key.to_text(),
                merchant_name=name, per_payment_cap_fen=terms.per_payment_cap_fen,
                period=terms.period, period_cap_fen=terms.period_cap_fen,
                period_key=mandates.period_key(terms.period, at), used_fen=0,
                status=mandates.ACTIVE, created_ms=at))
            return {"mandate_id": mandate_id}

        # the same instruction again: the same mandate; another under its id: refused
        await execute_once(self.bank.engine, INSTRUCTIONS, env, apply, at_ms=at)
        return await self.mandate_view(mandate_id)

    async def revoke_mandate(self, raw: object) -> dict:
        env, payer = await self.bank.signed_by_wallet(raw, REVOKE_MANDATE, "payer_wallet")
        check_live(env)
        async with self.bank.engine.begin() as conn:
            done = await conn.execute(t.mandates.update().where(
                t.mandates.c.mandate_id == env.body.get("mandate_id"),
                t.mandates.c.payer_wallet == payer.wallet_id).values(
                status=mandates.REVOKED, revoked_ms=now_ms()))
        if done.rowcount != 1:
            raise RailError("unknown_mandate")
        return await self.mandate_view(env.body["mandate_id"])

    async def mandate_view(self, mandate_id: str) -> dict:
        async with self.bank.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.mandates).where(
                t.mandates.c.mandate_id == mandate_id))).first()
        if row is None:
            raise RailError("unknown_mandate")
        return self._view(row)

    def _view(self, row: Any) -> dict:
        used = row.used_fen if row.period_key == mandates.period_key(row.period, now_ms()) else 0
        return {"mandate_id": row.mandate_id, "payer_wallet": row.payer_wallet,
                "merchant_wallet": row.merchant_wallet, "merchant_name": row.merchant_name,
                "per_payment_cap_fen": row.per_payment_cap_fen, "period": row.period,
                "period_cap_fen": row.period_cap_fen, "used_this_period_fen": used,
                "left_this_period_fen": row.period_cap_fen - used, "status": row.status,
                "created_ms": row.created_ms}

    async def list_mandates(self, payer_wallet: str) -> dict:
        async with self.bank.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.mandates).where(
                t.mandates.c.payer_wallet == payer_wallet).order_by(
                t.mandates.c.created_ms.desc()))).all()
        return {"mandates": [self._view(r) for r in rows]}

    async def mandate_charge(self, raw: object) -> dict:
        """The merchant's backend charges under a mandate, with no user interaction."""
        env = Envelope.parse(raw)
        payer_id = check_wallet_id(env.body.get("payer_wallet"), "payer_wallet")
        payer_bank = wallet_bank(payer_id)
        if payer_bank != self.bank.bank_id:
            _env, merchant = await self.bank.signed_by_wallet(raw, MANDATE_CHARGE,
                                                               "merchant_wallet")
            return await self._forward(payer_bank, {"charge": env.to_dict(),
                                                    "merchant_wallet": merchant.wallet_id})
        return await self.pay_mandate(env.to_dict())

    async def pay_mandate(self, raw: object) -> dict:
        """At the payer's bank: check the charge against the mandate's key and caps, and
        count it in the mandate's period in the payment's own transaction."""
        env = Envelope.parse(raw)
        mandate_id = env.body.get("mandate_id")
        async with self.bank.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.mandates).where(
                t.mandates.c.mandate_id == mandate_id))).first()
        if row is None or row.merchant_wallet != env.body.get("merchant_wallet") \
                or row.payer_wallet != env.body.get("payer_wallet"):
            raise RailError("unknown_mandate")
        envelope.verify(env, PublicKey.from_text(row.merchant_key),
                        expected_type=MANDATE_CHARGE, check_expiry=False)
        amount = parse_fen(env.body.get("amount_fen"))
        payer = await self.bank.reads.wallet_for_read(row.payer_wallet)
        return await self.payments.pay_as(env, payer, row.merchant_wallet, amount,
                                          memo=f"mandate {mandate_id}", mandate_id=mandate_id)
