"""Bank B's message 2s credited in batches (bank/credit_engine.py) on real PostgreSQL and
Redis: every credit lands once, every refusal is recorded with its code, repeats and
concurrent deliveries get the stored answer, a single message 2 is a batch of one, and
refunds back and sweeps past a cap are booked in the batch too.

Most tests seal message 2s
with central's key themselves: central never prepared those transfers, so they check pearl's
own books (`bank_audit`); the last test drives real interbank payments through central and
checks the whole rail's conservation."""

import asyncio
import secrets
from types import SimpleNamespace

import httpx
import orjson
import psycopg
import pytest

from bank import credit_engine
from bank.adapters.batch_store import PgTx
from bank.app import create_app as create_bank_app
from rail_protocol.batches import open_results, seal_batch
from rail_protocol.envelope import MAX_TTL_MS, Envelope, seal, sign, unsigned, verify_statement
from rail_protocol.instruction_types import INTERBANK_CREDIT
from rail_protocol.keys import SigningKey
from rail_protocol.money import yuan
from tests.support import rail as rail_support
from tests.support.polling import eventually, lock_waiters, poll

pytestmark = pytest.mark.integration

B = "pearl"


def with_credit_engine(apps: dict):
    """`bank.app.create_app` for tests/support/rail.py, each app made kept in `apps` by bank
    id (installing the credit engine again is a no-op)."""

    def create(settings=None, bank=None):
        app = create_bank_app(settings, bank=bank)
        credit_engine.install(app)
        apps[settings.bank_id] = app
        return app

    return create


@pytest.fixture(scope="module")
async def credit_rail(pg_databases, tmp_path_factory):
    apps: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rail_support, "create_bank_app", with_credit_engine(apps))
        async with rail_support.start_rail(pg_databases, tmp_path_factory.mktemp("rail")) \
                as started:
            started.apps = apps
            yield started


def fast(rail) -> credit_engine.CreditEngine:
    return rail.apps[B].state.credits


def message2(rail, payee, amount_fen: int, *, transfer_id: str | None = None,
             **details) -> Envelope:
    """Message 2 as central seals it (central/transfers.py `_deliver`)."""
    payee_id = payee if isinstance(payee, str) else payee.wallet_id
    transfer_id = transfer_id or f"yangtze.{secrets.token_hex(16)}"
    body = {"transfer_id": transfer_id, "from_bank": "yangtze", "to_bank": B,
            "amount_fen": amount_fen, "payee_wallet": payee_id}
    if details:
        body["details"] = details
    return seal(rail.central_key, INTERBANK_CREDIT, body, id=transfer_id, ttl_ms=MAX_TTL_MS)


async def send_batch(rail, envelopes: list) -> list[dict]:
    response = await rail.post_raw(B, "/v1/interbank/credits/batch", {
        "credits": [e.to_dict() if isinstance(e, Envelope) else e for e in envelopes]})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def answer(item: dict, rail=None) -> str:
    """`accepted`, the refusal's code, or the item's typed error code; the statement's
    signature checked when `rail` is given."""
    if "error" in item:
        return item["error"]["code"]
    result = item["result"]
    if rail is not None:
        verify_statement(rail.banks[B].node.key.public_key, result)
    assert result["type"] == "bank.interbank_credit_result"
    return "accepted" if result["accepted"] else result["code"]


async def single_answer(rail, env: Envelope) -> str:
    """The same message 2 alone, through `POST /v1/interbank/credits`."""
    response = await rail.post_raw(B, "/v1/interbank/credits", env)
    return answer(response.json(), rail)


async def incoming(rail, wallet) -> list[dict]:
    history = await rail.client(wallet).history(wallet.key, wallet.wallet_id)
    return [i for i in history["items"] if i["kind"] == "interbank_in"]


def pearl_sql(rail, query: str, *args) -> list[tuple]:
    with psycopg.connect(rail_support.psycopg_url(rail.banks[B].database_url)) as conn:
        return conn.execute(query, args).fetchall()


async def assert_pearl_balanced(rail) -> None:
    audit = await rail.bank_audit(B)
    assert audit["balanced"], audit["problems"]


