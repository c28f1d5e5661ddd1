"""Bad payments on real PostgreSQL and Redis: each is refused with its 4xx code, and
nothing moves - the wallets' balances and daily spend, their deposit accounts, both banks'
audits and central's supply are exactly what they were before."""

import asyncio

import orjson
import pytest

from rail_protocol.instruction_types import TOP_UP
from rail_protocol.envelope import now_ms, seal
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey
from rail_protocol.money import yuan
from tests.support.rail import Rail, Wallet, assert_refused, module_rail  # noqa: F401

pytestmark = pytest.mark.integration


async def refused_and_nothing_moved(rail: Rail, payload, status: int, code: str,
                                    *wallets: Wallet, bank_id: str = "yangtze") -> None:
    before = await rail.snapshot(*wallets)
    response = await rail.send_payment(bank_id, payload)
    assert_refused(response, status, code)
    assert await rail.snapshot(*wallets) == before
    again = await rail.send_payment(bank_id, payload)
    assert again.status_code == status, "a retry of a refused payment is refused again"
    assert await rail.snapshot(*wallets) == before


@pytest.fixture
async def pair(module_rail) -> tuple[Wallet, Wallet]:
    """A class-4 payer holding 1,000 yuan and an empty class-4 payee, both at yangtze."""
    return (await module_rail.funded_wallet("yangtze", yuan(1_000)),
            await module_rail.open_wallet("yangtze"))


# --- who and to whom --------------------------------------------------------------------------

async def test_an_unknown_payee_wallet_is_refused(module_rail, pair):
    payer, _ = pair
    await refused_and_nothing_moved(
        module_rail, module_rail.pay_envelope(payer, "yangtze.0000000000000000", yuan(1)),
        404, "unknown_wallet", payer)


async def test_a_malformed_payee_wallet_id_is_refused(module_rail, pair):
    payer, _ = pair
    await refused_and_nothing_moved(
        module_rail, module_rail.pay_envelope(payer, "no-bank-here", yuan(1)),
        422, "invalid_field", payer)


async def test_a_payment_signed_by_another_wallets_key_is_refused(module_rail, pair):
    payer, payee = pair
    thief = await module_rail.funded_wallet("yangtze", yuan(1))
    envelope = module_rail.client("yangtze").pay_envelope(
        thief.key, payer.wallet_id, payee.wallet_id, yuan(10))
    await refused_and_nothing_moved(module_rail, envelope, 403, "wrong_key", payer, payee, thief)


async def test_a_payment_signed_by_a_key_the_bank_does_not_know_is_refused(module_rail, pair):
    payer, payee = pair
    envelope = module_rail.client("yangtze").pay_envelope(
        SigningKey.generate(), payer.wallet_id, payee.wallet_id, yuan(10))
    await refused_and_nothing_moved(module_rail, envelope, 401, "unknown_key", payer, payee)


async def test_a_payment_naming_the_payers_key_but_signed_by_another_is_refused(module_rail,
                                                                                pair):
    payer, payee = pair
    forged = module_rail.client("yangtze").pay_envelope(
        SigningKey.generate(), payer.wallet_id, payee.wallet_id, yuan(10)).to_dict()
    forged["signer"] = payer.key.key_id
    await refused_and_nothing_moved(module_rail, forged, 401, "bad_signature", payer, payee)


async def test_a_closed_payer_cannot_pay(module_rail, pair):
    payer, payee = pair
    await module_rail.client("yangtze").close_wallet(payer.wallet_id)
    await refused_and_nothing_moved(module_rail, module_rail.pay_envelope(payer, payee, yuan(1)),
                                    409, "wallet_closed", payer, payee)


