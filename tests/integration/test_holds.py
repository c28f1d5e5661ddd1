"""Conditional payments (bank/holds.py), on BOTH databases: a hold frozen for a merchant and
released in full or in part, voided, or expired at its deadline (the bank's clock moved past
it); a voucher spent in parts, only at merchants of its category, and what is unspent back
to its issuer at the deadline. Each closes exactly once, races included, and the audit
balances to the fen after each."""

import asyncio
import contextlib

import pytest

from bank.holds import Holds
from rail_protocol.envelope import now_ms, seal
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import HOLD, HOLD_RELEASE, HOLD_VOID
from rail_protocol.money import yuan
from tests.support.rail import Rail, Wallet, outcomes
from tests.support.rail import rail_on_both_databases as rail  # noqa: F401

pytestmark = pytest.mark.integration
BANK = "yangtze"
HOUR_MS = 3_600_000


def holds_of(rail: Rail) -> Holds:
    return rail.net.apps[f"{BANK}.test"].app.state.holds


@contextlib.contextmanager
def clock_at(rail: Rail, at_ms: int):
    """The bank decides at `at_ms` (a deadline passed) while the block runs."""
    holds = holds_of(rail)
    holds.clock = lambda: at_ms
    try:
        yield holds
    finally:
        holds.clock = now_ms


async def refused(code: str, action) -> None:
    with pytest.raises(RailError) as caught:
        await action
    assert caught.value.code == code, caught.value


async def parties(rail: Rail, payer_fen: int = yuan(500)) -> tuple[Wallet, Wallet]:
    payer = await rail.funded_wallet(BANK, payer_fen)
    shop = await rail.open_wallet(BANK, kind="merchant", kyc_class=1)
    return payer, shop


async def test_a_hold_released_in_part_pays_the_merchant_and_returns_the_rest_once(rail):
    payer, shop = await parties(rail)
    client = rail.client(BANK)
    hold = await client.open_hold(payer.key, payer.wallet_id, shop.wallet_id, yuan(80),
                                  deadline_ms=now_ms() + HOUR_MS, memo="ride to the airport")
    assert hold["status"] == "pending" and hold["remaining_fen"] == yuan(80)
    assert await rail.balance(payer) == yuan(420)
    assert (await rail.bank_audit(BANK))["held_fen"] >= yuan(80)
    await rail.assert_balanced()
    posted = await client.release_hold(shop.key, shop.wallet_id, hold["hold_id"], 6_350)
    assert posted["status"] == "posted" and posted["remaining_fen"] == 0
    assert await rail.balance(shop) == 6_350
    assert await rail.balance(payer) == yuan(500) - 6_350
    await refused("hold_closed", client.release_hold(shop.key, shop.wallet_id,
                                                     hold["hold_id"], 100))
    await refused("hold_closed", client.void_hold(shop.key, shop.wallet_id, hold["hold_id"]))
    await rail.assert_balanced()


async def test_only_the_named_releaser_releases_and_only_the_merchant_voids(rail):
    payer, shop = await parties(rail)
    client = rail.client(BANK)
    escrow = await client.open_hold(payer.key, payer.wallet_id, shop.wallet_id, yuan(30),
                                    deadline_ms=now_ms() + HOUR_MS, release_by="payer")
    await refused("signer_mismatch", client.release_hold(shop.key, shop.wallet_id,
                                                         escrow["hold_id"], yuan(30)))
    await refused("release_exceeds_hold", client.release_hold(
        payer.key, payer.wallet_id, escrow["hold_id"], yuan(31)))
    await refused("signer_mismatch", client.void_hold(payer.key, payer.wallet_id,
                                                      escrow["hold_id"]))
    done = await client.release_hold(payer.key, payer.wallet_id, escrow["hold_id"], yuan(30))
    assert done["status"] == "posted" and await rail.balance(shop) == yuan(30)
    voided = await client.open_hold(payer.key, payer.wallet_id, shop.wallet_id, yuan(40),
                                    deadline_ms=now_ms() + HOUR_MS)
    back = await client.void_hold(shop.key, shop.wallet_id, voided["hold_id"])
    assert back["status"] == "voided" and await rail.balance(payer) == yuan(470)
    await rail.assert_balanced()


