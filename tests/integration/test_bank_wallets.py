"""Bank node wallets on real PostgreSQL and Redis: opening (class 4, the pilot's limits),
KYC upgrades, deposit accounts, top-up and redemption, and the vault drawing e-CNY from
central on its own when a customer's exchange finds it short."""

import pytest

from rail_protocol.instruction_types import OPEN_WALLET
from rail_protocol.envelope import seal
from rail_protocol.keys import SigningKey
from rail_protocol.money import yuan
from tests.support.rail import (  # noqa: F401
    assert_refused,
    module_rail,
    new_id_number,
    new_phone,
    rail,
)

pytestmark = pytest.mark.integration

CLASS_4_LIMITS = {"kyc_class": 4, "balance_cap_fen": 1_000_000, "per_payment_cap_fen": 200_000,
                  "daily_cap_fen": 500_000}


def open_envelope(key: SigningKey, phone: str, kind: str = "personal", **extra):
    return seal(key, OPEN_WALLET, {"phone": phone, "public_key": key.public_key.to_text(),
                                   "kind": kind, **extra})


# --- opening ----------------------------------------------------------------------------------

async def test_a_new_wallet_opens_in_class_4_and_answers_with_its_limits(module_rail):
    key, phone = SigningKey.generate(), new_phone()
    response = await module_rail.post_raw("yangtze", "/v1/wallets", open_envelope(key, phone))
    assert response.status_code == 201, response.text
    wallet = response.json()
    assert wallet["wallet_id"].startswith("yangtze.")
    assert wallet["bank_id"] == "yangtze" and wallet["kind"] == "personal"
    assert (wallet["kyc_class"], wallet["status"], wallet["balance_fen"]) == (4, "open", 0)
    assert wallet["limits"] == CLASS_4_LIMITS
    assert wallet["spent_today_fen"] == 0 and wallet["daily_left_fen"] == 500_000
    assert wallet["key_id"] == key.key_id
    assert wallet["deposit_account_linked"] is False and wallet["topup_on_use"] is False
    assert "phone" not in wallet


async def test_a_bank_publishes_the_pilot_limits_of_every_class(module_rail):
    identity = await module_rail.client("pearl").identity()
    assert identity["bank_id"] == "pearl"
    assert identity["classes"] == [
        {"kyc_class": 1, "balance_cap_fen": None, "per_payment_cap_fen": None,
         "daily_cap_fen": None},
        {"kyc_class": 2, "balance_cap_fen": 50_000_000, "per_payment_cap_fen": 5_000_000,
         "daily_cap_fen": 10_000_000},
        {"kyc_class": 3, "balance_cap_fen": 2_000_000, "per_payment_cap_fen": 500_000,
         "daily_cap_fen": 1_000_000},
        CLASS_4_LIMITS,
    ]


async def test_a_merchant_wallet_carries_what_a_qr_code_needs(module_rail):
    key = SigningKey.generate()
    merchant = {"name": "Hot Dry Noodles", "mcc": "5812", "city": "Wuhan"}
    wallet = await module_rail.client("yangtze").open_wallet(key, new_phone(), kind="merchant",
                                                             merchant=merchant)
    assert wallet["kind"] == "merchant" and wallet["merchant"] == merchant


async def test_a_second_wallet_of_the_same_phone_and_kind_is_refused(module_rail):
    phone = new_phone()
    first = await module_rail.client("yangtze").open_wallet(SigningKey.generate(), phone)
    response = await module_rail.post_raw("yangtze", "/v1/wallets",
                                          open_envelope(SigningKey.generate(), phone))
    assert_refused(response, 409, "wallet_exists")
    # The same phone may still hold a merchant wallet beside its personal one.
    merchant = await module_rail.client("yangtze").open_wallet(
        SigningKey.generate(), phone, kind="merchant",
        merchant={"name": "Corner Shop", "mcc": "5411", "city": "Wuhan"})
    assert merchant["wallet_id"] != first["wallet_id"]


