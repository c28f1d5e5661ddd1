"""Wallets and their holders: opening with a key made on the device, KYC classes and
upgrades, settings, and the operator's simulated core banking (deposit accounts, classes,
closing)."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bank.adapters import books_sql as sql
from bank.adapters import tables as t
from bank.common import SETTLED
from bank.domain import ledger
from bank.domain.wallets import (
    MERCHANT,
    OPEN,
    PERSONAL,
    check_id_number,
    check_merchant,
    check_phone,
    china_day,
    class_after_upgrade,
)
from rail_protocol import envelope
from rail_protocol.envelope import Envelope, check_live, now_ms
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import OPEN_WALLET, UPGRADE_WALLET, WALLET_SETTINGS
from rail_protocol.keys import PublicKey
from rail_protocol.money import parse_fen


class Wallets:
    """The bank node's wallets (its database, keys and central through `bank`)."""

    def __init__(self, bank) -> None:
        self.bank = bank

    async def open_wallet(self, raw: object) -> dict:
        """Open a wallet in class 4 with a phone number and the key made on the device. The
        instruction is signed by that key: whoever opens it holds it."""
        env = Envelope.parse(raw)
        body = env.body
        phone = check_phone(body.get("phone"))
        kind = body.get("kind", PERSONAL)
        if kind not in (PERSONAL, MERCHANT):
            raise RailError("invalid_field", "kind is 'personal' or 'merchant'")
        merchant = check_merchant(body.get("merchant")) if kind == MERCHANT else None
        public_key = PublicKey.from_text(body.get("public_key", ""))
        envelope.verify(env, public_key, expected_type=OPEN_WALLET)
        wallet_id = f"{self.bank.bank_id}.{secrets.token_hex(8)}"
        at = now_ms()
        try:
            async with self.bank.engine.begin() as conn:
                await conn.execute(t.wallets.insert().values(
                    wallet_id=wallet_id, kind=kind, phone=phone,
                    public_key=public_key.to_text(), key_id=public_key.key_id, kyc_class=4,
                    status=OPEN, topup_on_use=False, balance_fen=0, day=china_day(at),
                    spent_today_fen=0, created_ms=at,
                    merchant_name=merchant and merchant["name"],
                    mcc=merchant and merchant["mcc"], city=merchant and merchant["city"],
                ))
        except IntegrityError:
            async with self.bank.engine.connect() as conn:
                existing = await sql.wallet_by_key(conn, public_key.key_id)
            if existing is not None and existing.phone == phone and existing.kind == kind:
                return await self.wallet_view(existing.wallet_id)  # a retried open
            raise RailError("wallet_exists") from None
        return await self.wallet_view(wallet_id)

    async def wallet_view(self, wallet_id: str) -> dict:
        async with self.bank.engine.connect() as conn:
            row = await sql.wallet_row(conn, wallet_id)
            if row is None:
                raise RailError("unknown_wallet")
            balance = await sql.wallet_balance(conn, wallet_id)
        limits = self.bank.limits[row.kyc_class]
        day = china_day(now_ms())
        spent = row.spent_today_fen if row.day == day else 0
        view = {"wallet_id": row.wallet_id, "bank_id": self.bank.bank_id, "kind": row.kind,
                "kyc_class": row.kyc_class, "status": row.status, "balance_fen": balance,
                "limits": limits.to_dict(), "spent_today_fen": spent,
                "daily_left_fen": None if limits.daily_cap_fen is None
                else max(limits.daily_cap_fen - spent, 0),
                "topup_on_use": row.topup_on_use,
                "deposit_account_linked": row.deposit_account is not None, "key_id": row.key_id}
        if row.kind == MERCHANT:
            view["merchant"] = {"name": row.merchant_name, "mcc": row.mcc, "city": row.city}
        return view

    async def upgrade_wallet(self, raw: object) -> dict:
        """Raise the class with identity evidence: an ID number (class 3), plus a deposit
        account at this bank in the same phone's name (class 2)."""
        env, wallet = await self.bank.signed_by_wallet(raw, UPGRADE_WALLET, "wallet_id")
        check_live(env)
        id_number = env.body.get("id_number")
        account = env.body.get("deposit_account")
        id_hash = None
        if id_number is not None:
            id_hash = hashlib.sha256(check_id_number(id_number).encode()).hexdigest()
        async with self.bank.engine.begin() as conn:
            if account is not None:
                row = (await conn.execute(sa.select(t.deposit_accounts).where(
                    t.deposit_accounts.c.account_id == account))).first()
                if row is None or row.phone != wallet.phone:
                    raise RailError("invalid_field",
                                    "deposit_account is not an account of this wallet's holder")
            has_id = bool(id_hash or wallet.id_number_hash)
            has_account = bool(account or wallet.deposit_account)
            new_class = class_after_upgrade(wallet.kyc_class, has_id, has_account)
            await conn.execute(t.wallets.update().where(
                t.wallets.c.wallet_id == wallet.wallet_id).values(
                kyc_class=new_class, id_number_hash=id_hash or wallet.id_number_hash,
                deposit_account=account or wallet.deposit_account))
        return await self.wallet_view(wallet.wallet_id)

    async def wallet_settings(self, raw: object) -> dict:
        """Switch top-up on use (the reverse waterfall) on or off."""
        env, wallet = await self.bank.signed_by_wallet(raw, WALLET_SETTINGS, "wallet_id")
        check_live(env)
        topup = env.body.get("topup_on_use")
        if not isinstance(topup, bool):
            raise RailError("invalid_field", "topup_on_use must be true or false")
        if topup and not wallet.deposit_account:
            raise RailError("no_linked_account")
        async with self.bank.engine.begin() as conn:
            await conn.execute(t.wallets.update().where(
                t.wallets.c.wallet_id == wallet.wallet_id).values(topup_on_use=topup))
        return await self.wallet_view(wallet.wallet_id)

    async def open_deposit_account(self, body: object) -> dict:
        """The simulated core-banking system opens a deposit account, funded in cash."""
        body = body if isinstance(body, dict) else {}
        phone = check_phone(body.get("phone"))
        holder = body.get("holder_name")
        if not isinstance(holder, str) or not 1 <= len(holder) <= 128:
            raise RailError("invalid_field", "holder_name must be 1-128 characters")
        opening = parse_fen(body.get("opening_fen", 0), field="opening_fen", allow_zero=True)
        account_id = body.get("account_id") or f"62{secrets.randbelow(10**14):014d}"
        if not isinstance(account_id, str) or not 6 <= len(account_id) <= 40:
            raise RailError("invalid_field", "account_id must be 6-40 characters")
        at = now_ms()
        try:
            async with self.bank.engine.begin() as conn:
                await conn.execute(t.deposit_accounts.insert().values(
                    account_id=account_id, holder_name=holder, phone=phone,
                    balance_fen=opening, created_ms=at))
                if opening:
                    txn = await sql.insert_transaction(
                        conn, kind="cash_deposit", signer="operator",
                        instruction_id=f"open:{account_id}", digest="", status=SETTLED,
                        amount_fen=opening, expires_ms=at, created_ms=at, updated_ms=at,
                        result="{}")
                    await sql.insert_postings(conn, txn, ledger.cash_deposit(account_id, opening))
        except IntegrityError:
            raise RailError("invalid_field", "that deposit account already exists") from None
        return {"account_id": account_id, "holder_name": holder, "balance_fen": opening}

    async def deposit_view(self, account_id: str) -> dict:
        async with self.bank.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.deposit_accounts).where(
                t.deposit_accounts.c.account_id == account_id))).first()
        if row is None:
            raise RailError("not_found", "no such deposit account")
        return {"account_id": row.account_id, "holder_name": row.holder_name,
                "balance_fen": row.balance_fen}

    async def set_wallet_class(self, wallet_id: str, kyc_class: object) -> dict:
        """An operator sets a class (class 1 needs a person at a branch)."""
        # An integer, not a boolean (True == 1) nor a list or object (unhashable).
        if type(kyc_class) is not int or kyc_class not in self.bank.limits:
            raise RailError("invalid_field", f"kyc_class must be one of {sorted(self.bank.limits)}")
        async with self.bank.engine.begin() as conn:
            _row, state = await sql.lock_wallet(conn, wallet_id, for_credit=True)
            cap = self.bank.limits[kyc_class].balance_cap_fen
            if cap is not None and state.balance_fen + state.pending_out_fen > cap:
                raise RailError("balance_cap_exceeded",
                                f"the wallet holds more than class {kyc_class}'s cap of {cap} fen")
            await sql.save_wallet(conn, state)  # the folded credits
            await conn.execute(t.wallets.update().where(
                t.wallets.c.wallet_id == wallet_id).values(kyc_class=kyc_class))
        return await self.wallet_view(wallet_id)

    async def close_wallet(self, wallet_id: str) -> dict:
        """An operator closes (freezes) a wallet: it can neither pay nor receive."""
        async with self.bank.engine.begin() as conn:
            done = await conn.execute(t.wallets.update().where(
                t.wallets.c.wallet_id == wallet_id).values(status="closed"))
            if done.rowcount != 1:
                raise RailError("unknown_wallet")
        return await self.wallet_view(wallet_id)