@pytest.mark.parametrize("payee_class", [4, 1], ids=["capped-payee", "uncapped-payee"])
async def test_a_closed_payee_cannot_be_paid(module_rail, payee_class):
    payer = await module_rail.funded_wallet("yangtze", yuan(100))
    payee = await module_rail.open_wallet("yangtze", kyc_class=payee_class)
    await module_rail.client("yangtze").close_wallet(payee.wallet_id)
    await refused_and_nothing_moved(module_rail, module_rail.pay_envelope(payer, payee, yuan(1)),
                                    409, "wallet_closed", payer, payee)


async def test_a_wallet_cannot_pay_itself(module_rail, pair):
    payer, _ = pair
    await refused_and_nothing_moved(module_rail, module_rail.pay_envelope(payer, payer, yuan(1)),
                                    422, "self_payment", payer)


# --- limits and funds -------------------------------------------------------------------------

async def test_a_payment_above_the_per_payment_cap_is_refused(module_rail):
    payer = await module_rail.funded_wallet("yangtze", yuan(3_000))
    payee = await module_rail.open_wallet("yangtze")
    await refused_and_nothing_moved(
        module_rail, module_rail.pay_envelope(payer, payee, yuan(2_000) + 1),
        409, "per_payment_cap_exceeded", payer, payee)


async def test_a_payment_past_the_daily_cap_is_refused(module_rail):
    payer = await module_rail.funded_wallet("yangtze", yuan(6_000))
    payee = await module_rail.open_wallet("yangtze", kyc_class=1)
    for amount in (yuan(2_000), yuan(2_000), yuan(999)):
        await module_rail.pay(payer, payee, amount)
    await refused_and_nothing_moved(
        module_rail, module_rail.pay_envelope(payer, payee, yuan(1) + 1),
        409, "daily_cap_exceeded", payer, payee)
    assert (await module_rail.pay(payer, payee, yuan(1)))["status"] == "settled", \
        "exactly up to the cap is fine"


async def test_a_payment_above_the_balance_is_refused(module_rail, pair):
    payer, payee = pair
    await refused_and_nothing_moved(
        module_rail, module_rail.pay_envelope(payer, payee, yuan(1_000) + 1),
        409, "insufficient_funds", payer, payee)


async def test_a_payment_to_another_bank_above_the_balance_is_refused(module_rail, pair):
    payer, _ = pair
    payee = await module_rail.open_wallet("pearl")
    await refused_and_nothing_moved(
        module_rail, module_rail.pay_envelope(payer, payee, yuan(1_000) + 1),
        409, "insufficient_funds", payer, payee)


# --- amounts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("amount", [0, -100, "100", None, True],
                         ids=["zero", "negative", "string", "null", "boolean"])
async def test_an_amount_that_is_not_a_positive_integer_of_fen_is_refused(module_rail, pair,
                                                                           amount):
    payer, payee = pair
    await refused_and_nothing_moved(module_rail, module_rail.pay_envelope(payer, payee, amount),
                                    422, "invalid_amount", payer, payee)


async def test_a_float_amount_is_refused_before_anything_else(module_rail, pair):
    payer, payee = pair
    body = orjson.dumps(module_rail.pay_envelope(payer, payee, 500).to_dict())
    assert b'"amount_fen":500' in body
    await refused_and_nothing_moved(module_rail, body.replace(b'"amount_fen":500',
                                                              b'"amount_fen":500.0'),
                                    422, "float_not_allowed", payer, payee)


# --- the envelope -----------------------------------------------------------------------------

async def test_an_expired_payment_is_refused(module_rail, pair):
    payer, payee = pair
    envelope = module_rail.pay_envelope(payer, payee, yuan(1), created_ms=now_ms() - 600_000,
                                        ttl_ms=60_000)
    await refused_and_nothing_moved(module_rail, envelope, 400, "expired", payer, payee)


async def test_a_payment_altered_after_signing_is_refused(module_rail, pair):
    payer, payee = pair
    altered = module_rail.pay_envelope(payer, payee, yuan(1)).to_dict()
    altered["body"]["amount_fen"] = yuan(900)
    await refused_and_nothing_moved(module_rail, altered, 401, "bad_signature", payer, payee)


