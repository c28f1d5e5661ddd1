"""A whole rail in one process: central and the bank nodes "yangtze" and "pearl", each on a
fresh PostgreSQL database, with its own Redis key prefix, talking over an `AsgiNetwork`.

Fixtures: `rail` (a fresh rail per test), `module_rail` (one per module; tests use wallets
of their own) and `rail_factory` (`async with rail_factory(**bank_settings) as rail:` for
special settings such as `redis_url` or `rate_limit_per_s`). Import the ones you use:

    from tests.support.rail import rail  # noqa: F401

    async def test_something(rail):
        payer = await rail.funded_wallet("yangtze", yuan(100))
        payee = await rail.open_wallet("pearl")
        await rail.pay(payer, payee, yuan(10))
        await rail.assert_balanced()

Wallets are opened and funded through the banks' own APIs: a class-1 "treasury" wallet per
bank, topped up from a deposit account on first use, pays whatever a test wallet needs.
Only load tests take the short cuts `open_many` (the service layer without HTTP) and
`payroll` (one balanced journal entry through the bank's SQL adapter). Rate limiting is
off (`rate_limit_per_s=0`) and the vault holds nothing spare (`vault_target_fen=0`) unless
a test asks otherwise."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis.asyncio as aioredis

from bank.adapters import books_sql, tables
from bank.app import build_bank
from bank.app import create_app as create_bank_app
from bank.client import BankClient
from bank.config import BankSettings
from bank.domain.ledger import Postings
from bank.services import Bank
from rail_protocol.instruction_types import OPEN_WALLET
from central.app import create_app as create_central_app
from central.client import CentralClient
from central.config import CentralSettings
from rail_protocol.envelope import Envelope, now_ms, seal
from rail_protocol.keys import SigningKey
from tests.conftest import REDIS_URL
from tests.support.asgi_net import AsgiNetwork
from tests.support.polling import poll

BANK_IDS = ("yangtze", "pearl")
CENTRAL_TOKEN = "test-central-operator-0001"
BANK_TOKENS = {bank_id: f"test-{bank_id}-operator-0001" for bank_id in BANK_IDS}
CODE_ISSUERS = {"11": "yangtze", "12": "pearl"}   # short payment codes' issuer table
RESERVES_FEN = 10**13            # each bank's reserve deposit at central: 100 bn yuan
TREASURY_FEN = 10**11            # what each bank's treasury wallet is topped up with
_phones_given: set[str] = set()


def new_phone() -> str:
    """A fresh random mainland mobile number, unique within the test session."""
    while True:
        phone = f"139{secrets.randbelow(10**8):08d}"
        if phone not in _phones_given:
            _phones_given.add(phone)
            return phone


def new_id_number() -> str:
    """A fresh 18-character resident ID number (17 digits and a check character)."""
    return f"{secrets.randbelow(10**17):017d}X"


def psycopg_url(async_url: str) -> str:
    return async_url.replace("postgresql+asyncpg://", "postgresql://")


@dataclass
class Wallet:
    """A wallet as its holder knows it: the id, the key made on the device, the evidence."""

    bank_id: str
    wallet_id: str
    key: SigningKey
    phone: str
    kind: str = "personal"
    id_number: str | None = None
    deposit_account: str | None = None


@dataclass
class BankNode:
    bank_id: str
    client: BankClient       # with the bank's operator credential
    node: Bank
    settings: BankSettings
    database_url: str
    url: str


@dataclass
class Rail:
    net: AsgiNetwork
    central: CentralClient   # with central's operator credential
    central_database_url: str
    banks: dict[str, BankNode]
    central_key: SigningKey | None = None   # central's signing key, to forge its messages in tests
    _treasuries: dict[str, Wallet] = field(default_factory=dict)
    _treasury_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def client(self, bank: str | Wallet) -> BankClient:
        bank_id = bank.bank_id if isinstance(bank, Wallet) else bank
        return self.banks[bank_id].client

    # --- wallets ---------------------------------------------------------------------

    async def open_wallet(self, bank_id: str, *, kind: str = "personal",
                          merchant: dict | None = None, kyc_class: int = 4,
                          phone: str | None = None) -> Wallet:
        """Open a wallet (class 4), then let the operator set `kyc_class` if another."""
        if kind == "merchant" and merchant is None:
            merchant = {"name": "Test Noodle Bar", "mcc": "5812", "city": "Wuhan"}
        key, phone = SigningKey.generate(), phone or new_phone()
        client = self.client(bank_id)
        answer = await client.open_wallet(key, phone, kind=kind, merchant=merchant)
        wallet = Wallet(bank_id, answer["wallet_id"], key, phone, kind)
        if kyc_class != 4:
            await client.set_class(wallet.wallet_id, kyc_class)
        return wallet

    async def linked_wallet(self, bank_id: str, *, deposit_fen: int, kyc_class: int = 2,
                            kind: str = "personal", topup_fen: int = 0) -> Wallet:
        """A wallet upgraded with an ID number and its holder's own deposit account (class
        2), then set to `kyc_class` by the operator, topped up with `topup_fen`."""
        wallet = await self.open_wallet(bank_id, kind=kind)
        client = self.client(bank_id)
        account = await client.open_deposit_account(wallet.phone, "Test Holder", deposit_fen)
        wallet.id_number, wallet.deposit_account = new_id_number(), account["account_id"]
        view = await client.upgrade(wallet.key, wallet.wallet_id, id_number=wallet.id_number,
                                    deposit_account=wallet.deposit_account)
        assert view["kyc_class"] == 2
        if kyc_class == 1:
            await client.set_class(wallet.wallet_id, 1)
        if topup_fen:
            await client.top_up(wallet.key, wallet.wallet_id, topup_fen)
        if kyc_class not in (1, 2):
            await client.set_class(wallet.wallet_id, kyc_class)
        return wallet

    async def treasury(self, bank_id: str) -> Wallet:
        """The bank's class-1 wallet that funds test wallets (made on first use)."""
        async with self._treasury_lock:
            if bank_id not in self._treasuries:
                self._treasuries[bank_id] = await self.linked_wallet(
                    bank_id, deposit_fen=TREASURY_FEN, kyc_class=1, topup_fen=TREASURY_FEN)
            return self._treasuries[bank_id]

    async def funded_wallet(self, bank_id: str, amount_fen: int, *, kyc_class: int = 4,
                            kind: str = "personal", linked_deposit_fen: int | None = None,
                            topup_on_use: bool = False) -> Wallet:
        """A wallet of `kyc_class` holding `amount_fen`, paid to it by the bank's treasury.
        With `linked_deposit_fen` it also has its own deposit account holding that much."""
        if linked_deposit_fen is not None:
            wallet = await self.linked_wallet(bank_id, deposit_fen=linked_deposit_fen,
                                              kyc_class=kyc_class, kind=kind)
            if topup_on_use:
                await self.client(bank_id).settings(wallet.key, wallet.wallet_id,
                                                    topup_on_use=True)
        else:
            wallet = await self.open_wallet(bank_id, kind=kind, kyc_class=kyc_class)
        if amount_fen:
            await self.fund(wallet, amount_fen)
        return wallet

    async def open_many(self, bank_id: str, count: int) -> list[Wallet]:
        """Open `count` class-4 wallets through the bank's service layer (the same code as
        `POST /v1/wallets`, without the HTTP round trip), 200 at a time."""
        node = self.banks[bank_id].node
        wallets: list[Wallet] = []
        for start in range(0, count, 200):
            batch = [(SigningKey.generate(), new_phone()) for _ in range(min(200, count - start))]
            opened = await asyncio.gather(*(node.wallets.open_wallet(seal(key, OPEN_WALLET, {
                "phone": phone, "public_key": key.public_key.to_text(), "kind": "personal",
            }).to_dict()) for key, phone in batch))
            wallets += [Wallet(bank_id, answer["wallet_id"], key, phone)
                        for (key, phone), answer in zip(batch, opened, strict=True)]
        return wallets

    async def payroll(self, bank_id: str, wallets: list[Wallet], amount_fen: int) -> None:
        """Pay `amount_fen` from the treasury to each of many wallets in one balanced
        journal entry, written through the bank's own SQL adapter: a bulk set-up for load
        tests (the audit checks it like any other entry). Credits are appended, as for an
        uncapped payee, and fold into each balance on its first debit."""
        treasury = await self.treasury(bank_id)
        total, at = amount_fen * len(wallets), now_ms()
        postings = Postings().add(treasury.wallet_id, -total)
        for wallet in wallets:
            postings.add(wallet.wallet_id, amount_fen)
        async with self.banks[bank_id].node.engine.begin() as conn:
            _row, state = await books_sql.lock_wallet(conn, treasury.wallet_id)
            assert state.balance_fen >= total, "the treasury cannot cover the payroll"
            state.balance_fen -= total
            await books_sql.save_wallet(conn, state)
            txn = await books_sql.insert_transaction(
                conn, kind="payroll", signer="test-payroll", instruction_id=uuid.uuid4().hex,
                digest="", status="settled", amount_fen=total, expires_ms=at, created_ms=at,
                updated_ms=at, result="{}")
            await books_sql.insert_postings(conn, txn, postings.done())
            await conn.execute(tables.wallet_credits.insert(), [
                {"wallet_id": wallet.wallet_id, "amount_fen": amount_fen} for wallet in wallets])

    async def fund(self, wallet: Wallet, amount_fen: int) -> dict:
        treasury = await self.treasury(wallet.bank_id)
        return await self.pay(treasury, wallet, amount_fen)

    async def pay(self, payer: Wallet, payee: Wallet | str, amount_fen: int,
                  memo: str | None = None, *, wait: bool = True) -> dict:
        """Pay through the API. A payment to another bank may answer `processing` when its
        first try did not finish (the outbox does); with `wait`, the answer comes back
        with the final status instead."""
        payee_id = payee.wallet_id if isinstance(payee, Wallet) else payee
        answer = await self.client(payer).pay(payer.key, payer.wallet_id, payee_id,
                                              amount_fen, memo)
        return await self.finished(payer, answer) if wait else answer

    async def finished(self, payer: Wallet, answer: dict) -> dict:
        """`answer` with the payment's final status (settled or rejected)."""
        if answer.get("status") != "processing":
            return answer
        view = await self.wait_for_payment(payer, answer["payment_id"])
        return {**answer, "status": view["status"], "first_status": "processing",
                **({"code": view["code"]} if "code" in view else {})}

    def pay_envelope(self, payer: Wallet, payee: Wallet | str, amount_fen: int,
                     **seal_args) -> Envelope:
        payee_id = payee.wallet_id if isinstance(payee, Wallet) else payee
        return self.client(payer).pay_envelope(payer.key, payer.wallet_id, payee_id,
                                               amount_fen, **seal_args)

    async def post_raw(self, bank_id: str, path: str, content: bytes | dict | Envelope,
                       headers: dict | None = None) -> httpx.Response:
        """POST exactly these bytes (or this JSON) and hand back the raw HTTP response."""
        if isinstance(content, Envelope):
            content = content.to_dict()
        if isinstance(content, dict):
            content = orjson.dumps(content)
        return await self.client(bank_id).http.post(path, content=content,
                                                    headers=headers or {})

    async def send_payment(self, bank_id: str, envelope: Envelope | dict | bytes) -> httpx.Response:
        return await self.post_raw(bank_id, "/v1/payments", envelope)

    # --- what the rail holds ---------------------------------------------------------

    async def wallet_view(self, wallet: Wallet) -> dict:
        return await self.client(wallet).operator_wallet(wallet.wallet_id)

    async def balance(self, wallet: Wallet) -> int:
        return (await self.wallet_view(wallet))["balance_fen"]

    async def deposit_balance(self, wallet: Wallet) -> int:
        assert wallet.deposit_account is not None
        account = await self.client(wallet).deposit_account(wallet.deposit_account)
        return account["balance_fen"]

    async def bank_audit(self, bank_id: str) -> dict:
        return await self.client(bank_id).audit()

    async def snapshot(self, *wallets: Wallet) -> dict:
        """Everything a refused request must leave as it was: the wallets' balances and
        daily spend, their deposit accounts, every bank's audit and central's supply; taken
        once nothing is in flight (`quiet`), so a payment settled before it is in the books."""
        await self.quiet()
        state: dict[str, Any] = {}
        for wallet in wallets:
            view = await self.wallet_view(wallet)
            state[wallet.wallet_id] = (view["balance_fen"], view["spent_today_fen"],
                                       view["status"])
            if wallet.deposit_account:
                state[f"dep:{wallet.deposit_account}"] = await self.deposit_balance(wallet)
        for bank_id in self.banks:
            state[f"audit:{bank_id}"] = await self.bank_audit(bank_id)
        state["supply"] = await self.central.supply()
        return state

    async def rail_audit(self) -> dict:
        """Central's audit, each bank's audit, and each bank's books against what central
        records it as holding. Call it when nothing is in flight."""
        central = await self.central.audit()
        supply = await self.central.supply()
        holding = {b["bank_id"]: b["holding_fen"] for b in supply["banks"]}
        banks = {bank_id: await self.bank_audit(bank_id) for bank_id in self.banks}
        return {"central": central, "banks": banks, "holding": holding, "supply": supply}

    async def quiet(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) until nothing is in flight: the books record what the payers
        already heard (see `quiet_audit`)."""
        await self.quiet_audit(timeout_s)

    async def quiet_audit(self, timeout_s: float = 10.0) -> dict:
        """`rail_audit` once nothing is in flight: a payer hears `settled` as soon as bank B's
        acceptance is in, and central's and bank A's own books record it a few milliseconds
        later (docs/interbank.md, "Answering before the finish"); wait for that, bounded."""
        def quiet(report: dict) -> bool:
            return report["central"]["in_flight_fen"] == 0 and all(
                not a["processing_out"] and not a["pending_vault_ops"]
                for a in report["banks"].values())
        return await poll(self.rail_audit, quiet, timeout_s=timeout_s, interval_s=0.02)

    async def assert_balanced(self) -> dict:
        report = await self.quiet_audit()
        assert report["central"]["balanced"], report["central"]["problems"]
        assert report["central"]["in_flight_fen"] == 0
        for bank_id, audit in report["banks"].items():
            assert audit["balanced"], (bank_id, audit["problems"])
            assert audit["processing_out"] == [] and audit["pending_vault_ops"] == 0
            assert audit["books_fen"] == report["holding"][bank_id], (
                f"{bank_id}: books {audit['books_fen']} != central holding "
                f"{report['holding'][bank_id]}")
        return report

    async def wait_for_payment(self, wallet: Wallet, payment_id: str, *,
                               until: tuple[str, ...] = ("settled", "rejected"),
                               timeout_s: float = 15.0) -> dict:
        """Poll a payment (signed read) until its status is one of `until`."""
        return await poll(
            lambda: self.client(wallet).payment(wallet.key, wallet.wallet_id, payment_id),
            lambda view: view["status"] in until, timeout_s=timeout_s, interval_s=0.1)

    def central_text(self) -> str:
        """Every text column of every table of central's database, in one string."""
        chunks: list[str] = []
        with psycopg.connect(psycopg_url(self.central_database_url)) as conn:
            columns = conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type IN "
                "('text', 'character varying', 'character', 'json', 'jsonb')").fetchall()
            assert columns, "central's database has no text columns to look at"
            for table, column in columns:
                for (value,) in conn.execute(
                        f'SELECT "{column}"::text FROM "{table}"').fetchall():
                    if value is not None:
                        chunks.append(value)
        return "\n".join(chunks)

    async def delete_redis_state(self, bank_id: str) -> int:
        """Lose the bank's Redis state (every key under its prefix): FLUSHDB for one bank."""
        prefix = self.banks[bank_id].settings.redis_prefix
        return await _delete_prefix(self.banks[bank_id].settings.redis_url, prefix)


