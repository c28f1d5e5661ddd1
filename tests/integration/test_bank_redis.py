"""Redis holds only hot state that can be rebuilt: losing all of it in the middle of the day,
or running with Redis unreachable, lets no replay through and moves no money twice - the
database's unique keys are the authority."""

import asyncio

import pytest

from rail_protocol.envelope import now_ms
from rail_protocol.money import yuan
from tests.support.rail import assert_refused, rail, rail_factory  # noqa: F401

pytestmark = pytest.mark.integration


async def wait_until_expired(envelope) -> None:
    await asyncio.sleep(max(envelope.expires_ms - now_ms(), 0) / 1000 + 0.05)


async def test_losing_redis_in_the_middle_lets_no_instruction_act_twice(rail):
    payer = await rail.funded_wallet("yangtze", yuan(1_000))
    here, there = await rail.open_wallet("yangtze"), await rail.open_wallet("pearl")
    local = rail.pay_envelope(payer, here, yuan(10))
    remote = rail.pay_envelope(payer, there, yuan(20))
    too_much = rail.pay_envelope(payer, here, yuan(2_001))

    async def first_send(envelope) -> str:
        response = await rail.send_payment("yangtze", envelope)
        assert response.status_code == 200
        assert (await rail.finished(payer, response.json()))["status"] == "settled"
        return response.json()["payment_id"]

    first = {"local": await first_send(local), "remote": await first_send(remote)}
    # its 1.5 s start now, not before the payments ahead of it (a slow interbank settle)
    short_lived = rail.pay_envelope(payer, here, yuan(1), ttl_ms=1_500)
    first["short"] = await first_send(short_lived)
    assert_refused(await rail.send_payment("yangtze", too_much), 409, "per_payment_cap_exceeded")
    before = await rail.snapshot(payer, here, there)

    assert await rail.delete_redis_state("yangtze") > 0, "the bank kept hot state in Redis"

    for name, envelope in (("local", local), ("remote", remote), ("short", short_lived)):
        again = await rail.send_payment("yangtze", envelope)
        assert again.status_code == 200, again.text
        assert (again.json()["payment_id"], again.json()["repeated"]) == (first[name], True)
    assert_refused(await rail.send_payment("yangtze", too_much), 409, "per_payment_cap_exceeded")
    other_content = rail.pay_envelope(payer, here, yuan(99), id=local.id)
    assert_refused(await rail.send_payment("yangtze", other_content), 409,
                   "instruction_id_reused")
    await wait_until_expired(short_lived)
    await rail.delete_redis_state("yangtze")
    assert_refused(await rail.send_payment("yangtze", short_lived), 409, "replayed")

    assert await rail.snapshot(payer, here, there) == before
    assert await rail.balance(payer) == yuan(1_000 - 31)
    await rail.assert_balanced()


async def test_payments_work_and_retries_have_one_effect_with_redis_unreachable(rail_factory):
    async with rail_factory(redis_url="redis://127.0.0.1:1/0") as rail:
        payer = await rail.funded_wallet("yangtze", yuan(1_000))
        here, there = await rail.open_wallet("yangtze"), await rail.open_wallet("pearl")

        local = rail.pay_envelope(payer, here, yuan(10))
        answers = [await rail.send_payment("yangtze", local) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert len({a.json()["payment_id"] for a in answers}) == 1
        assert [a.json().get("repeated", False) for a in answers] == [False, True, True]

        remote = rail.pay_envelope(payer, there, yuan(20))
        answers = [await rail.send_payment("yangtze", remote) for _ in range(2)]
        assert (await rail.finished(payer, answers[0].json()))["status"] == "settled"
        assert answers[1].json()["repeated"] is True
        assert answers[0].json()["payment_id"] == answers[1].json()["payment_id"]

        racing = rail.pay_envelope(payer, here, yuan(5))
        raced = await asyncio.gather(*(rail.send_payment("yangtze", racing) for _ in range(8)))
        assert len({r.json()["payment_id"] for r in raced if r.status_code == 200}) == 1

        assert_refused(await rail.send_payment(
            "yangtze", rail.pay_envelope(payer, here, yuan(1), id=local.id)),
            409, "instruction_id_reused")
        too_much = rail.pay_envelope(payer, here, yuan(2_001))
        for _ in range(2):
            assert_refused(await rail.send_payment("yangtze", too_much), 409,
                           "per_payment_cap_exceeded")
        short_lived = rail.pay_envelope(payer, here, yuan(1), ttl_ms=1_000)
        assert (await rail.send_payment("yangtze", short_lived)).status_code == 200
        await wait_until_expired(short_lived)
        assert_refused(await rail.send_payment("yangtze", short_lived), 409, "replayed")

        assert await rail.balance(payer) == yuan(1_000 - 10 - 20 - 5 - 1)
        assert await rail.balance(here) == yuan(16)
        assert await rail.balance(there) == yuan(20)
        await rail.assert_balanced()


async def test_a_chatty_wallet_is_rate_limited_and_a_limited_payment_moves_nothing(
        rail_factory):
    async with rail_factory(rate_limit_per_s=3) as rail:
        payer = await rail.funded_wallet("yangtze", yuan(100))
        payee = await rail.open_wallet("yangtze")
        envelopes = [rail.pay_envelope(payer, payee, yuan(1)) for _ in range(10)]
        answers = await asyncio.gather(*(rail.send_payment("yangtze", e) for e in envelopes))
        settled = [e for e, a in zip(envelopes, answers, strict=True) if a.status_code == 200]
        limited = [e for e, a in zip(envelopes, answers, strict=True) if a.status_code == 429]
        assert len(settled) + len(limited) == 10
        assert 3 <= len(settled) <= 6, "3 a second, and the burst may straddle two seconds"
        assert all(a.json()["error"]["code"] == "rate_limited"
                   for a in answers if a.status_code == 429)
        assert await rail.balance(payer) == yuan(100 - len(settled))
        await asyncio.sleep(1.1)
        retried = await rail.send_payment("yangtze", limited[0])
        assert retried.status_code == 200 and retried.json()["status"] == "settled", \
            "a rate-limited instruction never ran, so the same envelope may be sent again"
        assert await rail.balance(payer) == yuan(100 - len(settled) - 1)
        await rail.assert_balanced()
