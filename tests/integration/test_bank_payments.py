"""Payments on real PostgreSQL and Redis: within one bank and across banks through central,
signed reads of balance, history and status, retries with one effect, the waterfall (a
payee past its balance cap) and the reverse waterfall (top-up on use), and interbank
refusals that give the payer everything back. After each, the rail's audit balances."""

import asyncio

import pytest
import sqlalchemy as sa

from bank.adapters import books_sql
from rail_protocol.envelope import now_ms, seal
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey
from rail_protocol.money import yuan
from rail_protocol.request_auth import sign_read
from tests.support.rail import assert_refused, rail_factory  # noqa: F401
from tests.support.rail import module_rail as rail  # noqa: F401  (one rail for the module)

pytestmark = pytest.mark.integration


# --- within one bank --------------------------------------------------------------------------

async def test_a_payment_within_one_bank_settles_at_once(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    payee = await rail.open_wallet("yangtze")
    paid = await rail.pay(payer, payee, yuan(30), memo="lunch")
    assert paid["status"] == "settled"
    assert paid["payment_id"].startswith("P")
    assert paid["balance_after_fen"] == yuan(70)
    assert (paid["payer_wallet"], paid["payee_wallet"]) == (payer.wallet_id, payee.wallet_id)
    assert "repeated" not in paid
    assert await rail.balance(payer) == yuan(70)
    assert await rail.balance(payee) == yuan(30)
    payer_view = await rail.wallet_view(payer)
    assert payer_view["spent_today_fen"] == yuan(30)
    assert payer_view["daily_left_fen"] == yuan(5_000 - 30)
    await rail.assert_balanced()


async def test_a_merchant_with_no_balance_cap_is_credited_and_can_spend_it(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    merchant = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    for amount in (1, 2, 3):
        await rail.pay(payer, merchant, yuan(amount))
    assert await rail.balance(merchant) == yuan(6)
    spent = await rail.pay(merchant, payer, yuan(5))
    assert spent["balance_after_fen"] == yuan(1)
    assert await rail.balance(payer) == yuan(99)
    await rail.assert_balanced()


# --- across banks -----------------------------------------------------------------------------

async def test_a_payment_to_another_bank_settles_and_the_payee_there_sees_it(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    payee = await rail.open_wallet("pearl")
    before = await rail.assert_balanced()
    paid = await rail.pay(payer, payee, yuan(40), memo="rent share")
    assert paid["status"] == "settled", paid
    assert paid["transfer_id"].startswith("yangtze.")
    assert await rail.balance(payer) == yuan(60)

    seen = await rail.client(payee).wallet(payee.key, payee.wallet_id)
    assert seen["balance_fen"] == yuan(40)
    history = await rail.client(payee).history(payee.key, payee.wallet_id)
    assert [(i["kind"], i["status"], i["amount_fen"], i.get("counterparty_bank"))
            for i in history["items"]] == [("interbank_in", "settled", yuan(40), "yangtze")]
    await rail.quiet()   # the payer heard `settled` before central's books recorded it
    transfer = await rail.central.get_transfer(paid["transfer_id"])
    assert transfer["status"] == "settled"

    report = await rail.assert_balanced()
    assert report["holding"]["pearl"] == before["holding"]["pearl"] + yuan(40)
    assert report["banks"]["pearl"]["wallets_fen"] == before["banks"]["pearl"]["wallets_fen"] \
        + yuan(40)


async def test_payments_cross_both_ways_and_the_books_follow(rail):
    alice = await rail.funded_wallet("yangtze", yuan(500))
    bob = await rail.funded_wallet("pearl", yuan(500))
    for _ in range(3):
        assert (await rail.pay(alice, bob, yuan(70)))["status"] == "settled"
    assert (await rail.pay(bob, alice, yuan(20)))["status"] == "settled"
    assert await rail.balance(alice) == yuan(500 - 210 + 20)
    assert await rail.balance(bob) == yuan(500 + 210 - 20)
    report = await rail.assert_balanced()
    assert report["central"]["total_issued_fen"] == sum(report["holding"].values())


async def test_a_payment_to_an_unknown_wallet_at_another_bank_is_rejected_and_refunded(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    paid = await rail.pay(payer, "pearl.00000000deadbeef", yuan(25))
    assert paid["status"] == "rejected", paid
    assert await rail.balance(payer) == yuan(100), "the payer got the whole amount back"
    view = await rail.client(payer).payment(payer.key, payer.wallet_id, paid["payment_id"])
    assert (view["status"], view["code"]) == ("rejected", "unknown_wallet")
    assert (await rail.wallet_view(payer))["spent_today_fen"] == 0, \
        "a refunded payment does not count toward the daily cap"
    assert (await rail.central.get_transfer(paid["transfer_id"]))["status"] == "rejected"
    await rail.assert_balanced()


async def test_a_payment_to_a_bank_central_does_not_know_is_refused_before_any_debit(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    before = await rail.client(payer).history(payer.key, payer.wallet_id)
    for _ in range(2):     # the second answer comes from the directory's short memory
        with pytest.raises(RailError) as refused:
            await rail.pay(payer, "nosuchbank.0123456789", yuan(25))
        assert (refused.value.code, refused.value.status) == ("unknown_bank", 404)
    history = await rail.client(payer).history(payer.key, payer.wallet_id)
    assert history == before, "nothing was debited, recorded or sent"
    assert await rail.balance(payer) == yuan(100)
    await rail.assert_balanced()


@pytest.mark.parametrize("payee_class", [4, 1])
async def test_a_closed_payee_at_another_bank_rejects_and_the_payer_is_refunded(rail,
                                                                               payee_class):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    payee = await rail.open_wallet("pearl", kyc_class=payee_class)
    await rail.client("pearl").close_wallet(payee.wallet_id)
    paid = await rail.pay(payer, payee, yuan(10))
    assert paid["status"] == "rejected"
    view = await rail.client(payer).payment(payer.key, payer.wallet_id, paid["payment_id"])
    assert view["code"] == "wallet_closed"
    assert await rail.balance(payer) == yuan(100)
    assert await rail.balance(payee) == 0
    await rail.assert_balanced()


# --- signed reads -----------------------------------------------------------------------------

async def test_history_pages_newest_first_with_before_and_limit(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    payees = [await rail.open_wallet("yangtze") for _ in range(2)]
    for n in range(5):
        await rail.pay(payer, payees[n % 2], yuan(n + 1))
    client = rail.client(payer)
    everything = (await client.history(payer.key, payer.wallet_id, limit=100))["items"]
    assert len(everything) == 6  # the funding and five payments
    ids = [int(i["payment_id"][1:]) for i in everything]
    assert ids == sorted(ids, reverse=True)
    assert [i["amount_fen"] for i in everything[:5]] == [yuan(5), yuan(4), yuan(3), yuan(2),
                                                          yuan(1)]

    pages, before = [], None
    while True:
        page = await client.history(payer.key, payer.wallet_id, limit=4, before=before)
        pages.append(page["items"])
        before = page["next_before"]
        if before is None:
            break
    assert [len(p) for p in pages] == [4, 2]
    assert [i for p in pages for i in p] == everything


async def test_history_filters_by_counterparty_and_by_time(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    first, second = await rail.open_wallet("yangtze"), await rail.open_wallet("pearl")
    for n in range(6):
        await rail.pay(payer, first if n % 2 == 0 else second, yuan(n + 1))
        await asyncio.sleep(0.005)
    client = rail.client(payer)
    everything = (await client.history(payer.key, payer.wallet_id, limit=100))["items"]

    with_first = await client.history(payer.key, payer.wallet_id, counterparty=first.wallet_id)
    assert [i["amount_fen"] for i in with_first["items"]] == [yuan(5), yuan(3), yuan(1)]
    with_second = await client.history(payer.key, payer.wallet_id,
                                       counterparty=second.wallet_id)
    assert [i["amount_fen"] for i in with_second["items"]] == [yuan(6), yuan(4), yuan(2)]
    assert all(i["kind"] == "interbank_out" for i in with_second["items"])

    payments = [i for i in everything if i["payer_wallet"] == payer.wallet_id]
    since_ms, until_ms = payments[4]["created_ms"], payments[1]["created_ms"]
    window = await client.history(payer.key, payer.wallet_id, since_ms=since_ms,
                                  until_ms=until_ms)
    expected = [i for i in everything if since_ms <= i["created_ms"] < until_ms]
    assert window["items"] == expected
    assert [i["amount_fen"] for i in expected] == [yuan(4), yuan(3), yuan(2)]


async def test_payer_and_payee_read_a_payments_status_and_no_one_else_does(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    payee, stranger = await rail.open_wallet("yangtze"), await rail.open_wallet("yangtze")
    paid = await rail.pay(payer, payee, yuan(9), memo="tea")
    client = rail.client("yangtze")
    for reader in (payer, payee):
        view = await client.payment(reader.key, reader.wallet_id, paid["payment_id"])
        assert (view["payment_id"], view["status"], view["amount_fen"], view["memo"]) == \
            (paid["payment_id"], "settled", yuan(9), "tea")
    path = f"/v1/wallets/{stranger.wallet_id}/payments/{paid['payment_id']}"
    response = await client.http.get(path, headers={
        "authorization": sign_read(stranger.key, "GET", path)})
    assert_refused(response, 404, "not_found")


async def test_a_balance_read_must_be_signed_by_the_wallets_own_key(rail):
    owner, other = await rail.funded_wallet("yangtze", yuan(7)), await rail.open_wallet("yangtze")
    client = rail.client("yangtze")
    path = f"/v1/wallets/{owner.wallet_id}"
    assert (await client.wallet(owner.key, owner.wallet_id))["balance_fen"] == yuan(7)

    assert_refused(await client.http.get(path), 401, "unsigned")
    assert_refused(await client.http.get(path, headers={
        "authorization": sign_read(other.key, "GET", path)}), 403, "wrong_key")
    assert_refused(await client.http.get(f"{path}/history", headers={
        "authorization": sign_read(other.key, "GET", f"{path}/history")}), 403, "wrong_key")
    signed_for_another_path = sign_read(owner.key, "GET", f"{path}/history")
    assert_refused(await client.http.get(path, headers={
        "authorization": signed_for_another_path}), 401, "bad_signature")
    stale = sign_read(owner.key, "GET", path, ts_ms=now_ms() - 120_000)
    assert_refused(await client.http.get(path, headers={"authorization": stale}),
                   400, "expired")
    assert_refused(await client.http.get(path, headers={"authorization": "Bearer x"}),
                   401, "unsigned")


async def test_a_balance_read_racing_a_debit_sees_one_consistent_balance(rail):
    """A class-1 merchant's credits are appended beside its row; a debit folds them into
    the row. A read must see the balance before the fold or after it, never half of each.
    The fold is held open (with the credits table locked) while the read starts, so the
    read's statements straddle its commit every time."""
    merchant = await rail.open_wallet("yangtze", kind="merchant", kyc_class=1)
    payer = await rail.funded_wallet("yangtze", yuan(100))
    for _ in range(3):
        await rail.pay(payer, merchant, yuan(10))
    engine = rail.banks["yangtze"].node.engine
    async with engine.connect() as debit:
        await debit.execute(sa.text("LOCK TABLE wallet_credits IN ACCESS EXCLUSIVE MODE"))
        _row, state = await books_sql.lock_wallet(debit, merchant.wallet_id)  # the fold
        await books_sql.save_wallet(debit, state)
        read = asyncio.create_task(rail.client(merchant).wallet(merchant.key,
                                                                merchant.wallet_id))
        await until_a_query_waits_for_a_lock(engine)
        await debit.commit()
    assert (await read)["balance_fen"] == yuan(30)


async def until_a_query_waits_for_a_lock(engine, timeout_s: float = 5.0) -> None:
    async with engine.connect() as watch:
        for _ in range(int(timeout_s / 0.02)):
            waiting = (await watch.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE NOT granted"))).scalar_one()
            await watch.rollback()
            if waiting:
                return
            await asyncio.sleep(0.02)


# --- retries ----------------------------------------------------------------------------------

async def test_a_retried_payment_answers_the_first_outcome_and_debits_once(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    payee = await rail.open_wallet("yangtze")
    envelope = rail.pay_envelope(payer, payee, yuan(10))
    first = await rail.send_payment("yangtze", envelope)
    again = await rail.send_payment("yangtze", envelope)
    assert first.status_code == again.status_code == 200
    assert again.json()["payment_id"] == first.json()["payment_id"]
    assert again.json()["repeated"] is True and "repeated" not in first.json()
    assert await rail.balance(payer) == yuan(90)
    assert await rail.balance(payee) == yuan(10)
    history = await rail.client(payer).history(payer.key, payer.wallet_id)
    assert [i["payment_id"] for i in history["items"]].count(first.json()["payment_id"]) == 1
    await rail.assert_balanced()


async def test_a_retried_payment_to_another_bank_moves_the_money_once(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    payee = await rail.open_wallet("pearl")
    envelope = rail.pay_envelope(payer, payee, yuan(10))
    first = await rail.send_payment("yangtze", envelope)
    assert (await rail.finished(payer, first.json()))["status"] == "settled"
    answers = [first] + [await rail.send_payment("yangtze", envelope) for _ in range(2)]
    assert {a.json()["payment_id"] for a in answers} == {first.json()["payment_id"]}
    assert [a.json().get("repeated", False) for a in answers] == [False, True, True]
    assert [a.json()["status"] for a in answers[1:]] == ["settled", "settled"]
    assert await rail.balance(payer) == yuan(90)
    assert await rail.balance(payee) == yuan(10)
    await rail.assert_balanced()


async def test_concurrent_copies_of_one_payment_have_one_effect(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100))
    payee = await rail.open_wallet("yangtze")
    envelope = rail.pay_envelope(payer, payee, yuan(10))
    answers = await asyncio.gather(*(rail.send_payment("yangtze", envelope) for _ in range(10)))
    ok = [a for a in answers if a.status_code == 200]
    assert ok, [a.text for a in answers]
    assert {a.json()["payment_id"] for a in ok} == {ok[0].json()["payment_id"]}
    assert await rail.balance(payer) == yuan(90)
    await rail.assert_balanced()


# --- the waterfall and the reverse waterfall --------------------------------------------------

async def test_a_credit_past_the_payees_cap_sweeps_the_excess_to_its_deposit_account(rail):
    """A class-4 payee (cap 10,000 yuan) holding 9,000 yuan, with a linked account."""
    payer = await rail.funded_wallet("yangtze", yuan(5_000), kyc_class=1)
    payee = await rail.funded_wallet("yangtze", yuan(9_000), kyc_class=4,
                                     linked_deposit_fen=yuan(50))
    paid = await rail.pay(payer, payee, yuan(3_000))
    assert paid["status"] == "settled" and paid["swept_to_deposit_fen"] == yuan(2_000)
    assert await rail.balance(payee) == yuan(10_000)
    assert await rail.deposit_balance(payee) == yuan(50 + 2_000)
    assert await rail.balance(payer) == yuan(2_000)
    await rail.assert_balanced()


async def test_a_credit_past_the_cap_of_a_payee_with_no_account_is_refused(rail):
    payer = await rail.funded_wallet("yangtze", yuan(5_000), kyc_class=1)
    payee = await rail.funded_wallet("yangtze", yuan(9_000), kyc_class=4)
    before = await rail.snapshot(payer, payee)
    response = await rail.send_payment("yangtze", rail.pay_envelope(payer, payee, yuan(1_001)))
    assert_refused(response, 409, "balance_cap_exceeded")
    assert await rail.snapshot(payer, payee) == before
    assert (await rail.pay(payer, payee, yuan(1_000)))["status"] == "settled", \
        "up to the cap it is fine"


async def test_a_credit_from_another_bank_past_the_cap_sweeps_there_too(rail):
    payer = await rail.funded_wallet("yangtze", yuan(5_000), kyc_class=1)
    payee = await rail.funded_wallet("pearl", yuan(9_500), kyc_class=4,
                                     linked_deposit_fen=0)
    paid = await rail.pay(payer, payee, yuan(2_000))
    assert paid["status"] == "settled"
    assert await rail.balance(payee) == yuan(10_000)
    assert await rail.deposit_balance(payee) == yuan(1_500)
    report = await rail.assert_balanced()
    assert report["banks"]["pearl"]["vault_fen"] >= yuan(1_500)


async def test_a_credit_from_another_bank_past_the_cap_with_no_account_is_rejected(rail):
    payer = await rail.funded_wallet("yangtze", yuan(5_000), kyc_class=1)
    payee = await rail.funded_wallet("pearl", yuan(9_500), kyc_class=4)
    paid = await rail.pay(payer, payee, yuan(501))
    assert paid["status"] == "rejected"
    view = await rail.client(payer).payment(payer.key, payer.wallet_id, paid["payment_id"])
    assert view["code"] == "balance_cap_exceeded"
    assert await rail.balance(payer) == yuan(5_000)
    assert await rail.balance(payee) == yuan(9_500)
    await rail.assert_balanced()


async def test_top_up_on_use_pulls_the_shortfall_from_the_deposit_account(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100), kyc_class=2,
                                     linked_deposit_fen=yuan(1_000), topup_on_use=True)
    payee = await rail.open_wallet("yangtze")
    paid = await rail.pay(payer, payee, yuan(300))
    assert paid["status"] == "settled"
    assert paid["pulled_from_deposit_fen"] == yuan(200) and paid["balance_after_fen"] == 0
    assert await rail.balance(payer) == 0
    assert await rail.deposit_balance(payer) == yuan(800)
    assert await rail.balance(payee) == yuan(300)
    await rail.assert_balanced()


async def test_top_up_on_use_works_for_a_payment_to_another_bank(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100), kyc_class=2,
                                     linked_deposit_fen=yuan(1_000), topup_on_use=True)
    payee = await rail.open_wallet("pearl")
    paid = await rail.pay(payer, payee, yuan(250))
    assert paid["status"] == "settled" and paid["pulled_from_deposit_fen"] == yuan(150)
    assert await rail.deposit_balance(payer) == yuan(850)
    assert await rail.balance(payee) == yuan(250)
    await rail.assert_balanced()


async def test_top_up_on_use_refuses_when_the_deposit_cannot_cover_the_shortfall(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100), kyc_class=2,
                                     linked_deposit_fen=yuan(150), topup_on_use=True)
    payee = await rail.open_wallet("yangtze")
    before = await rail.snapshot(payer, payee)
    response = await rail.send_payment("yangtze", rail.pay_envelope(payer, payee, yuan(251)))
    assert_refused(response, 409, "insufficient_funds")
    assert await rail.snapshot(payer, payee) == before


async def test_without_top_up_on_use_the_deposit_account_is_left_alone(rail):
    payer = await rail.funded_wallet("yangtze", yuan(100), kyc_class=2,
                                     linked_deposit_fen=yuan(1_000))
    payee = await rail.open_wallet("yangtze")
    before = await rail.snapshot(payer, payee)
    response = await rail.send_payment("yangtze", rail.pay_envelope(payer, payee, yuan(101)))
    assert_refused(response, 409, "insufficient_funds")
    assert await rail.snapshot(payer, payee) == before


# --- a refund must respect the balance cap too ------------------------------------------------

async def test_a_refund_of_a_late_rejected_transfer_keeps_the_payer_within_its_cap(
        rail_factory):
    """Pearl is unreachable, so the transfer stays in flight. While it is, the balance cap
    keeps room for it: a credit that would leave no room for the money to come back is
    refused. Then pearl refuses the credit (unknown payee), the payer is refunded in full,
    and stays within class 4's 10,000 yuan."""
    async with rail_factory() as rail:
        await late_refund_to_a_full_wallet(rail)


async def late_refund_to_a_full_wallet(rail) -> None:
    payer = await rail.funded_wallet("yangtze", yuan(10_000), kyc_class=4)
    await rail.treasury("pearl")
    rail.net.down.add("pearl.test")
    paid = await rail.pay(payer, "pearl.00000000cafebabe", yuan(1_000), wait=False)
    assert paid["status"] == "processing"
    with pytest.raises(RailError) as refused:
        await rail.fund(payer, yuan(1_000))
    assert refused.value.code == "balance_cap_exceeded"
    assert await rail.balance(payer) == yuan(9_000)
    rail.net.down.discard("pearl.test")
    view = await rail.wait_for_payment(payer, paid["payment_id"])
    assert view["status"] == "rejected"
    assert await rail.balance(payer) == yuan(10_000)
    audit = await rail.bank_audit("yangtze")
    assert audit["balanced"], audit["problems"]


async def test_a_batch_of_credits_from_central_is_answered_item_by_item(rail):
    """Message 2 in a batch: each credit gets its own answer in its place; an item that is
    not signed by central gets its typed error there and credits nothing."""
    payee = await rail.open_wallet("pearl")
    forged = seal(SigningKey.generate(), "bank.interbank_credit", {
        "transfer_id": "yangtze.forged0001", "from_bank": "yangtze", "to_bank": "pearl",
        "amount_fen": yuan(5), "payee_wallet": payee.wallet_id}, id="yangtze.forged0001")
    response = await rail.post_raw("pearl", "/v1/interbank/credits/batch",
                                   {"credits": [forged.to_dict(), "not an envelope"]})
    assert response.status_code == 200, response.text
    codes = [item.get("error", {}).get("code") for item in response.json()["results"]]
    assert codes == ["unknown_key", "unsigned"], codes
    assert await rail.balance(payee) == 0
    await rail.assert_balanced()


@pytest.mark.parametrize("body", [{"credits": []}, {"credits": {}}, {"other": []},
                                  {"credits": [{}] * 257}])
async def test_a_malformed_batch_of_credits_is_refused_whole(rail, body):
    before = await rail.bank_audit("pearl")
    response = await rail.post_raw("pearl", "/v1/interbank/credits/batch", body)
    assert_refused(response, 422, "invalid_field")
    assert await rail.bank_audit("pearl") == before   # nothing written


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_the_audit_finds_a_posting_altered_in_the_database(rail_factory, backend):
    """The audit sums each transaction in the database; one posting changed by hand (the
    transaction no longer sums to zero) is reported by its id, on both databases."""
    async with rail_factory(backend=backend) as rail:
        payer = await rail.funded_wallet("yangtze", yuan(10))
        payee = await rail.open_wallet("yangtze")
        paid = await rail.pay(payer, payee, 250)
        audit = await rail.bank_audit("yangtze")
        assert audit["balanced"], audit["problems"]
        txn = int(paid["payment_id"][1:])
        node = rail.banks["yangtze"].node
        async with node.engine.begin() as conn:
            await conn.execute(sa.text(
                "UPDATE postings SET amount_fen = amount_fen + 1 WHERE txn_id = :txn "
                "AND amount_fen > 0"), {"txn": txn})
        audit = await rail.bank_audit("yangtze")
        assert not audit["balanced"]
        assert f"transaction {txn} does not balance" in audit["problems"]