async def test_a_hold_past_its_deadline_expires_back_to_the_payer_once(rail):
    payer, shop = await parties(rail)
    client = rail.client(BANK)
    deadline = now_ms() + HOUR_MS
    hold = await client.open_hold(payer.key, payer.wallet_id, shop.wallet_id, yuan(50),
                                  deadline_ms=deadline)
    assert await holds_of(rail).expire_due(deadline - 1) == 0     # not due yet
    late = seal(shop.key, HOLD_RELEASE, {"hold_id": hold["hold_id"],
                                         "signer_wallet": shop.wallet_id,
                                         "amount_fen": yuan(50)}, created_ms=deadline)
    with clock_at(rail, deadline + 1):
        answer = await rail.post_raw(BANK, f"/v1/holds/{hold['hold_id']}/release", late)
    assert outcomes([answer]) == {"hold_expired": 1}
    # The bank's own expiry loop runs in the background on the same clock: if it came round
    # while the clock stood past the deadline, it has expired the hold already (and the
    # count covers every hold of the module's rail), so the count is not the point: the
    # hold's status and the balances are, and that nothing expires twice.
    await holds_of(rail).expire_due(deadline + 1)
    assert (await holds_of(rail).view(hold["hold_id"]))["status"] == "expired"
    assert await holds_of(rail).expire_due(deadline + 1) == 0      # once
    assert await rail.balance(payer) == yuan(500) and await rail.balance(shop) == 0
    await rail.assert_balanced()


async def test_a_voucher_is_spent_in_parts_at_its_category_and_the_rest_expires_back(rail):
    issuer = await rail.funded_wallet(BANK, yuan(1_000))
    holder = await rail.open_wallet(BANK)
    noodles = await rail.open_wallet(BANK, kind="merchant", kyc_class=1)   # MCC 5812
    garage = await rail.open_wallet(BANK, kind="merchant", kyc_class=1, merchant={
        "name": "Wuhan Auto Repair", "mcc": "7538", "city": "Wuhan"})
    client = rail.client(BANK)
    deadline = now_ms() + HOUR_MS
    voucher = await client.open_voucher(issuer.key, issuer.wallet_id, holder.wallet_id,
                                        yuan(100), deadline_ms=deadline, mcc="5812",
                                        memo="dining voucher")
    assert await rail.balance(issuer) == yuan(900)
    spent = await client.spend_voucher(holder.key, holder.wallet_id, voucher["hold_id"],
                                       noodles.wallet_id, yuan(30))
    assert spent["status"] == "pending" and spent["remaining_fen"] == yuan(70)
    await refused("mcc_not_allowed", client.spend_voucher(
        holder.key, holder.wallet_id, voucher["hold_id"], garage.wallet_id, yuan(10)))
    await refused("release_exceeds_hold", client.spend_voucher(
        holder.key, holder.wallet_id, voucher["hold_id"], noodles.wallet_id, yuan(71)))
    await refused("signer_mismatch", client.spend_voucher(
        issuer.key, issuer.wallet_id, voucher["hold_id"], noodles.wallet_id, yuan(1)))
    assert await rail.balance(noodles) == yuan(30) and await rail.balance(holder) == 0
    await rail.assert_balanced()
    assert await holds_of(rail).expire_due(deadline) >= 1
    assert (await holds_of(rail).view(voucher["hold_id"]))["status"] == "expired"
    assert await rail.balance(issuer) == yuan(970)
    listed = await client.holds(holder.key, holder.wallet_id)
    assert [h["hold_id"] for h in listed["holds"]] == [voucher["hold_id"]]
    await rail.assert_balanced()


async def test_a_voucher_spent_to_the_last_fen_is_posted_and_its_issuer_may_recall_the_rest(
        rail):
    issuer = await rail.funded_wallet(BANK, yuan(100))
    holder = await rail.open_wallet(BANK)
    shop = await rail.open_wallet(BANK, kind="merchant", kyc_class=1)
    client = rail.client(BANK)
    deadline = now_ms() + HOUR_MS
    whole = await client.open_voucher(issuer.key, issuer.wallet_id, holder.wallet_id, 500,
                                      deadline_ms=deadline)
    spent = await client.spend_voucher(holder.key, holder.wallet_id, whole["hold_id"],
                                       shop.wallet_id, 500)
    assert spent["status"] == "posted"
    part = await client.open_voucher(issuer.key, issuer.wallet_id, holder.wallet_id, 700,
                                     deadline_ms=deadline)
    await client.spend_voucher(holder.key, holder.wallet_id, part["hold_id"], shop.wallet_id,
                               200)
    recalled = await client.void_hold(issuer.key, issuer.wallet_id, part["hold_id"],
                                      voucher=True)
    assert recalled["status"] == "voided"
    assert await rail.balance(issuer) == yuan(100) - 500 - 200
    assert await rail.balance(shop) == 700
    await rail.assert_balanced()


