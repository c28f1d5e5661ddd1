"""A bank node's use cases. Each money movement has one shape: verify the wallet's signed
instruction, lock what it debits, ask the domain for a plan, write the plan's postings and
balances in one short transaction, then acknowledge. The instruction's (signer, id) is a
unique key in the same transaction, so a retry can never have a second effect."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bank.adapters import books_sql as sql
from bank.adapters import tables as t
from bank.adapters.books_sql import VaultShort
from bank.adapters.hot_state import HotState
from bank.domain import audit as bank_audit
from bank.domain import ledger, orders
from bank.domain.payments import (
    LockedBooks,
    RefundedPayment,
    decide_refund,
)
from bank.domain.wallets import (
    MERCHANT,
    OPEN,
    PERSONAL,
    ClassLimits,
    DebitPlan,
    WalletState,
    check_id_number,
    check_merchant,
    check_phone,
    china_day,
    class_after_upgrade,
    plan_credit,
)
from central.client import CentralClient
from rail_protocol import envelope
from rail_protocol.envelope import Envelope, check_live, now_ms, seal
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey, SigningKey
from rail_protocol.money import parse_fen
from rail_service.crash import crash_point

log = logging.getLogger("yuanrail.bank")

from rail_protocol.instruction_types import (  # noqa: E402
    CENTRAL_ISSUE,
    CENTRAL_REDEEM,
    OPEN_WALLET,
    REDEEM,
    REFUND,
    TOP_UP,
    TRANSFER,
    UPGRADE_WALLET,
    WALLET_SETTINGS,
)

TRANSFER_TTL_MS = 24 * 3600 * 1000
# The request that debits an interbank payment forwards it at once and waits this long for
# the outcome; the outbox leaves the payment alone until then, so they do not race.
FORWARD_WAIT_MS = 5_000
SETTLED, PROCESSING, REJECTED, PENDING = "settled", "processing", "rejected", "pending"
# Refusals from central that mean it did not, and never will, prepare the transfer.
CENTRAL_FINAL_REFUSALS = {"unknown_bank", "invalid_field", "invalid_amount", "expired",
                           "insufficient_holdings", "signer_mismatch"}


def wallet_bank(wallet_id: str) -> str:
    """A wallet id is `<bank id>.<random>`: where to route a payment to it."""
    return wallet_id.split(".", 1)[0]


def check_wallet_id(value: object, field: str = "wallet_id") -> str:
    if not isinstance(value, str) or not 3 <= len(value) <= 64 or "." not in value:
        raise RailError("invalid_field", f"{field} must be a wallet id like 'bank.abc123'")
    return value


def parse_payment(body: dict) -> tuple[str, int, str | None, str | None]:
    """Check a `bank.pay` body, first error wins: (payee, amount, memo, order id)."""
    payee_id = check_wallet_id(body.get("payee_wallet"), "payee_wallet")
    amount = parse_fen(body.get("amount_fen"))
    memo = body.get("memo")
    if memo is not None and (not isinstance(memo, str) or len(memo) > 140):
        raise RailError("invalid_field", "memo must be a string of at most 140 characters")
    order_id = body.get("order_id")
    if order_id is not None and (not isinstance(order_id, str) or not 1 <= len(order_id) <= 25):
        raise RailError("invalid_field", "order_id must be 1-25 characters")
    return payee_id, amount, memo, order_id


def retry_delay_ms(created_ms: int, at_ms: int) -> int:
    """How long the outbox waits before re-sending message 1 of a payment made at
    `created_ms`: soon at first, then more slowly, at most 5 s."""
    return min(200 + max(at_ms - created_ms, 0) // 4, 5_000)


def payment_view(row: Any) -> dict:
    """What a wallet sees of one of its transactions."""
    view = {"payment_id": f"P{row.txn_id}", "kind": row.kind, "status": row.status,
            "amount_fen": row.amount_fen, "payer_wallet": row.payer_wallet,
            "payee_wallet": row.payee_wallet, "created_ms": row.created_ms,
            "updated_ms": row.updated_ms, "instruction_id": row.instruction_id}
    if row.counterparty_bank:
        view["counterparty_bank"] = row.counterparty_bank
    if row.memo:
        view["memo"] = row.memo
    if row.code:
        view["code"] = row.code
    if row.order_id:
        view["order_id"] = row.order_id
    if row.refund_of:
        view["refund_of"] = f"P{row.refund_of}"
    if row.refunded_fen:
        view["refunded_fen"] = row.refunded_fen
    return view


class Bank:
    """One bank node, wired to its database, Redis, its key and central."""

    def __init__(self, *, bank_id: str, name: str, engine: AsyncEngine, key: SigningKey,
                 hot: HotState, central: CentralClient, operator_token: str, public_url: str,
                 vault_low_fen: int = 0, vault_target_fen: int = 0, vault_high_fen: int = 0,
                 register_at_start: bool = True, no_pin_threshold_fen: int) -> None:
        self.bank_id, self.name = bank_id, name
        self.engine, self.key, self.hot, self.central = engine, key, hot, central
        self._operator_token = operator_token.encode()
        self.public_url = public_url
        self.vault_low_fen, self.vault_target_fen = vault_low_fen, vault_target_fen
        self.vault_high_fen = vault_high_fen
        self.register_at_start = register_at_start
        self.central_key: PublicKey | None = None
        self.limits: dict[int, ClassLimits] = {}
        self._vault_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()
        # Tests put an in-process network here for calls to other bank nodes.
        self.peer_transport = None
        self.no_pin_threshold_fen = no_pin_threshold_fen

    # --- start-up ---------------------------------------------------------------------

    async def start(self) -> None:
        from pathlib import Path

        from rail_service.db import migrate

        await migrate(self.engine, Path(__file__).parent / "migrations", "bank_alembic_version")
        await self.reload_limits()
        if self.register_at_start:
            # Central may still be starting (or restarting): keep trying for a while
            # rather than refuse to come up.
            for attempt in range(60):
                try:
                    await self.connect_central()
                    break
                except RailError as exc:
                    if exc.code != "upstream_unavailable" or attempt == 59:
                        raise
                    log.warning("central not reachable yet (%s); retrying", exc.message)
                    await asyncio.sleep(0.5)

    async def connect_central(self) -> None:
        """Register with central (idempotent) and learn central's key."""
        identity = await self.central.identity()
        self.central_key = PublicKey.from_text(identity["public_key"])
        certificate = await self.central.register_bank(self.key, self.bank_id, self.name,
                                                       url=self.public_url)
        envelope.verify_statement(self.central_key, certificate)

    async def reload_limits(self) -> None:
        async with self.engine.connect() as conn:
            self.limits = await sql.class_limits(conn)

    def check_operator(self, token: str | None) -> None:
        import hmac

        if not token or not hmac.compare_digest(token.encode(), self._operator_token):
            raise RailError("unauthorized")

    # --- signed wallet instructions ----------------------------------------------------

    async def signed_by_wallet(self, raw: object, expected_type: str, wallet_field: str):
        """Parse and verify an instruction signed by a wallet's key; return (env, wallet)."""
        env = Envelope.parse(raw)
        async with self.engine.connect() as conn:
            wallet = await sql.wallet_by_key(conn, env.signer)
        if wallet is None:
            raise RailError("unknown_key", "the signer is not a wallet key of this bank")
        envelope.verify(env, PublicKey.from_text(wallet.public_key), expected_type=expected_type,
                        check_expiry=False)
        if env.body.get(wallet_field) != wallet.wallet_id:
            raise RailError("wrong_key", f"{wallet_field} is not the signing wallet")
        return env, wallet

    async def _execute(self, env: Envelope, wallet_id: str,
                       apply: Callable[[AsyncConnection], Awaitable[dict]],
                       record_refusal: Callable[[RailError], dict] | None) -> dict:
        """Run `apply` exactly once for `env`. `apply` inserts the instruction's transaction
        row itself, under the (signer, id) unique key; a repeat collides with it and gets the
        first outcome. A business refusal is recorded too (`record_refusal` gives the row),
        so a repeat gets the same refusal."""
        try:
            check_live(env)
        except RailError:
            await self.answer_known(env)  # known: first outcome or `replayed`
            raise
        allowed, seen = await self.hot.admit(wallet_id, env.signer, env.id,
                                             env.expires_ms - now_ms(), now_ms())
        if not allowed:
            raise RailError("rate_limited")
        if seen:
            cached = await self.hot.recall(env.signer, env.id)
            if cached is not None:
                if cached["digest"] != env.digest():
                    raise RailError("instruction_id_reused")
                return {**cached["outcome"], "repeated": True}
        for attempt in range(6):
            try:
                async with self.engine.begin() as conn:
                    outcome = await apply(conn)
                break
            except IntegrityError:
                return await self.answer_known(env, required=True)
            except VaultShort as short:
                if attempt == 5:
                    raise RailError("vault_empty") from None
                await self.refill_vault(short.needed_fen)
            except RailError as refusal:
                if record_refusal is None:
                    raise
                try:
                    async with self.engine.begin() as conn:
                        await sql.insert_transaction(conn, **record_refusal(refusal))
                except IntegrityError:
                    return await self.answer_known(env, required=True)
                raise
        if outcome.get("status") in (SETTLED, REJECTED):
            await self.hot.remember(env.signer, env.id, env.digest(), outcome,
                                    env.expires_ms - now_ms())
        return outcome

    async def answer_known(self, env: Envelope, required: bool = False) -> dict:
        """The first outcome of an instruction already recorded (`repeated`), its refusal
        raised again, or `{}` if unknown; `required`: it must be known (a unique key other
        than its own collided: a race, answered retryable)."""
        async with self.engine.connect() as conn:
            row = await sql.find_transaction(conn, env.signer, env.id)
        if row is None:
            if required:  # a unique key other than the instruction's: a race; retry it
                raise RailError("upstream_unavailable", "a concurrent change; retry the same id")
            return {}
        if row.digest != env.digest():
            raise RailError("instruction_id_reused")
        if now_ms() >= row.expires_ms:
            raise RailError("replayed")
        if row.status == REJECTED:
            raise RailError(row.code or "invalid_field")
        return {**orjson.loads(row.result), **payment_view(row), "repeated": True}

    def _txn_values(self, env: Envelope, kind: str, status: str, amount: int, **extra) -> dict:
        at = now_ms()
        return {"kind": kind, "signer": env.signer, "instruction_id": env.id,
                "digest": env.digest(), "status": status, "amount_fen": amount,
                "expires_ms": env.expires_ms, "created_ms": at, "updated_ms": at,
                "result": "{}", **extra}

    # --- wallets ----------------------------------------------------------------------

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
        wallet_id = f"{self.bank_id}.{secrets.token_hex(8)}"
        at = now_ms()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(t.wallets.insert().values(
                    wallet_id=wallet_id, kind=kind, phone=phone,
                    public_key=public_key.to_text(), key_id=public_key.key_id, kyc_class=4,
                    status=OPEN, topup_on_use=False, balance_fen=0, day=china_day(at),
                    spent_today_fen=0, created_ms=at,
                    merchant_name=merchant and merchant["name"],
                    mcc=merchant and merchant["mcc"], city=merchant and merchant["city"],
                ))
        except IntegrityError:
            async with self.engine.connect() as conn:
                existing = await sql.wallet_by_key(conn, public_key.key_id)
            if existing is not None and existing.phone == phone and existing.kind == kind:
                return await self.wallet_view(existing.wallet_id)  # a retried open
            raise RailError("wallet_exists") from None
        return await self.wallet_view(wallet_id)

    async def wallet_view(self, wallet_id: str) -> dict:
        async with self.engine.connect() as conn:
            row = await sql.wallet_row(conn, wallet_id)
            if row is None:
                raise RailError("unknown_wallet")
            balance = await sql.wallet_balance(conn, wallet_id)
        limits = self.limits[row.kyc_class]
        day = china_day(now_ms())
        spent = row.spent_today_fen if row.day == day else 0
        view = {"wallet_id": row.wallet_id, "bank_id": self.bank_id, "kind": row.kind,
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
        env, wallet = await self.signed_by_wallet(raw, UPGRADE_WALLET, "wallet_id")
        check_live(env)
        id_number = env.body.get("id_number")
        account = env.body.get("deposit_account")
        id_hash = None
        if id_number is not None:
            id_hash = hashlib.sha256(check_id_number(id_number).encode()).hexdigest()
        async with self.engine.begin() as conn:
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
        env, wallet = await self.signed_by_wallet(raw, WALLET_SETTINGS, "wallet_id")
        check_live(env)
        topup = env.body.get("topup_on_use")
        if not isinstance(topup, bool):
            raise RailError("invalid_field", "topup_on_use must be true or false")
        if topup and not wallet.deposit_account:
            raise RailError("no_linked_account")
        async with self.engine.begin() as conn:
            await conn.execute(t.wallets.update().where(
                t.wallets.c.wallet_id == wallet.wallet_id).values(topup_on_use=topup))
        return await self.wallet_view(wallet.wallet_id)

    # --- operator: simulated core banking ----------------------------------------------

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
            async with self.engine.begin() as conn:
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
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.deposit_accounts).where(
                t.deposit_accounts.c.account_id == account_id))).first()
        if row is None:
            raise RailError("not_found", "no such deposit account")
        return {"account_id": row.account_id, "holder_name": row.holder_name,
                "balance_fen": row.balance_fen}

    async def set_wallet_class(self, wallet_id: str, kyc_class: object) -> dict:
        """An operator sets a class (class 1 needs a person at a branch)."""
        if kyc_class not in self.limits:
            raise RailError("invalid_field", f"kyc_class must be one of {sorted(self.limits)}")
        async with self.engine.begin() as conn:
            _row, state = await sql.lock_wallet(conn, wallet_id, for_credit=True)
            cap = self.limits[kyc_class].balance_cap_fen
            if cap is not None and state.balance_fen + state.pending_out_fen > cap:
                raise RailError("balance_cap_exceeded",
                                f"the wallet holds more than class {kyc_class}'s cap of {cap} fen")
            await sql.save_wallet(conn, state)  # the folded credits
            await conn.execute(t.wallets.update().where(
                t.wallets.c.wallet_id == wallet_id).values(kyc_class=kyc_class))
        return await self.wallet_view(wallet_id)

    async def close_wallet(self, wallet_id: str) -> dict:
        """An operator closes (freezes) a wallet: it can neither pay nor receive."""
        async with self.engine.begin() as conn:
            done = await conn.execute(t.wallets.update().where(
                t.wallets.c.wallet_id == wallet_id).values(status="closed"))
            if done.rowcount != 1:
                raise RailError("unknown_wallet")
        return await self.wallet_view(wallet_id)

    # --- exchange: deposits <-> e-CNY -------------------------------------------------

    async def top_up(self, raw: object) -> dict:
        """Deposit money -> e-CNY, from the linked deposit account, out of the vault."""
        env, wallet = await self.signed_by_wallet(raw, TOP_UP, "wallet_id")
        amount = parse_fen(env.body.get("amount_fen"))
        if not wallet.deposit_account:
            raise RailError("no_linked_account")

        async def apply(conn: AsyncConnection) -> dict:
            _row, state = await sql.lock_wallet(conn, wallet.wallet_id, for_credit=True)
            plan = plan_credit(state, self.limits[state.kyc_class], amount)
            if plan.swept_to_deposit_fen:
                raise RailError("balance_cap_exceeded", "the top-up would pass the balance cap")
            state.balance_fen += amount
            result = {"status": SETTLED, "amount_fen": amount,
                      "balance_after_fen": state.balance_fen}
            txn = await sql.insert_transaction(conn, **self._txn_values(
                env, "top_up", SETTLED, amount, payee_wallet=wallet.wallet_id,
                result=orjson.dumps(result).decode()))
            await sql.move_deposit(conn, state.deposit_account, -amount)
            await sql.move_vault(conn, -amount)
            await sql.insert_postings(conn, txn, ledger.top_up(wallet.wallet_id,
                                                               state.deposit_account, amount))
            await sql.save_wallet(conn, state)
            return {**result, "payment_id": f"P{txn}"}

        return await self._execute(env, wallet.wallet_id, apply, self._refusal_row(
            env, "top_up", amount, payee_wallet=wallet.wallet_id))

    async def redeem(self, raw: object) -> dict:
        """e-CNY -> deposit money, into the linked deposit account, back to the vault."""
        env, wallet = await self.signed_by_wallet(raw, REDEEM, "wallet_id")
        amount = parse_fen(env.body.get("amount_fen"))
        if not wallet.deposit_account:
            raise RailError("no_linked_account")

        async def apply(conn: AsyncConnection) -> dict:
            _row, state = await sql.lock_wallet(conn, wallet.wallet_id)
            if state.status != OPEN:
                raise RailError("wallet_closed")
            if state.balance_fen < amount:
                raise RailError("insufficient_funds")
            state.balance_fen -= amount
            result = {"status": SETTLED, "amount_fen": amount,
                      "balance_after_fen": state.balance_fen}
            txn = await sql.insert_transaction(conn, **self._txn_values(
                env, "redeem", SETTLED, amount, payer_wallet=wallet.wallet_id,
                result=orjson.dumps(result).decode()))
            await sql.move_deposit(conn, state.deposit_account, amount)
            await sql.move_vault(conn, amount)
            await sql.insert_postings(conn, txn, ledger.redeem(wallet.wallet_id,
                                                               state.deposit_account, amount))
            await sql.save_wallet(conn, state)
            return {**result, "payment_id": f"P{txn}"}

        return await self._execute(env, wallet.wallet_id, apply, self._refusal_row(
            env, "redeem", amount, payer_wallet=wallet.wallet_id))

    def _refusal_row(self, env: Envelope, kind: str, amount: int, **extra):
        def make(refusal: RailError) -> dict:
            return self._txn_values(env, kind, REJECTED, amount, code=refusal.code,
                                    result=orjson.dumps({"status": REJECTED,
                                                         "code": refusal.code}).decode(),
                                    **extra)
        return make

    # --- payments ---------------------------------------------------------------------

    # --- interbank, bank A: the outbox ------------------------------------------------

    def transfer_envelope(self, row: Any) -> Envelope:
        """Message 1, rebuilt the same way on every retry so central sees one instruction."""
        details = {"payer_wallet": row.payer_wallet}
        if row.order_id and not row.refund_of:
            details["order_id"] = row.order_id
        if row.refund_of:
            details["refund_of"] = orjson.loads(row.result).get("refund_of_transfer")
        return seal(self.key, TRANSFER, {
            "transfer_id": row.transfer_id, "from_bank": self.bank_id,
            "to_bank": row.counterparty_bank, "amount_fen": row.amount_fen,
            "payee_wallet": row.payee_wallet, "details": details,
        }, id=row.transfer_id, ttl_ms=TRANSFER_TTL_MS, created_ms=row.created_ms)

    async def forward_transfer(self, txn_id: int) -> str:
        """Send (or re-send) message 1 for a processing payment; record a final answer."""
        async with self.engine.connect() as conn:
            row = await sql.transaction_by_id(conn, txn_id)
        if row is None or row.status != PROCESSING:
            return row.status if row is not None else REJECTED
        try:
            answer = await self.central.request("POST", "/v1/transfers",
                                                self.transfer_envelope(row).to_dict())
        except RailError as exc:
            if exc.code in CENTRAL_FINAL_REFUSALS:
                await self.finish_transfer(txn_id, REJECTED, exc.code)
                return REJECTED
            await self._retry_later(txn_id, row)
            raise
        statement = answer.get("statement", {})
        envelope.verify_statement(self.central_key, statement)
        if statement.get("transfer_id") != row.transfer_id:
            raise RailError("bad_signature", "central answered about another transfer")
        status = statement.get("status")
        if status in (SETTLED, REJECTED):
            crash_point("bank.interbank.before_outcome")
            await self.finish_transfer(txn_id, status, statement.get("code"))
            return status
        await self._retry_later(txn_id, row)
        return PROCESSING

    async def _retry_later(self, txn_id: int, row: Any) -> None:
        at = now_ms()
        async with self.engine.begin() as conn:
            await conn.execute(t.transactions.update().where(
                t.transactions.c.txn_id == txn_id).values(
                    next_attempt_ms=at + retry_delay_ms(row.created_ms, at)))

    async def finish_transfer(self, txn_id: int, status: str, code: str | None) -> None:
        """Settle (the money has left) or reject (back to the payer), exactly once."""
        async with self.engine.begin() as conn:
            row = await sql.transaction_by_id(conn, txn_id)
            at = now_ms()
            payer = None
            if status == REJECTED and row.status == PROCESSING:
                # Take the locks in the order every other path takes them (the refunded
                # payment, then the wallet, then the row), or a retry of this very
                # payment waiting on its row would deadlock with us.
                if row.refund_of is not None:
                    await conn.execute(sa.select(t.transactions.c.txn_id).where(
                        t.transactions.c.txn_id == row.refund_of).with_for_update())
                _wrow, payer = await sql.lock_wallet(conn, row.payer_wallet)
            if not await sql.set_transaction_status(conn, txn_id, from_status=PROCESSING,
                                                    to_status=status, now_ms=at, code=code):
                return
            if row.refund_of is not None:
                shop = await sql.wallet_row(conn, row.payer_wallet)
                await self._queue_webhook(conn, row.payer_wallet, shop.webhook_url, txn_id, {
                    "event": f"refund.{status}", "payment_id": f"P{txn_id}",
                    "amount_fen": row.amount_fen, "status": status,
                    "refund_of": f"P{row.refund_of}", "order_id": row.order_id})
            if status == SETTLED:
                await sql.insert_postings(conn, txn_id, ledger.interbank_out_settled(row.amount_fen))
            else:
                if row.refund_of is not None:
                    await self._unbook_refund(conn, row.refund_of, row.amount_fen, at)
                # The balance cap counted this payment while it was in flight (see
                # `lock_wallet(for_credit=True)`), so the money always fits back in.
                payer.balance_fen += row.amount_fen
                if payer.day == china_day(row.created_ms):
                    payer.spent_today_fen = max(payer.spent_today_fen - row.amount_fen, 0)
                await sql.save_wallet(conn, payer)
                await sql.insert_postings(conn, txn_id, ledger.interbank_out_rejected(
                    row.payer_wallet, row.amount_fen))
        self.notify(row.payer_wallet, {"event": f"payment.{status}", "payment_id": f"P{txn_id}",
                                        "order_id": row.order_id})

    async def run_outbox_once(self, limit: int = 50) -> int:
        """Re-send message 1 for due processing payments; how many were tried."""
        async with self.engine.connect() as conn:
            due = (await conn.execute(
                sa.select(t.transactions.c.txn_id)
                .where(t.transactions.c.status == PROCESSING,
                       t.transactions.c.next_attempt_ms <= now_ms())
                .order_by(t.transactions.c.next_attempt_ms).limit(limit))).scalars().all()
        for txn_id in due:
            try:
                await self.forward_transfer(txn_id)
            except RailError as exc:
                log.info("transfer of P%s not finished yet: %s", txn_id, exc.code)
        return len(due)

    # --- refunds ------------------------------------------------------------------------

    async def _book_refund(self, conn: AsyncConnection, original: Any, refunded: int,
                           at: int) -> None:
        """Count a decided refund against the payment (and its order): `refunded` in all."""
        await conn.execute(t.transactions.update().where(
            t.transactions.c.txn_id == original.txn_id).values(refunded_fen=refunded,
                                                                updated_ms=at))
        if original.order_id:
            await conn.execute(t.orders.update().where(
                t.orders.c.order_id == original.order_id).values(
                refunded_fen=refunded, updated_ms=at,
                status=orders.status_after_refund(original.amount_fen, refunded)))

    async def _unbook_refund(self, conn: AsyncConnection, original_txn: int, amount: int,
                             at: int) -> None:
        """The payer's bank refused a refund: it no longer counts against the payment."""
        original = (await conn.execute(sa.select(t.transactions).where(
            t.transactions.c.txn_id == original_txn).with_for_update())).first()
        refunded = max(original.refunded_fen - amount, 0)
        await conn.execute(t.transactions.update().where(
            t.transactions.c.txn_id == original_txn).values(refunded_fen=refunded, updated_ms=at))
        if original.order_id:
            await conn.execute(t.orders.update().where(
                t.orders.c.order_id == original.order_id).values(
                refunded_fen=refunded, updated_ms=at,
                status=orders.PAID if refunded == 0 else orders.status_after_refund(
                    original.amount_fen, refunded)))

    async def refund(self, raw: object) -> dict:
        """A merchant refunds a payment it received, fully or in part, to the payer: at this
        bank directly, at another bank through central. Idempotent by instruction id."""
        env, merchant = await self.signed_by_wallet(raw, REFUND, "merchant_wallet")
        if merchant.kind != MERCHANT:
            raise RailError("not_a_merchant")
        payment_id = env.body.get("payment_id")
        if not isinstance(payment_id, str) or not payment_id.startswith("P") \
                or not payment_id[1:].isdigit():
            raise RailError("invalid_field", "payment_id must be a payment id like P123")
        amount = parse_fen(env.body.get("amount_fen"))
        original_id = int(payment_id[1:])

        async def apply(conn: AsyncConnection) -> dict:
            at = now_ms()
            original = (await conn.execute(sa.select(t.transactions).where(
                t.transactions.c.txn_id == original_id).with_for_update())).first()
            refunded = None if original is None else RefundedPayment(
                original.txn_id, original.kind, original.status, original.payer_wallet,
                original.payee_wallet, original.amount_fen, original.refunded_fen or 0,
                original.pulled_fen or 0)
            books = LockedBooks(self.limits)
            local = refunded is not None and refunded.kind == "payment" \
                and refunded.payee_wallet == merchant.wallet_id and refunded.payer_wallet
            for wallet_id in sorted([merchant.wallet_id, original.payer_wallet] if local
                                    else [merchant.wallet_id]):
                _row, books.wallets[wallet_id] = await sql.lock_wallet(conn, wallet_id)
            decision = decide_refund(merchant.wallet_id, refunded, amount, books, at)
            await self._book_refund(conn, original, decision.refunded_after_fen, at)
            shop, debit = books.wallets[merchant.wallet_id], decision.debit
            shop.balance_fen, shop.day = debit.balance_after_fen, debit.day
            shop.spent_today_fen = debit.spent_today_after_fen
            if original.kind == "interbank_in":
                return await self._refund_to_other_bank(conn, env, merchant.wallet_id, original,
                                                        shop, debit, at)
            payer_id, credit = original.payer_wallet, decision.credit
            payer = books.wallets[payer_id]
            payer.balance_fen += credit.to_wallet_fen
            result = {"status": SETTLED, "amount_fen": amount, "refund_of": payment_id,
                      "payer_wallet": payer_id, "to_deposit_fen": credit.swept_to_deposit_fen}
            txn = await sql.insert_transaction(conn, **self._txn_values(
                env, "refund", SETTLED, amount, payer_wallet=merchant.wallet_id,
                payee_wallet=payer_id, refund_of=original.txn_id, order_id=original.order_id,
                result=orjson.dumps(result).decode()))
            await sql.insert_postings(conn, txn, ledger.payment(
                merchant.wallet_id, None, debit, payer_id, payer.deposit_account, credit))
            await self._queue_webhook(conn, merchant.wallet_id, merchant.webhook_url, txn, {
                "event": "refund.settled", "payment_id": f"P{txn}", "amount_fen": amount,
                "status": SETTLED, "refund_of": payment_id, "order_id": original.order_id})
            await sql.save_wallet(conn, shop)
            await sql.save_wallet(conn, payer)
            if credit.swept_to_deposit_fen:
                await sql.move_deposit(conn, payer.deposit_account, credit.swept_to_deposit_fen)
                await sql.move_vault(conn, credit.swept_to_deposit_fen)
            return {**result, "payment_id": f"P{txn}"}

        outcome = await self._execute(env, merchant.wallet_id, apply, self._refusal_row(
            env, "refund", amount, payer_wallet=merchant.wallet_id))
        txn_id = outcome.pop("_txn", None)
        if txn_id is not None and not outcome.get("repeated"):
            try:
                outcome["status"] = await asyncio.wait_for(self.forward_transfer(txn_id),
                                                           FORWARD_WAIT_MS / 1000)
            except (asyncio.TimeoutError, RailError):
                outcome["status"] = PROCESSING
        if not outcome.get("repeated"):
            self.notify(merchant.wallet_id, {"event": "refund.created", "amount_fen": amount,
                                              "payment_id": outcome.get("payment_id"),
                                              "refund_of": payment_id})
        return outcome

    async def _refund_to_other_bank(self, conn: AsyncConnection, env: Envelope, merchant_id: str,
                                    original: Any, shop: WalletState, debit: DebitPlan,
                                    at: int) -> dict:
        """Refund an interbank payment: a new interbank payment back to the payer, naming
        the transfer it refunds so the payer's bank can send it back the way it came."""
        amount = debit.amount_fen
        transfer_id = f"{self.bank_id}.{secrets.token_hex(16)}"
        result = {"status": PROCESSING, "amount_fen": amount, "refund_of": f"P{original.txn_id}",
                  "refund_of_transfer": original.transfer_id,
                  "payer_wallet": original.payer_wallet, "transfer_id": transfer_id}
        txn = await sql.insert_transaction(conn, **self._txn_values(
            env, "interbank_out", PROCESSING, amount, payer_wallet=merchant_id,
            payee_wallet=original.payer_wallet, counterparty_bank=original.counterparty_bank,
            transfer_id=transfer_id, next_attempt_ms=at + FORWARD_WAIT_MS,
            refund_of=original.txn_id, order_id=original.order_id, result=orjson.dumps(result).decode()))
        await sql.insert_postings(conn, txn, ledger.interbank_out(merchant_id, None, debit))
        await sql.save_wallet(conn, shop)
        return {**result, "payment_id": f"P{txn}", "_txn": txn}

    async def _queue_webhook(self, conn: AsyncConnection, merchant_id: str, url: str | None,
                             txn_id: int, event: dict) -> None:
        """Queue the merchant's webhook in the transaction that makes the event true: it is
        delivered if and only if the payment (or refund) committed."""
        if not url:
            return
        at = now_ms()
        body = {**event, "at_ms": at}
        await conn.execute(t.webhook_deliveries.insert().values(
            merchant_wallet=merchant_id, txn_id=txn_id, event=orjson.dumps(body).decode(),
            url=url, status="pending", attempts=0, next_attempt_ms=at, created_ms=at))

    def notify(self, wallet_id: str, event: dict) -> None:
        """A live notification after commit, best effort, in the background
        (`HotState.after_commit`). Durable merchant notification is the webhook worker's
        job, which reads the journal itself."""
        task = asyncio.get_running_loop().create_task(
            self.hot.after_commit([], [(wallet_id, event)], now_ms()))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- the vault --------------------------------------------------------------------

    async def refill_vault(self, needed_fen: int) -> None:
        """Draw e-CNY from central: at least `needed_fen`, up to the target level. The
        instruction is recorded before it is sent, so a crash never loses track of it."""
        async with self._vault_lock:
            async with self.engine.connect() as conn:
                vault = await sql.vault_balance(conn)
            # This request's need on top of what the vault holds: requests racing for the
            # vault each bring their own e-CNY, so none takes another's refill. The keeper
            # returns any surplus above the high mark.
            amount = needed_fen + max(self.vault_target_fen - vault, 0)
            await self._vault_op("vault_issue", amount)

    async def _vault_op(self, kind: str, amount: int) -> None:
        op_type = CENTRAL_ISSUE if kind == "vault_issue" else CENTRAL_REDEEM
        env = seal(self.key, op_type, {"bank_id": self.bank_id, "amount_fen": amount},
                   ttl_ms=TRANSFER_TTL_MS)
        at = now_ms()
        async with self.engine.begin() as conn:
            txn = await sql.insert_transaction(
                conn, kind=kind, signer=self.key.key_id, instruction_id=env.id,
                digest=env.digest(), status=PENDING, amount_fen=amount,
                expires_ms=env.expires_ms, created_ms=at, updated_ms=at,
                next_attempt_ms=at, result=orjson.dumps(env.to_dict()).decode())
            if kind == "vault_redeem":
                await sql.move_vault(conn, -amount)
                await sql.insert_postings(conn, txn, ledger.vault_redeem_started(amount))
        await self.settle_vault_op(txn)

    async def settle_vault_op(self, txn_id: int) -> None:
        """Send (or re-send) a pending vault instruction to central and record its answer."""
        async with self.engine.connect() as conn:
            row = await sql.transaction_by_id(conn, txn_id)
        if row is None or row.status != PENDING:
            return
        path = "/v1/issuance" if row.kind == "vault_issue" else "/v1/redemption"
        try:
            answer = await self.central.request("POST", path, orjson.loads(row.result))
        except RailError as exc:
            if exc.code in ("insufficient_reserves", "insufficient_holdings"):
                await self._finish_vault_op(row, REJECTED, exc.code)
                raise RailError("vault_empty", f"central refused: {exc.code}") from None
            async with self.engine.begin() as conn:
                await conn.execute(t.transactions.update().where(
                    t.transactions.c.txn_id == txn_id).values(next_attempt_ms=now_ms() + 2000))
            raise RailError("vault_empty", f"central unreachable: {exc.code}") from None
        envelope.verify_statement(self.central_key, answer["receipt"])
        await self._finish_vault_op(row, SETTLED, None)

    async def _finish_vault_op(self, row: Any, status: str, code: str | None) -> None:
        async with self.engine.begin() as conn:
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

    async def keep_vault(self) -> None:
        """Refill below the low mark, return the surplus above the high mark; finish any
        vault instruction a crash left pending."""
        async with self.engine.connect() as conn:
            pending = (await conn.execute(
                sa.select(t.transactions.c.txn_id).where(
                    t.transactions.c.status == PENDING,
                    t.transactions.c.next_attempt_ms <= now_ms()))).scalars().all()
            vault = await sql.vault_balance(conn)
        for txn_id in pending:
            try:
                await self.settle_vault_op(txn_id)
            except RailError:
                pass
        if pending:
            return
        if vault < self.vault_low_fen:
            await self.refill_vault(self.vault_target_fen)
        elif vault > self.vault_high_fen:
            async with self._vault_lock:
                await self._vault_op("vault_redeem", vault - self.vault_target_fen)

    # --- reads ------------------------------------------------------------------------

    async def wallet_for_read(self, wallet_id: str):
        async with self.engine.connect() as conn:
            row = await sql.wallet_row(conn, wallet_id)
        if row is None:
            raise RailError("unknown_wallet")
        return row

    async def history(self, wallet_id: str, *, before_id: int | None, limit: int,
                      since_ms: int | None, until_ms: int | None,
                      counterparty: str | None, status: str | None = None) -> dict:
        """A wallet's transactions, newest first, a page at a time."""
        c = t.transactions.c
        stmt = sa.select(t.transactions).where(
            sa.or_(c.payer_wallet == wallet_id, c.payee_wallet == wallet_id))
        if before_id is not None:
            stmt = stmt.where(c.txn_id < before_id)
        if since_ms is not None:
            stmt = stmt.where(c.created_ms >= since_ms)
        if until_ms is not None:
            stmt = stmt.where(c.created_ms < until_ms)
        if counterparty:
            stmt = stmt.where(sa.or_(c.payer_wallet == counterparty, c.payee_wallet == counterparty))
        if status:
            stmt = stmt.where(c.status == status)
        stmt = stmt.order_by(c.txn_id.desc()).limit(min(max(limit, 1), 100))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        items = [payment_view(r) for r in rows]
        return {"items": items,
                "next_before": rows[-1].txn_id if len(rows) == limit else None}

    async def payment(self, wallet_id: str, payment_id: str) -> dict:
        if not payment_id.startswith("P") or not payment_id[1:].isdigit():
            raise RailError("not_found", "no such payment")
        async with self.engine.connect() as conn:
            row = await sql.transaction_by_id(conn, int(payment_id[1:]))
        if row is None or wallet_id not in (row.payer_wallet, row.payee_wallet):
            raise RailError("not_found", "no such payment")
        return payment_view(row)

    # --- audit ------------------------------------------------------------------------

    async def audit(self) -> dict:
        async with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            inputs = await sql.audit_inputs(conn)
            pending_vault = (await conn.execute(sa.select(sa.func.count()).where(
                t.transactions.c.status == PENDING))).scalar_one()
        report = bank_audit.audit(**inputs).to_dict()
        return {"bank_id": self.bank_id, **report, "pending_vault_ops": pending_vault}

    async def credited_transfers(self, transfer_ids: list[str]) -> list[str]:
        """Which of these inbound transfers this bank has credited (for the rail audit)."""
        if not transfer_ids:
            return []
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(t.transactions.c.transfer_id).where(
                t.transactions.c.transfer_id.in_(transfer_ids[:1000]),
                t.transactions.c.kind == "interbank_in",
                t.transactions.c.status == SETTLED))
            return [r.transfer_id for r in rows]
