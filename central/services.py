"""Central's use cases. Each has the same shape: check the instruction, open a transaction,
ask the domain for the entry, post it, commit, answer with a signed receipt."""

from __future__ import annotations

import hmac
from pathlib import Path

import httpx
import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central import domain
from central.adapters import registry_sql as sql
from central.adapters import tables as t
from central.adapters.batch_store import BatchStore, open_store
from central.adapters.bank_http import BankNodes
from central.transfers import Transfers
from rail_protocol import envelope
from rail_protocol.envelope import Envelope, now_ms, sign_statement
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import CENTRAL_ISSUE, CENTRAL_REDEEM, REGISTER_BANK
from rail_protocol.keys import PublicKey, SigningKey
from rail_protocol.money import parse_fen
from rail_protocol.request_auth import read_signer, verify_read
from rail_service.db import migrate, read_snapshot
from rail_service.instructions import Recorded, execute_once

MIGRATIONS = Path(__file__).parent / "migrations"
# Connections of the batches' store (central/adapters/batch_store.py): the prepare batch's
# own, the finishes and reads of the deliveries to payee banks, and the sealer's.
STORE_POOL_SIZE = 8



class _Log:
    """Central's instruction log: a table of instructions and their outcomes."""

    @staticmethod
    async def find(conn: AsyncConnection, signer: str, instruction_id: str) -> Recorded | None:
        row = await sql.find_instruction(conn, signer, instruction_id)
        if row is None:
            return None
        result = orjson.loads(row.result)
        if row.status == "rejected":
            return Recorded(row.digest, row.expires_ms,
                            refusal=(result["code"], result["message"]))
        return Recorded(row.digest, row.expires_ms, outcome=result)

    record = staticmethod(sql.record_instruction)