async def _delete_prefix(url: str, prefix: str) -> int:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    deleted = 0
    try:
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            deleted += await client.delete(key)
    finally:
        await client.aclose()
    return deleted


def sqlite_databases(directory: Path):
    """Like `pg_databases`: a fresh, empty SQLite file (the demo's embedded default) per call."""
    def make() -> str:
        return f"sqlite+aiosqlite:///{directory / uuid.uuid4().hex[:12]}.sqlite"
    return make


@contextlib.asynccontextmanager
async def start_rail(pg_databases, key_dir: Path, *, central_pool: int = 4,
                     backend: str = "postgresql", **bank_overrides) -> AsyncIterator[Rail]:
    """Start central and both bank nodes on fresh databases; `bank_overrides` go into each
    bank's `BankSettings` (e.g. `rate_limit_per_s`, `redis_url`, `db_pool_size`). With
    `backend="sqlite"` every service runs on SQLite files instead, as the demo does."""
    run = uuid.uuid4().hex[:10]
    net = AsgiNetwork()
    if backend == "sqlite":
        pg_databases = sqlite_databases(key_dir)
    central_db = pg_databases()
    central_app = create_central_app(CentralSettings(
        database_url=central_db, operator_token=CENTRAL_TOKEN,
        key_file=key_dir / f"central-{run}.key", db_pool_size=central_pool,
        # Every test request comes from one address, and many try wrong tokens on purpose:
        # the limit per address is tested on its own (test_wrong_tries.py).
        wrong_tries_per_address=0,
    ), bank_transport=net)
    central_url = net.add("central.test", central_app)
    banks: dict[str, BankNode] = {}
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(central_app.router.lifespan_context(central_app))
        central = CentralClient(central_url, operator_token=CENTRAL_TOKEN, transport=net)
        stack.push_async_callback(central.aclose)
        for bank_id in BANK_IDS:
            database_url = pg_databases()
            settings = BankSettings(**{
                "bank_id": bank_id, "name": f"{bank_id.title()} Test Bank",
                "database_url": database_url, "redis_url": REDIS_URL,
                "redis_prefix": f"yrtest:{run}:{bank_id}",
                "operator_token": BANK_TOKENS[bank_id],
                "key_file": key_dir / f"{bank_id}-{run}.key",
                "public_url": f"http://{bank_id}.test", "central_url": central_url,
                # An empty vault refilled by exactly what is short, never swept back: the
                # rail's books then say exactly what the tests did.
                "vault_low_fen": 0, "vault_target_fen": 0, "vault_high_fen": 10**15,
                "rate_limit_per_s": 0, "db_pool_size": 5, "wrong_tries_per_address": 0,
                # The tests' webhook receivers listen on loopback; shop.example never resolves.
                "webhook_allowed_hosts": ["127.0.0.1", "shop.example"],
                "code_issuers": CODE_ISSUERS, **bank_overrides})
            # Central's operator enrols the bank (its request signed by the bank's key);
            # the node itself holds no credential of central's.
            node = build_bank(settings)
            await central.register_bank(node.key, bank_id, settings.name,
                                        url=settings.public_url)
            await node.central.aclose()
            node.central = CentralClient(central_url, transport=net)
            node.peer_transport = net   # a charge forwarded to the payer's bank node
            app = create_bank_app(settings, bank=node)
            url = net.add(f"{bank_id}.test", app)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = BankClient(url, operator_token=BANK_TOKENS[bank_id], transport=net,
                                timeout_s=60)
            stack.push_async_callback(client.aclose)
            stack.push_async_callback(_delete_prefix, REDIS_URL, settings.redis_prefix)
            banks[bank_id] = BankNode(bank_id, client, node, settings, database_url, url)
        for bank_id in BANK_IDS:
            await central.deposit_reserves(bank_id, f"reserve-{bank_id}-{run}", RESERVES_FEN)
        yield Rail(net, central, central_db, banks, central_key=central_app.state.central.key)