async def test_a_batch_to_capped_and_uncapped_payees_and_an_order_lands_once(credit_rail):
    rail = credit_rail
    person = await rail.funded_wallet(B, yuan(100), kyc_class=4)     # capped: row locked
    shop = await rail.open_wallet(B, kind="merchant", kyc_class=1)    # uncapped: appended
    await rail.client(shop).merchant_settings(shop.key, shop.wallet_id,
                                              "https://shop.example/hooks")
    order = await rail.client(shop).create_order(shop.key, shop.wallet_id, 2580, "table-9")
    batch = [message2(rail, person, 100), message2(rail, shop, 200),
             message2(rail, person, 300, payer_wallet="yangtze.00000000000000aa"),
             message2(rail, shop, 2580, payer_wallet="yangtze.00000000000000bb",
                      order_id=order["order_id"]),
             message2(rail, shop, 400)]
    before = (fast(rail).booked, fast(rail).batches)
    calls_before = fast(rail).stages()["calls"]["from central"]
    results = await send_batch(rail, batch)
    assert [answer(r, rail) for r in results] == ["accepted"] * 5
    assert [r["result"]["transfer_id"] for r in results] == [e.id for e in batch]
    assert (fast(rail).booked, fast(rail).batches) == (before[0] + 5, before[1] + 1)
    # the dashboard's stages count the batch and the call from central, with its time
    stages = fast(rail).stages()
    assert stages["batches"]["credit-batch"] == {"batches": before[1] + 1,
                                                 "items": before[0] + 5}
    calls = stages["calls"]["from central"]
    assert calls["calls"] == calls_before["calls"] + 1
    assert calls["call_us"] > calls_before["call_us"]
    assert await rail.balance(person) == yuan(100) + 400
    assert await rail.balance(shop) == 200 + 2580 + 400
    history = await incoming(rail, person)
    assert sorted((i["amount_fen"], i["status"], i["counterparty_bank"]) for i in history) == \
        [(100, "settled", "yangtze"), (300, "settled", "yangtze")]
    paid = await rail.client(shop).order(order["order_id"])
    assert paid["status"] == "paid"
    order_credit = next(i for i in await incoming(rail, shop) if i.get("order_id"))
    assert paid["payment_id"] == order_credit["payment_id"] and order_credit["amount_fen"] == 2580
    assert pearl_sql(rail, "SELECT payer_wallet FROM orders WHERE order_id = %s",
                     order["order_id"]) == [("yangtze.00000000000000bb",)]
    hooks = await rail.client(shop).webhook_deliveries(shop.key, shop.wallet_id)
    assert sorted(h["event"]["amount_fen"] for h in hooks["deliveries"]) == [200, 400, 2580], hooks
    # the live notifications follow the answer (one pipeline per batch, in order)
    events = await poll(lambda: rail.banks[B].node.hot.read_events(f"wallet:{shop.wallet_id}"),
                        lambda found: len(found) >= 3, timeout_s=5)
    assert sorted(e["amount_fen"] for _id, e in events) == [200, 400, 2580]
    order_events = await rail.banks[B].node.hot.read_events(f"order:{order['order_id']}")
    assert [e["event"] for _id, e in order_events] == ["payment.received"]
    again = await send_batch(rail, batch)
    assert [answer(r, rail) for r in again] == ["accepted"] * 5
    assert await rail.balance(person) == yuan(100) + 400
    assert await rail.balance(shop) == 200 + 2580 + 400
    await assert_pearl_balanced(rail)


async def test_repeats_and_concurrent_deliveries_of_one_transfer_credit_once(credit_rail):
    rail = credit_rail
    payee = await rail.open_wallet(B, kyc_class=3)
    shop = await rail.open_wallet(B, kind="merchant", kyc_class=1)
    envs = [message2(rail, payee, 111), message2(rail, shop, 222)]
    twice = [envs[0], envs[0], envs[1], envs[1]]
    concurrent = await asyncio.gather(
        send_batch(rail, twice), send_batch(rail, envs), send_batch(rail, envs[::-1]),
        rail.post_raw(B, "/v1/interbank/credits", envs[0]),
        rail.post_raw(B, "/v1/interbank/credits", envs[1]))
    *batches, single_a, single_b = concurrent
    assert [answer(r, rail) for results in batches for r in results] == ["accepted"] * 8
    assert answer(single_a.json(), rail) == answer(single_b.json(), rail) == "accepted"
    assert await rail.balance(payee) == 111 and await rail.balance(shop) == 222
    assert pearl_sql(rail, "SELECT count(*) FROM transactions WHERE transfer_id = ANY(%s)",
                     [e.id for e in envs]) == [(2,)]
    assert [answer(r, rail) for r in await send_batch(rail, envs)] == ["accepted"] * 2
    assert await rail.balance(payee) == 111 and await rail.balance(shop) == 222
    await assert_pearl_balanced(rail)


