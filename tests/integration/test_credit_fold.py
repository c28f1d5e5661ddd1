"""A shop that only receives does not pile up credits without end.

A wallet with no balance cap (a busy shop's) is credited by appending rows, so its own row
is never a point of contention; a debit of the wallet folds them into its balance. A shop
that never pays would keep every credit it ever received apart, and every read of its
balance, every batch that locks it and the audit would grow with the pile: the bank folds
piles in the background (`Bank.fold_credits`), exactly as a debit would."""

from __future__ import annotations

import sqlalchemy as sa

from bank.adapters import tables as t
from tests.support.rail import rail_on_both_databases as rail  # noqa: F401


async def piled(node, wallet_id: str) -> int:
    async with node.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(t.wallet_credits)
                                   .where(t.wallet_credits.c.wallet_id == wallet_id))).scalar_one()


async def test_a_shops_piled_credits_are_folded_into_its_balance_and_nothing_else_moves(rail):
    node = rail.banks["yangtze"].node
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    quiet_shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    payers = [await rail.funded_wallet("yangtze", 1_000, kyc_class=4) for _ in range(12)]
    for n, payer in enumerate(payers):
        assert (await rail.pay(payer, shop, 10 + n))["status"] == "settled"
    assert (await rail.pay(payers[0], quiet_shop, 5))["status"] == "settled"
    received = sum(10 + n for n in range(12))
    assert await piled(node, shop.wallet_id) == 12
    before = await rail.snapshot(shop, quiet_shop, *payers)

    assert await node.fold_credits(at_least=10) == 12

    assert await piled(node, shop.wallet_id) == 0
    assert await piled(node, quiet_shop.wallet_id) == 1     # under the threshold: left
    assert await rail.balance(shop) == received
    assert await rail.snapshot(shop, quiet_shop, *payers) == before
    await rail.assert_balanced()
    assert await node.fold_credits(at_least=10) == 0      # nothing left to fold


async def test_a_folded_shop_pays_out_of_its_folded_balance(rail):
    node = rail.banks["yangtze"].node
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    payer = await rail.funded_wallet("yangtze", 1_000, kyc_class=4)
    for _ in range(3):
        await rail.pay(payer, shop, 100)
    assert await piled(node, shop.wallet_id) == 3
    assert await node.fold_credits(at_least=1) >= 3        # (and any other shop's pile)
    assert await piled(node, shop.wallet_id) == 0
    await rail.pay(payer, shop, 50)                        # appended after the fold
    assert (await rail.pay(shop, payer, 320))["status"] == "settled"
    assert await rail.balance(shop) == 30
    assert await piled(node, shop.wallet_id) == 0
    await rail.assert_balanced()
