"""Managed anonymity: central routes and settles payments between banks knowing bank ids,
amounts and wallet pseudonyms, never a phone number, a holder's name, an identity number or
a deposit account. Checked by reading every text column of central's database."""

import pytest

from rail_protocol.money import yuan
from tests.support.rail import Wallet, rail  # noqa: F401

pytestmark = pytest.mark.integration


def personal_data(*wallets: Wallet) -> list[str]:
    found = []
    for wallet in wallets:
        found.append(wallet.phone)
        if wallet.id_number:
            found.append(wallet.id_number)
        if wallet.deposit_account:
            found.append(wallet.deposit_account)
    return found


async def test_central_stores_no_phone_number_name_or_id_number_after_interbank_payments(rail):
    alice = await rail.funded_wallet("yangtze", yuan(3_000), kyc_class=2,
                                     linked_deposit_fen=yuan(500), topup_on_use=True)
    bob = await rail.funded_wallet("pearl", yuan(9_500), kyc_class=4, linked_deposit_fen=0)
    carol = await rail.funded_wallet("pearl", yuan(100), kyc_class=4)
    shop = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    closed = await rail.open_wallet("pearl")
    await rail.client("pearl").close_wallet(closed.wallet_id)

    assert (await rail.pay(alice, bob, yuan(1_000), memo="for the flat"))["status"] == "settled"
    assert (await rail.pay(alice, carol, yuan(2_300)))["status"] == "settled"  # pulls deposit
    assert (await rail.pay(carol, shop, yuan(50), memo=f"call {carol.phone}"))["status"] \
        == "settled"
    assert (await rail.pay(bob, alice, yuan(10)))["status"] == "settled"
    assert (await rail.pay(alice, closed, yuan(1)))["status"] == "rejected"
    await rail.assert_balanced()

    central = rail.central_text()
    for payee in (bob, carol, shop, alice, closed):
        assert payee.wallet_id in central, "central routes by the payee's wallet pseudonym"
    for secret in personal_data(alice, bob, carol, shop, closed):
        assert secret not in central, f"central's database holds {secret!r}"
    assert "Test Holder" not in central, "central's database holds a holder's name"