async def test_a_retried_open_with_the_same_key_answers_the_same_wallet(module_rail):
    key, phone = SigningKey.generate(), new_phone()
    envelope = open_envelope(key, phone)
    before = (await module_rail.bank_audit("yangtze"))["wallet_count"]
    first = await module_rail.post_raw("yangtze", "/v1/wallets", envelope)
    again = await module_rail.post_raw("yangtze", "/v1/wallets", envelope)
    resigned = await module_rail.client("yangtze").open_wallet(key, phone)
    assert first.status_code == 201
    assert again.json()["wallet_id"] == first.json()["wallet_id"]
    assert resigned["wallet_id"] == first.json()["wallet_id"]
    assert (await module_rail.bank_audit("yangtze"))["wallet_count"] == before + 1


async def test_a_key_already_holding_a_wallet_cannot_open_another(module_rail):
    key = SigningKey.generate()
    await module_rail.client("yangtze").open_wallet(key, new_phone())
    response = await module_rail.post_raw("yangtze", "/v1/wallets",
                                          open_envelope(key, new_phone()))
    assert_refused(response, 409, "wallet_exists")


@pytest.mark.parametrize("phone", ["12345", "phone-number", "+86 139 0000 0000", 13900000000])
async def test_a_malformed_phone_number_is_refused(module_rail, phone):
    response = await module_rail.post_raw("yangtze", "/v1/wallets",
                                          open_envelope(SigningKey.generate(), phone))
    assert_refused(response, 422, "invalid_field")


async def test_an_open_signed_by_another_key_than_the_one_registered_is_refused(module_rail):
    key, impostor = SigningKey.generate(), SigningKey.generate()
    envelope = seal(impostor, OPEN_WALLET, {"phone": new_phone(), "kind": "personal",
                                            "public_key": key.public_key.to_text()})
    response = await module_rail.post_raw("yangtze", "/v1/wallets", envelope)
    assert_refused(response, 401, "unknown_key")


# --- KYC upgrades -----------------------------------------------------------------------------

async def test_an_id_number_upgrades_a_wallet_to_class_3(module_rail):
    wallet = await module_rail.open_wallet("yangtze")
    view = await module_rail.client("yangtze").upgrade(wallet.key, wallet.wallet_id,
                                                       id_number=new_id_number())
    assert view["kyc_class"] == 3
    assert view["limits"] == {"kyc_class": 3, "balance_cap_fen": 2_000_000,
                              "per_payment_cap_fen": 500_000, "daily_cap_fen": 1_000_000}
    assert view["deposit_account_linked"] is False


async def test_an_id_number_and_an_own_deposit_account_upgrade_to_class_2(module_rail):
    wallet = await module_rail.open_wallet("yangtze")
    client = module_rail.client("yangtze")
    account = await client.open_deposit_account(wallet.phone, "Wang Fang", yuan(500))
    view = await client.upgrade(wallet.key, wallet.wallet_id, id_number=new_id_number(),
                                deposit_account=account["account_id"])
    assert view["kyc_class"] == 2 and view["deposit_account_linked"] is True
    assert view["limits"]["balance_cap_fen"] == 50_000_000


async def test_a_class_3_wallet_links_its_account_later_and_becomes_class_2(module_rail):
    wallet = await module_rail.open_wallet("yangtze")
    client = module_rail.client("yangtze")
    await client.upgrade(wallet.key, wallet.wallet_id, id_number=new_id_number())
    account = await client.open_deposit_account(wallet.phone, "Wang Fang", 0)
    view = await client.upgrade(wallet.key, wallet.wallet_id,
                                deposit_account=account["account_id"])
    assert view["kyc_class"] == 2


async def test_a_deposit_account_of_another_phone_is_refused_and_the_class_stays(module_rail):
    wallet = await module_rail.open_wallet("yangtze")
    client = module_rail.client("yangtze")
    someone_elses = await client.open_deposit_account(new_phone(), "Zhao Lei", yuan(100))
    response = await module_rail.post_raw(
        "yangtze", f"/v1/wallets/{wallet.wallet_id}/upgrade",
        seal(wallet.key, "bank.upgrade_wallet", {
            "wallet_id": wallet.wallet_id, "id_number": new_id_number(),
            "deposit_account": someone_elses["account_id"]}))
    assert_refused(response, 422, "invalid_field")
    view = await module_rail.wallet_view(wallet)
    assert view["kyc_class"] == 4 and view["deposit_account_linked"] is False