async def test_a_retried_opening_opens_one_hold(rail):
    payer, shop = await parties(rail)
    env = seal(payer.key, HOLD, {"payer_wallet": payer.wallet_id, "payee_wallet": shop.wallet_id,
                                 "amount_fen": 1_000, "deadline_ms": now_ms() + HOUR_MS,
                                 "release_by": "merchant"})
    answers = await asyncio.gather(*(rail.post_raw(BANK, "/v1/holds", env) for _ in range(5)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["hold_id"] for a in answers}) == 1
    assert await rail.balance(payer) == yuan(500) - 1_000
    await rail.assert_balanced()


async def test_release_and_void_at_the_same_moment_close_the_hold_once(rail):
    payer, shop = await parties(rail)
    client = rail.client(BANK)
    hold = await client.open_hold(payer.key, payer.wallet_id, shop.wallet_id, yuan(60),
                                  deadline_ms=now_ms() + HOUR_MS)
    path = f"/v1/holds/{hold['hold_id']}"
    release = seal(shop.key, HOLD_RELEASE, {"hold_id": hold["hold_id"],
                                            "signer_wallet": shop.wallet_id,
                                            "amount_fen": yuan(60)})
    void = seal(shop.key, HOLD_VOID, {"hold_id": hold["hold_id"],
                                      "signer_wallet": shop.wallet_id})
    answers = await asyncio.gather(rail.post_raw(BANK, f"{path}/release", release),
                                   rail.post_raw(BANK, f"{path}/void", void),
                                   holds_of(rail).expire_due(now_ms() + 2 * HOUR_MS))
    codes = [a.status_code for a in answers[:2]]
    assert sorted(codes) in ([200, 409], [409, 409]), [a.text for a in answers[:2]]
    final = await holds_of(rail).view(hold["hold_id"])
    assert final["status"] in ("posted", "voided", "expired")
    assert await rail.balance(payer) + await rail.balance(shop) == yuan(500)
    await rail.assert_balanced()


async def test_vouchers_spent_at_once_never_spend_more_than_they_hold(rail):
    issuer = await rail.funded_wallet(BANK, yuan(100))
    holder = await rail.open_wallet(BANK)
    shops = [await rail.open_wallet(BANK, kind="merchant", kyc_class=1) for _ in range(6)]
    client = rail.client(BANK)
    voucher = await client.open_voucher(issuer.key, issuer.wallet_id, holder.wallet_id,
                                        1_000, deadline_ms=now_ms() + HOUR_MS)
    results = await asyncio.gather(*(
        client.spend_voucher(holder.key, holder.wallet_id, voucher["hold_id"],
                             shop.wallet_id, 300) for shop in shops), return_exceptions=True)
    paid = [r for r in results if isinstance(r, dict)]
    assert len(paid) == 3
    assert all(isinstance(r, RailError) and r.code in ("release_exceeds_hold", "hold_closed")
               for r in results if not isinstance(r, dict))
    assert sum([await rail.balance(s) for s in shops]) == 900
    await rail.assert_balanced()


async def test_money_held_counts_against_the_payers_cap_so_it_always_fits_back(rail):
    """A class-4 wallet (cap ¥10,000) holding ¥9,000 freezes ¥2,000: a credit of ¥2,500
    would leave no room for the hold to come back, so it is refused; then the hold expires
    and the money fits."""
    payer = await rail.funded_wallet(BANK, yuan(9_000))
    shop = await rail.open_wallet(BANK, kind="merchant", kyc_class=1)
    friend = await rail.funded_wallet(BANK, yuan(3_000), kyc_class=1)
    client = rail.client(BANK)
    deadline = now_ms() + HOUR_MS
    await client.open_hold(payer.key, payer.wallet_id, shop.wallet_id, yuan(2_000),
                           deadline_ms=deadline)
    answer = await rail.send_payment(BANK, rail.pay_envelope(friend, payer, yuan(2_500)))
    assert outcomes([answer]) == {"balance_cap_exceeded": 1}
    assert await holds_of(rail).expire_due(deadline) >= 1
    assert await rail.balance(payer) == yuan(9_000)
    await rail.assert_balanced()
