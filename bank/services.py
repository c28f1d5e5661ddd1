"""A bank node: its context (database, Redis, key, central, class limits), what its use cases
share (the wallet's signature checked, a recorded instruction's first outcome, webhooks
queued, live notices) and the use cases, each in its module: bank/wallets.py, vault.py,
outbox.py, reads.py. Every movement of a wallet's money (payments, refunds, top-ups and
redemptions) is the payment engine's (payment_engine.py); every credit from another bank the
credit engine's (credit_engine.py). The instruction's (signer, id) is a unique key in the
transaction that moves the money, so a retry can never have a second effect."""

from __future__ import annotations

import asyncio
import logging

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bank.adapters import books_sql as sql
from bank.adapters import tables as t
from bank.adapters.hot_state import HotState
from bank.common import check_signed_by
from bank.directory import BankDirectory
from bank.domain.wallets import ClassLimits
from bank.instruction_log import JOURNAL
from bank.outbox import Outbox
from bank.reads import Reads
from bank.vault import Vault
from bank.wallets import Wallets
from central.client import CentralClient
from rail_protocol import envelope
from rail_protocol.envelope import Envelope, now_ms
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey, SigningKey
from rail_service.db import read_snapshot
from rail_service.instructions import answer_repeat

log = logging.getLogger("yuanrail.bank")


class Bank:
    """One bank node, wired to its database, Redis, its key and central."""

    def __init__(self, *, bank_id: str, name: str, engine: AsyncEngine, key: SigningKey,
                 hot: HotState, central: CentralClient, operator_token: str, public_url: str,
                 vault_low_fen: int = 0, vault_target_fen: int = 0, vault_high_fen: int = 0,
                 connect_at_start: bool = True, no_pin_threshold_fen: int) -> None:
        self.bank_id, self.name = bank_id, name
        self.engine, self.key, self.hot, self.central = engine, key, hot, central
        self._operator_token = operator_token.encode()
        self.public_url = public_url
        self.vault_low_fen, self.vault_target_fen = vault_low_fen, vault_target_fen
        self.vault_high_fen = vault_high_fen
        self.connect_at_start = connect_at_start
        self.central_key: PublicKey | None = None
        self.limits: dict[int, ClassLimits] = {}
        self._background: set[asyncio.Task] = set()
        # Tests put an in-process network here for calls to other bank nodes.
        self.peer_transport = None
        self.no_pin_threshold_fen = no_pin_threshold_fen
        # The use cases, each in its module, sharing this node's context.
        self.wallets, self.vault = Wallets(self), Vault(self)
        self.outbox, self.reads = Outbox(self), Reads(self)
        self.directory = BankDirectory(self)   # the other banks, as central certifies them

    async def start(self) -> None:
        from pathlib import Path

        from rail_service.db import migrate

        await migrate(self.engine, Path(__file__).parent / "migrations", "bank_alembic_version")
        await self.reload_limits()
        if self.connect_at_start:
            # Central may still be starting, or its operator may still be enrolling this
            # bank: keep trying for a while rather than refuse to come up.
            for attempt in range(60):
                try:
                    await self.connect_central()
                    break
                except RailError as exc:
                    if exc.code not in ("upstream_unavailable", "unknown_bank") or attempt == 59:
                        if exc.code == "unknown_bank":
                            raise RailError("unknown_bank", f"bank {self.bank_id!r} is not "
                                            "enrolled at central: its operator enrols it with "
                                            "`yuanrail enroll-bank`") from None
                        raise
                    log.warning("not connected to central yet (%s); retrying", exc.message)
                    await asyncio.sleep(0.5)

    async def connect_central(self) -> None:
        """Learn central's key and check that central certified this node's key. A bank
        holds no credential of central's: central's operator enrols it (with a request
        signed by this bank's key), and from then on the bank speaks to central only in
        requests signed by that certified key."""
        identity = await self.central.identity()
        central_key = PublicKey.from_text(identity["public_key"])
        certificate = await self.central.certificate(self.bank_id)
        envelope.verify_statement(central_key, certificate)
        if certificate.get("public_key") != self.key.public_key.to_text():
            raise RailError("bank_key_conflict", f"central certified another key for bank "
                                                 f"{self.bank_id!r} than this node's")
        self.central_key = central_key

    async def fold_credits(self, at_least: int = 100, wallets: int = 50) -> int:
        """The background fold of credits appended to wallets with no balance cap. Such a
        wallet (a busy shop's) is credited by appending rows, folded into its balance when
        it pays; a shop that only receives would pile them up without end, and every read
        of its balance, every batch that locks it and the audit would grow with the pile."""
        async with read_snapshot(self.engine) as conn:   # most passes: nothing to fold
            if not await sql.piled_credits(conn, at_least, 1):
                return 0
        async with self.engine.begin() as conn:
            return await sql.fold_piled_credits(conn, at_least, wallets)

    async def fold_positions(self, at_least: int = 100) -> int:
        """The background fold of the position deltas (migration 0011): each interbank
        payment appends one, and the watch sums them all when it compares its books. Folds
        once `at_least` have piled up; returns how many rows there were."""
        async with read_snapshot(self.engine) as conn:   # no write lock on SQLite
            rows = await sql.position_rows(conn)
        if rows < at_least:
            return 0
        async with self.engine.begin() as conn:
            await sql.fold_position(conn)
        return rows

    async def reload_limits(self) -> None:
        async with self.engine.connect() as conn:
            self.limits = await sql.class_limits(conn)

    def check_operator(self, token: str | None) -> None:
        import hmac

        if not token or not hmac.compare_digest(token.encode(), self._operator_token):
            raise RailError("unauthorized")

    async def signed_by_wallet(self, raw: object, expected_type: str, wallet_field: str):
        """Parse and verify an instruction signed by a wallet's key; return (env, wallet)."""
        env = Envelope.parse(raw)
        async with self.engine.connect() as conn:
            wallet = await sql.wallet_by_key(conn, env.signer)
        check_signed_by(env, wallet and wallet.wallet_id,
                        wallet and PublicKey.from_text(wallet.public_key), expected_type,
                        wallet_field)
        return env, wallet

    async def answer_known(self, env: Envelope, required: bool = False) -> dict:
        """The first outcome of an instruction already recorded (`repeated`), its refusal
        raised again, or `{}` if unknown; `required`: it must be known (a unique key other
        than its own collided: a race, answered retryable)."""
        async with self.engine.connect() as conn:
            known = await JOURNAL.find(conn, env.signer, env.id)
        if known is None:
            if required:  # a unique key other than the instruction's: a race; retry it
                raise RailError("upstream_unavailable", "a concurrent change; retry the same id")
            return {}
        return answer_repeat(known, env)

    async def queue_webhook(self, conn: AsyncConnection, merchant_id: str, url: str | None,
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