async def refusal_cases(rail) -> dict[str, tuple]:
    """Message 2s refused, each with its own payee: code -> (envelope, the payee that must
    stay as it was)."""
    closed = await rail.open_wallet(B)
    await rail.client(closed).close_wallet(closed.wallet_id)
    shop = await rail.open_wallet(B, kind="merchant", kyc_class=1)
    paid = await rail.client(shop).create_order(shop.key, shop.wallet_id, 500, "paid-one")
    paid_first = message2(rail, shop, 500, order_id=paid["order_id"])
    assert answer((await send_batch(rail, [paid_first]))[0]) == "accepted"
    expired = await rail.client(shop).create_order(shop.key, shop.wallet_id, 600, "late-one")
    pearl_sql(rail, "UPDATE orders SET expires_ms = 1 WHERE order_id = %s RETURNING 1",
              expired["order_id"])
    full = await rail.funded_wallet(B, yuan(9_999), kyc_class=4)   # no deposit account
    return {
        "unknown_wallet": (message2(rail, "pearl.00000000deadbeef", 100), None),
        "wallet_closed": (message2(rail, closed, 100), closed),
        "order_paid": (message2(rail, shop, 500, order_id=paid["order_id"]), shop),
        "order_expired": (message2(rail, shop, 600, order_id=expired["order_id"]), shop),
        "unknown_order": (message2(rail, shop, 700, order_id="O00000000000000ff"), shop),
        "balance_cap_exceeded": (message2(rail, full, yuan(2)), full),
    }


async def test_refusals_are_recorded_with_their_code_and_answered_the_same_again(
        credit_rail):
    rail = credit_rail
    cases = await refusal_cases(rail)
    ok = await rail.open_wallet(B)
    envs = [env for env, _payee in cases.values()] + [message2(rail, ok, 99)]
    before = {code: await rail.balance(payee) for code, (_e, payee) in cases.items() if payee}
    results = await send_batch(rail, envs)
    assert [answer(r, rail) for r in results] == [*cases, "accepted"]
    for code, (env, payee) in cases.items():
        rows = pearl_sql(rail, "SELECT kind, status, code, result FROM transactions "
                               "WHERE transfer_id = %s", env.id)
        assert rows == [("interbank_in", "rejected", code, "{}")], (code, rows)
        if payee is not None:
            assert await rail.balance(payee) == before[code], code
    assert [answer(r, rail) for r in await send_batch(rail, envs)] == [*cases, "accepted"]
    for code, (env, _payee) in cases.items():   # and a single delivery reads the same record
        assert await single_answer(rail, env) == code
    assert await rail.balance(ok) == 99
    await assert_pearl_balanced(rail)


async def test_a_sweep_past_the_cap_and_a_refund_of_nothing_are_booked_in_the_batch(
        credit_rail):
    """A credit past the cap sweeps the excess to the payee's deposit account (and its e-CNY
    back to the vault); a refund naming no payment of the payee is refused; all in one
    batch, each payee's credits in the order central sent them."""
    rail = credit_rail
    linked = await rail.funded_wallet(B, yuan(499_990), kyc_class=2,
                                      linked_deposit_fen=yuan(10))
    other, third = await rail.open_wallet(B), await rail.open_wallet(B)
    before = (fast(rail).booked, fast(rail).batches)
    deposit = await rail.deposit_balance(linked)
    refund = message2(rail, other, 300, refund_of="yangtze.00000000000000000000000000000001")
    batch = [message2(rail, linked, yuan(30)), message2(rail, linked, 100), refund,
             message2(rail, other, 50), message2(rail, third, 60)]
    results = await send_batch(rail, batch)
    assert [answer(r, rail) for r in results] == ["accepted", "accepted", "not_refundable",
                                                  "accepted", "accepted"]
    assert (fast(rail).booked, fast(rail).batches) == (before[0] + 5, before[1] + 1)
    assert await rail.balance(linked) == yuan(500_000)
    assert await rail.deposit_balance(linked) == deposit + yuan(20) + 100
    assert await rail.balance(other) == 50 and await rail.balance(third) == 60
    await assert_pearl_balanced(rail)


