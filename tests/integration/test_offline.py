"""Offline payments (rail_protocol/offline.py, bank/offline.py), on BOTH databases: a wallet
reserves money within the caps, pays two receivers with no network (each checks the note
with nothing but the bank's public key), and the receivers sync later and are credited once.
Double spends (one note number paid to two receivers, or more than the reserve) are found at
sync and refused; what is left returns to the wallet after the sync deadline. The audit
balances to the fen after each: offline money is never created."""

import asyncio

import pytest

from rail_protocol import offline
from rail_protocol.envelope import now_ms, sign_statement
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey, SigningKey
from rail_protocol.money import yuan
from tests.support.rail import Rail, Wallet
from tests.support.rail import rail_on_both_databases as rail  # noqa: F401

pytestmark = pytest.mark.integration
BANK = "yangtze"


async def bank_key(rail: Rail) -> PublicKey:
    """What a receiving device keeps from its last time online: the bank's public key."""
    return PublicKey.from_text((await rail.client(BANK).identity())["public_key"])


async def refused(code: str, action) -> None:
    with pytest.raises(RailError) as caught:
        await action
    assert caught.value.code == code, caught.value


async def reserved(rail: Rail, wallet: Wallet, amount_fen: int, count: int = 10) -> dict:
    return (await rail.client(BANK).offline_reserve(wallet.key, wallet.wallet_id, amount_fen,
                                                    count))["purse"]


async def sync(rail: Rail, receiver: Wallet, payment: offline.OfflinePayment) -> dict:
    return await rail.client(BANK).offline_claim(receiver.key, receiver.wallet_id,
                                                 payment.text)


async def test_two_receivers_paid_offline_are_credited_once_when_they_sync(rail):
    payer = await rail.funded_wallet(BANK, yuan(300))
    friend = await rail.open_wallet(BANK)
    shop = await rail.open_wallet(BANK, kind="merchant", kyc_class=1)
    purse = await reserved(rail, payer, yuan(100), 3)
    assert await rail.balance(payer) == yuan(200)
    await rail.assert_balanced()
    key = await bank_key(rail)
    # No network from here: the payer signs notes, each receiver checks them alone.
    to_friend = offline.make_note(payer.key, purse, 1, friend.wallet_id, yuan(30))
    to_shop = offline.make_note(payer.key, purse, 2, shop.wallet_id, yuan(50))
    for payment, receiver in ((to_friend, friend), (to_shop, shop)):
        checked = offline.read(payment.text, key)
        assert checked.payee_wallet == receiver.wallet_id
    # Later, online again: each syncs, once.
    credited = await sync(rail, friend, to_friend)
    assert credited["status"] == "credited" and credited["amount_fen"] == yuan(30)
    assert await sync(rail, friend, to_friend) == credited
    await sync(rail, shop, to_shop)
    assert await rail.balance(friend) == yuan(30) and await rail.balance(shop) == yuan(50)
    await refused("signer_mismatch", sync(rail, shop, to_friend))
    await rail.assert_balanced()


async def test_a_purse_with_a_key_of_its_own_pays_only_under_that_key(rail):
    """A phone whose wallet key opens only with the bank's word on the PIN reserves with a
    purse key of its own: its notes are signed by that key, and the wallet's key, or any
    other, cannot spend the purse."""
    payer = await rail.funded_wallet(BANK, yuan(100))
    friend = await rail.open_wallet(BANK)
    purse_key = SigningKey.generate()
    purse = (await rail.client(BANK).offline_reserve(
        payer.key, payer.wallet_id, yuan(20), 2, purse_key.public_key.to_text()))["purse"]
    assert purse["public_key"] == purse_key.public_key.to_text() != payer.key.public_key.to_text()
    key = await bank_key(rail)
    with pytest.raises(RailError) as wrong_key:        # the wallet's own key: not this purse's
        offline.read(offline.make_note(payer.key, purse, 1, friend.wallet_id, 500).text, key)
    assert wrong_key.value.code == "unknown_key"
    await refused("offline_invalid", sync(rail, friend, offline.make_note(
        payer.key, purse, 1, friend.wallet_id, 500)))
    paid = offline.make_note(purse_key, purse, 1, friend.wallet_id, 500)
    assert offline.read(paid.text, key).amount_fen == 500
    assert (await sync(rail, friend, paid))["status"] == "credited"
    assert await rail.balance(friend) == 500
    await refused("invalid_field", rail.client(BANK).offline_reserve(
        payer.key, payer.wallet_id, yuan(1), 1, "not a key"))
    await rail.assert_balanced()


async def test_one_note_number_paid_to_two_receivers_is_credited_to_the_first_only(rail):
    payer = await rail.funded_wallet(BANK, yuan(300))
    first, second = await rail.open_wallet(BANK), await rail.open_wallet(BANK)
    purse = await reserved(rail, payer, yuan(100))
    honest = offline.make_note(payer.key, purse, 1, first.wallet_id, yuan(60))
    copied = offline.make_note(payer.key, purse, 1, second.wallet_id, yuan(60))   # tampered
    await sync(rail, first, honest)
    await refused("offline_double_spend", sync(rail, second, copied))
    assert await rail.balance(first) == yuan(60) and await rail.balance(second) == 0
    await rail.assert_balanced()


