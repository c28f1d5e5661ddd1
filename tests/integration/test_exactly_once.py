"""One exactly-once rule for every signed instruction (rail_service/instructions.py), on BOTH
databases: a repeat gets the first outcome marked `repeated`, or the first refusal again even
when the world has changed since; another content under a known id is refused
(`instruction_id_reused`); tries at once have one effect. Here for the instructions run by the
shared executor outside the payment batches: holds and vouchers, and mandates (which move no
money, so the executor keeps a record row for them)."""

import asyncio

import pytest
import sqlalchemy as sa

from bank.adapters import tables as t
from rail_protocol.envelope import now_ms, seal
from rail_protocol.instruction_types import HOLD, HOLD_RELEASE, MANDATE
from rail_protocol.money import yuan
from tests.support.rail import rail_on_both_databases as rail  # noqa: F401

pytestmark = pytest.mark.integration
BANK = "yangtze"
HOUR_MS = 3_600_000


async def code_of(answer) -> str:
    return answer.json()["error"]["code"]


async def test_a_refused_step_is_refused_the_same_way_when_repeated_after_the_world_changed(
        rail):
    payer = await rail.funded_wallet(BANK, yuan(100))
    shop = await rail.open_wallet(BANK, kind="merchant", kyc_class=1)
    opening = await rail.client(BANK).open_hold(payer.key, payer.wallet_id, shop.wallet_id,
                                                yuan(10), deadline_ms=now_ms() + HOUR_MS,
                                                release_by="merchant")
    hold_id = opening["hold_id"]
    too_much = seal(shop.key, HOLD_RELEASE, {"hold_id": hold_id, "signer_wallet":
                                             shop.wallet_id, "amount_fen": yuan(20)})
    first = await rail.post_raw(BANK, f"/v1/holds/{hold_id}/release", too_much)
    assert first.status_code == 409 and await code_of(first) == "release_exceeds_hold"
    # the world changes (the hold is released in part by another instruction) ...
    part = seal(shop.key, HOLD_RELEASE, {"hold_id": hold_id, "signer_wallet": shop.wallet_id,
                                         "amount_fen": yuan(4)})
    assert (await rail.post_raw(BANK, f"/v1/holds/{hold_id}/release", part)).status_code == 200
    # ... and the refused instruction, sent again, is still refused the same way
    again = await rail.post_raw(BANK, f"/v1/holds/{hold_id}/release", too_much)
    assert await code_of(again) == "release_exceeds_hold"
    # the done one, again, is answered with no second effect
    assert (await rail.post_raw(BANK, f"/v1/holds/{hold_id}/release", part)).status_code == 200
    assert await rail.balance(shop) == yuan(4)
    await rail.assert_balanced()


async def test_another_content_under_a_known_id_is_refused(rail):
    payer = await rail.funded_wallet(BANK, yuan(100))
    shop = await rail.open_wallet(BANK, kind="merchant", kyc_class=1)
    body = {"payer_wallet": payer.wallet_id, "payee_wallet": shop.wallet_id,
            "amount_fen": 1_000, "deadline_ms": now_ms() + HOUR_MS, "release_by": "merchant"}
    first = seal(payer.key, HOLD, body)
    assert (await rail.post_raw(BANK, "/v1/holds", first)).status_code == 201
    other = seal(payer.key, HOLD, {**body, "amount_fen": 2_000}, id=first.id)
    reused = await rail.post_raw(BANK, "/v1/holds", other)
    assert reused.status_code == 409 and await code_of(reused) == "instruction_id_reused"
    assert await rail.balance(payer) == yuan(100) - 1_000
    await rail.assert_balanced()


async def test_a_mandate_is_made_once_and_its_id_is_not_reused(rail):
    """Before the shared executor, a mandate's repeat with other caps got the first mandate
    back as if it were the same instruction."""
    payer = await rail.funded_wallet(BANK, yuan(100))
    shop = await rail.open_wallet(BANK, kind="merchant", kyc_class=1)
    body = {"payer_wallet": payer.wallet_id, "merchant_wallet": shop.wallet_id,
            "merchant_public_key": shop.key.public_key.to_text(), "per_payment_cap_fen": 100,
            "period_cap_fen": 1_000, "period": "month"}
    env = seal(payer.key, MANDATE, body)
    path = f"/v1/wallets/{payer.wallet_id}/mandates"
    answers = await asyncio.gather(*(rail.post_raw(BANK, path, env) for _ in range(5)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["mandate_id"] for a in answers}) == 1
    bigger = seal(payer.key, MANDATE, {**body, "period_cap_fen": 100_000}, id=env.id)
    reused = await rail.post_raw(BANK, path, bigger)
    assert reused.status_code == 409 and await code_of(reused) == "instruction_id_reused"
    async with rail.net.apps[f"{BANK}.test"].app.state.bank.engine.connect() as conn:
        made = (await conn.execute(sa.select(sa.func.count()).select_from(t.mandates).where(
            t.mandates.c.payer_wallet == payer.wallet_id))).scalar_one()
    assert made == 1
    history = await rail.client(BANK).history(payer.key, payer.wallet_id)
    assert all(item["kind"] != "mandate" for item in history["items"])   # no money, no row
    await rail.assert_balanced()
