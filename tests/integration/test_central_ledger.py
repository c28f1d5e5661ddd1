"""Central on real PostgreSQL, over its HTTP API: registration, reserves, issue and redeem,
exactly-once instructions, and refusal of every kind of bad input with nothing written."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import orjson
import pytest

from central.app import create_app
from central.client import CentralClient
from central.config import CentralSettings
from rail_protocol.instruction_types import CENTRAL_ISSUE as ISSUE
from rail_protocol.instruction_types import CENTRAL_REDEEM as REDEEM
from rail_protocol.instruction_types import REGISTER_BANK
from rail_protocol.envelope import Envelope, now_ms, seal, verify_statement
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey, SigningKey, b64encode
from rail_service.client import RemoteError
from tests.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.integration

RESERVES_A = 10_000
ISSUED_A = 1_000
RESERVES_B = 500


# --- helpers ------------------------------------------------------------------------------


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def wire(env: Envelope | dict) -> bytes:
    return orjson.dumps(env.to_dict() if isinstance(env, Envelope) else env)


async def post(client: CentralClient, path: str, env: Envelope | dict) -> httpx.Response:
    return await client.http.post(path, content=wire(env))


async def journal(client: CentralClient) -> list[dict]:
    return (await client.journal(limit=500))["entries"]


async def books(client: CentralClient) -> tuple[list[dict], int, dict]:
    """What must not move when a request is refused: journal, audit entry count, supply."""
    report = await client.audit()
    assert report["balanced"], report["problems"]
    return await journal(client), report["entries"], await client.supply()


async def refused(client: CentralClient, call) -> RemoteError:
    with pytest.raises(RemoteError) as caught:
        await call
    return caught.value


def registration(key: SigningKey, bank_id: str, name: str = "A Bank", *,
                 names: SigningKey | None = None, **extra) -> Envelope:
    """A registration signed by `key`, naming `names`'s public key (by default `key`'s)."""
    public = (names or key).public_key.to_text()
    return seal(key, REGISTER_BANK, {"bank_id": bank_id, "name": name, "public_key": public,
                                     **extra})


@dataclass
class Rail:
    client: CentralClient
    central_key: PublicKey
    key_a: SigningKey  # bank-a, pure-Python ecdsa like a mobile-class signer
    key_b: SigningKey  # bank-b, OpenSSL
    stranger: SigningKey  # registered nowhere


async def make_rail(client: CentralClient, key_a: SigningKey) -> Rail:
    """Two registered banks: bank-a with reserves and some e-CNY, bank-b with reserves only."""
    key_b = SigningKey.generate(engine="openssl")
    await client.register_bank(key_a, "bank-a", "Bank A")
    await client.register_bank(key_b, "bank-b", "Bank B")
    await client.deposit_reserves("bank-a", "deposit-a-0001", RESERVES_A)
    await client.deposit_reserves("bank-b", "deposit-b-0001", RESERVES_B)
    await client.issue(key_a, "bank-a", ISSUED_A)
    identity = await client.identity()
    return Rail(client, PublicKey.from_text(identity["public_key"]), key_a, key_b,
                SigningKey.generate(engine="openssl"))


@pytest.fixture
async def rail(central_client, bank_key) -> Rail:
    """A fresh central of its own, for tests that move money."""
    return await make_rail(central_client, bank_key)


@pytest.fixture(scope="module")
async def shared_app(pg_databases, tmp_path_factory):
    """One central for the tests that must write nothing: each checks the books did not
    move, so sharing it costs no independence and saves a database per case."""
    settings = CentralSettings(database_url=pg_databases(), operator_token=OPERATOR_TOKEN,
                               key_file=tmp_path_factory.mktemp("central") / "central.key",
                               db_pool_size=5)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def shared_rail(shared_app) -> Rail:
    client = CentralClient("http://central.test", operator_token=OPERATOR_TOKEN,
                           transport=httpx.ASGITransport(app=shared_app))
    yield await make_rail(client, SigningKey.generate())
    await client.aclose()


# --- the certification centre ---------------------------------------------------------


async def test_central_publishes_its_key(central_client):
    identity = await central_client.identity()
    key = PublicKey.from_text(identity["public_key"])
    assert identity["key_id"] == key.key_id
    assert identity["currency"] == "CNY"


async def test_registering_a_bank_certifies_its_key_under_centrals_key(central_client, bank_key):
    certificate = await central_client.register_bank(bank_key, "bank-a", "Bank A")
    central_key = PublicKey.from_text((await central_client.identity())["public_key"])
    verify_statement(central_key, certificate)
    assert certificate["type"] == "central.bank_certificate"
    assert certificate["bank_id"] == "bank-a"
    assert certificate["name"] == "Bank A"
    assert certificate["key_id"] == bank_key.key_id
    assert certificate["public_key"] == bank_key.public_key.to_text()
    assert certificate["issuer"] == central_key.key_id
    assert await central_client.certificate("bank-a") == certificate
    view = await central_client.bank("bank-a")
    assert view["reserves_fen"] == 0 and view["holding_fen"] == 0
    assert view["key_id"] == bank_key.key_id and view["certificate"] == certificate


async def test_registration_answers_201_created(central_client, bank_key):
    response = await post(central_client, "/v1/banks", registration(bank_key, "bank-a"))
    assert response.status_code == 201


async def test_registering_again_with_the_same_key_returns_the_same_certificate(
    central_client, bank_key
):
    first = await central_client.register_bank(bank_key, "bank-a", "Bank A")
    again = await central_client.register_bank(bank_key, "bank-a", "Bank A")
    assert again == first
    assert (await central_client.supply())["banks"] == [
        {"bank_id": "bank-a", "reserves_fen": 0, "holding_fen": 0}
    ]


async def test_registering_a_bank_again_with_another_key_is_a_conflict(central_client, bank_key):
    first = await central_client.register_bank(bank_key, "bank-a", "Bank A")
    thief = SigningKey.generate(engine="openssl")
    response = await post(central_client, "/v1/banks", registration(thief, "bank-a"))
    assert response.status_code == 409
    assert error_code(response) == "bank_key_conflict"
    assert await central_client.certificate("bank-a") == first


async def test_one_key_cannot_be_registered_for_two_banks(central_client, bank_key):
    await central_client.register_bank(bank_key, "bank-a", "Bank A")
    response = await post(central_client, "/v1/banks", registration(bank_key, "bank-z"))
    assert response.status_code == 409
    assert error_code(response) == "bank_key_conflict"
    error = await refused(central_client, central_client.certificate("bank-z"))
    assert error.code == "unknown_bank"


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong-token-0000000000"},
                                     {"authorization": OPERATOR_TOKEN},
                                     {"authorization": "Bearer "}],
                         ids=["missing", "wrong", "not-bearer", "empty"])
async def test_registration_needs_the_operator_token(central_app, bank_key, headers):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=central_app),
                                 base_url="http://central.test", headers=headers) as http:
        response = await http.post("/v1/banks", content=wire(registration(bank_key, "bank-a")))
        assert response.status_code == 401
        assert error_code(response) == "unauthorized"
        assert (await http.get("/v1/banks/bank-a/certificate")).status_code == 404


async def test_registration_signed_by_another_key_than_it_names_is_refused(central_client,
                                                                           bank_key):
    impostor = SigningKey.generate(engine="openssl")
    honest_signer = registration(impostor, "bank-a", names=bank_key)
    response = await post(central_client, "/v1/banks", honest_signer)
    assert response.status_code == 401
    assert error_code(response) == "unknown_key"

    forged = registration(bank_key, "bank-a").to_dict()
    forged["sig"] = b64encode(impostor.sign(Envelope.parse(forged).signed_bytes()))
    response = await post(central_client, "/v1/banks", forged)
    assert response.status_code == 401
    assert error_code(response) == "bad_signature"
    assert (await central_client.supply())["banks"] == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"bank_id": "Bank A"}, "invalid_field"),
        ({"bank_id": None}, "invalid_field"),
        ({"name": ""}, "invalid_field"),
        ({"name": "x" * 129}, "invalid_field"),
        ({"name": 7}, "invalid_field"),
        ({"public_key": "AAAA"}, "invalid_field"),
        ({"public_key": 12345}, "invalid_field"),
    ],
)
async def test_registration_with_a_malformed_body_is_refused(shared_rail, body, code):
    key = SigningKey.generate(engine="openssl")
    env = seal(key, REGISTER_BANK, {"bank_id": "bank-new", "name": "A",
                                    "public_key": key.public_key.to_text(), **body})
    before = await books(shared_rail.client)
    response = await post(shared_rail.client, "/v1/banks", env)
    assert response.status_code == 422
    assert error_code(response) == code
    assert await books(shared_rail.client) == before


async def test_an_expired_registration_is_refused(shared_rail):
    key = SigningKey.generate(engine="openssl")
    env = seal(key, REGISTER_BANK,
               {"bank_id": "bank-new", "name": "A", "public_key": key.public_key.to_text()},
               created_ms=now_ms() - 200_000)
    before = await books(shared_rail.client)
    response = await post(shared_rail.client, "/v1/banks", env)
    assert response.status_code == 400 and error_code(response) == "expired"
    assert await books(shared_rail.client) == before


@pytest.mark.parametrize("public_key", [[1, 2], {"x": 1}])
async def test_a_public_key_that_is_not_a_string_is_an_invalid_field(central_app, bank_key,
                                                                      public_key):
    transport = httpx.ASGITransport(app=central_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://central.test",
                                 headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}) as http:
        env = seal(bank_key, REGISTER_BANK,
                   {"bank_id": "bank-a", "name": "A", "public_key": public_key})
        response = await http.post("/v1/banks", content=wire(env))
        assert response.status_code == 422
        assert error_code(response) == "invalid_field"


async def test_concurrent_identical_registrations_all_get_the_same_certificate(central_client):
    for round_ in range(3):
        key = SigningKey.generate(engine="openssl")
        envs = [registration(key, f"bank-{round_}") for _ in range(10)]
        responses = await asyncio.gather(*(post(central_client, "/v1/banks", e) for e in envs))
        assert [r.status_code for r in responses] == [201] * 10
        assert len({r.content for r in responses}) == 1


# --- reserves -------------------------------------------------------------------------------


async def test_a_reserve_deposit_is_idempotent_by_its_id(central_client, bank_key):
    await central_client.register_bank(bank_key, "bank-a", "Bank A")
    first = await central_client.deposit_reserves("bank-a", "deposit-0001", 700)
    assert first["reserves_fen"] == 700 and first["bank_id"] == "bank-a"
    before = await journal(central_client)
    again = await central_client.deposit_reserves("bank-a", "deposit-0001", 700)
    assert again == {**first, "repeated": True}
    assert await journal(central_client) == before
    assert [e["kind"] for e in before] == ["reserve_deposit"]
    assert before[0]["reference"] == "deposit:deposit-0001"
    assert (await central_client.bank("bank-a"))["reserves_fen"] == 700


async def test_a_deposit_id_reused_with_another_amount_or_bank_is_refused(central_client,
                                                                          bank_key):
    await central_client.register_bank(bank_key, "bank-a", "Bank A")
    await central_client.register_bank(SigningKey.generate(), "bank-b", "Bank B")
    await central_client.deposit_reserves("bank-a", "deposit-0001", 700)
    before = await books(central_client)
    for bank_id, amount in (("bank-a", 701), ("bank-b", 700)):
        response = await central_client.http.post(
            f"/v1/banks/{bank_id}/reserve-deposits",
            content=orjson.dumps({"deposit_id": "deposit-0001", "amount_fen": amount}))
        assert response.status_code == 409
        assert error_code(response) == "deposit_id_reused"
    assert await books(central_client) == before


async def test_a_repeated_deposit_answers_what_the_first_one_did(rail):
    first = await rail.client.deposit_reserves("bank-b", "deposit-b-0002", 300)
    await rail.client.issue(rail.key_b, "bank-b", 100)
    again = await rail.client.deposit_reserves("bank-b", "deposit-b-0002", 300)
    assert again == {**first, "repeated": True}


@pytest.mark.parametrize(
    ("bank_id", "content", "status", "code"),
    [
        ("bank-z", b'{"deposit_id":"deposit-0001","amount_fen":5}', 404, "unknown_bank"),
        ("bank-a", b'{"deposit_id":"deposit-0001","amount_fen":5.0}', 422, "float_not_allowed"),
        ("bank-a", b'{"deposit_id":"deposit-0001","amount_fen":"5"}', 422, "invalid_amount"),
        ("bank-a", b'{"deposit_id":"deposit-0001","amount_fen":-5}', 422, "invalid_amount"),
        ("bank-a", b'{"deposit_id":"deposit-0001","amount_fen":0}', 422, "invalid_amount"),
        ("bank-a", b'{"deposit_id":"short","amount_fen":5}', 422, "invalid_field"),
        ("bank-a", b'{"deposit_id":12345678,"amount_fen":5}', 422, "invalid_field"),
        ("bank-a", b'{"amount_fen":5}', 422, "invalid_field"),
        ("bank-a", b"[1]", 422, "invalid_amount"),
        ("bank-a", b"{", 400, "malformed_json"),
    ],
)
async def test_a_bad_reserve_deposit_is_refused_and_writes_nothing(
    shared_rail, bank_id, content, status, code
):
    client = shared_rail.client
    before = await books(client)
    response = await client.http.post(f"/v1/banks/{bank_id}/reserve-deposits", content=content)
    assert response.status_code == status
    assert error_code(response) == code
    assert await books(client) == before


async def test_reserve_deposits_need_the_operator_token(central_app, central_client, bank_key):
    await central_client.register_bank(bank_key, "bank-a", "Bank A")
    async with CentralClient("http://central.test",
                             transport=httpx.ASGITransport(app=central_app)) as anonymous:
        error = await refused(anonymous, anonymous.deposit_reserves("bank-a", "deposit-1", 5))
        assert error.code == "unauthorized"
    assert (await central_client.bank("bank-a"))["reserves_fen"] == 0


@pytest.mark.parametrize("path", ["/v1/supply", "/v1/journal", "/v1/audit", "/v1/banks/bank-a"])
async def test_registry_views_need_the_operator_token(shared_app, path):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shared_app),
                                 base_url="http://central.test") as http:
        response = await http.get(path)
        assert response.status_code == 401
        assert error_code(response) == "unauthorized"


# --- issue and redeem -----------------------------------------------------------------------


async def test_issuing_within_reserves_moves_reserves_to_holding_with_a_signed_receipt(rail):
    env = seal(rail.key_a, ISSUE, {"bank_id": "bank-a", "amount_fen": 2_500})
    response = await post(rail.client, "/v1/issuance", env)
    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "done" and "repeated" not in result
    receipt = result["receipt"]
    verify_statement(rail.central_key, receipt)
    assert receipt["type"] == "central.receipt"
    assert receipt["instruction_id"] == env.id
    assert receipt["instruction_type"] == ISSUE
    assert receipt["amount_fen"] == 2_500
    assert receipt["bank_id"] == "bank-a"
    assert receipt["reserves_fen"] == RESERVES_A - ISSUED_A - 2_500
    assert receipt["holding_fen"] == ISSUED_A + 2_500
    last = (await journal(rail.client))[-1]
    assert last["entry_id"] == receipt["entry_id"]
    assert last["kind"] == "issue" and last["reference"] == f"{env.signer}:{env.id}"
    assert sorted((p["account"], p["amount_fen"]) for p in last["postings"]) == [
        ("backing", 2_500), ("holding:bank-a", 2_500), ("issuance", -2_500),
        ("reserve:bank-a", -2_500),
    ]
    supply = await rail.client.supply()
    assert supply["total_issued_fen"] == supply["backing_fen"] == ISSUED_A + 2_500
    assert (await rail.client.audit())["balanced"]


async def test_redeeming_returns_holding_to_reserves_with_a_signed_receipt(rail):
    result = await rail.client.redeem(rail.key_a, "bank-a", 400)
    receipt = result["receipt"]
    verify_statement(rail.central_key, receipt)
    assert receipt["instruction_type"] == REDEEM
    assert receipt["amount_fen"] == 400
    assert receipt["holding_fen"] == ISSUED_A - 400
    assert receipt["reserves_fen"] == RESERVES_A - ISSUED_A + 400
    view = await rail.client.bank("bank-a")
    assert (view["reserves_fen"], view["holding_fen"]) == (RESERVES_A - ISSUED_A + 400,
                                                           ISSUED_A - 400)
    report = await rail.client.audit()
    assert report["balanced"] and report["total_issued_fen"] == ISSUED_A - 400


async def test_a_bank_can_issue_all_its_reserves_and_redeem_all_its_holding(rail):
    await rail.client.issue(rail.key_b, "bank-b", RESERVES_B)
    await rail.client.redeem(rail.key_b, "bank-b", RESERVES_B)
    view = await rail.client.bank("bank-b")
    assert (view["reserves_fen"], view["holding_fen"]) == (RESERVES_B, 0)


async def test_a_retried_instruction_returns_the_same_receipt_and_moves_nothing_again(rail):
    env = seal(rail.key_a, ISSUE, {"bank_id": "bank-a", "amount_fen": 300})
    first = (await post(rail.client, "/v1/issuance", env)).json()
    before = await books(rail.client)
    for _ in range(3):
        response = await post(rail.client, "/v1/issuance", env)
        assert response.status_code == 200
        assert response.json() == {**first, "repeated": True}
    assert await books(rail.client) == before


async def test_a_retry_resigned_with_a_fresh_signature_is_still_the_same_instruction(rail):
    created = now_ms()
    key = SigningKey.from_text(rail.key_b.secret_text(), engine="openssl")
    body = {"bank_id": "bank-b", "amount_fen": 100}
    first = seal(key, ISSUE, body, id="retry-0001", created_ms=created)
    second = seal(key, ISSUE, body, id="retry-0001", created_ms=created)
    assert first.sig != second.sig
    one = (await post(rail.client, "/v1/issuance", first)).json()
    before = await books(rail.client)
    two = await post(rail.client, "/v1/issuance", second)
    assert two.status_code == 200 and two.json() == {**one, "repeated": True}
    assert await books(rail.client) == before


async def test_the_same_instruction_id_with_other_content_is_refused(rail):
    await rail.client.issue(rail.key_a, "bank-a", 300, instruction_id="same-id-0001")
    before = await books(rail.client)
    for env in (
        seal(rail.key_a, ISSUE, {"bank_id": "bank-a", "amount_fen": 301}, id="same-id-0001"),
        seal(rail.key_a, REDEEM, {"bank_id": "bank-a", "amount_fen": 300}, id="same-id-0001"),
    ):
        path = "/v1/issuance" if env.type == ISSUE else "/v1/redemption"
        response = await post(rail.client, path, env)
        assert response.status_code == 409
        assert error_code(response) == "instruction_id_reused"
    assert await books(rail.client) == before


async def test_instruction_ids_are_per_signer(rail):
    await rail.client.issue(rail.key_a, "bank-a", 10, instruction_id="shared-id-0001")
    result = await rail.client.issue(rail.key_b, "bank-b", 10, instruction_id="shared-id-0001")
    assert "repeated" not in result and result["receipt"]["bank_id"] == "bank-b"


async def test_retrying_through_the_client_with_the_same_instruction_id_has_one_effect(rail):
    first = await rail.client.issue(rail.key_b, "bank-b", 100, instruction_id="client-retry-01")
    await asyncio.sleep(0.005)
    again = await rail.client.issue(rail.key_b, "bank-b", 100, instruction_id="client-retry-01")
    assert again == {**first, "repeated": True}


async def test_an_expired_instruction_is_refused_and_moves_nothing(rail):
    env = seal(rail.key_a, ISSUE, {"bank_id": "bank-a", "amount_fen": 300},
               created_ms=now_ms() - 200_000)
    before = await books(rail.client)
    response = await post(rail.client, "/v1/issuance", env)
    assert response.status_code == 400 and error_code(response) == "expired"
    assert await books(rail.client) == before


async def test_an_instruction_replayed_after_it_expired_is_refused_as_replayed(rail):
    # Long enough to be executed on a loaded machine, short enough to wait out.
    env = seal(rail.key_b, ISSUE, {"bank_id": "bank-b", "amount_fen": 50}, ttl_ms=3_000)
    first = await post(rail.client, "/v1/issuance", env)
    assert first.status_code == 200, first.text
    before = await books(rail.client)
    await asyncio.sleep(max(env.expires_ms - now_ms(), 0) / 1000 + 0.05)
    response = await post(rail.client, "/v1/issuance", env)
    assert response.status_code == 409 and error_code(response) == "replayed"
    assert await books(rail.client) == before


async def test_a_refused_instruction_retried_gets_the_same_refusal_after_reserves_grow(rail):
    env = seal(rail.key_b, ISSUE, {"bank_id": "bank-b", "amount_fen": RESERVES_B + 1})
    response = await post(rail.client, "/v1/issuance", env)
    assert response.status_code == 409 and error_code(response) == "insufficient_reserves"
    await rail.client.deposit_reserves("bank-b", "deposit-b-0002", 10_000)
    before = await books(rail.client)
    response = await post(rail.client, "/v1/issuance", env)
    assert response.status_code == 409 and error_code(response) == "insufficient_reserves"
    assert await books(rail.client) == before
    fresh = await rail.client.issue(rail.key_b, "bank-b", RESERVES_B + 1)
    assert fresh["receipt"]["holding_fen"] == RESERVES_B + 1


# --- bad input: each refused with its code, and the books do not move -------------------


def issue_env(rail: Rail, amount: object = 100, **kwargs) -> Envelope:
    return seal(rail.key_a, ISSUE, {"bank_id": "bank-a", "amount_fen": amount}, **kwargs)


def resigned_by_another_key(rail: Rail) -> dict:
    env = issue_env(rail)
    return {**env.to_dict(), "sig": b64encode(rail.stranger.sign(env.signed_bytes()))}


def with_amount_after_signing(rail: Rail) -> dict:
    env = issue_env(rail, 100)
    data = env.to_dict()
    return {**data, "body": {**data["body"], "amount_fen": 9_000}}


def float_amount(rail: Rail) -> bytes:
    raw = wire(issue_env(rail, 5))
    assert b'"amount_fen":5,' in raw or b'"amount_fen":5}' in raw
    return raw.replace(b'"amount_fen":5', b'"amount_fen":5.0')


async def chunked_oversized():
    for _ in range(20):
        yield b" " * 4096
    yield b"{}"


BAD_INPUTS = {
    "unsigned-plain-body": ("/v1/issuance", lambda r: {"bank_id": "bank-a", "amount_fen": 100},
                            401, "unsigned"),
    "envelope-without-sig": ("/v1/issuance",
                             lambda r: {k: v for k, v in issue_env(r).to_dict().items()
                                        if k != "sig"}, 401, "unsigned"),
    "json-array": ("/v1/issuance", lambda r: [issue_env(r).to_dict()], 401, "unsigned"),
    "signed-by-another-key": ("/v1/issuance", resigned_by_another_key, 401, "bad_signature"),
    "amount-tampered-after-signing": ("/v1/issuance", with_amount_after_signing, 401,
                                      "bad_signature"),
    "expired": ("/v1/issuance", lambda r: issue_env(r, created_ms=now_ms() - 200_000), 400,
                "expired"),
    "created-in-the-future": ("/v1/issuance",
                              lambda r: issue_env(r, created_ms=now_ms() + 3_600_000), 400,
                              "not_yet_valid"),
    "lives-too-long": ("/v1/issuance", lambda r: issue_env(r, ttl_ms=2 * 86_400_000), 400,
                       "ttl_too_long"),
    "unknown-bank-key": ("/v1/issuance",
                         lambda r: seal(r.stranger, ISSUE, {"bank_id": "bank-a",
                                                            "amount_fen": 100}),
                         401, "unknown_key"),
    "bank-signing-for-another-bank": ("/v1/issuance",
                                      lambda r: seal(r.key_a, ISSUE, {"bank_id": "bank-b",
                                                                      "amount_fen": 100}),
                                      403, "signer_mismatch"),
    "redeeming-for-another-bank": ("/v1/redemption",
                                   lambda r: seal(r.key_b, REDEEM, {"bank_id": "bank-a",
                                                                    "amount_fen": 100}),
                                   403, "signer_mismatch"),
    "float-amount": ("/v1/issuance", float_amount, 422, "float_not_allowed"),
    "negative-amount": ("/v1/issuance", lambda r: issue_env(r, -100), 422, "invalid_amount"),
    "zero-amount": ("/v1/issuance", lambda r: issue_env(r, 0), 422, "invalid_amount"),
    "string-amount": ("/v1/issuance", lambda r: issue_env(r, "100"), 422, "invalid_amount"),
    "boolean-amount": ("/v1/issuance", lambda r: issue_env(r, True), 422, "invalid_amount"),
    "null-amount": ("/v1/issuance", lambda r: issue_env(r, None), 422, "invalid_amount"),
    "amount-over-64-bits": ("/v1/issuance",
                            lambda r: wire(issue_env(r, 5)).replace(
                                b'"amount_fen":5', b'"amount_fen":99999999999999999999'),
                            422, "float_not_allowed"),
    "issue-beyond-reserves": ("/v1/issuance",
                              lambda r: issue_env(r, RESERVES_A - ISSUED_A + 1), 409,
                              "insufficient_reserves"),
    "redeem-beyond-holdings": ("/v1/redemption",
                               lambda r: seal(r.key_a, REDEEM, {"bank_id": "bank-a",
                                                                "amount_fen": ISSUED_A + 1}),
                               409, "insufficient_holdings"),
    "redeem-with-no-holding": ("/v1/redemption",
                               lambda r: seal(r.key_b, REDEEM, {"bank_id": "bank-b",
                                                                "amount_fen": 1}),
                               409, "insufficient_holdings"),
    "malformed-json": ("/v1/issuance", lambda r: b'{"id": "abc", "type": ', 400,
                       "malformed_json"),
    "not-utf8": ("/v1/issuance", lambda r: b"\xff\xfe\x00{", 400, "malformed_json"),
    "oversized-json": ("/v1/issuance",
                       lambda r: orjson.dumps({**issue_env(r).to_dict(), "pad": "x" * 70_000}),
                       413, "payload_too_large"),
    "oversized-chunked-body": ("/v1/issuance", lambda r: chunked_oversized(), 413,
                               "payload_too_large"),
    "empty-body": ("/v1/issuance", lambda r: b"", 400, "malformed_json"),
    "issue-envelope-to-redemption": ("/v1/redemption", lambda r: issue_env(r), 400,
                                     "wrong_instruction_type"),
    "redeem-envelope-to-issuance": ("/v1/issuance",
                                    lambda r: seal(r.key_a, REDEEM, {"bank_id": "bank-a",
                                                                     "amount_fen": 100}),
                                    400, "wrong_instruction_type"),
    "registration-envelope-to-issuance": ("/v1/issuance",
                                          lambda r: registration(r.key_a, "bank-a"), 400,
                                          "wrong_instruction_type"),
    "extra-envelope-field": ("/v1/issuance",
                             lambda r: {**issue_env(r).to_dict(), "amount_fen": 100}, 422,
                             "invalid_field"),
    "bad-instruction-id": ("/v1/issuance", lambda r: issue_env(r, id="bad id!"), 422,
                           "invalid_field"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
async def test_bad_input_is_refused_with_its_code_and_writes_nothing(shared_rail, case):
    rail = shared_rail
    path, make, status, code = BAD_INPUTS[case]
    payload = make(rail)
    if isinstance(payload, (Envelope, dict, list)):
        payload = wire(payload) if not isinstance(payload, list) else orjson.dumps(payload)
    before = await books(rail.client)
    response = await rail.client.http.post(path, content=payload)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert response.json()["error"]["message"]
    assert await books(rail.client) == before


async def test_an_unknown_route_is_a_typed_404(shared_rail):
    response = await shared_rail.client.http.post("/v1/nowhere", content=b"{}")
    assert response.status_code == 404 and error_code(response) == "not_found"


# --- concurrency ------------------------------------------------------------------------------


async def test_concurrent_issues_never_exceed_reserves(central_client):
    key = SigningKey.generate(engine="openssl")
    await central_client.register_bank(key, "bank-c", "Bank C")
    await central_client.deposit_reserves("bank-c", "deposit-c-0001", 30)
    envs = [seal(key, ISSUE, {"bank_id": "bank-c", "amount_fen": 1}) for _ in range(50)]
    responses = await asyncio.gather(*(post(central_client, "/v1/issuance", e) for e in envs))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 30
    assert statuses.count(409) == 20
    assert {error_code(r) for r in responses if r.status_code == 409} == {
        "insufficient_reserves"
    }
    view = await central_client.bank("bank-c")
    assert (view["reserves_fen"], view["holding_fen"]) == (0, 30)
    report = await central_client.audit()
    assert report["balanced"], report["problems"]
    assert report["total_issued_fen"] == 30
    assert [e["kind"] for e in await journal(central_client)].count("issue") == 30
    # Each refusal is remembered: retrying the refused ones gives the same answer.
    refused_envs = [e for e, r in zip(envs, responses, strict=True) if r.status_code == 409]
    await central_client.deposit_reserves("bank-c", "deposit-c-0002", 100)
    retried = await asyncio.gather(*(post(central_client, "/v1/issuance", e)
                                     for e in refused_envs))
    assert {error_code(r) for r in retried} == {"insufficient_reserves"}


async def test_concurrent_sends_of_one_envelope_have_exactly_one_effect(central_client):
    key = SigningKey.generate(engine="openssl")
    await central_client.register_bank(key, "bank-c", "Bank C")
    await central_client.deposit_reserves("bank-c", "deposit-c-0001", 1_000)
    env = seal(key, ISSUE, {"bank_id": "bank-c", "amount_fen": 700})
    responses = await asyncio.gather(*(post(central_client, "/v1/issuance", env)
                                       for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    bodies = [r.json() for r in responses]
    assert sum("repeated" not in b for b in bodies) == 1
    assert len({orjson.dumps(b["receipt"]) for b in bodies}) == 1
    issues = [e for e in await journal(central_client) if e["kind"] == "issue"]
    assert len(issues) == 1
    view = await central_client.bank("bank-c")
    assert (view["reserves_fen"], view["holding_fen"]) == (300, 700)
    assert (await central_client.audit())["balanced"]


async def test_concurrent_issues_and_redeems_across_banks_keep_the_books_balanced(rail):
    key_c = SigningKey.generate(engine="openssl")
    await rail.client.register_bank(key_c, "bank-c", "Bank C")
    await rail.client.deposit_reserves("bank-c", "deposit-c-0001", 400)
    calls = []
    for _ in range(10):
        calls.append(post(rail.client, "/v1/issuance",
                          seal(key_c, ISSUE, {"bank_id": "bank-c", "amount_fen": 50})))
        calls.append(post(rail.client, "/v1/redemption",
                          seal(rail.key_b, REDEEM, {"bank_id": "bank-b", "amount_fen": 1})))
        calls.append(post(rail.client, "/v1/issuance",
                          seal(rail.key_b, ISSUE, {"bank_id": "bank-b", "amount_fen": 60})))
    responses = await asyncio.gather(*calls)
    assert {r.status_code for r in responses} <= {200, 409}
    report = await rail.client.audit()
    assert report["balanced"], report["problems"]
    banks = {b["bank_id"]: b for b in report["banks"]}
    assert banks["bank-c"]["holding_fen"] == 400 and banks["bank-c"]["reserves_fen"] == 0
    assert banks["bank-b"]["reserves_fen"] + banks["bank-b"]["holding_fen"] == RESERVES_B
    assert report["total_issued_fen"] == sum(b["holding_fen"] for b in report["banks"])


async def test_audits_taken_during_concurrent_issues_always_balance(central_client):
    key = SigningKey.generate(engine="openssl")
    await central_client.register_bank(key, "bank-c", "Bank C")
    await central_client.deposit_reserves("bank-c", "deposit-c-0001", 10_000)
    issues = [post(central_client, "/v1/issuance",
                   seal(key, ISSUE, {"bank_id": "bank-c", "amount_fen": 7})) for _ in range(30)]
    audits = [central_client.audit() for _ in range(10)]
    results = await asyncio.gather(*(c for pair in zip(issues[::3], audits, strict=False)
                                     for c in pair), *issues[1::3], *issues[2::3])
    reports = [r for r in results if isinstance(r, dict)]
    assert len(reports) == 10
    for report in reports:
        assert report["balanced"], report["problems"]
        assert report["total_issued_fen"] == 7 * (report["entries"] - 1)
    final = await central_client.audit()
    assert final["balanced"] and final["total_issued_fen"] == 210


async def test_remote_errors_raise_typed_rail_errors(rail):
    error = await refused(rail.client, rail.client.issue(rail.key_b, "bank-b", 10**9))
    assert isinstance(error, RailError)
    assert error.code == "insufficient_reserves" and error.status == 409
