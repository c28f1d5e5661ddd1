"""The bank's payment engine (bank/payment_engine.py) on real PostgreSQL and Redis: payments
batched many to a transaction, with their answers, refusals, idempotency and books; deposit
money and mandates moved in the batch too.

The module's rail keeps each bank app (`apps`), so tests can read the engine's counters."""

import asyncio

import httpx
import pytest

from bank import payment_engine
from bank.merchants import CREATE_ORDER
from rail_protocol.envelope import seal
from rail_protocol.errors import RailError
from rail_protocol.money import yuan
from rail_protocol.payment_code import make_code
from tests.support import rail as rail_support
from tests.support.rail import outcomes

pytestmark = pytest.mark.integration

# The keys of a settled same-bank payment's answer, as `Bank._pay_here` makes it.
ANSWER_KEYS = {"status", "amount_fen", "payer_wallet", "payee_wallet", "balance_after_fen",
               "pulled_from_deposit_fen", "swept_to_deposit_fen", "payment_id", "created_ms"}


@pytest.fixture(scope="module")
async def fast_rail(pg_databases, tmp_path_factory):
    """A rail whose bank apps are kept: `apps` maps bank id to the app."""
    apps = {}
    create = rail_support.create_bank_app

    def kept(settings=None, bank=None):
        app = create(settings, bank=bank)
        apps[settings.bank_id] = app
        return app

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rail_support, "create_bank_app", kept)
        async with rail_support.start_rail(pg_databases, tmp_path_factory.mktemp("rail"),
                                           db_pool_size=10) as started:
            started.apps = apps
            yield started


def fast(rail, bank_id: str = "yangtze") -> payment_engine.PaymentEngine:
    return rail.apps[bank_id].state.payments


async def send_all(rail, bank_id: str, envelopes) -> list[httpx.Response]:
    return await asyncio.gather(*(rail.send_payment(bank_id, e) for e in envelopes))


async def test_a_payment_is_batched_settles_and_answers_with_every_field(fast_rail):
    rail = fast_rail
    before = fast(rail).payments.items
    payer = await rail.funded_wallet("yangtze", yuan(100))
    payee = await rail.open_wallet("yangtze")
    answered = fast(rail).stages()["calls"]["from wallets"]
    paid = await rail.pay(payer, payee, 1234, memo="lunch")
    assert set(paid) == ANSWER_KEYS
    assert paid["status"] == "settled" and paid["balance_after_fen"] == yuan(100) - 1234
    assert fast(rail).payments.items > before, "the payment did not go through the batcher"
    # the dashboard's stages count the wallet's call, with its time
    calls = fast(rail).stages()["calls"]["from wallets"]
    assert calls["calls"] == answered["calls"] + 1 and calls["call_us"] > answered["call_us"]
    assert await rail.balance(payee) == 1234
    view = await rail.client(payer).payment(payer.key, payer.wallet_id, paid["payment_id"])
    assert view["memo"] == "lunch" and view["status"] == "settled"
    await rail.assert_balanced()


async def test_a_popular_merchant_paid_by_300_payers_at_once_gets_every_fen(fast_rail):
    rail = fast_rail
    merchant = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    payers = await rail.open_many("yangtze", 300)
    await rail.payroll("yangtze", payers, 1000)
    batches = fast(rail).payments.batches
    answers = await send_all(rail, "yangtze", [
        rail.pay_envelope(p, merchant, 100 + n) for n, p in enumerate(payers)])
    assert outcomes(answers) == {"settled": 300}
    assert fast(rail).payments.batches - batches < 300, "nothing was batched"
    assert await rail.balance(merchant) == sum(100 + n for n in range(300))
    await rail.assert_balanced()