async def test_details_no_payment_carries_are_refused_and_recorded_without_them(credit_rail):
    rail = credit_rail
    payee = await rail.open_wallet(B)
    odd = message2(rail, payee, 40, order_id="O" * 30)
    assert [answer(r, rail) for r in await send_batch(rail, [odd])] == ["invalid_field"]
    assert pearl_sql(rail, "SELECT status, code, order_id FROM transactions "
                           "WHERE transfer_id = %s", odd.id) == [("rejected", "invalid_field",
                                                                  None)]
    assert await single_answer(rail, odd) == "invalid_field"
    assert await rail.balance(payee) == 0
    await assert_pearl_balanced(rail)


async def test_a_batch_and_single_deliveries_answer_and_book_alike(credit_rail):
    """The same credits, one set in a batch and its twin one by one (a batch of one each):
    the same answers, balances and history."""
    rail = credit_rail

    async def wallets():
        capped = await rail.funded_wallet(B, yuan(9_990), kyc_class=4)
        shop = await rail.open_wallet(B, kind="merchant", kyc_class=1)
        order = await rail.client(shop).create_order(shop.key, shop.wallet_id, 800, "twin")
        return capped, shop, order["order_id"]

    def credits(capped, shop, order_id):
        return [message2(rail, capped, yuan(5)), message2(rail, capped, yuan(6)),
                message2(rail, shop, 800, order_id=order_id, payer_wallet="yangtze.0000000000a1"),
                message2(rail, shop, 800, order_id=order_id), message2(rail, shop, 1, memo="x"),
                message2(rail, "pearl.0000000000000404", 5)]

    batch_side, standard_side = await wallets(), await wallets()
    batch_answers = [answer(r, rail) for r in await send_batch(rail, credits(*batch_side))]
    standard_answers = [await single_answer(rail, e) for e in credits(*standard_side)]
    assert batch_answers == standard_answers == [
        "accepted", "balance_cap_exceeded", "accepted", "order_paid", "invalid_field",
        "unknown_wallet"]

    def comparable(items):
        keep = ("kind", "status", "code", "amount_fen", "counterparty_bank")
        return sorted(tuple(i.get(k) for k in keep) + (bool(i.get("order_id")),)
                      for i in items)

    for fast_wallet, standard_wallet in zip(batch_side[:2], standard_side[:2]):
        assert await rail.balance(fast_wallet) == await rail.balance(standard_wallet)
        assert comparable(await incoming(rail, fast_wallet)) == \
            comparable(await incoming(rail, standard_wallet))
    for order_id in (batch_side[2], standard_side[2]):
        assert (await rail.client(B).order(order_id))["status"] == "paid"
    await assert_pearl_balanced(rail)


async def test_envelopes_not_from_central_get_their_typed_error_in_place(credit_rail):
    rail = credit_rail
    payee = await rail.open_wallet(B)
    forged = seal(SigningKey.generate(), INTERBANK_CREDIT, {
        "transfer_id": "yangtze.forged0002", "from_bank": "yangtze", "to_bank": B,
        "amount_fen": 5, "payee_wallet": payee.wallet_id}, id="yangtze.forged0002")
    elsewhere = seal(rail.central_key, INTERBANK_CREDIT, {
        "transfer_id": "yangtze.elsewhere1", "from_bank": "yangtze", "to_bank": "yangtze",
        "amount_fen": 5, "payee_wallet": payee.wallet_id}, id="yangtze.elsewhere1")
    results = await send_batch(rail, [forged, "not an envelope", elsewhere,
                                      message2(rail, payee, 7)])
    assert [answer(r, rail) for r in results] == ["unknown_key", "unsigned", "invalid_field",
                                                  "accepted"]
    assert await rail.balance(payee) == 7


