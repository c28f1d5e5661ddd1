"""Money rules on BOTH databases the rail runs on, PostgreSQL and the demo's embedded SQLite:
requests racing each other, and money crossing banks both ways. Every race ends with exactly
the outcomes the rules allow, and the whole rail's audit balances to the fen afterwards.

Each test sends all its requests at once (one process plays every party); a rule that is
checked on a stale read instead of a locked one lets two of them through."""

import asyncio

import httpx
import pytest

from rail_protocol.envelope import seal
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import CHARGE_CODE, MANDATE_CHARGE, PAY
from rail_protocol.money import yuan
from rail_protocol.payment_code import make_code
from tests.support.rail import Rail, outcomes
from tests.support.rail import rail_on_both_databases as rail  # noqa: F401

pytestmark = pytest.mark.integration


async def all_at_once(rail: Rail, bank_id: str, path: str, envelopes) -> list[httpx.Response]:
    """POST every envelope to `path` concurrently and gather the raw answers."""
    return list(await asyncio.gather(*(rail.post_raw(bank_id, path, e) for e in envelopes)))


async def test_200_payers_paying_one_payee_at_once_all_arrive(rail):
    payee = await rail.open_wallet("yangtze", kyc_class=1)
    payers = [await rail.funded_wallet("yangtze", 100, kyc_class=4) for _ in range(200)]
    amounts = [1 + n % 60 for n in range(200)]
    answers = await all_at_once(rail, "yangtze", "/v1/payments", [
        rail.pay_envelope(payer, payee, amount)
        for payer, amount in zip(payers, amounts, strict=True)])
    assert outcomes(answers) == {"settled": 200}
    assert await rail.balance(payee) == sum(amounts)
    for payer, amount in zip(payers[:20], amounts[:20], strict=True):
        assert await rail.balance(payer) == 100 - amount
    await rail.assert_balanced()


async def test_200_payments_into_one_capped_payee_stop_at_its_cap(rail):
    """A class-4 payee may hold 10,000 yuan: 200 payments of 100 yuan, 100 of them fit."""
    payee = await rail.open_wallet("yangtze", kyc_class=4)
    payer = await rail.funded_wallet("yangtze", yuan(20_000), kyc_class=1)
    answers = await all_at_once(rail, "yangtze", "/v1/payments", [
        rail.pay_envelope(payer, payee, yuan(100)) for _ in range(200)])
    assert outcomes(answers) == {"settled": 100, "balance_cap_exceeded": 100}
    assert await rail.balance(payee) == yuan(10_000)
    assert await rail.balance(payer) == yuan(10_000)
    await rail.assert_balanced()


async def test_one_order_paid_twice_at_once_settles_once(rail):
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    client = rail.client("yangtze")
    order = await client.create_order(shop.key, shop.wallet_id, 1234, reference="race-1")
    payers = [await rail.funded_wallet("yangtze", yuan(100)) for _ in range(2)]
    twice = [payers[0], payers[0], payers[1], payers[1]]
    answers = await all_at_once(rail, "yangtze", "/v1/payments", [
        seal(p.key, PAY, {"payer_wallet": p.wallet_id, "payee_wallet": shop.wallet_id,
                          "amount_fen": 1234, "order_id": order["order_id"]})
        for p in twice])
    assert outcomes(answers) == {"settled": 1, "order_paid": 3}
    assert await rail.balance(shop) == 1234
    assert sorted([await rail.balance(p) for p in payers]) == [yuan(100) - 1234, yuan(100)]
    assert (await client.order(order["order_id"]))["status"] == "paid"
    await rail.assert_balanced()


async def test_mandate_charges_racing_the_period_cap_stop_at_it(rail):
    """A cap of 100 yuan a period: of 20 charges of 30 yuan, 3 fit."""
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    payer = await rail.funded_wallet("yangtze", yuan(1_000), kyc_class=3)
    client = rail.client("yangtze")
    mandate = await client.create_mandate(
        payer.key, payer.wallet_id, shop.wallet_id, shop.key.public_key.to_text(),
        per_payment_cap_fen=yuan(50), period_cap_fen=yuan(100))
    answers = await all_at_once(rail, "yangtze", "/v1/merchant/mandate-charges", [
        seal(shop.key, MANDATE_CHARGE, {
            "merchant_wallet": shop.wallet_id, "payer_wallet": payer.wallet_id,
            "mandate_id": mandate["mandate_id"], "amount_fen": yuan(30)})
        for _ in range(20)])
    assert outcomes(answers) == {"settled": 3, "mandate_cap_exceeded": 17}
    assert await rail.balance(shop) == yuan(90)
    assert await rail.balance(payer) == yuan(910)
    view = (await client.mandates(payer.key, payer.wallet_id))["mandates"][0]
    assert view["used_this_period_fen"] == yuan(90)
    await rail.assert_balanced()


async def test_refunds_racing_the_refundable_amount_never_pass_it(rail):
    """Six refunds of 300 fen on a payment of 1,000: three fit, the rest are refused."""
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    payer = await rail.funded_wallet("yangtze", 1_000)
    paid = await rail.pay(payer, shop, 1_000)
    client = rail.client("yangtze")
    answers = await all_at_once(rail, "yangtze", "/v1/merchant/refunds", [
        client.refund_envelope(shop.key, shop.wallet_id, paid["payment_id"], 300)
        for _ in range(6)])
    assert outcomes(answers) == {"settled": 3, "refund_exceeds_payment": 3}
    assert await rail.balance(payer) == 900
    assert await rail.balance(shop) == 100
    await rail.assert_balanced()


