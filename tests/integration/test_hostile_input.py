"""Hostile input on real PostgreSQL and Redis, each case one a reviewer found answering 500
or accepted wrongly: every one is now a typed 4xx, and the books are exactly as they were
(the wallets, every bank's audit and central's supply), balanced to the fen."""

import orjson
import pytest

from rail_protocol.envelope import seal
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import PAY, REVOKE_MANDATE, UPGRADE_WALLET
from rail_protocol.money import yuan
from rail_protocol.request_auth import sign_read
from tests.support.rail import BANK_TOKENS, Rail, Wallet, assert_refused, module_rail  # noqa: F401

pytestmark = pytest.mark.integration
BANK = "yangtze"


@pytest.fixture
async def payer(module_rail) -> Wallet:
    return await module_rail.funded_wallet(BANK, yuan(500))


@pytest.fixture
async def shop(module_rail) -> Wallet:
    return await module_rail.open_wallet(BANK, kind="merchant", kyc_class=1)


class Unchanged:
    """`async with Unchanged(rail, *wallets):` - the block may be refused, never move money."""

    def __init__(self, rail: Rail, *wallets: Wallet) -> None:
        self.rail, self.wallets = rail, wallets

    async def __aenter__(self) -> None:
        self.before = await self.rail.snapshot(*self.wallets)

    async def __aexit__(self, *exc) -> None:
        if exc[0] is None:
            assert await self.rail.snapshot(*self.wallets) == self.before, "something moved"
            await self.rail.assert_balanced()


def body_of(envelope) -> bytes:
    return orjson.dumps(envelope.to_dict())


# --- control characters, in a body, a query or a path --------------------------------------

@pytest.mark.parametrize("field", ["memo", "order_id"])
async def test_a_nul_in_a_signed_text_field_is_refused(module_rail, payer, shop, field):
    env = seal(payer.key, PAY, {"payer_wallet": payer.wallet_id, "payee_wallet": shop.wallet_id,
                                "amount_fen": 100, field: "a\u0000b"})
    async with Unchanged(module_rail, payer, shop):
        assert_refused(await module_rail.send_payment(BANK, env), 422, "invalid_field")


async def test_a_nul_in_an_operators_holder_name_is_refused(module_rail):
    async with Unchanged(module_rail):
        with pytest.raises(RailError) as refused:
            await module_rail.client(BANK).open_deposit_account("13800000000", "Li\u0000Lei",
                                                                yuan(10))
        assert refused.value.code == "invalid_field"


@pytest.mark.parametrize("kyc_class", [{}, [1], True, "1", 1.0])
async def test_an_operators_class_that_is_not_an_integer_is_refused(module_rail, kyc_class):
    """Found by the schemathesis run: an object here answered 500 (unhashable)."""
    wallet = await module_rail.open_wallet(BANK)
    async with Unchanged(module_rail, wallet):
        response = await module_rail.post_raw(
            BANK, f"/v1/operator/wallets/{wallet.wallet_id}/class",
            b'{"kyc_class": ' + (b"1.0" if kyc_class == 1.0 and type(kyc_class) is float
                                 else orjson.dumps(kyc_class)) + b"}",
            headers={"authorization": f"Bearer {BANK_TOKENS[BANK]}"})
        assert response.status_code == 422, response.text
    assert (await module_rail.wallet_view(wallet))["kyc_class"] == 4


@pytest.mark.parametrize("path", ["/v1/orders/O%00x", "/v1/orders/Ox?x=%00",
                                  "/v1/orders/O%0Ax", "/v1/orders/O%FFx"])
async def test_a_control_character_or_broken_utf8_in_a_path_or_query_is_refused(module_rail,
                                                                                  path):
    response = await module_rail.client(BANK).http.get(path)
    assert_refused(response, 422, "invalid_field")


# --- integers beyond what the rail counts -----------------------------------------------------

@pytest.mark.parametrize("query", ["before=9223372036854775808", "since_ms=9223372036854775808",
                                   "until_ms=99999999999999999999", "before=9007199254740992"])
async def test_a_history_query_integer_past_2_to_the_53_is_refused(module_rail, payer, query):
    path = f"/v1/wallets/{payer.wallet_id}/history?{query}"
    response = await module_rail.client(BANK).http.get(
        path, headers={"authorization": sign_read(payer.key, "GET", path)})
    assert_refused(response, 422, "invalid_field")


async def test_centrals_journal_after_2_to_the_63_is_refused(module_rail):
    response = await module_rail.central.http.get("/v1/journal?after=9223372036854775808")
    assert_refused(response, 422, "invalid_field")


@pytest.mark.parametrize("amount", [2**53, 10**40, -(2**63)])
async def test_an_amount_past_2_to_the_53_is_refused(module_rail, payer, shop, amount):
    env = module_rail.pay_envelope(payer, shop, 100)
    raw = body_of(env).replace(b'"amount_fen":100', b'"amount_fen":' + str(amount).encode())
    async with Unchanged(module_rail, payer, shop):
        response = await module_rail.send_payment(BANK, raw)
        assert response.status_code == 422


# --- fields of the wrong type, unknown fields, duplicate keys --------------------------------