async def test_a_batch_the_database_fails_is_credited_again_one_by_one(credit_rail,
                                                                       monkeypatch):
    """The batch's statement runs, then the transaction fails: nothing of it is kept, and
    each transfer is credited again alone, exactly once."""
    rail = credit_rail
    payees = [await rail.open_wallet(B) for _ in range(3)]
    real_write = PgTx.write_credits
    writes: list[int] = []

    async def first_write_fails(self, plan):
        written = await real_write(self, plan)
        writes.append(len(plan.written))
        if len(writes) == 1:
            raise ConnectionResetError("the database went away mid-batch")
        return written

    monkeypatch.setattr(PgTx, "write_credits", first_write_fails)
    envs = [message2(rail, p, 10 + n) for n, p in enumerate(payees)]
    assert [answer(r, rail) for r in await send_batch(rail, envs)] == ["accepted"] * 3
    monkeypatch.undo()
    assert writes == [3, 1, 1, 1]
    assert [await rail.balance(p) for p in payees] == [10, 11, 12]
    assert pearl_sql(rail, "SELECT count(*) FROM transactions WHERE transfer_id = ANY(%s)",
                     [e.id for e in envs]) == [(3,)]
    assert [answer(r, rail) for r in await send_batch(rail, envs)] == ["accepted"] * 3
    await assert_pearl_balanced(rail)


async def test_a_credit_the_database_keeps_failing_gets_a_typed_error_and_moves_nothing(
        credit_rail, monkeypatch):
    """No answer is not a refusal: central sends it again, and then it is credited once."""
    rail = credit_rail
    payee = await rail.open_wallet(B)

    async def always_fails(self, plan):
        raise ConnectionResetError("the database is away")

    monkeypatch.setattr(PgTx, "write_credits", always_fails)
    env = message2(rail, payee, 25)
    assert [answer(r) for r in await send_batch(rail, [env])] == ["service_unavailable"]
    response = await rail.post_raw(B, "/v1/interbank/credits", env)
    rail_support.assert_refused(response, 503, "service_unavailable")
    monkeypatch.undo()
    assert await rail.balance(payee) == 0
    assert [answer(r, rail) for r in await send_batch(rail, [env])] == ["accepted"]
    assert await rail.balance(payee) == 25
    await assert_pearl_balanced(rail)


async def send_sealed(rail, envelopes: list, key: SigningKey | None = None
                      ) -> httpx.Response:
    """Message 2s as central sends them: one sealed batch (rail_protocol/batches.py)."""
    return await rail.post_raw(B, "/v1/interbank/credits/sealed-batch",
                               seal_batch(key or rail.central_key, "credits", envelopes))


def unsigned_message2(rail, payee, amount_fen: int) -> Envelope:
    transfer_id = f"yangtze.{secrets.token_hex(16)}"
    return unsigned(rail.central_key.key_id, INTERBANK_CREDIT, {
        "transfer_id": transfer_id, "from_bank": "yangtze", "to_bank": B,
        "amount_fen": amount_fen, "payee_wallet": payee.wallet_id}, id=transfer_id,
        ttl_ms=MAX_TTL_MS)


async def test_a_sealed_batch_credits_as_the_signed_one_does_under_one_signature_each_way(
        credit_rail):
    rail = credit_rail
    person = await rail.open_wallet(B, kyc_class=3)
    envs = [unsigned_message2(rail, person, 100 + n) for n in range(3)]
    envs.append(unsigned_message2(rail, SimpleNamespace(wallet_id="pearl.00000000000badee"), 7))
    before = fast(rail).booked
    response = await send_sealed(rail, envs)
    assert response.status_code == 200, response.text
    pearl_key = rail.banks[B].node.key.public_key
    statements = open_results(response.json(), pearl_key, len(envs))
    assert statements is not None, "the answer is not under pearl's one signature"
    assert [(s["transfer_id"], s["accepted"], s.get("code")) for s in statements] == [
        *((e.id, True, None) for e in envs[:3]), (envs[3].id, False, "unknown_wallet")]
    assert all("sig" not in item["result"] for item in response.json()["results"])
    assert fast(rail).booked == before + 4 and await rail.balance(person) == 303
    # the same message 2 sent again, signed alone, is the same instruction: answered the same
    again = sign(rail.central_key, envs[0])
    assert await single_answer(rail, again) == "accepted"
    assert await rail.balance(person) == 303
    await assert_pearl_balanced(rail)