async def test_notes_adding_up_to_more_than_the_reserve_are_refused_past_it(rail):
    payer = await rail.funded_wallet(BANK, yuan(300))
    first, second = await rail.open_wallet(BANK), await rail.open_wallet(BANK)
    purse = await reserved(rail, payer, yuan(100))
    await sync(rail, first, offline.make_note(payer.key, purse, 1, first.wallet_id, yuan(70)))
    await refused("offline_double_spend", sync(
        rail, second, offline.make_note(payer.key, purse, 2, second.wallet_id, yuan(70))))
    assert await rail.balance(second) == 0
    await rail.assert_balanced()


async def test_the_same_number_synced_by_two_receivers_at_once_is_credited_once(rail):
    payer = await rail.funded_wallet(BANK, yuan(300))
    receivers = [await rail.open_wallet(BANK) for _ in range(4)]
    purse = await reserved(rail, payer, yuan(100))
    notes = [offline.make_note(payer.key, purse, 1, r.wallet_id, yuan(40)) for r in receivers]
    results = await asyncio.gather(*(sync(rail, r, n) for r, n in zip(receivers, notes)),
                                   return_exceptions=True)
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(r.code == "offline_double_spend" for r in results if isinstance(r, RailError))
    assert sum([await rail.balance(r) for r in receivers]) == yuan(40)
    await rail.assert_balanced()


async def test_the_caps_hold_when_reserving_and_when_checking_a_note(rail):
    payer = await rail.funded_wallet(BANK, yuan(2_000))
    client = rail.client(BANK)
    await refused("invalid_amount", client.offline_reserve(payer.key, payer.wallet_id,
                                                           yuan(501), 1))
    await refused("invalid_field", client.offline_reserve(payer.key, payer.wallet_id,
                                                          yuan(10), 11))
    purse = await reserved(rail, payer, yuan(300), 2)
    await refused("invalid_amount", client.offline_reserve(payer.key, payer.wallet_id,
                                                           yuan(201), 1))
    key = await bank_key(rail)
    with pytest.raises(ValueError):
        offline.make_note(payer.key, purse, 3, "yangtze.0000000000000000", 100)
    too_much = offline.make_note(payer.key, purse, 1, "yangtze.0000000000000000", yuan(301))
    with pytest.raises(RailError) as over:
        offline.read(too_much.text, key)
    assert over.value.code == "offline_invalid"
    stranger = SigningKey.generate()     # a purse the bank never signed
    forged = sign_statement(stranger, {**{k: v for k, v in purse.items()
                                          if k not in ("issuer", "sig")}, "amount_fen": yuan(500)})
    with pytest.raises(RailError) as fake:
        offline.read(offline.make_note(payer.key, forged, 1, "yangtze.00", 100).text, key)
    assert fake.value.code == "unknown_key"
    other = SigningKey.generate()        # a note not signed by the purse's wallet
    with pytest.raises(RailError) as wrong:
        offline.read(offline.make_note(other, purse, 1, "yangtze.00", 100).text, key)
    assert wrong.value.code == "unknown_key"
    await rail.assert_balanced()


async def test_reserves_made_at_once_never_pass_the_cap_together(rail):
    """The cap is read with the wallet's row locked: of three ¥200 reserves at once, two fit
    under ¥500 and the third is refused."""
    payer = await rail.funded_wallet(BANK, yuan(1_000))
    client = rail.client(BANK)
    results = await asyncio.gather(*(client.offline_reserve(
        payer.key, payer.wallet_id, yuan(200), 1) for _ in range(3)), return_exceptions=True)
    assert sum(isinstance(r, dict) for r in results) == 2
    assert [r.code for r in results if isinstance(r, RailError)] == ["invalid_amount"]
    assert await rail.balance(payer) == yuan(600)
    await rail.assert_balanced()


async def test_what_is_left_returns_after_the_sync_deadline_and_later_notes_are_refused(rail):
    payer = await rail.funded_wallet(BANK, yuan(300))
    receiver = await rail.open_wallet(BANK)
    purse = await reserved(rail, payer, yuan(100))
    await sync(rail, receiver, offline.make_note(payer.key, purse, 1, receiver.wallet_id,
                                                 yuan(25)))
    holds = rail.net.apps[f"{BANK}.test"].app.state.holds
    deadline = purse["pay_until_ms"] + offline.SYNC_GRACE_MS
    await holds.expire_due(deadline - 1)
    assert (await holds.view(purse["purse_id"]))["status"] == "pending"
    await holds.expire_due(deadline)
    assert (await holds.view(purse["purse_id"]))["status"] == "expired"
    assert await rail.balance(payer) == yuan(275)
    late = offline.make_note(payer.key, purse, 2, receiver.wallet_id, yuan(10),
                             at_ms=now_ms())
    await refused("hold_closed", sync(rail, receiver, late))
    assert await rail.balance(receiver) == yuan(25)
    await rail.assert_balanced()