async def test_a_payment_redirected_to_another_payee_after_signing_is_refused(module_rail, pair):
    payer, payee = pair
    mallory = await module_rail.open_wallet("yangtze")
    altered = module_rail.pay_envelope(payer, payee, yuan(1)).to_dict()
    altered["body"]["payee_wallet"] = mallory.wallet_id
    await refused_and_nothing_moved(module_rail, altered, 401, "bad_signature",
                                    payer, payee, mallory)


async def test_an_unsigned_payment_is_refused(module_rail, pair):
    payer, payee = pair
    unsigned = {**module_rail.pay_envelope(payer, payee, yuan(1)).to_dict(), "sig": ""}
    await refused_and_nothing_moved(module_rail, unsigned, 401, "unsigned", payer, payee)


async def test_an_instruction_of_another_type_is_refused(module_rail, pair):
    payer, payee = pair
    top_up = seal(payer.key, TOP_UP, {"wallet_id": payer.wallet_id, "amount_fen": yuan(1)})
    await refused_and_nothing_moved(module_rail, top_up, 400, "wrong_instruction_type",
                                    payer, payee)


async def test_the_same_instruction_id_with_other_content_is_refused(module_rail, pair):
    payer, payee = pair
    first = module_rail.pay_envelope(payer, payee, yuan(1), id="same-id-0000000001")
    assert (await module_rail.send_payment("yangtze", first)).status_code == 200
    other = module_rail.pay_envelope(payer, payee, yuan(2), id="same-id-0000000001")
    await refused_and_nothing_moved(module_rail, other, 409, "instruction_id_reused",
                                    payer, payee)
    assert await module_rail.balance(payer) == yuan(999)


async def test_a_payment_replayed_after_its_expiry_is_refused(module_rail, pair):
    payer, payee = pair
    envelope = module_rail.pay_envelope(payer, payee, yuan(1), ttl_ms=1_000)
    assert (await module_rail.send_payment("yangtze", envelope)).status_code == 200
    await asyncio.sleep(max(envelope.expires_ms - now_ms(), 0) / 1000 + 0.05)
    await refused_and_nothing_moved(module_rail, envelope, 409, "replayed", payer, payee)
    assert await module_rail.balance(payer) == yuan(999)


async def test_a_refused_payment_is_refused_again_even_after_the_cause_is_gone(module_rail,
                                                                               pair):
    """A refusal is an outcome too: the same instruction never runs later."""
    payer, payee = pair
    envelope = module_rail.pay_envelope(payer, payee, yuan(1_500))
    assert_refused(await module_rail.send_payment("yangtze", envelope), 409,
                   "insufficient_funds")
    await module_rail.fund(payer, yuan(1_000))
    assert_refused(await module_rail.send_payment("yangtze", envelope), 409,
                   "insufficient_funds")
    assert await module_rail.balance(payer) == yuan(2_000)
    await module_rail.assert_balanced()


@pytest.mark.parametrize("payment_id", ["P" + "9" * 40, "P9223372036854775808", "P١٢٣",
                                        "P", "123", "P-1"])
async def test_a_payment_id_that_names_no_transaction_is_refused_not_a_server_error(
        module_rail, pair, payment_id):
    """Refund and read a payment by an id no 64-bit transaction id can be: 4xx, nothing moves."""
    payer, _payee = pair
    shop = await module_rail.funded_wallet("yangtze", yuan(10), kind="merchant", kyc_class=1)
    before = await module_rail.snapshot(shop)
    refund = module_rail.client(shop).refund_envelope(shop.key, shop.wallet_id, payment_id, 100)
    response = await module_rail.post_raw("yangtze", "/v1/merchant/refunds", refund)
    assert_refused(response, 422, "invalid_field")
    assert await module_rail.snapshot(shop) == before
    with pytest.raises(RailError) as unread:
        await module_rail.client(payer).payment(payer.key, payer.wallet_id, payment_id)
    assert unread.value.code == "not_found"