async def test_a_sealed_batch_not_sealed_by_central_is_refused_whole_and_moves_nothing(
        credit_rail):
    rail = credit_rail
    person = await rail.open_wallet(B, kyc_class=3)
    forger = SigningKey.generate()
    envs = [unsigned(forger.key_id, INTERBANK_CREDIT, unsigned_message2(rail, person, 500).body,
                     id=f"yangtze.{secrets.token_hex(16)}", ttl_ms=MAX_TTL_MS)]
    forged = await send_sealed(rail, envs, key=forger)
    assert forged.status_code in (401, 403) and forged.json()["error"]["code"] == "unknown_key"
    good = [unsigned_message2(rail, person, 500), unsigned_message2(rail, person, 600)]
    sealed = seal_batch(rail.central_key, "credits", good)
    sealed["credits"][1]["body"]["amount_fen"] = 60_000       # altered on the way
    altered = await rail.post_raw(B, "/v1/interbank/credits/sealed-batch", sealed)
    assert altered.json()["error"]["code"] == "bad_signature"
    assert await rail.balance(person) == 0
    await assert_pearl_balanced(rail)


async def test_real_interbank_payments_credited_in_a_batch_keep_the_rail_balanced(
        pg_databases, tmp_path, monkeypatch):
    """Payments from yangtze to pearl while central cannot reach pearl: central prepares
    them and keeps retrying. Their message 2s then reach pearl in one batch (as central
    sends them), then central's own deliveries get the stored answers, settle, and the
    whole rail balances to the fen."""
    apps: dict = {}
    monkeypatch.setattr(rail_support, "create_bank_app", with_credit_engine(apps))
    async with rail_support.start_rail(pg_databases, tmp_path) as rail:
        payers = [await rail.funded_wallet("yangtze", yuan(100)) for _ in range(3)]
        person = await rail.open_wallet(B, kyc_class=4)
        shop = await rail.open_wallet(B, kind="merchant", kyc_class=1)
        order = await rail.client(shop).create_order(shop.key, shop.wallet_id, 1234, "xbank")
        rail.net.down.add(f"{B}.test")
        sent = [await rail.client(payers[0]).send("/v1/payments", rail.pay_envelope(
                    payers[0], person, 500)),
                await rail.client(payers[1]).send("/v1/payments", rail.pay_envelope(
                    payers[1], shop, 1234, order_id=order["order_id"])),
                await rail.client(payers[2]).send("/v1/payments", rail.pay_envelope(
                    payers[2], "pearl.00000000000badee", 700))]
        assert [s["status"] for s in sent] == ["processing"] * 3
        with psycopg.connect(rail_support.psycopg_url(rail.central_database_url)) as conn:
            prepared = conn.execute(
                "SELECT transfer_id, from_bank, to_bank, amount_fen, payee_wallet, details "
                "FROM transfers WHERE status = 'prepared' ORDER BY created_ms").fetchall()
        assert len(prepared) == 3
        envs = []
        for transfer_id, from_bank, to_bank, amount, payee_id, details in prepared:
            body = {"transfer_id": transfer_id, "from_bank": from_bank, "to_bank": to_bank,
                    "amount_fen": amount, "payee_wallet": payee_id}
            if details is not None:
                body["details"] = orjson.loads(details)
            envs.append(seal(rail.central_key, INTERBANK_CREDIT, body, id=transfer_id,
                             ttl_ms=MAX_TTL_MS))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[B]),
                                     base_url="http://pearl.test") as direct:
            response = await direct.post("/v1/interbank/credits/batch",
                                         json={"credits": [e.to_dict() for e in envs]})
        assert response.status_code == 200, response.text
        assert [answer(r, rail) for r in response.json()["results"]] == \
            ["accepted", "accepted", "unknown_wallet"]
        assert apps[B].state.credits.booked >= 3
        rail.net.down.discard(f"{B}.test")
        finals = [await rail.wait_for_payment(p, s["payment_id"], timeout_s=60)
                  for p, s in zip(payers, sent)]
        assert [f["status"] for f in finals] == ["settled", "settled", "rejected"]
        assert await rail.balance(person) == 500 and await rail.balance(shop) == 1234
        assert await rail.balance(payers[2]) == yuan(100)
        assert (await rail.client(shop).order(order["order_id"]))["status"] == "paid"
        await rail.assert_balanced()
        # central delivered the rest in sealed batches: pearl has the route
        central = rail.net.apps["central.test"].app.state.central
        assert central.transfers.banks.without_sealed_route.peers() == set()