async def test_payments_racing_the_daily_cap_stop_exactly_at_it(rail):
    """A class-4 wallet may pay 5,000 yuan a day: 5 of 10 payments of 1,000 yuan."""
    payer = await rail.funded_wallet("yangtze", yuan(10_000), kyc_class=4)
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    answers = await all_at_once(rail, "yangtze", "/v1/payments", [
        rail.pay_envelope(payer, shop, yuan(1_000)) for _ in range(10)])
    assert outcomes(answers) == {"settled": 5, "daily_cap_exceeded": 5}
    view = await rail.wallet_view(payer)
    assert (view["balance_fen"], view["spent_today_fen"]) == (yuan(5_000), yuan(5_000))
    assert await rail.balance(shop) == yuan(5_000)
    await rail.assert_balanced()


async def test_one_payment_code_charged_twice_at_once_pays_once(rail):
    """Two cashiers scan the same code at once (or one POS sends it twice): one charge."""
    payer = await rail.funded_wallet("yangtze", yuan(100))
    shops = [await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
             for _ in range(2)]
    code = make_code(payer.key, payer.wallet_id)
    answers = await all_at_once(rail, "yangtze", "/v1/merchant/charges", [
        seal(shop.key, CHARGE_CODE, {"merchant_wallet": shop.wallet_id, "code": code,
                                     "amount_fen": 1500})
        for shop in (shops[0], shops[1], shops[0], shops[1])])
    counted = outcomes(answers)
    # The shop that won may see its charge twice (the same instruction answered again);
    # the other shop is always refused.
    assert counted["settled"] in (1, 2) and counted["payment_code_used"] == 4 - counted["settled"]
    assert sorted([await rail.balance(s) for s in shops]) == [0, 1500]
    assert await rail.balance(payer) == yuan(100) - 1500
    await rail.assert_balanced()


async def test_both_databases_run_the_one_batch_engine(rail):
    """Payments and orders are decided and written in batches on SQLite as on PostgreSQL,
    not by a second code path."""
    engine = rail.net.apps["yangtze.test"].app.state.payments
    before = (engine.payments.items, engine.orders.items)
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    payer = await rail.funded_wallet("yangtze", 5_000)
    order = await rail.client("yangtze").create_order(shop.key, shop.wallet_id, 700, "engine")
    await rail.client(payer).pay(payer.key, payer.wallet_id, shop.wallet_id, 700,
                                 order_id=order["order_id"])
    assert engine.orders.items == before[1] + 1
    assert engine.payments.items >= before[0] + 2   # the funding and the order's payment


async def test_a_refund_from_another_bank_goes_back_the_way_the_payment_came(rail):
    """A payer at yangtze tops up on use to pay a shop at pearl; the shop refunds in two
    parts. What came from the deposit account goes back there first, the rest to the
    wallet, and refunds past what was paid are refused by the shop's bank."""
    payer = await rail.funded_wallet("yangtze", yuan(100), kyc_class=2,
                                     linked_deposit_fen=yuan(1_000), topup_on_use=True)
    shop = await rail.open_wallet("pearl", kind="merchant", kyc_class=1)
    paid = await rail.pay(payer, shop, yuan(250))
    assert paid["pulled_from_deposit_fen"] == yuan(150)
    incoming = await rail.client(shop).history(shop.key, shop.wallet_id)
    received = next(i for i in incoming["items"] if i["kind"] == "interbank_in")
    client = rail.client(shop)
    first = await client.refund(shop.key, shop.wallet_id, received["payment_id"], yuan(100))
    first = await rail.finished(shop, first)
    assert first["status"] == "settled"
    assert await rail.deposit_balance(payer) == yuan(1_000) - yuan(50)   # 100 of 150 back
    assert await rail.balance(payer) == 0
    second = await rail.finished(shop, await client.refund(
        shop.key, shop.wallet_id, received["payment_id"], yuan(150)))
    assert second["status"] == "settled"
    assert await rail.deposit_balance(payer) == yuan(1_000)               # the other 50
    assert await rail.balance(payer) == yuan(100)                         # then the wallet
    with pytest.raises(RailError) as over:
        await client.refund(shop.key, shop.wallet_id, received["payment_id"], 1)
    assert over.value.code == "refund_exceeds_payment"
    history = await rail.client(payer).history(payer.key, payer.wallet_id)
    backs = [i for i in history["items"] if i["kind"] == "interbank_in"]
    assert sorted(i["amount_fen"] for i in backs) == [yuan(100), yuan(150)]
    assert {i.get("refund_of") for i in backs} == {paid["payment_id"]}
    await rail.assert_balanced()


async def test_credits_past_the_cap_sweep_to_the_deposit_account_here_and_from_afar(rail):
    """A class-2 payee near its cap with a linked deposit account: a payment from a wallet
    here and one from the other bank each land up to the cap, the rest in the account."""
    payee = await rail.funded_wallet("yangtze", yuan(499_990), kyc_class=2,
                                     linked_deposit_fen=0)
    here = await rail.funded_wallet("yangtze", yuan(100))
    afar = await rail.funded_wallet("pearl", yuan(100))
    paid = await rail.pay(here, payee, yuan(30))
    assert (paid["status"], paid["swept_to_deposit_fen"]) == ("settled", yuan(20))
    assert await rail.deposit_balance(payee) == yuan(20)
    across = await rail.pay(afar, payee, yuan(40))
    assert across["status"] == "settled"
    assert await rail.balance(payee) == yuan(500_000)
    assert await rail.deposit_balance(payee) == yuan(60)
    await rail.assert_balanced()