async def test_wallets_paying_each_other_in_a_ring_never_deadlock(fast_rail):
    """Capped payees are locked, in wallet-id order, across concurrent batches."""
    rail = fast_rail
    ring = [await rail.funded_wallet("yangtze", yuan(50)) for _ in range(8)]
    envelopes = [rail.pay_envelope(ring[i], ring[(i + 1) % len(ring)], 100 + i)
                 for _ in range(5) for i in range(len(ring))]
    answers = await send_all(rail, "yangtze", envelopes)
    assert outcomes(answers) == {"settled": len(envelopes)}
    for i, wallet in enumerate(ring):
        received = 5 * (100 + (i - 1) % len(ring))
        assert await rail.balance(wallet) == yuan(50) - 5 * (100 + i) + received
    await rail.assert_balanced()


async def test_one_wallet_spending_from_200_requests_settles_only_what_it_can_afford(
        fast_rail):
    rail = fast_rail
    payer = await rail.funded_wallet("yangtze", 137 * 100 + 42, kyc_class=1)
    payee = await rail.open_wallet("yangtze", kyc_class=3)
    answers = await send_all(rail, "yangtze", [rail.pay_envelope(payer, payee, 100)
                                               for _ in range(200)])
    assert outcomes(answers) == {"settled": 137, "insufficient_funds": 63}
    after = sorted(a.json()["balance_after_fen"] for a in answers if a.status_code == 200)
    assert after == [42 + 100 * n for n in range(137)]
    assert await rail.balance(payer) == 42
    await rail.assert_balanced()


async def test_a_refusal_is_recorded_and_a_repeat_gets_the_same_refusal(fast_rail):
    rail = fast_rail
    payer = await rail.funded_wallet("yangtze", 500)
    payee = await rail.open_wallet("yangtze")
    env = rail.pay_envelope(payer, payee, 501)
    for _ in range(2):
        response = await rail.send_payment("yangtze", env)
        rail_support.assert_refused(response, 409, "insufficient_funds")
    history = await rail.client(payer).history(payer.key, payer.wallet_id)
    rejected = [i for i in history["items"] if i["instruction_id"] == env.id]
    assert [(i["status"], i["code"]) for i in rejected] == [("rejected", "insufficient_funds")]
    assert await rail.balance(payer) == 500 and await rail.balance(payee) == 0


async def test_an_instruction_sent_five_times_at_once_and_again_later_is_paid_once(fast_rail):
    rail = fast_rail
    payer = await rail.funded_wallet("yangtze", yuan(10))
    payee = await rail.open_wallet("yangtze")
    env = rail.pay_envelope(payer, payee, 700)
    answers = await send_all(rail, "yangtze", [env] * 5)
    answers.append(await rail.send_payment("yangtze", env))
    bodies = [a.json() for a in answers]
    assert {b["payment_id"] for b in bodies} == {bodies[0]["payment_id"]}
    assert sum(1 for b in bodies if not b.get("repeated")) == 1
    assert await rail.balance(payer) == yuan(10) - 700
    assert await rail.balance(payee) == 700
    other = seal(payer.key, env.type, {**env.body, "amount_fen": 701}, id=env.id)
    rail_support.assert_refused(await rail.send_payment("yangtze", other), 409,
                                "instruction_id_reused")
    await rail.assert_balanced()


async def test_an_order_raced_by_ten_wallets_is_paid_once(fast_rail):
    rail = fast_rail
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    client = rail.client(shop)
    order = await client.create_order(shop.key, shop.wallet_id, 2580, "table-7")
    assert order["status"] == "created" and order["payment_id"] is None
    assert order == await client.order(order["order_id"]), "the fast view is the stored one"
    payers = [await rail.funded_wallet("yangtze", yuan(100)) for _ in range(10)]
    answers = await send_all(rail, "yangtze", [
        rail.pay_envelope(p, shop, 2580, order_id=order["order_id"]) for p in payers])
    assert outcomes(answers) == {"settled": 1, "order_paid": 9}
    paid = next(a.json() for a in answers if a.status_code == 200)
    assert paid["order_id"] == order["order_id"] and set(paid) == ANSWER_KEYS | {"order_id"}
    view = await client.order(order["order_id"])
    assert view["status"] == "paid" and view["payment_id"] == paid["payment_id"]
    wrong = rail.pay_envelope(payers[0], shop, 1, order_id=order["order_id"])
    rail_support.assert_refused(await rail.send_payment("yangtze", wrong), 409, "order_paid")
    unknown = rail.pay_envelope(payers[0], shop, 1, order_id="O0000000000000000")
    rail_support.assert_refused(await rail.send_payment("yangtze", unknown), 404,
                                "unknown_order")
    await rail.assert_balanced()