class Central:
    """The issuer, wired to its database and its own signing key."""

    def __init__(self, engine: AsyncEngine, key: SigningKey, operator_token: str, *,
                 bank_transport: httpx.AsyncBaseTransport | None = None,
                 bank_timeout_ms: int = 3_000, worker_interval_ms: int = 200,
                 worker_batch_size: int = 50) -> None:
        self.engine = engine
        self.key = key
        self._operator_token = operator_token.encode()
        self.bank_nodes = BankNodes(transport=bank_transport, timeout_ms=bank_timeout_ms)
        self.transfers = Transfers(engine, key, self.bank_nodes,
                                   worker_interval_ms=worker_interval_ms,
                                   batch_size=worker_batch_size)
        self.store: BatchStore | None = None   # open from `start` to `close`

    async def start(self) -> None:
        await migrate(self.engine, MIGRATIONS, "central_alembic_version")
        async with self.engine.begin() as conn:
            await sql.ensure_accounts(conn, list(domain.SYSTEM_ACCOUNTS))
        self.store = await open_store(self.engine, STORE_POOL_SIZE)
        await self.transfers.start(self.store)

    async def close(self) -> None:
        await self.transfers.aclose()
        await self.bank_nodes.aclose()
        if self.store is not None:
            await self.store.aclose()
            self.store = None

    def check_operator(self, token: str | None) -> None:
        """Operator actions need the operator credential; compared in constant time."""
        if not token or not hmac.compare_digest(token.encode(), self._operator_token):
            raise RailError("unauthorized")

    async def reader(self, authorization: str | None, method: str, path: str) -> str | None:
        """Who reads: None for central's operator (`Bearer` token), else the id of the
        enrolled bank whose certified key signed the read (`Rail key=...`)."""
        if not authorization:
            raise RailError("unauthorized", "this read needs central's operator credential or "
                                            "a read signed by an enrolled bank's key")
        if authorization.startswith("Bearer "):
            self.check_operator(authorization[len("Bearer "):].strip())
            return None
        key_id, _ts, _sig = read_signer(authorization)
        async with self.engine.connect() as conn:
            bank = await sql.find_bank_by_key(conn, key_id)
        if bank is None:
            raise RailError("unknown_key", "the signer is not an enrolled bank's key")
        verify_read(authorization, PublicKey.from_text(bank.public_key), method, path)
        return bank.bank_id

    def identity(self) -> dict:
        return {"key_id": self.key.key_id, "public_key": self.key.public_key.to_text(),
                "currency": "CNY"}

    # --- certification centre ---------------------------------------------------------

    async def register_bank(self, raw: object) -> dict:
        """Register a bank node and certify its key. The request is signed by the bank's own
        key (proof that the registrant holds it). Registering again with the same key returns
        the same certificate (and may change the bank node's `url`, where central delivers
        interbank credits); another key for a registered bank is refused."""
        env = Envelope.parse(raw)
        body = env.body
        bank_id = domain.check_bank_id(body.get("bank_id"))
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise RailError("invalid_field", "name must be 1-128 characters")
        url = None if body.get("url") is None else domain.check_bank_url(body["url"])
        public_key = PublicKey.from_text(body.get("public_key", ""))
        envelope.verify(env, public_key, expected_type=REGISTER_BANK)
        try:
            return await self._register(bank_id, name, url, public_key)
        except IntegrityError:
            # A concurrent registration won the insert: the same key gets its certificate.
            return await self._register(bank_id, name, url, public_key)

    async def _register(self, bank_id: str, name: str, url: str | None,
                        public_key: PublicKey) -> dict:
        async with self.engine.begin() as conn:
            # Each read may see a registration that committed after the one before it, so
            # every branch decides on the row it read itself.
            for existing in (await sql.find_bank_by_key(conn, public_key.key_id),
                             await sql.find_bank(conn, bank_id)):
                if existing is None:
                    continue
                if existing.bank_id != bank_id or existing.key_id != public_key.key_id:
                    raise RailError("bank_key_conflict",
                                    "the bank or the key is registered with another")
                if url is not None and url != existing.url:
                    await sql.set_bank_url(conn, bank_id, url)
                return orjson.loads(existing.certificate)
            certificate = sign_statement(self.key, {
                "type": "central.bank_certificate", "bank_id": bank_id, "name": name,
                "public_key": public_key.to_text(), "key_id": public_key.key_id,
                "issued_ms": now_ms(),
            })
            await conn.execute(t.banks.insert().values(
                bank_id=bank_id, name=name, key_id=public_key.key_id,
                public_key=public_key.to_text(),
                certificate=orjson.dumps(certificate).decode(), registered_ms=now_ms(),
                url=url,
            ))
            await sql.ensure_accounts(conn, list(domain.bank_accounts(bank_id)))
        return certificate

    async def bank_by_signer(self, key_id: str):
        async with self.engine.connect() as conn:
            bank = await sql.find_bank_by_key(conn, key_id)
        if bank is None:
            raise RailError("unknown_key", "the signer is not a registered bank's key")
        return bank

    # --- reserves, issue, redeem ------------------------------------------------------

    async def deposit_reserves(self, bank_id: str, deposit_id: object, amount_fen: object) -> dict:
        """An operator records a bank's reserve deposit; `deposit_id` makes it idempotent."""
        amount = parse_fen(amount_fen)
        if not isinstance(deposit_id, str) or not 8 <= len(deposit_id) <= 64:
            raise RailError("invalid_field", "deposit_id must be 8-64 characters")
        try:
            async with self.engine.begin() as conn:
                if await sql.find_bank(conn, bank_id) is None:
                    raise RailError("unknown_bank")
                entry_id = await sql.post_entry(
                    conn, domain.reserve_deposit(bank_id, amount), f"deposit:{deposit_id}")
                answer = await self._bank_figures(conn, bank_id, entry_id=entry_id)
                await conn.execute(t.reserve_deposits.insert().values(
                    deposit_id=deposit_id, bank_id=bank_id, amount_fen=amount, entry_id=entry_id,
                    result=orjson.dumps(answer).decode()))
                return answer
        except IntegrityError:
            async with self.engine.connect() as conn:
                row = (await conn.execute(t.reserve_deposits.select().where(
                    t.reserve_deposits.c.deposit_id == deposit_id))).first()
                if row is None or row.bank_id != bank_id or row.amount_fen != amount:
                    raise RailError("deposit_id_reused") from None
                first = orjson.loads(row.result) if row.result is not None else \
                    await self._bank_figures(conn, bank_id, entry_id=row.entry_id)
                return {**first, "repeated": True}   # the first answer, as instructions do

    async def issue(self, raw: object) -> dict:
        """Issue e-CNY to the signing bank, never beyond its reserves."""
        return await self._move(raw, CENTRAL_ISSUE, domain.issue)

    async def redeem(self, raw: object) -> dict:
        """Redeem e-CNY from the signing bank, never beyond its holding."""
        return await self._move(raw, CENTRAL_REDEEM, domain.redeem)

    async def _move(self, raw: object, kind: str, make_entry) -> dict:
        env = Envelope.parse(raw)
        bank = await self.bank_by_signer(env.signer)
        envelope.verify(env, PublicKey.from_text(bank.public_key), expected_type=kind,
                        check_expiry=False)
        if env.body.get("bank_id") != bank.bank_id:
            raise RailError("signer_mismatch", "a bank may only move its own e-CNY")
        amount = parse_fen(env.body.get("amount_fen"))

        async def apply(conn: AsyncConnection) -> dict:
            entry_id = await sql.post_entry(conn, make_entry(bank.bank_id, amount),
                                            f"{env.signer}:{env.id}")
            figures = await self._bank_figures(conn, bank.bank_id, entry_id=entry_id)
            return {"status": "done", "receipt": sign_statement(self.key, {
                "type": "central.receipt", "instruction_id": env.id, "instruction_type": kind,
                "amount_fen": amount, "at_ms": now_ms(), **figures,
            })}

        return await execute_once(self.engine, _Log, env, apply)

    async def _bank_figures(self, conn: AsyncConnection, bank_id: str, **extra) -> dict:
        reserve, holding = domain.bank_accounts(bank_id)
        found = await sql.balances(conn, [reserve, holding])
        return {"bank_id": bank_id, "reserves_fen": found.get(reserve, 0),
                "holding_fen": found.get(holding, 0), **extra}

    # --- views ------------------------------------------------------------------------

    async def bank_view(self, bank_id: str) -> dict:
        async with self.engine.connect() as conn:
            bank = await sql.find_bank(conn, bank_id)
            if bank is None:
                raise RailError("unknown_bank")
            figures = await self._bank_figures(conn, bank_id)
        return {**figures, "name": bank.name, "key_id": bank.key_id, "url": bank.url,
                "certificate": orjson.loads(bank.certificate)}

    async def node(self, bank_id: str) -> dict:
        """Where a bank node answers and its certificate: what another bank needs to send
        it a charge. Public, like the certificate itself."""
        async with self.engine.connect() as conn:
            bank = await sql.find_bank(conn, bank_id)
        if bank is None:
            raise RailError("unknown_bank")
        return {"bank_id": bank.bank_id, "url": bank.url,
                "certificate": orjson.loads(bank.certificate)}

    async def certificate(self, bank_id: str) -> dict:
        async with self.engine.connect() as conn:
            bank = await sql.find_bank(conn, bank_id)
        if bank is None:
            raise RailError("unknown_bank")
        return orjson.loads(bank.certificate)

    async def supply(self) -> dict:
        async with self.engine.connect() as conn:
            ids = await sql.bank_ids(conn)
            accounts = [a for b in ids for a in domain.bank_accounts(b)]
            found = await sql.balances(conn, accounts + list(domain.SYSTEM_ACCOUNTS))
        return {
            "currency": "CNY",
            "total_issued_fen": -found.get(domain.ISSUANCE, 0),
            "backing_fen": found.get(domain.BACKING, 0),
            "in_flight_fen": found.get(domain.IN_FLIGHT, 0),
            "banks": [{"bank_id": b,
                       "reserves_fen": found.get(domain.reserve_account(b), 0),
                       "holding_fen": found.get(domain.holding_account(b), 0)} for b in ids],
        }

    async def journal(self, after_entry_id: int, limit: int) -> dict:
        async with self.engine.connect() as conn:
            entries = await sql.journal_page(conn, after_entry_id, min(max(limit, 1), 500))
        return {"entries": entries,
                "next_after": entries[-1]["entry_id"] if entries else after_entry_id}

    async def audit(self) -> domain.AuditReport:
        """Recompute conservation from the journal, in one consistent snapshot (in flight
        is checked against the transfers still prepared, read in the same snapshot)."""
        async with read_snapshot(self.engine) as conn:
            inputs = await sql.audit_inputs(conn)
        return domain.audit(**inputs)
