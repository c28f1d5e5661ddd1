"""Central's side of interbank transfers (docs/interbank.md) against real PostgreSQL, with a
stand-in bank B in-process: a tiny FastAPI app that checks central's signature on message 2
and answers as the test's switch says, signing with B's own key."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from central import domain
from central.app import create_app as create_central_app
from central.client import CentralClient, new_transfer_id, transfer_envelope
from rail_protocol.canonical import parse_json
from rail_protocol.batches import open_results, seal_batch
from rail_protocol.envelope import (Envelope, now_ms, seal, sign, sign_statement, unsigned,
                                   verify, verify_statement)
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey, SigningKey
from rail_service.http import install_error_handlers
from tests.support.polling import poll

pytestmark = pytest.mark.integration

A, B = "alpha", "beta"
B_URL = "http://beta.test"
PAYEE = "w-payee-0001"
A_FLOAT_FEN = 1_000_000
B_FLOAT_FEN = 50_000


# --- the stand-in bank B and the network it sits on ----------------------------------------

class StandInBank:
    """Bank B's message-2 endpoints (single and batch), nothing more. Idempotent like the
    real one: the first delivery of a transfer credits the payee (or refuses an unknown
    wallet) and stores the signed result; every later delivery gets that same result. `mode`
    says how it answers: answer | error500 | slow | forge | wrong_id | unsigned (the
    network's `down` is apart); `fail_ids` makes the batch answer those with an error."""

    def __init__(self, bank_id: str) -> None:
        self.bank_id = bank_id
        self.key = SigningKey.generate()
        self.central_key: PublicKey | None = None
        self.mode = "answer"
        self.wallets: dict[str, int] = {PAYEE: 0}
        self.results: dict[str, dict] = {}
        self.credits = 0  # how many times a payee was credited, in all
        self.calls = 0
        self.bodies: dict[str, dict] = {}  # the last message 2 body per transfer
        self.batch_calls = 0
        self.batch_sizes: list[int] = []
        self.fail_ids: set[str] = set()  # credits the batch endpoint answers with an error
        self.app = FastAPI()
        self.app.post("/v1/interbank/credits")(self.credit)
        self.app.post("/v1/interbank/credits/batch")(self.credit_batch)

    async def credit(self, request: Request):
        """Message 2 alone (the single endpoint)."""
        self.calls += 1
        if self.mode == "error500":
            return JSONResponse({"error": {"code": "internal", "message": "down"}}, 500)
        try:
            result = await self._credit_one(parse_json(await request.body()))
        except RailError as exc:
            return JSONResponse(exc.to_dict(), exc.status)
        if self.mode == "slow":  # credited, but the answer comes too late
            await asyncio.sleep(30)
        return JSONResponse({"result": result})

    async def credit_batch(self, request: Request):
        """Message 2 in a batch: each credit answered in its place, as bank/api.py does;
        a credit whose id is in `fail_ids` is answered with an error instead."""
        self.calls += 1
        self.batch_calls += 1
        if self.mode == "error500":
            return JSONResponse({"error": {"code": "internal", "message": "down"}}, 500)
        credits = parse_json(await request.body())["credits"]
        assert 1 <= len(credits) <= 256
        self.batch_sizes.append(len(credits))
        results = []
        for raw in credits:
            if raw["id"] in self.fail_ids:
                results.append({"error": {"code": "internal", "message": "not now"}})
                continue
            try:
                results.append({"result": await self._credit_one(raw)})
            except RailError as exc:
                results.append(exc.to_dict())
        if self.mode == "slow":  # credited, but the answer comes too late
            await asyncio.sleep(30)
        return JSONResponse({"results": results})

    async def _credit_one(self, raw: object) -> dict:
        env = Envelope.parse(raw)
        verify(env, self.central_key, expected_type=domain.INTERBANK_CREDIT)
        body = env.body
        assert body["to_bank"] == self.bank_id and env.id == body["transfer_id"]
        self.bodies[env.id] = body
        result = self.results.get(env.id)
        if result is None:
            fields = {"type": domain.CREDIT_RESULT, "transfer_id": env.id}
            if body["payee_wallet"] in self.wallets:
                self.wallets[body["payee_wallet"]] += body["amount_fen"]
                self.credits += 1
                fields["accepted"] = True
            else:
                fields |= {"accepted": False, "code": "unknown_wallet"}
            result = self.results[env.id] = sign_statement(self.key, fields)
        if self.mode == "forge":
            result = sign_statement(SigningKey.generate(), result)
        if self.mode == "wrong_id":
            result = sign_statement(self.key, {**result, "transfer_id": f"{A}.someotherid"})
        if self.mode == "unsigned":
            result = {key: value for key, value in result.items() if key != "sig"}
        return result


class Network(httpx.AsyncBaseTransport):
    """Routes central's calls to in-process apps by host; a host that is down, or unknown,
    refuses the connection like a dead server would."""

    def __init__(self) -> None:
        self.hosts: dict[str, httpx.AsyncBaseTransport] = {}
        self.down: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down or host not in self.hosts:
            raise httpx.ConnectError(f"connection refused by {host}", request=request)
        return await self.hosts[host].handle_async_request(request)


@pytest.fixture
def network() -> Network:
    return Network()


@pytest.fixture
def bank_b(network) -> StandInBank:
    bank = StandInBank(B)
    network.hosts["beta.test"] = httpx.ASGITransport(app=bank.app, raise_app_exceptions=False)
    return bank


@pytest.fixture
def fast_settings(central_settings):
    """Central with a short deadline on calls to banks, so 'slow' tests stay quick."""
    return central_settings.model_copy(update={"bank_timeout_ms": 500})


@pytest.fixture
async def central_app(fast_settings, network):
    """Central (with its transfer worker) whose calls to banks go over `network`."""
    app = create_central_app(fast_settings, bank_transport=network)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def rail(central_client, bank_b, bank_key):
    """Bank A (alpha) funded with 10,000 yuan-fen of e-CNY, bank B (beta) at its url."""
    await central_client.register_bank(bank_key, A, "Alpha Bank")
    await central_client.register_bank(bank_b.key, B, "Beta Bank", url=B_URL)
    for bank_id, key, amount in ((A, bank_key, A_FLOAT_FEN), (B, bank_b.key, B_FLOAT_FEN)):
        await central_client.deposit_reserves(bank_id, f"seed-{bank_id}-0001", amount)
        await central_client.issue(key, bank_id, amount)
    identity = await central_client.identity()
    bank_b.central_key = PublicKey.from_text(identity["public_key"])
    return SimpleNamespace(central=central_client, a_key=bank_key, b=bank_b,
                           central_key=bank_b.central_key)


# --- helpers --------------------------------------------------------------------------------

def message1(rail, amount_fen: int = 12_345, payee: str = PAYEE, **kw) -> Envelope:
    return transfer_envelope(rail.a_key, A, B, amount_fen, payee, **kw)


async def holdings(central: CentralClient) -> dict[str, int]:
    supply = await central.supply()
    found = {bank["bank_id"]: bank["holding_fen"] for bank in supply["banks"]}
    return {**found, "in_flight": supply["in_flight_fen"]}


async def entries_of(central: CentralClient, transfer_id: str) -> list[str]:
    """The kinds of the journal entries that reference this transfer."""
    page = await central.journal(limit=500)
    prefix = f"transfer:{transfer_id}:"
    return [e["kind"] for e in page["entries"] if e["reference"].startswith(prefix)]


async def assert_balanced(central: CentralClient) -> dict:
    report = await central.audit()
    assert report["balanced"], report["problems"]
    assert report["in_flight_fen"] == report["prepared_transfers_fen"]
    return report


async def wait_status(central: CentralClient, transfer_id: str, status: str,
                      timeout_s: float = 15) -> dict:
    row = await poll(lambda: central.get_transfer(transfer_id),
                     lambda row: row["status"] == status, timeout_s=timeout_s)
    assert row["status"] == status, f"still {row['status']} after {timeout_s} s: {row}"
    return row


async def recorded(central: CentralClient, *envs: Envelope) -> None:
    """Wait for central's own record of transfers it answered `settled`: it answers once
    bank B has accepted, and its finish commits a moment later (docs/interbank.md,
    "Answering before the finish")."""
    for env in envs:
        await wait_status(central, env.id, "settled", timeout_s=5)


async def refused(code: str, action) -> RailError:
    with pytest.raises(RailError) as err:
        await action
    assert err.value.code == code, err.value
    return err.value


def check_statement(rail, answer: dict, env: Envelope, status: str, code: str | None = None):
    statement = answer["statement"]
    verify_statement(rail.central_key, statement)
    expected = {"type": domain.TRANSFER_STATUS, "transfer_id": env.id, "status": status,
                "amount_fen": env.body["amount_fen"], "from_bank": A, "to_bank": B}
    if code is not None:
        expected["code"] = code
    assert {k: v for k, v in statement.items() if k not in ("sig", "issuer")} == expected
    assert answer["status"] == status


# --- the paths of docs/interbank.md --------------------------------------------------------

async def test_settle_moves_the_money_from_a_to_b(rail):
    env = message1(rail, 12_345)
    answer = await rail.central.transfer(env)
    check_statement(rail, answer, env, "settled")
    await recorded(rail.central, env)
    assert await holdings(rail.central) == {A: A_FLOAT_FEN - 12_345, B: B_FLOAT_FEN + 12_345,
                                            "in_flight": 0}
    assert rail.b.wallets[PAYEE] == 12_345 and rail.b.credits == 1
    assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    row = await rail.central.get_transfer(env.id)
    assert row["status"] == "settled" and row["attempts"] == 1 and row["code"] is None
    assert "digest" not in row
    await assert_balanced(rail.central)


async def test_details_travel_unread_from_message_1_to_message_2(rail, network):
    details = {"payer_wallet": "alpha.w-0042", "order_id": "order-7"}
    env = transfer_envelope(rail.a_key, A, B, 2_000, PAYEE)
    env = seal(rail.a_key, domain.TRANSFER, {**env.body, "details": details}, id=env.id,
               ttl_ms=60_000)
    network.down.add("beta.test")
    assert (await rail.central.transfer(env))["status"] == "prepared"
    network.down.clear()
    await wait_status(rail.central, env.id, "settled")  # delivered by the worker, from the row
    assert rail.b.bodies[env.id] == {**env.body, "details": details}
    assert (await rail.central.get_transfer(env.id))["details"] == details
    plain = message1(rail, 1_000)
    assert (await rail.central.transfer(plain))["status"] == "settled"
    assert "details" not in rail.b.bodies[plain.id]
    await assert_balanced(rail.central)


async def test_refused_credit_gives_the_money_back_to_a(rail):
    env = message1(rail, 5_000, payee="w-nobody-here")
    answer = await rail.central.transfer(env)
    check_statement(rail, answer, env, "rejected", code="unknown_wallet")
    assert await holdings(rail.central) == {A: A_FLOAT_FEN, B: B_FLOAT_FEN, "in_flight": 0}
    assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_reject"]
    assert (await rail.central.get_transfer(env.id))["code"] == "unknown_wallet"
    await assert_balanced(rail.central)


@pytest.mark.parametrize("outage", ["down", "error500", "slow"])
async def test_bank_b_unavailable_leaves_it_prepared_until_the_worker_settles_it(
        rail, network, outage):
    if outage == "down":
        network.down.add("beta.test")
    else:
        rail.b.mode = outage
    env = message1(rail, 7_000)
    started = time.monotonic()
    answer = await rail.central.transfer(env)
    assert time.monotonic() - started < 5  # the first try is bounded
    check_statement(rail, answer, env, "prepared")
    assert await holdings(rail.central) == {A: A_FLOAT_FEN - 7_000, B: B_FLOAT_FEN,
                                            "in_flight": 7_000}
    report = await assert_balanced(rail.central)
    assert report["prepared_transfers_fen"] == 7_000
    await asyncio.sleep(0.8)  # the worker keeps trying meanwhile
    assert (await rail.central.get_transfer(env.id))["status"] == "prepared"
    waiting = (await rail.central.transfers(status="prepared"))["transfers"]
    assert [t["transfer_id"] for t in waiting] == [env.id]

    network.down.clear()
    rail.b.mode = "answer"
    row = await wait_status(rail.central, env.id, "settled")
    assert row["attempts"] >= 2
    assert rail.b.credits == 1  # slow: B credited on the first try and answered from its record
    assert await holdings(rail.central) == {A: A_FLOAT_FEN - 7_000, B: B_FLOAT_FEN + 7_000,
                                            "in_flight": 0}
    check_statement(rail, await rail.central.transfer(env), env, "settled")
    assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    await assert_balanced(rail.central)


@pytest.mark.parametrize("mode", ["forge", "wrong_id", "unsigned"])
async def test_a_result_that_is_not_bs_answer_moves_nothing(rail, mode):
    rail.b.mode = mode
    env = message1(rail, 3_000)
    check_statement(rail, await rail.central.transfer(env), env, "prepared")
    await asyncio.sleep(0.5)
    row = await rail.central.get_transfer(env.id)
    assert row["status"] == "prepared" and row["attempts"] >= 2
    assert await entries_of(rail.central, env.id) == ["transfer_prepare"]
    await assert_balanced(rail.central)
    rail.b.mode = "answer"
    await wait_status(rail.central, env.id, "settled")
    assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    await assert_balanced(rail.central)


async def test_a_bank_with_no_url_yet_gets_its_credit_once_it_registers_one(rail, network):
    gamma = StandInBank("gamma")
    gamma.central_key = rail.central_key
    network.hosts["gamma.test"] = httpx.ASGITransport(app=gamma.app, raise_app_exceptions=False)
    await rail.central.register_bank(gamma.key, "gamma", "Gamma Bank")  # no url yet
    env = transfer_envelope(rail.a_key, A, "gamma", 800, PAYEE)
    assert (await rail.central.transfer(env))["status"] == "prepared"
    await asyncio.sleep(0.3)
    assert (await rail.central.get_transfer(env.id))["status"] == "prepared"
    await rail.central.register_bank(gamma.key, "gamma", "Gamma Bank", url="http://gamma.test")
    assert (await rail.central.bank("gamma"))["url"] == "http://gamma.test"
    await wait_status(rail.central, env.id, "settled")
    assert gamma.wallets[PAYEE] == 800
    assert (await holdings(rail.central))["gamma"] == 800
    await assert_balanced(rail.central)


async def test_repeat_of_message_1_answers_the_current_status_and_never_moves_twice(
        rail, network):
    network.down.add("beta.test")
    env = message1(rail, 9_999)
    first = await rail.central.transfer(env)
    again = await rail.central.transfer(env)
    assert first["status"] == again["status"] == "prepared"
    assert await entries_of(rail.central, env.id) == ["transfer_prepare"]
    # a new signature over the same content is the same instruction
    resigned = {**env.to_dict(), "sig": seal(rail.a_key, env.type, env.body, id=env.id,
                                             created_ms=env.created_ms,
                                             ttl_ms=env.expires_ms - env.created_ms).sig}
    assert (await rail.central.transfer(resigned))["status"] == "prepared"
    network.down.clear()
    await wait_status(rail.central, env.id, "settled")
    for _ in range(3):
        check_statement(rail, await rail.central.transfer(env), env, "settled")
    assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    assert await holdings(rail.central) == {A: A_FLOAT_FEN - 9_999, B: B_FLOAT_FEN + 9_999,
                                            "in_flight": 0}
    assert rail.b.credits == 1
    await assert_balanced(rail.central)


async def test_a_known_transfer_is_answered_even_after_its_envelope_expired(rail):
    env = message1(rail, 100, ttl_ms=1_500, created_ms=now_ms() - 1_000)
    assert (await rail.central.transfer(env))["status"] == "settled"
    await asyncio.sleep(0.6)
    check_statement(rail, await rail.central.transfer(env), env, "settled")
    await assert_balanced(rail.central)


async def test_an_expired_unknown_transfer_is_refused(rail):
    env = message1(rail, 100, ttl_ms=1_000, created_ms=now_ms() - 2_000)
    await refused("expired", rail.central.transfer(env))
    await refused("not_found", rail.central.get_transfer(env.id))
    await assert_balanced(rail.central)


async def test_same_id_with_other_content_is_instruction_id_reused(rail):
    env = message1(rail, 1_000)
    assert (await rail.central.transfer(env))["status"] == "settled"
    await recorded(rail.central, env)
    await refused("instruction_id_reused",
                  rail.central.transfer(message1(rail, 1_001, transfer_id=env.id)))
    await refused("instruction_id_reused",
                  rail.central.transfer(message1(rail, 1_000, payee="w-other", transfer_id=env.id)))
    # re-sealed later with the same body: other signed bytes, so another instruction
    await refused("instruction_id_reused",
                  rail.central.transfer(message1(rail, 1_000, transfer_id=env.id,
                                                 created_ms=env.created_ms + 1)))
    assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    await assert_balanced(rail.central)


# --- refusals: nothing written -------------------------------------------------------------

async def test_a_bank_may_not_transfer_for_another_bank(rail):
    before = (await rail.central.audit())["entries"]
    # A's key, B's money
    tid = new_transfer_id(B)
    env = seal(rail.a_key, domain.TRANSFER, {"transfer_id": tid, "from_bank": B, "to_bank": A,
                                             "amount_fen": 100, "payee_wallet": PAYEE}, id=tid,
               ttl_ms=60_000)
    await refused("signer_mismatch", rail.central.transfer(env))
    # B's key, a transfer id and body in A's name
    env = transfer_envelope(rail.b.key, A, B, 100, PAYEE)
    await refused("signer_mismatch", rail.central.transfer(env))
    # a key no bank registered
    await refused("unknown_key",
                  rail.central.transfer(transfer_envelope(SigningKey.generate(), A, B, 1, PAYEE)))
    # A's body with a forged signature
    env = message1(rail, 100)
    forged = {**env.to_dict(), "sig": seal(SigningKey.generate(), env.type, env.body).sig}
    await refused("bad_signature", rail.central.transfer(forged))
    assert (await rail.central.audit())["entries"] == before
    await assert_balanced(rail.central)


async def test_unknown_to_bank_and_bad_fields_write_nothing(rail):
    before = await rail.central.audit()
    await refused("unknown_bank",
                  rail.central.transfer(transfer_envelope(rail.a_key, A, "nobank", 100, PAYEE)))
    await refused("invalid_field",
                  rail.central.transfer(transfer_envelope(rail.a_key, A, A, 100, PAYEE)))
    await refused("invalid_amount",
                  rail.central.transfer(transfer_envelope(rail.a_key, A, B, 0, PAYEE)))
    await refused("invalid_field",
                  rail.central.transfer(transfer_envelope(rail.a_key, A, B, 100, "w")))
    await refused("invalid_field", rail.central.transfer(
        transfer_envelope(rail.a_key, A, B, 100, PAYEE, transfer_id="beta.1234567890")))
    wrong_type = seal(rail.a_key, "central.issue", {"bank_id": A, "amount_fen": 100},
                      id=new_transfer_id(A))
    await refused("wrong_instruction_type", rail.central.transfer(wrong_type))
    after = await rail.central.audit()
    assert after["entries"] == before["entries"]
    assert (await rail.central.transfers())["transfers"] == []
    await assert_balanced(rail.central)


async def test_insufficient_holdings_writes_nothing(rail):
    before = await holdings(rail.central)
    entries = (await rail.central.audit())["entries"]
    env = message1(rail, A_FLOAT_FEN + 1)
    await refused("insufficient_holdings", rail.central.transfer(env))
    assert await holdings(rail.central) == before
    assert (await rail.central.audit())["entries"] == entries
    await refused("not_found", rail.central.get_transfer(env.id))
    assert rail.b.calls == 0
    await assert_balanced(rail.central)


# --- concurrency ---------------------------------------------------------------------------

async def test_twenty_concurrent_repeats_prepare_and_settle_once(rail):
    env = message1(rail, 4_321)
    answers = await asyncio.gather(*(rail.central.transfer(env) for _ in range(20)))
    assert {a["status"] for a in answers} <= {"prepared", "settled"}
    await wait_status(rail.central, env.id, "settled")
    assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    assert rail.b.credits == 1
    assert await holdings(rail.central) == {A: A_FLOAT_FEN - 4_321, B: B_FLOAT_FEN + 4_321,
                                            "in_flight": 0}
    await assert_balanced(rail.central)


async def test_concurrent_transfers_with_two_central_workers_settle_each_once(
        rail, network, fast_settings):
    """Two central processes (here: two apps on one database) deliver the same backlog."""
    network.down.add("beta.test")
    envs = [message1(rail, 100 + i) for i in range(30)]
    answers = await asyncio.gather(*(rail.central.transfer(env) for env in envs))
    assert {a["status"] for a in answers} == {"prepared"}
    second = create_central_app(fast_settings, bank_transport=network)
    async with second.router.lifespan_context(second):
        network.down.clear()
        for env in envs:
            await wait_status(rail.central, env.id, "settled")
    total = sum(100 + i for i in range(30))
    assert await holdings(rail.central) == {A: A_FLOAT_FEN - total, B: B_FLOAT_FEN + total,
                                            "in_flight": 0}
    for env in envs:
        assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    assert rail.b.credits == 30
    await assert_balanced(rail.central)


# --- registration urls and operator reads --------------------------------------------------

async def test_register_url_is_stored_and_may_change_with_the_same_certificate(rail, network):
    first = await rail.central.certificate(B)
    assert (await rail.central.bank(B))["url"] == B_URL
    again = await rail.central.register_bank(rail.b.key, B, "Beta Bank",
                                             url="https://beta-2.test/")
    assert again == first
    assert (await rail.central.bank(B))["url"] == "https://beta-2.test/"
    # without a url, re-registering keeps the one on record
    assert await rail.central.register_bank(rail.b.key, B, "Beta Bank") == first
    assert (await rail.central.bank(B))["url"] == "https://beta-2.test/"
    await refused("invalid_field",
                  rail.central.register_bank(rail.b.key, B, "Beta Bank", url="ftp://beta.test"))
    await refused("invalid_field",
                  rail.central.register_bank(SigningKey.generate(), "delta", "Delta",
                                             url="http://" + "d" * 200 + ".test"))
    await refused("unknown_bank", rail.central.bank("delta"))
    # deliveries follow the new url
    network.hosts["beta-2.test"] = network.hosts.pop("beta.test")
    env = message1(rail, 555)
    assert (await rail.central.transfer(env))["status"] == "settled"
    await assert_balanced(rail.central)


async def test_operator_reads_of_transfers(rail, network, central_app):
    network.down.add("beta.test")
    waiting = message1(rail, 10)
    await rail.central.transfer(waiting)
    network.down.clear()
    await wait_status(rail.central, waiting.id, "settled")
    network.down.add("beta.test")
    pending = message1(rail, 20)
    await rail.central.transfer(pending)
    rejected = message1(rail, 30, payee="w-unknown")
    network.down.clear()
    await rail.central.transfer(rejected)

    listed = (await rail.central.transfers())["transfers"]
    assert [t["transfer_id"] for t in listed][:1] == [waiting.id]
    assert {t["transfer_id"] for t in listed} == {waiting.id, pending.id, rejected.id}
    settled = (await rail.central.transfers(status="settled"))["transfers"]
    assert waiting.id in {t["transfer_id"] for t in settled}
    assert len((await rail.central.transfers(limit=1))["transfers"]) == 1
    row = await rail.central.get_transfer(rejected.id)
    assert row == {**row, "from_bank": A, "to_bank": B, "amount_fen": 30,
                   "payee_wallet": "w-unknown", "status": "rejected", "code": "unknown_wallet"}
    await refused("invalid_field", rail.central.transfers(status="done"))
    await refused("not_found", rail.central.get_transfer("alpha.nothing-here"))
    async with CentralClient("http://central.test",
                             transport=httpx.ASGITransport(app=central_app)) as anonymous:
        await refused("unauthorized", anonymous.get_transfer(waiting.id))
        await refused("unauthorized", anonymous.transfers())
    await wait_status(rail.central, pending.id, "settled")
    await assert_balanced(rail.central)



# --- batches (group commit at central, message 2 in batch calls) ---------------------------

C = "gamma"
C_FLOAT_FEN = 500_000


@pytest.fixture
async def two_payers(rail, central_app):
    """A second paying bank, gamma, funded like alpha; the central service, for its batcher."""
    key = SigningKey.generate()
    await rail.central.register_bank(key, C, "Gamma Bank")
    await rail.central.deposit_reserves(C, f"seed-{C}-0001", C_FLOAT_FEN)
    await rail.central.issue(key, C, C_FLOAT_FEN)
    rail.c_key = key
    rail.service = central_app.state.central.transfers
    return rail


async def assert_settled_once(rail, envs: list[Envelope], *, a_fen: int, c_fen: int) -> None:
    """Alpha and gamma paid `a_fen` and `c_fen` to beta, every transfer settled once (its
    two entries), nothing left in flight, the audit balanced."""
    await recorded(rail.central, *envs)
    assert await holdings(rail.central) == {A: A_FLOAT_FEN - a_fen, C: C_FLOAT_FEN - c_fen,
                                            B: B_FLOAT_FEN + a_fen + c_fen, "in_flight": 0}
    for env in envs[::7]:
        assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    await assert_balanced(rail.central)


async def test_many_concurrent_transfers_from_two_banks_land_in_few_batches_and_settle(
        two_payers):
    rail = two_payers
    batches_before = rail.service.batcher.batches
    envs = ([message1(rail, 100 + i) for i in range(40)]
            + [transfer_envelope(rail.c_key, C, B, 200 + i, PAYEE) for i in range(40)])
    answers = await asyncio.gather(*(rail.central.transfer(env) for env in envs))
    for env, answer in zip(envs, answers):
        verify_statement(rail.central_key, answer["statement"])
        assert answer["statement"]["transfer_id"] == env.id
        assert answer["status"] == "settled", answer
    batches = rail.service.batcher.batches - batches_before
    assert batches <= 20, f"{len(envs)} transfers took {batches} batches"
    assert rail.b.batch_calls <= 20 and max(rail.b.batch_sizes) > 1
    assert rail.b.credits == 80
    await assert_settled_once(rail, envs, a_fen=sum(100 + i for i in range(40)),
                              c_fen=sum(200 + i for i in range(40)))


async def test_a_mixed_batch_answers_each_transfer_on_its_own(two_payers, network):
    rail = two_payers
    known = message1(rail, 1_000)
    assert (await rail.central.transfer(known))["status"] == "settled"
    await recorded(rail.central, known)
    before = await holdings(rail.central)
    good_a, good_c = message1(rail, 300), transfer_envelope(rail.c_key, C, B, 400, PAYEE)
    short = message1(rail, A_FLOAT_FEN + 1)
    nobank = transfer_envelope(rail.a_key, A, "nobank", 100, PAYEE)
    reused = message1(rail, 1_001, transfer_id=known.id)
    refused_by_b = message1(rail, 500, payee="w-nobody-here")
    twice = message1(rail, 600)
    sends = [good_a, short, known, nobank, reused, good_c, refused_by_b, twice, twice]
    answers = await asyncio.gather(*(rail.central.transfer(env) for env in sends),
                                   return_exceptions=True)
    by_id = dict(zip((id(env) for env in sends), answers))
    check_statement(rail, by_id[id(good_a)], good_a, "settled")
    check_statement(rail, by_id[id(known)], known, "settled")
    check_statement(rail, by_id[id(refused_by_b)], refused_by_b, "rejected", "unknown_wallet")
    assert answers[5]["status"] == "settled"
    for answer in answers[-2:]:  # the same message twice in one batch: one transfer
        assert answer["status"] in ("prepared", "settled")
    for env, code in ((short, "insufficient_holdings"), (nobank, "unknown_bank"),
                      (reused, "instruction_id_reused")):
        assert isinstance(by_id[id(env)], RailError) and by_id[id(env)].code == code
    await recorded(rail.central, twice, good_a, good_c)
    assert await holdings(rail.central) == {
        A: before[A] - 300 - 600, C: before[C] - 400, B: before[B] + 300 + 400 + 600,
        "in_flight": 0}
    for env in (short, nobank):
        await refused("not_found", rail.central.get_transfer(env.id))
    assert await entries_of(rail.central, known.id) == ["transfer_prepare", "transfer_settle"]
    assert await entries_of(rail.central, twice.id) == ["transfer_prepare", "transfer_settle"]
    assert await entries_of(rail.central, refused_by_b.id) == ["transfer_prepare",
                                                              "transfer_reject"]
    assert rail.b.credits == 4  # known, good_a, good_c, twice
    await assert_balanced(rail.central)


async def test_items_bank_b_answers_with_an_error_stay_prepared_until_the_worker_finishes_them(
        rail):
    envs = [message1(rail, 1_000 + i) for i in range(12)]
    failing = {env.id for env in envs[::3]}
    rail.b.fail_ids = set(failing)
    answers = await asyncio.gather(*(rail.central.transfer(env) for env in envs))
    for env, answer in zip(envs, answers):
        check_statement(rail, answer, env, "prepared" if env.id in failing else "settled")
    await asyncio.sleep(0.5)  # the worker tries again and gets errors again
    for env in envs:
        row = await rail.central.get_transfer(env.id)
        assert row["status"] == ("prepared" if env.id in failing else "settled")
    report = await assert_balanced(rail.central)
    assert report["prepared_transfers_fen"] == sum(e.body["amount_fen"] for e in envs[::3])
    rail.b.fail_ids = set()
    for env in envs:
        await wait_status(rail.central, env.id, "settled")
        assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    assert rail.b.credits == 12
    total = sum(env.body["amount_fen"] for env in envs)
    assert await holdings(rail.central) == {A: A_FLOAT_FEN - total, B: B_FLOAT_FEN + total,
                                            "in_flight": 0}
    await assert_balanced(rail.central)


@pytest.mark.parametrize("outage", ["error500", "slow"])
async def test_a_batch_call_that_fails_leaves_all_prepared_and_they_settle_once_later(
        rail, outage):
    rail.b.mode = outage
    envs = [message1(rail, 2_000 + i) for i in range(10)]
    started = time.monotonic()
    answers = await asyncio.gather(*(rail.central.transfer(env) for env in envs))
    assert time.monotonic() - started < 5
    for env, answer in zip(envs, answers):
        check_statement(rail, answer, env, "prepared")
    total = sum(env.body["amount_fen"] for env in envs)
    assert (await holdings(rail.central))["in_flight"] == total
    await assert_balanced(rail.central)
    rail.b.mode = "answer"
    for env in envs:
        row = await wait_status(rail.central, env.id, "settled")
        assert row["attempts"] >= 2
        assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    # slow: B credited on the first call and answered the later ones from its record
    assert rail.b.credits == 10
    assert await holdings(rail.central) == {A: A_FLOAT_FEN - total, B: B_FLOAT_FEN + total,
                                            "in_flight": 0}
    await assert_balanced(rail.central)


# --- message 1 in batches (POST /v1/transfers/batch) ---------------------------------------

async def send_batch(central: CentralClient, envs: list) -> list[dict]:
    """The raw items of central's batch answer, in order."""
    body = {"transfers": [env.to_dict() if isinstance(env, Envelope) else env for env in envs]}
    return (await central.request("POST", "/v1/transfers/batch", body))["results"]


def without_sig(answer: dict) -> dict:
    """An answer but for its statement's signature (ECDSA: each signing differs)."""
    if "statement" not in answer:
        return answer
    return {**answer, "statement": {k: v for k, v in answer["statement"].items() if k != "sig"}}


async def alone(central: CentralClient, env: Envelope) -> dict:
    """What the single endpoint answers for `env`, written as a batch item."""
    try:
        return await central.transfer(env)
    except RailError as exc:
        return {"error": {"code": exc.code, "message": exc.message}}


@pytest.mark.parametrize("shape", ["a list", "no transfers", "another key too", "not a list",
                                   "empty", "257 of them"])
async def test_a_batch_of_the_wrong_shape_is_refused_whole_and_writes_nothing(rail, shape):
    env = message1(rail, 100).to_dict()
    body = {"a list": [env], "no transfers": {"credits": [env]},
            "another key too": {"transfers": [env], "more": 1},
            "not a list": {"transfers": env}, "empty": {"transfers": []},
            "257 of them": {"transfers": [message1(rail, 1).to_dict() for _ in range(257)]},
            }[shape]
    before = (await rail.central.audit())["entries"]
    error = await refused("invalid_field",
                          rail.central.request("POST", "/v1/transfers/batch", body))
    assert error.status == 422
    assert (await rail.central.audit())["entries"] == before
    assert (await rail.central.transfers())["transfers"] == []


def unsigned_message1(rail, amount_fen: int, payee: str = PAYEE) -> Envelope:
    """Message 1 as bank A puts it in a sealed batch: no signature of its own."""
    env = message1(rail, amount_fen, payee)
    return unsigned(rail.a_key.key_id, env.type, env.body, id=env.id,
                    created_ms=env.created_ms, ttl_ms=env.expires_ms - env.created_ms)


async def test_a_sealed_batch_is_answered_as_the_signed_one_under_one_signature(rail):
    """Message 1 under one signature of bank A's (rail_protocol/batches.py): each item
    answered as alone, the statements under one signature of central's; a retry of an
    item, signed alone, is the same instruction and gets the same answer."""
    known = message1(rail, 1_000)
    assert (await rail.central.transfer(known))["status"] == "settled"
    await recorded(rail.central, known)
    before = await holdings(rail.central)
    known_again = unsigned(rail.a_key.key_id, known.type, known.body, id=known.id,
                           created_ms=known.created_ms,
                           ttl_ms=known.expires_ms - known.created_ms)
    good, short, refused_by_b = (unsigned_message1(rail, 300),
                                 unsigned_message1(rail, A_FLOAT_FEN + 1),
                                 unsigned_message1(rail, 500, payee="w-nobody-here"))
    sends = [good, known_again, short, refused_by_b]
    answer = await rail.central.request("POST", "/v1/transfers/sealed-batch",
                                        seal_batch(rail.a_key, "transfers", sends))
    statements = open_results(answer, rail.central_key, len(sends), field="statement")
    assert statements is not None, "not under central's one signature"
    assert [s and (s["transfer_id"], s["status"]) for s in statements] == [
        (good.id, "settled"), (known.id, "settled"), None, (refused_by_b.id, "rejected")]
    assert answer["results"][2]["error"]["code"] == "insufficient_holdings"
    assert all("sig" not in r.get("statement", {}) for r in answer["results"])
    # each item again alone, signed by A: the same instruction, the same answer
    for env, item in zip(sends, answer["results"]):
        single = await alone(rail.central, sign(rail.a_key, env))
        assert without_sig(single) == item
    await recorded(rail.central, good)
    assert await holdings(rail.central) == {A: before[A] - 300, B: before[B] + 300,
                                            "in_flight": 0}
    assert rail.b.credits == 2   # known, good
    await assert_balanced(rail.central)


async def test_a_sealed_batch_not_sealed_by_its_bank_is_refused_whole_and_writes_nothing(rail):
    before = (await rail.central.audit())["entries"]
    stranger = SigningKey.generate()
    env = transfer_envelope(stranger, A, B, 100, PAYEE)
    foreign = unsigned(stranger.key_id, env.type, env.body, id=env.id,
                       created_ms=env.created_ms, ttl_ms=env.expires_ms - env.created_ms)
    await refused("unknown_key", rail.central.request(
        "POST", "/v1/transfers/sealed-batch", seal_batch(stranger, "transfers", [foreign])))
    sealed = seal_batch(rail.a_key, "transfers", [unsigned_message1(rail, 100),
                                                  unsigned_message1(rail, 200)])
    sealed["transfers"][0]["body"]["payee_wallet"] = "w-somebody-else"   # altered on the way
    await refused("bad_signature", rail.central.request("POST", "/v1/transfers/sealed-batch",
                                                        sealed))
    assert (await rail.central.audit())["entries"] == before
    assert (await rail.central.transfers())["transfers"] == []


async def test_a_bank_falls_back_to_signed_items_where_central_has_no_sealed_route(rail):
    """Bank A's client: a central without the sealed route (a 404) gets the plain batch,
    each item signed, and is remembered; the answers read the same."""
    without = FastAPI()
    install_error_handlers(without)   # a 404 in the rail's shape, as a central answers it

    @without.post("/v1/transfers/batch")
    async def plain(request: Request):
        body = await request.json()
        return await rail.central.request("POST", "/v1/transfers/batch", body)

    client = CentralClient("http://old-central.test",
                           transport=httpx.ASGITransport(app=without))
    try:
        envs = [unsigned_message1(rail, 100 + n) for n in range(2)]
        answers, sealed = await client.transfers_sealed(rail.a_key, rail.central_key, envs)
        assert not sealed and client.without_sealed_route.missing("central")
        for env, answer in zip(envs, answers):
            check_statement(rail, answer, env, "settled")
    finally:
        await client.aclose()
    await recorded(rail.central, *envs)


async def test_each_transfer_of_a_batch_gets_the_answer_it_gets_alone(rail):
    known = message1(rail, 1_000)
    assert (await rail.central.transfer(known))["status"] == "settled"
    await recorded(rail.central, known)
    before = await holdings(rail.central)
    good = message1(rail, 300)
    other_bank_key = transfer_envelope(rail.b.key, A, B, 100, PAYEE)   # B's key, A's money
    forged = {**message1(rail, 100).to_dict(),
              "sig": seal(SigningKey.generate(), domain.TRANSFER, {}).sig}
    short = message1(rail, A_FLOAT_FEN + 1)
    refused_by_b = message1(rail, 500, payee="w-nobody-here")
    sends = [good, known, other_bank_key, forged, short, refused_by_b]
    results = await send_batch(rail.central, sends)
    check_statement(rail, results[0], good, "settled")
    check_statement(rail, results[1], known, "settled")
    assert [r.get("error", {}).get("code") for r in results[2:5]] == [
        "signer_mismatch", "bad_signature", "insufficient_holdings"]
    check_statement(rail, results[5], refused_by_b, "rejected", "unknown_wallet")
    for env, result in zip(sends, results):   # and alone, afterwards: the very same answer
        single = await alone(rail.central, Envelope.parse(env) if isinstance(env, dict)
                             else env)
        assert without_sig(single) == without_sig(result)
        if "statement" in single:
            verify_statement(rail.central_key, single["statement"])
    await recorded(rail.central, good)
    assert await holdings(rail.central) == {A: before[A] - 300, B: before[B] + 300,
                                            "in_flight": 0}
    for env in (short, other_bank_key):
        await refused("not_found", rail.central.get_transfer(env.id))
    assert await entries_of(rail.central, good.id) == ["transfer_prepare", "transfer_settle"]
    assert rail.b.credits == 2   # known, good
    await assert_balanced(rail.central)


async def test_a_batch_is_prepared_together_and_delivered_in_few_calls(two_payers):
    rail = two_payers
    first = message1(rail, 1)
    await rail.central.transfer(first)   # A's key now known to central
    await recorded(rail.central, first)  # and its finish out of the way of the count
    prepares, calls = rail.service.batcher.batches, rail.b.batch_calls
    calls_in = rail.service.stages()["calls"]["from banks"]
    envs = [message1(rail, 100 + i) for i in range(50)]
    results = await send_batch(rail.central, envs)
    for env, result in zip(envs, results):
        check_statement(rail, result, env, "settled")
    assert rail.service.batcher.batches - prepares <= 2
    assert rail.b.batch_calls - calls <= 2
    # the stages count the call from bank A, with the time central held it
    after = rail.service.stages()["calls"]["from banks"]
    assert after["calls"] == calls_in["calls"] + 1 and after["call_us"] > calls_in["call_us"]
    await assert_balanced(rail.central)


async def test_an_item_that_fails_unexpectedly_does_not_fail_the_others(
        rail, central_app, monkeypatch):
    service = central_app.state.central.transfers
    good, unlucky = message1(rail, 700), message1(rail, 800)
    submit = service.submit

    async def flaky(raw):
        if raw["id"] == unlucky.id:
            raise RuntimeError("a bug, for this one only")
        return await submit(raw)

    monkeypatch.setattr(service, "submit", flaky)
    results = await send_batch(rail.central, [good, unlucky])
    check_statement(rail, results[0], good, "settled")
    assert results[1]["error"]["code"] == "service_unavailable"   # not an answer: send again
    await refused("not_found", rail.central.get_transfer(unlucky.id))
    async with CentralClient("http://central.test", transport=httpx.ASGITransport(
            app=central_app, raise_app_exceptions=False)) as plain:
        # every item failing fails the call, as alone: a 500, which is no answer
        await refused("upstream_unavailable", send_batch(plain, [unlucky]))
    monkeypatch.undo()
    check_statement(rail, (await send_batch(rail.central, [unlucky]))[0], unlucky, "settled")
    await assert_balanced(rail.central)


# --- finishes ride on the next prepare batch -----------------------------------------------

async def test_a_first_delivery_is_finished_in_the_next_prepare_batchs_transaction(
        two_payers, monkeypatch):
    """Under load a delivery's answers are not finished in a transaction of their own: the
    prepare batcher finishes them with the message 1s it prepares next (one commit, the
    accounts moved once for both), and every transfer still settles exactly once."""
    rail = two_payers
    alone = []
    finish = rail.service._finish

    async def counted(answered, unanswered):
        alone.append(len(answered))
        return await finish(answered, unanswered)

    monkeypatch.setattr(rail.service, "_finish", counted)
    envs = ([message1(rail, 300 + i) for i in range(30)]
            + [transfer_envelope(rail.c_key, C, B, 400 + i, PAYEE) for i in range(30)])
    answers = await asyncio.gather(*(rail.central.transfer(env) for env in envs))
    assert [a["status"] for a in answers] == ["settled"] * len(envs)
    assert rail.b.credits == len(envs)
    await assert_settled_once(rail, envs, a_fen=sum(300 + i for i in range(30)),
                              c_fen=sum(400 + i for i in range(30)))
    assert alone == []   # checked once the finishes, which follow the answers, are in


async def test_with_no_prepare_batch_to_ride_a_finish_goes_alone_soon_after(
        two_payers, monkeypatch):
    """A finish waits for a prepare batch to ride with only `FINISH_RIDE_S`; then it is a
    batch of its own (not left to the worker), and the transfer is settled in the books."""
    from central import transfers

    rail = two_payers
    monkeypatch.setattr(rail.service, "_finish", None)   # not the alone-path: the batcher's
    batches = rail.service.batcher.batches
    env = message1(rail, 321)
    answer = await rail.central.transfer(env)
    assert answer["status"] == "settled"          # answered before the finish
    await recorded(rail.central, env)
    assert rail.service.batcher.batches - batches == 2   # the prepare, the finish riding alone
    assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    assert transfers.FINISH_RIDE_S <= 0.05
    await assert_balanced(rail.central)


async def test_when_the_batch_that_took_a_finish_fails_the_finish_goes_alone(
        two_payers, monkeypatch):
    rail = two_payers
    finish_in = rail.service._finish_in
    failed = []

    async def fails_once_in_a_batch(tx, answered, unanswered, now):
        if answered and not failed:
            failed.append(len(answered))
            raise RuntimeError("the batch's transaction fails")
        return await finish_in(tx, answered, unanswered, now)

    monkeypatch.setattr(rail.service, "_finish_in", fails_once_in_a_batch)
    envs = [message1(rail, 500 + i) for i in range(5)]
    answers = await asyncio.gather(*(rail.central.transfer(env) for env in envs))
    assert [a["status"] for a in answers] == ["settled"] * len(envs)
    await recorded(rail.central, *envs)   # the finishes commit after the answers
    assert failed, "no finish went through a batch"
    for env in envs:
        assert await entries_of(rail.central, env.id) == ["transfer_prepare", "transfer_settle"]
    assert rail.b.credits == len(envs)
    await assert_balanced(rail.central)


async def test_a_batcher_closed_refuses_what_comes_after_at_once():
    """Nothing waits for ever on a batcher that is closing: what is submitted after its
    close goes to `fail` at once (a delivery's finish then goes alone)."""
    from rail_service.batcher import Batcher, NotDone, fail_all

    ran = []

    async def run(batch):
        for item in batch:
            ran.append(item)
            item.future.set_result("done")

    batcher = Batcher(run, fail_all, max_items=8, name="test")
    before = SimpleNamespace(future=asyncio.get_running_loop().create_future())
    batcher.submit(before)
    assert await before.future == "done"
    await batcher.aclose()
    after = SimpleNamespace(future=asyncio.get_running_loop().create_future())
    batcher.submit(after)
    with pytest.raises(NotDone):
        await asyncio.wait_for(after.future, 1)
    assert ran == [before]