def outcomes(responses: list[httpx.Response]) -> Counter:
    """How many answers of each kind: the status ("settled"), or the refusal's code; never
    a server error."""
    counted: Counter = Counter()
    for response in responses:
        assert response.status_code < 500, response.text
        body = response.json()
        counted[body["status"] if response.status_code == 200 else body["error"]["code"]] += 1
    return counted


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    """The request was refused with this HTTP status and this rail error code."""
    body = response.json() if response.content else None
    got = (response.status_code, (body or {}).get("error", {}).get("code"))
    assert got == (status, code), f"expected {status} {code}, got {response.status_code}: {body}"


@pytest.fixture
def rail_factory(pg_databases, tmp_path):
    """`async with rail_factory(**bank_overrides) as rail:` for rails with special settings."""

    def make(**overrides):
        return start_rail(pg_databases, tmp_path, **overrides)

    return make


@pytest.fixture
async def rail(pg_databases, tmp_path) -> AsyncIterator[Rail]:
    """A fresh rail for one test: central, yangtze and pearl on new databases."""
    async with start_rail(pg_databases, tmp_path) as started:
        yield started


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def rail_on_both_databases(request, pg_databases, tmp_path_factory
                                 ) -> AsyncIterator[Rail]:
    """One rail per database for the module, so each of its tests runs on PostgreSQL and on
    SQLite; every test uses wallets of its own. Import it as `rail`."""
    async with start_rail(pg_databases, tmp_path_factory.mktemp("rail"),
                          backend=request.param, db_pool_size=10) as started:
        yield started


@pytest.fixture(scope="module")
async def module_rail(pg_databases, tmp_path_factory) -> AsyncIterator[Rail]:
    """One rail shared by the tests of a module (each test uses wallets of its own)."""
    async with start_rail(pg_databases, tmp_path_factory.mktemp("rail")) as started:
        yield started