async def test_an_order_reference_gives_the_same_order_or_is_refused(fast_rail):
    rail = fast_rail
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    client = rail.client(shop)
    first = await client.create_order(shop.key, shop.wallet_id, 990, "ref-1")
    again = await client.create_order(shop.key, shop.wallet_id, 990, "ref-1")
    assert again["order_id"] == first["order_id"]
    with pytest.raises(RailError) as reused:
        await client.create_order(shop.key, shop.wallet_id, 991, "ref-1")
    assert reused.value.code == "order_reference_reused"
    person = await rail.open_wallet("yangtze")
    env = seal(person.key, CREATE_ORDER, {"merchant_wallet": person.wallet_id,
                                          "amount_fen": 5, "reference": "x"})
    response = await rail.post_raw("yangtze", "/v1/merchant/orders", env)
    rail_support.assert_refused(response, 403, "not_a_merchant")


async def test_deposit_money_and_mandates_are_moved_in_the_batch_too(fast_rail):
    """Top-up on use pulling from the deposit account (through an empty vault, refilled from
    central on the way), a credit swept past the cap, a charge under a mandate and a payee
    at another bank: all decided and written by the batch engine, none left to another
    path; a refund of the topped-up payment goes back to the deposit account first."""
    rail = fast_rail
    engine = fast(rail)
    before = engine.payments.items
    puller = await rail.funded_wallet("yangtze", 100, kyc_class=2, linked_deposit_fen=yuan(10),
                                      topup_on_use=True)
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    pulled = await rail.pay(puller, shop, 300)
    assert set(pulled) == ANSWER_KEYS and pulled["pulled_from_deposit_fen"] == 200
    assert await rail.deposit_balance(puller) == yuan(10) - 200
    refunded = await rail.client(shop).refund(shop.key, shop.wallet_id, pulled["payment_id"],
                                              250)
    assert refunded["to_deposit_fen"] == 200
    assert await rail.deposit_balance(puller) == yuan(10)
    assert await rail.balance(puller) == 50
    full = await rail.funded_wallet("yangtze", yuan(9_990), kyc_class=4)
    capped = await rail.funded_wallet("yangtze", yuan(499_990), kyc_class=2,
                                      linked_deposit_fen=0)
    swept = await rail.pay(full, capped, yuan(20))
    assert swept["swept_to_deposit_fen"] == yuan(10)
    assert await rail.deposit_balance(capped) == yuan(10)
    client = rail.client(shop)
    mandate = await client.create_mandate(full.key, full.wallet_id, shop.wallet_id,
                                          shop.key.public_key.to_text(),
                                          per_payment_cap_fen=yuan(5), period_cap_fen=yuan(8))
    charged = await client.mandate_charge(shop.key, shop.wallet_id, full.wallet_id,
                                          mandate["mandate_id"], yuan(5))
    assert charged["status"] == "settled"
    with pytest.raises(RailError) as capped_out:
        await client.mandate_charge(shop.key, shop.wallet_id, full.wallet_id,
                                    mandate["mandate_id"], yuan(5))
    assert capped_out.value.code == "mandate_cap_exceeded"
    far = await rail.open_wallet("pearl")
    across = await rail.pay(full, far, yuan(5))
    assert across["status"] == "settled" and "transfer_id" in across
    # three fundings, the pull, the sweep, two charges, the interbank payment: all batched
    assert engine.payments.items >= before + 8
    await rail.assert_balanced()