async def test_an_unknown_deposit_account_is_refused(module_rail):
    wallet = await module_rail.open_wallet("yangtze")
    response = await module_rail.post_raw(
        "yangtze", f"/v1/wallets/{wallet.wallet_id}/upgrade",
        seal(wallet.key, "bank.upgrade_wallet", {
            "wallet_id": wallet.wallet_id, "id_number": new_id_number(),
            "deposit_account": "6200000000000000"}))
    assert_refused(response, 422, "invalid_field")
    assert (await module_rail.wallet_view(wallet))["kyc_class"] == 4


@pytest.mark.parametrize("id_number", ["12345", "11010519491231002Y", "1101051949123100XX"])
async def test_a_malformed_id_number_is_refused(module_rail, id_number):
    wallet = await module_rail.open_wallet("yangtze")
    response = await module_rail.post_raw(
        "yangtze", f"/v1/wallets/{wallet.wallet_id}/upgrade",
        seal(wallet.key, "bank.upgrade_wallet", {"wallet_id": wallet.wallet_id,
                                                 "id_number": id_number}))
    assert_refused(response, 422, "invalid_field")
    assert (await module_rail.wallet_view(wallet))["kyc_class"] == 4


async def test_only_the_wallets_own_key_can_upgrade_it(module_rail):
    wallet, other = (await module_rail.open_wallet("yangtze"),
                     await module_rail.open_wallet("yangtze"))
    response = await module_rail.post_raw(
        "yangtze", f"/v1/wallets/{wallet.wallet_id}/upgrade",
        seal(other.key, "bank.upgrade_wallet", {"wallet_id": wallet.wallet_id,
                                                "id_number": new_id_number()}))
    assert_refused(response, 403, "wrong_key")
    assert (await module_rail.wallet_view(wallet))["kyc_class"] == 4


async def test_top_up_on_use_needs_a_linked_deposit_account(module_rail):
    wallet = await module_rail.open_wallet("yangtze")
    response = await module_rail.post_raw(
        "yangtze", f"/v1/wallets/{wallet.wallet_id}/settings",
        seal(wallet.key, "bank.wallet_settings", {"wallet_id": wallet.wallet_id,
                                                  "topup_on_use": True}))
    assert_refused(response, 409, "no_linked_account")
    linked = await module_rail.linked_wallet("yangtze", deposit_fen=0)
    view = await module_rail.client("yangtze").settings(linked.key, linked.wallet_id,
                                                        topup_on_use=True)
    assert view["topup_on_use"] is True


# --- exchange and the vault -------------------------------------------------------------------

async def test_a_top_up_draws_an_empty_vault_from_central_and_redeem_returns_money(rail):
    """The vault starts empty: the first top-up makes the bank issue from central exactly
    what is short; money redeemed refills the vault, and the next top-up needs no issue."""
    supply = await rail.central.supply()
    assert supply["total_issued_fen"] == 0
    assert (await rail.bank_audit("yangtze"))["vault_fen"] == 0
    wallet = await rail.linked_wallet("yangtze", deposit_fen=yuan(1_000))
    client = rail.client("yangtze")

    topped = await client.top_up(wallet.key, wallet.wallet_id, yuan(300))
    assert topped["status"] == "settled" and topped["balance_after_fen"] == yuan(300)
    assert await rail.balance(wallet) == yuan(300)
    assert await rail.deposit_balance(wallet) == yuan(700)
    supply = await rail.central.supply()
    assert supply["total_issued_fen"] == yuan(300)
    holding = {b["bank_id"]: b["holding_fen"] for b in supply["banks"]}
    assert holding == {"yangtze": yuan(300), "pearl": 0}
    assert (await rail.bank_audit("yangtze"))["vault_fen"] == 0

    redeemed = await client.redeem(wallet.key, wallet.wallet_id, yuan(100))
    assert redeemed["status"] == "settled" and redeemed["balance_after_fen"] == yuan(200)
    assert await rail.deposit_balance(wallet) == yuan(800)
    assert (await rail.bank_audit("yangtze"))["vault_fen"] == yuan(100)

    await client.top_up(wallet.key, wallet.wallet_id, yuan(60))
    assert await rail.balance(wallet) == yuan(260)
    assert await rail.deposit_balance(wallet) == yuan(740)
    assert (await rail.central.supply())["total_issued_fen"] == yuan(300), \
        "the vault covered the second top-up: nothing new was issued"
    assert (await rail.bank_audit("yangtze"))["vault_fen"] == yuan(40)
    report = await rail.assert_balanced()
    assert report["banks"]["yangtze"]["books_fen"] == yuan(300)


