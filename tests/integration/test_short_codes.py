"""Short payment codes (rail_protocol/short_code.py) charged at the till, on BOTH databases:
the wallet registers its secret once, makes codes with no network, and the payer's bank
resolves each one, charges it once, honours the PIN flag, refuses stale or guessed codes and
locks a slot that is being guessed at. Every refusal moves nothing; the audit balances."""

import asyncio

import pytest

from rail_protocol import short_code as sc
from rail_protocol.envelope import now_ms, seal
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import CHARGE_CODE
from rail_protocol.money import yuan
from tests.support.rail import Rail, Wallet, outcomes
from tests.support.rail import rail_on_both_databases as rail  # noqa: F401

pytestmark = pytest.mark.integration


async def registered(rail: Rail, wallet: Wallet) -> dict:
    return await rail.client(wallet).register_short_code(wallet.key, wallet.wallet_id)


def short(wallet: Wallet, slot: dict, *, sequence: int = 0, pin: bool = False,
          at_ms: int | None = None) -> str:
    return sc.make_short_code(sc.derive_secret(wallet.key), slot["issuer"], slot["slot"],
                              at_ms=now_ms() if at_ms is None else at_ms, sequence=sequence,
                              pin_verified=pin).text


async def charge(rail: Rail, shop: Wallet, code: str, amount_fen: int) -> dict:
    return await rail.client(shop).charge_code(shop.key, shop.wallet_id, code, amount_fen)


async def refused(code: str, action) -> None:
    with pytest.raises(RailError) as caught:
        await action
    assert caught.value.code == code, caught.value


async def test_registering_gives_a_slot_at_the_banks_issuer_number_kept_on_reregistering(rail):
    payer = await rail.funded_wallet("yangtze", yuan(10))
    first = await registered(rail, payer)
    assert first["issuer"] == "11" and len(first["slot"]) == 8 and first["slot"].isdigit()
    assert await registered(rail, payer) == first
    other = await registered(rail, await rail.funded_wallet("pearl", yuan(1)))
    assert other["issuer"] == "12"


async def test_a_short_code_pays_the_merchant_once(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    code = short(payer, await registered(rail, payer))
    paid = await charge(rail, shop, code, 2_350)
    assert paid["status"] == "settled" and paid["payee_wallet"] == shop.wallet_id
    # The POS retrying the same charge gets the same payment; any other charge is refused.
    assert (await charge(rail, shop, code, 2_350))["payment_id"] == paid["payment_id"]
    await refused("payment_code_used", charge(rail, shop, code, 100))
    assert await rail.balance(payer) == yuan(100) - 2_350
    history = await rail.client(payer).history(payer.key, payer.wallet_id)
    assert history["items"][0]["instruction_id"].startswith("sc.")
    await rail.assert_balanced()


async def test_a_short_code_scanned_at_another_banks_merchant_is_forwarded_and_paid(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    shop = await rail.open_wallet("pearl", kind="merchant", kyc_class=1)
    paid = await charge(rail, shop, short(payer, await registered(rail, payer)), 990)
    assert paid["status"] == "settled"
    assert await rail.balance(payer) == yuan(100) - 990
    await rail.assert_balanced()


async def test_above_the_no_pin_threshold_only_a_code_made_with_the_pin_pays(rail):
    payer = await rail.funded_wallet("yangtze", yuan(3_000))
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    slot = await registered(rail, payer)
    await refused("pin_required", charge(rail, shop, short(payer, slot), yuan(1_500)))
    paid = await charge(rail, shop, short(payer, slot, sequence=1, pin=True), yuan(1_500))
    assert paid["status"] == "settled"
    assert await rail.balance(payer) == yuan(1_500)


async def test_a_code_from_two_minutes_ago_or_a_wrong_value_or_slot_is_refused(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    slot = await registered(rail, payer)
    stale = short(payer, slot, at_ms=now_ms() - 2 * sc.MINUTE_MS - 1_000)
    good = short(payer, slot)
    wrong_value = good[:-1] + str((int(good[-1]) + 1) % 10)
    wrong_slot = good[:3] + f"{(int(slot['slot']) + 1) % 10**8:08d}" + good[11:]
    unknown_issuer = "899" + good[3:]
    for code in (stale, wrong_value, wrong_slot, unknown_issuer):
        await refused("payment_code_invalid", charge(rail, shop, code, 100))
    assert await rail.balance(payer) == yuan(100)
    await rail.assert_balanced()


async def test_a_slot_guessed_at_ten_times_is_locked_even_for_the_right_code(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    slot = await registered(rail, payer)
    good = short(payer, slot)
    guesses = [good[:12] + f"{(int(good[12:]) + n) % 10**7:07d}" for n in range(1, 11)]
    for guess in guesses:
        await refused("payment_code_invalid", charge(rail, shop, guess, 100))
    await refused("rate_limited", charge(rail, shop, good, 100))
    assert await rail.balance(payer) == yuan(100)


async def test_the_same_code_charged_twice_at_once_pays_once(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    shops = [await rail.open_wallet("yangtze", kind="merchant", kyc_class=1) for _ in range(2)]
    code = short(payer, await registered(rail, payer))
    answers = await asyncio.gather(*(
        rail.post_raw("yangtze", "/v1/merchant/charges", seal(shop.key, CHARGE_CODE, {
            "merchant_wallet": shop.wallet_id, "code": code, "amount_fen": 500 + n}))
        for n, shop in enumerate(shops)))
    assert outcomes(answers) == {"settled": 1, "payment_code_used": 1}
    assert await rail.balance(payer) in (yuan(100) - 500, yuan(100) - 501)
    await rail.assert_balanced()