async def test_a_payment_code_is_charged_once(fast_rail):
    rail = fast_rail
    payer = await rail.funded_wallet("yangtze", yuan(100))
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    client = rail.client(shop)
    code = make_code(payer.key, payer.wallet_id)
    batches = fast(rail).payments.items
    charged = await client.charge_code(shop.key, shop.wallet_id, code, 1500)
    assert charged["status"] == "settled" and charged["payee_wallet"] == shop.wallet_id
    assert fast(rail).payments.items > batches
    again = await client.charge_code(shop.key, shop.wallet_id, code, 1500)
    assert again["repeated"] and again["payment_id"] == charged["payment_id"]
    with pytest.raises(RailError) as used:
        await client.charge_code(shop.key, shop.wallet_id, code, 1600)
    assert used.value.code == "payment_code_used"
    assert await rail.balance(payer) == yuan(100) - 1500
    await rail.assert_balanced()


async def test_a_merchants_webhook_is_queued_in_the_payments_transaction(fast_rail):
    rail = fast_rail
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    client = rail.client(shop)
    await client.merchant_settings(shop.key, shop.wallet_id, "http://127.0.0.1:9/hook")
    payer = await rail.funded_wallet("yangtze", yuan(10))
    paid = await rail.pay(payer, shop, 321)
    log = await client.webhook_deliveries(shop.key, shop.wallet_id)
    events = [d["event"] for d in log["deliveries"]]
    assert [(e["event"], e["payment_id"], e["amount_fen"], e["status"]) for e in events] == [
        ("payment.received", paid["payment_id"], 321, "settled")]


async def test_refunds_are_batched_exactly_once_and_only_by_the_merchant_paid(fast_rail):
    rail = fast_rail
    engine = fast(rail)
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    other = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    payer = await rail.funded_wallet("yangtze", yuan(10))
    paid = await rail.pay(payer, shop, 800)
    client = rail.client(shop)
    before = engine.payments.items
    env = client.refund_envelope(shop.key, shop.wallet_id, paid["payment_id"], 300)
    first = (await rail.post_raw("yangtze", "/v1/merchant/refunds", env)).json()
    again = (await rail.post_raw("yangtze", "/v1/merchant/refunds", env)).json()
    assert (first["status"], first["refund_of"], first["to_deposit_fen"]) == (
        "settled", paid["payment_id"], 0)
    assert again["repeated"] and again["payment_id"] == first["payment_id"]
    assert engine.payments.items >= before + 1
    assert await rail.balance(payer) == yuan(10) - 500 and await rail.balance(shop) == 500
    stolen = rail.client(other).refund_envelope(other.key, other.wallet_id,
                                                paid["payment_id"], 100)
    rail_support.assert_refused(await rail.post_raw("yangtze", "/v1/merchant/refunds", stolen),
                                409, "not_refundable")
    history = await rail.client(payer).history(payer.key, payer.wallet_id)
    assert [(i["kind"], i["amount_fen"]) for i in history["items"]
            if i.get("refund_of") == paid["payment_id"]] == [("refund", 300)]
    await rail.assert_balanced()


async def test_top_ups_and_redemptions_are_engine_items_through_the_vault(fast_rail):
    rail = fast_rail
    engine = fast(rail)
    wallet = await rail.linked_wallet("yangtze", deposit_fen=yuan(100))
    client = rail.client(wallet)
    before = engine.payments.items
    topped = await client.top_up(wallet.key, wallet.wallet_id, yuan(30))
    redeemed = await client.redeem(wallet.key, wallet.wallet_id, yuan(10))
    assert (topped["status"], topped["balance_after_fen"]) == ("settled", yuan(30))
    assert (redeemed["status"], redeemed["balance_after_fen"]) == ("settled", yuan(20))
    assert engine.payments.items == before + 2
    assert await rail.deposit_balance(wallet) == yuan(80)
    with pytest.raises(RailError) as short:
        await client.top_up(wallet.key, wallet.wallet_id, yuan(81))
    assert short.value.code == "insufficient_deposit"
    history = await client.history(wallet.key, wallet.wallet_id)
    assert [(i["kind"], i["status"]) for i in history["items"][:3]] == [
        ("top_up", "rejected"), ("redeem", "settled"), ("top_up", "settled")]
    await rail.assert_balanced()