async def test_the_operator_sees_a_deposit_accounts_balance(module_rail):
    client = module_rail.client("pearl")
    account = await client.open_deposit_account(new_phone(), "Liu Yang", 12_345)
    assert (await client.deposit_account(account["account_id"]))["balance_fen"] == 12_345
    unauthenticated = await client.http.get(
        f"/v1/operator/deposit-accounts/{account['account_id']}",
        headers={"authorization": "Bearer not-the-operator"})
    assert_refused(unauthenticated, 401, "unauthorized")


async def exchange(rail, wallet, path: str, kind: str, amount) -> object:
    return await rail.post_raw(wallet.bank_id, f"/v1/wallets/{wallet.wallet_id}/{path}",
                               seal(wallet.key, kind, {"wallet_id": wallet.wallet_id,
                                                       "amount_fen": amount}))


@pytest.mark.parametrize("path, kind, amount, status, code", [
    ("top-up", "bank.top_up", yuan(600), 409, "insufficient_deposit"),
    ("top-up", "bank.top_up", yuan(9_901), 409, "balance_cap_exceeded"),
    ("top-up", "bank.top_up", 0, 422, "invalid_amount"),
    ("redeem", "bank.redeem", yuan(100) + 1, 409, "insufficient_funds"),
    ("redeem", "bank.redeem", -5, 422, "invalid_amount"),
], ids=["top-up-beyond-the-deposit", "top-up-past-the-balance-cap", "top-up-zero",
        "redeem-beyond-the-balance", "redeem-negative"])
async def test_a_refused_exchange_moves_nothing(module_rail, path, kind, amount, status, code):
    """A class-4 wallet holding 100 yuan, with 500 yuan in its linked deposit account."""
    wallet = await module_rail.funded_wallet("yangtze", yuan(100), kyc_class=4,
                                             linked_deposit_fen=yuan(500))
    before = await module_rail.snapshot(wallet)
    assert_refused(await exchange(module_rail, wallet, path, kind, amount), status, code)
    assert await module_rail.snapshot(wallet) == before


async def test_a_wallet_without_a_linked_account_can_neither_top_up_nor_redeem(module_rail):
    wallet = await module_rail.funded_wallet("yangtze", yuan(100))
    before = await module_rail.snapshot(wallet)
    for path, kind in (("top-up", "bank.top_up"), ("redeem", "bank.redeem")):
        response = await exchange(module_rail, wallet, path, kind, yuan(1))
        assert_refused(response, 409, "no_linked_account")
    assert await module_rail.snapshot(wallet) == before


async def test_a_closed_wallet_can_neither_top_up_nor_redeem(module_rail):
    wallet = await module_rail.funded_wallet("yangtze", yuan(100), linked_deposit_fen=yuan(500))
    await module_rail.client("yangtze").close_wallet(wallet.wallet_id)
    before = await module_rail.snapshot(wallet)
    for path, kind in (("top-up", "bank.top_up"), ("redeem", "bank.redeem")):
        response = await exchange(module_rail, wallet, path, kind, yuan(1))
        assert_refused(response, 409, "wallet_closed")
    assert await module_rail.snapshot(wallet) == before


async def test_an_operator_cannot_put_a_wallet_in_a_class_whose_cap_it_exceeds(module_rail):
    """A class-2 wallet holding 20,000 yuan cannot become class 4 (cap 10,000 yuan): the
    operator is refused, or the excess goes somewhere lawful; the audit balances either
    way."""
    wallet = await module_rail.funded_wallet("yangtze", yuan(20_000), kyc_class=2)
    try:
        await module_rail.post_raw("yangtze", f"/v1/operator/wallets/{wallet.wallet_id}/class",
                                   {"kyc_class": 4})
        audit = await module_rail.bank_audit("yangtze")
        assert audit["balanced"], audit["problems"]
    finally:  # leave the shared rail as it was
        await module_rail.client("yangtze").set_class(wallet.wallet_id, 2)