async def test_a_transfer_recorded_by_another_delivery_mid_batch_is_answered_from_the_record(
        credit_rail, monkeypatch):
    """Another process credits one of the batch's transfers after the batch looked for it
    and before it writes: the unique key skips it, the batch is redone without it, and the
    stored answer is given: one credit, never two."""
    rail = credit_rail
    shop = await rail.open_wallet(B, kind="merchant", kyc_class=1)
    person = await rail.open_wallet(B, kyc_class=4)
    raced, calm = message2(rail, shop, 333), message2(rail, person, 44)
    real_write = PgTx.write_credits
    writes: list[int] = []
    rival: list[str] = []

    async def write_after_a_rival(self, plan):
        if not rival:   # another delivery of `raced` commits first
            rival.append("sent")
            assert await single_answer(rail, raced) == "accepted"
        writes.append(len(plan.written))
        return await real_write(self, plan)

    monkeypatch.setattr(PgTx, "write_credits", write_after_a_rival)
    before = (fast(rail).booked, fast(rail).batches)
    results = await send_batch(rail, [raced, calm])
    monkeypatch.undo()
    assert [answer(r, rail) for r in results] == ["accepted", "accepted"]
    assert writes == [1, 2, 1], "the batch was not redone without the raced transfer"
    assert (fast(rail).booked, fast(rail).batches) == (before[0] + 2, before[1] + 2)
    assert await rail.balance(shop) == 333 and await rail.balance(person) == 44
    assert pearl_sql(rail, "SELECT count(*) FROM transactions WHERE transfer_id = %s",
                     raced.id) == [(1,)]
    await assert_pearl_balanced(rail)


async def test_money_out_committed_while_the_credit_waited_for_the_wallet_keeps_its_room(
        credit_rail):
    """A capped wallet's payment to another bank holds its row and commits while a credit
    to it waits for that row: the credit counts the amount in flight (it may come back) as
    if it had come after the payment, and is refused past the cap. The lock's own statement
    started before the payment committed: what it reads of the payment must not come from
    that statement's snapshot."""
    rail = credit_rail
    full = await rail.funded_wallet(B, yuan(10_000), kyc_class=4)     # capped at 10,000
    database = rail_support.psycopg_url(rail.banks[B].database_url)
    payment = await psycopg.AsyncConnection.connect(database)
    watcher = await psycopg.AsyncConnection.connect(database, autocommit=True)
    out = yuan(1_000)
    try:
        # The payment out as the payment batch writes it: row locked, debited, in flight.
        await payment.execute("SELECT 1 FROM wallets WHERE wallet_id = %s FOR UPDATE",
                              (full.wallet_id,))
        await payment.execute("UPDATE wallets SET balance_fen = balance_fen - %s "
                              "WHERE wallet_id = %s", (out, full.wallet_id))
        await payment.execute(
            "INSERT INTO transactions (kind, signer, instruction_id, digest, status, "
            "payer_wallet, amount_fen, counterparty_bank, result, expires_ms, created_ms, "
            "updated_ms) VALUES ('interbank_out', 'k', 'raced-out', 'd', 'processing', %s, "
            "%s, 'yangtze', '{}', 0, 0, 0)", (full.wallet_id, out))
        credit = asyncio.create_task(send_batch(rail, [message2(rail, full, out)]))

        await eventually(lambda: lock_waiters(watcher, "%FROM wallets%FOR UPDATE%"),
                         timeout_s=5, what="the credit to wait for the wallet")
        await payment.commit()
        results = await asyncio.wait_for(credit, 10)
        assert [answer(r, rail) for r in results] == ["balance_cap_exceeded"]
    finally:
        # Undo the stand-in payment (central never saw it), so the books still balance.
        await payment.rollback()
        await payment.execute("DELETE FROM transactions WHERE instruction_id = 'raced-out'")
        await payment.execute("UPDATE wallets SET balance_fen = balance_fen + %s "
                              "WHERE wallet_id = %s", (out, full.wallet_id))
        await payment.commit()
        await payment.close()
        await watcher.close()
    assert await rail.balance(full) == yuan(10_000)
    await assert_pearl_balanced(rail)