async def test_a_deposit_account_sent_as_a_number_is_refused(module_rail, payer):
    env = seal(payer.key, UPGRADE_WALLET, {"wallet_id": payer.wallet_id, "id_number": "1101",
                                           "deposit_account": 6228480012345678})
    async with Unchanged(module_rail, payer):
        response = await module_rail.post_raw(BANK, f"/v1/wallets/{payer.wallet_id}/upgrade", env)
        assert_refused(response, 422, "invalid_field")


async def test_a_mandate_id_sent_as_a_list_is_refused(module_rail, payer):
    env = seal(payer.key, REVOKE_MANDATE, {"payer_wallet": payer.wallet_id,
                                           "mandate_id": ["M1", "M2"]})
    async with Unchanged(module_rail, payer):
        response = await module_rail.post_raw(
            BANK, f"/v1/wallets/{payer.wallet_id}/mandates/revoke", env)
        assert_refused(response, 422, "invalid_field")


async def test_a_signed_unknown_field_is_refused_not_ignored(module_rail, payer, shop):
    env = seal(payer.key, PAY, {"payer_wallet": payer.wallet_id, "payee_wallet": shop.wallet_id,
                                "amount_fen": 100, "fee_fen": 1})
    async with Unchanged(module_rail, payer, shop):
        response = await module_rail.send_payment(BANK, env)
        assert_refused(response, 422, "invalid_field")
        assert "fee_fen" in response.json()["error"]["message"]


async def test_a_body_with_a_duplicate_key_is_refused_whichever_copy_was_signed(module_rail,
                                                                              payer, shop):
    env = module_rail.pay_envelope(payer, shop, 100)
    for duplicate in (b'"amount_fen":100,"amount_fen":40000', b'"amount_fen":40000,"amount_fen":100'):
        raw = body_of(env).replace(b'"amount_fen":100', duplicate)
        assert raw.count(b'"amount_fen"') == 2
        async with Unchanged(module_rail, payer, shop):
            assert_refused(await module_rail.send_payment(BANK, raw), 400, "malformed_json")
    assert (await module_rail.send_payment(BANK, env)).status_code == 200, \
        "the envelope as signed still pays (the refusals recorded nothing)"


# --- a webhook into the bank's own network ----------------------------------------------------

@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/",
                                 "http://localhost:8700/v1/supply", "http://10.0.0.1/hook",
                                 "gopher://127.0.0.1:6379/_FLUSHALL"])
async def test_a_webhook_url_into_a_private_network_is_refused(module_rail, payer, shop, url):
    client = module_rail.client(shop)
    with pytest.raises(RailError) as refused:
        await client.merchant_settings(shop.key, shop.wallet_id, url)
    assert refused.value.code == "invalid_field"
    await module_rail.pay(payer, shop, 100)
    deliveries = await client.webhook_deliveries(shop.key, shop.wallet_id)
    assert deliveries["deliveries"] == [], "no webhook was set, so none is queued"
    await module_rail.assert_balanced()


# --- another merchant's order ----------------------------------------------------------------

async def test_cancelling_another_merchants_order_is_not_found_and_leaves_it_payable(
        module_rail, payer, shop):
    other = await module_rail.open_wallet(BANK, kind="merchant", kyc_class=1)
    order = await module_rail.client(shop).create_order(shop.key, shop.wallet_id, 880, "t-1")
    with pytest.raises(RailError) as refused:
        await module_rail.client(other).cancel_order(other.key, other.wallet_id,
                                                     order["order_id"])
    assert (refused.value.code, refused.value.status) == ("unknown_order", 404)
    assert (await module_rail.client(BANK).order(order["order_id"]))["status"] == "created"
    paid = await module_rail.client(payer).pay(payer.key, payer.wallet_id, shop.wallet_id, 880,
                                               order_id=order["order_id"])
    assert paid["status"] == "settled"
    await module_rail.assert_balanced()


async def test_cancelling_an_order_twice_answers_the_first_cancellation(module_rail, shop):
    client = module_rail.client(shop)
    order = await client.create_order(shop.key, shop.wallet_id, 500, "t-2")
    first = await client.cancel_order(shop.key, shop.wallet_id, order["order_id"])
    again = await client.cancel_order(shop.key, shop.wallet_id, order["order_id"])
    assert first["status"] == again["status"] == "cancelled"


@pytest.mark.parametrize("merchant_bank", ["", "NoSuchBank", "zz-not-enrolled"])
async def test_a_forwarded_charge_naming_no_bank_of_the_rail_is_refused_not_a_server_error(
        module_rail, payer, merchant_bank):
    """Found by the schemathesis run: an empty bank id answered 502 (central's 404 for the
    malformed path read as an unreachable node)."""
    from rail_protocol.instruction_types import INTERBANK_CHARGE

    env = seal(module_rail.banks["pearl"].node.key, INTERBANK_CHARGE, {
        "merchant_bank": merchant_bank, "merchant_wallet": "pearl.0000000000000000",
        "amount_fen": 1, "code": "x"})
    async with Unchanged(module_rail, payer):
        assert_refused(await module_rail.post_raw(BANK, "/v1/interbank/charges", env), 404,
                       "unknown_bank")
