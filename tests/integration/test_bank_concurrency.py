"""Payments racing each other on real PostgreSQL: one wallet spending from many requests at
once never goes below zero nor past its daily cap, and a popular merchant paid by a
thousand payers at once is credited every fen. Rate limiting is off here."""

import asyncio
from collections import Counter

import httpx
import pytest

from rail_protocol.envelope import seal
from rail_protocol.money import yuan
from tests.support.rail import Rail, outcomes, start_rail

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def rail(pg_databases, tmp_path_factory):
    """One rail for the module, each bank with up to 20 database connections; every test
    races wallets of its own."""
    async with start_rail(pg_databases, tmp_path_factory.mktemp("rail"),
                          db_pool_size=10) as started:
        yield started


async def send_all(rail: Rail, bank_id: str, envelopes, *,
                   in_flight: int = 200) -> list[httpx.Response]:
    """Send every envelope at once, at most `in_flight` requests open at a time (one
    process plays all the payers; more would only queue for the bank's connection pool)."""
    gate = asyncio.Semaphore(in_flight)

    async def send(envelope) -> httpx.Response:
        async with gate:
            return await rail.send_payment(bank_id, envelope)

    return await asyncio.gather(*(send(e) for e in envelopes))


@pytest.mark.parametrize("can_afford, remainder_fen, payee_class", [
    (137, 42, 1),    # a merchant with no cap: credits are appended, only the payer is locked
    (150, 0, 3),     # a capped payee: both wallets are locked, in wallet-id order
])
async def test_200_concurrent_payments_from_one_wallet_settle_only_what_it_can_afford(
        rail, can_afford, remainder_fen, payee_class):
    amount = 100
    payer = await rail.funded_wallet("yangtze", can_afford * amount + remainder_fen,
                                     kyc_class=1)
    payee = await rail.open_wallet("yangtze", kyc_class=payee_class)
    envelopes = [rail.pay_envelope(payer, payee, amount) for _ in range(200)]
    answers = await send_all(rail, "yangtze", envelopes)
    assert outcomes(answers) == {"settled": can_afford,
                                 "insufficient_funds": 200 - can_afford}
    assert await rail.balance(payer) == remainder_fen
    assert await rail.balance(payee) == can_afford * amount
    after = sorted(a.json()["balance_after_fen"] for a in answers if a.status_code == 200)
    assert after == [remainder_fen + amount * n for n in range(can_afford)], \
        "every settled payment saw the balance the one before it left"
    await rail.assert_balanced()


async def test_concurrent_payments_to_another_bank_never_overdraw_the_payer(rail):
    payer = await rail.funded_wallet("yangtze", yuan(20), kyc_class=1)
    payee = await rail.open_wallet("pearl", kyc_class=1)
    envelopes = [rail.pay_envelope(payer, payee, yuan(1)) for _ in range(50)]
    answers = await send_all(rail, "yangtze", envelopes)
    refused = Counter(a.json()["error"]["code"] for a in answers if a.status_code != 200)
    assert refused == {"insufficient_funds": 30}
    final = [await rail.finished(payer, a.json()) for a in answers if a.status_code == 200]
    assert [f["status"] for f in final] == ["settled"] * 20
    assert await rail.balance(payer) == 0
    assert await rail.balance(payee) == yuan(20)
    await rail.assert_balanced()


async def test_concurrent_payments_stop_exactly_at_the_daily_cap(rail):
    """A class-4 wallet holding 10,000 yuan may pay 5,000 yuan a day: 10 of 30 payments of
    500 yuan, whatever the order they arrive in."""
    payer = await rail.funded_wallet("yangtze", yuan(10_000), kyc_class=4)
    merchant = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    envelopes = [rail.pay_envelope(payer, merchant, yuan(500)) for _ in range(30)]
    answers = await send_all(rail, "yangtze", envelopes)
    assert outcomes(answers) == {"settled": 10, "daily_cap_exceeded": 20}
    view = await rail.wallet_view(payer)
    assert view["balance_fen"] == yuan(5_000)
    assert view["spent_today_fen"] == yuan(5_000) and view["daily_left_fen"] == 0
    assert await rail.balance(merchant) == yuan(5_000)
    await rail.assert_balanced()


async def test_a_thousand_payers_pay_one_merchant_at_once_and_every_fen_arrives(rail):
    payers = await rail.open_many("yangtze", 1_000)
    await rail.payroll("yangtze", payers, yuan(20))
    merchant = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    amounts = [100 + n for n in range(1_000)]       # every payment a different amount
    envelopes = [rail.pay_envelope(payer, merchant, amount)
                 for payer, amount in zip(payers, amounts, strict=True)]
    answers = await send_all(rail, "yangtze", envelopes)
    assert outcomes(answers) == {"settled": 1_000}
    assert await rail.balance(merchant) == sum(amounts)
    history = await rail.client(merchant).history(merchant.key, merchant.wallet_id,
                                                  limit=100)
    assert len(history["items"]) == 100 and history["next_before"] is not None
    # The merchant spends what it received: its appended credits fold into its balance.
    spent = await rail.pay(merchant, payers[0], sum(amounts) - 1)
    assert spent["balance_after_fen"] == 1
    audit = (await rail.assert_balanced())["banks"]["yangtze"]
    assert audit["wallet_count"] >= 1_001


async def test_concurrent_top_ups_are_all_served_while_central_has_reserves(rail):
    wallets = [await rail.linked_wallet("yangtze", deposit_fen=yuan(1_000)) for _ in range(30)]
    answers = await asyncio.gather(*(rail.post_raw(
        "yangtze", f"/v1/wallets/{w.wallet_id}/top-up",
        seal(w.key, "bank.top_up", {"wallet_id": w.wallet_id, "amount_fen": yuan(100)}))
        for w in wallets))
    assert outcomes(answers) == {"settled": 30}
