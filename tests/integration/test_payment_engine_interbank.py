"""Interbank payments at bank A through its payment engine (bank/payment_engine.py): the debit
joins the payment batch, message 1 goes to central at once, the settled outcomes are
recorded many to one transaction. Each test states the answers, refusals, idempotency and
books it expects; the rail's audit balances after each. Yangtze is bank A."""

import asyncio

import pytest

from bank.adapters import batch_store, books_sql
from rail_protocol.envelope import Envelope, seal
from rail_protocol.errors import RailError
from rail_protocol.money import yuan
from tests.integration.test_payment_engine import fast, fast_rail, send_all  # noqa: F401
from tests.support.rail import outcomes
from tests.support import rail as rail_support
from tests.support.polling import poll

pytestmark = pytest.mark.integration

A, B = "yangtze", "pearl"


@pytest.fixture(autouse=True)
def no_batch_failed(caplog):
    """A failed batch is run again item by item and would pass unseen: fail on it."""
    yield
    failed = [r.getMessage() for r in caplog.get_records("call")
              if r.name == "yuanrail.bank.payment_engine" and r.levelname in ("ERROR", "WARNING")]
    assert not failed, failed


def node(rail):
    """Bank A's node (its reads, its key, its client of central)."""
    return rail.banks[A].node


# What a wallet hears of a payment to another bank (no order).
INTERBANK_ANSWER = {"status", "amount_fen", "payer_wallet", "payee_wallet", "balance_after_fen",
                    "pulled_from_deposit_fen", "transfer_id", "payment_id", "created_ms"}


async def pay_across(rail, amount_fen: int, payee: str, *,
                     funded_fen: int = yuan(100)) -> tuple[dict, object]:
    """A payer at A holding `funded_fen` pays `payee`: (the answer, with the final status;
    the payer)."""
    payer = await rail.funded_wallet(A, funded_fen)
    response = await rail.send_payment(A, rail.pay_envelope(payer, payee, amount_fen,
                                                            memo="across"))
    assert response.status_code == 200, response.text
    return await rail.finished(payer, response.json()), payer


async def across(rail, amount_fen: int):
    """A payer at A holding 100 yuan, a payee at B, and the payer's signed payment."""
    payer = await rail.funded_wallet(A, yuan(100))
    payee = await rail.open_wallet(B)
    return payer, payee, rail.pay_envelope(payer, payee, amount_fen)


async def test_an_interbank_payment_settles_and_the_wallet_hears_how(fast_rail):
    rail = fast_rail
    payee = await rail.open_wallet(B)
    settles = fast(rail).sender.settles.items
    answer, payer = await pay_across(rail, yuan(40), payee.wallet_id)
    assert set(answer) == INTERBANK_ANSWER
    assert {k: answer[k] for k in ("status", "amount_fen", "payer_wallet", "payee_wallet",
                                   "balance_after_fen", "pulled_from_deposit_fen")} == {
        "status": "settled", "amount_fen": yuan(40), "payer_wallet": payer.wallet_id,
        "payee_wallet": payee.wallet_id, "balance_after_fen": yuan(60),
        "pulled_from_deposit_fen": 0}
    assert answer["transfer_id"].startswith(f"{A}.") and len(answer["transfer_id"]) == 40
    assert fast(rail).sender.settles.items == settles + 1, "the engine did not settle it"
    assert await rail.balance(payee) == yuan(40)
    await rail.quiet()   # the payer heard `settled` before the books recorded it
    assert (await rail.central.get_transfer(answer["transfer_id"]))["status"] == "settled"
    await rail.assert_balanced()


async def test_the_row_and_the_payers_notification_say_settled(fast_rail):
    rail = fast_rail
    payee = await rail.open_wallet(B)
    answer, payer = await pay_across(rail, 1234, payee.wallet_id)
    assert answer["status"] == "settled"
    await rail.quiet()   # the payer heard `settled` before the books recorded it
    view = await node(rail).reads.payment(payer.wallet_id, answer["payment_id"])
    assert {k: view[k] for k in ("kind", "status", "amount_fen", "payer_wallet", "payee_wallet",
                                 "counterparty_bank", "memo")} == {
        "kind": "interbank_out", "status": "settled", "amount_fen": 1234,
        "payer_wallet": payer.wallet_id, "payee_wallet": payee.wallet_id,
        "counterparty_bank": B, "memo": "across"}

    async def settled_events() -> list:   # sent right after the settle commits
        events = await node(rail).hot.read_events(f"wallet:{payer.wallet_id}")
        return [(e["payment_id"], e["order_id"]) for _id, e in events
                if e["event"] == "payment.settled"]
    assert await poll(settled_events, timeout_s=2) == [(answer["payment_id"], None)]


async def test_message_1_has_the_content_the_outbox_seals_from_the_stored_row(
        fast_rail, monkeypatch):
    """Central keys idempotency on the envelope's digest: a retry by the outbox, sealed
    from the row, must be the same instruction as the engine's first send."""
    rail = fast_rail
    bank_a = node(rail)
    sent: list[dict] = []
    request = bank_a.central.request

    async def recording(method, path, body=None, **params):
        if path == "/v1/transfers/sealed-batch":
            sent.extend(body["transfers"])
        return await request(method, path, body, **params)

    monkeypatch.setattr(bank_a.central, "request", recording)
    payer = await rail.funded_wallet(A, yuan(10))
    payee = await rail.open_wallet(B)
    paid = await rail.pay(payer, payee, 555, memo="same bytes")
    assert paid["status"] == "settled" and len(sent) == 1
    async with bank_a.engine.connect() as conn:
        row = await books_sql.transaction_by_id(conn, int(paid["payment_id"][1:]))
    again = bank_a.outbox.transfer_envelope(row)
    first = Envelope.parse(sent[0], in_sealed_batch=True)   # its signature is the batch's
    assert first.signed_fields() == again.signed_fields()
    assert first.digest() == again.digest()


async def test_one_batch_debits_payments_here_and_to_the_other_bank_together(
        fast_rail, monkeypatch):
    rail = fast_rail
    here = await rail.open_wallet(A, kind="merchant", kyc_class=1)
    there = await rail.open_wallet(B, kind="merchant", kyc_class=1)
    payers = await rail.open_many(A, 40)
    await rail.payroll(A, payers, 1000)
    batcher = fast(rail).payments
    kinds_by_batch: list[set[bool]] = []
    run = batcher._run

    async def recording(batch, conn):
        kinds_by_batch.append({item.to_bank is None for item in batch})
        await run(batch, conn)

    monkeypatch.setattr(batcher, "_run", recording)
    answers = await send_all(rail, A, [
        rail.pay_envelope(p, here if n % 2 else there, 100 + n) for n, p in enumerate(payers)])
    assert outcomes(answers) == {"settled": 40}
    assert {True, False} in kinds_by_batch, "no batch held both kinds"
    assert await rail.balance(here) == sum(100 + n for n in range(1, 40, 2))
    assert await rail.balance(there) == sum(100 + n for n in range(0, 40, 2))
    await rail.assert_balanced()


async def test_a_wallet_paying_here_and_there_at_once_spends_only_what_it_has(fast_rail):
    rail = fast_rail
    payer = await rail.funded_wallet(A, 1000)
    here, there = await rail.open_wallet(A), await rail.open_wallet(B)
    answers = await send_all(rail, A, [rail.pay_envelope(payer, here, 600),
                                       rail.pay_envelope(payer, there, 600)])
    assert outcomes(answers) == {"settled": 1, "insufficient_funds": 1}
    assert await rail.balance(payer) == 400
    assert await rail.balance(here) + await rail.balance(there) == 600
    await rail.assert_balanced()


@pytest.mark.parametrize("case", ["insufficient_funds", "per_payment_cap_exceeded",
                                  "daily_cap_exceeded"])
async def test_a_debit_refused_by_the_rules_is_recorded_and_moves_nothing(fast_rail, case):
    rail = fast_rail
    payee = await rail.open_wallet(B)
    # class 4: per payment 2,000 yuan, daily 5,000 yuan
    payer = await rail.funded_wallet(A, yuan(500) if case == "insufficient_funds"
                                     else yuan(9_000))
    if case == "daily_cap_exceeded":
        for _ in range(2):
            assert (await rail.pay(payer, payee, yuan(2_000)))["status"] == "settled"
    amount = {"insufficient_funds": yuan(500) + 1, "per_payment_cap_exceeded":
              yuan(2_000) + 1, "daily_cap_exceeded": yuan(1_000) + 1}[case]
    before = await rail.snapshot(payer)
    env = rail.pay_envelope(payer, payee, amount)
    batched = fast(rail).payments.items
    for _ in range(2):   # a repeat gets the same refusal
        response = await rail.send_payment(A, env)
        rail_support.assert_refused(response, 409, case)
    assert fast(rail).payments.items > batched
    assert await rail.snapshot(payer) == before, "a refusal moved something"
    history = await rail.client(payer).history(payer.key, payer.wallet_id)
    assert [(i["kind"], i["status"], i["code"]) for i in history["items"]
            if i["instruction_id"] == env.id] == [("payment", "rejected", case)]
    await rail.assert_balanced()


@pytest.mark.parametrize("payee, code", [("pearl.00000000deadbeef", "unknown_wallet")])
async def test_a_transfer_refused_past_the_debit_is_rejected_and_the_payer_refunded(
        fast_rail, payee, code):
    rail = fast_rail
    answer, payer = await pay_across(rail, yuan(25), payee)
    assert answer["status"] == "rejected" and answer["balance_after_fen"] == yuan(75)
    view = await node(rail).reads.payment(payer.wallet_id, answer["payment_id"])
    assert (view["status"], view["code"]) == ("rejected", code)
    wallet = await rail.client(A).operator_wallet(payer.wallet_id)
    assert (wallet["balance_fen"], wallet["spent_today_fen"]) == (yuan(100), 0), \
        "the payer got the whole amount back, and it no longer counts toward the day"
    await rail.assert_balanced()


async def test_a_repeated_interbank_payment_answers_the_first_outcome_and_moves_money_once(
        fast_rail):
    rail = fast_rail
    payer, payee, env = await across(rail, yuan(10))
    first = await send_all(rail, A, [env] * 5)   # five copies at once
    later = [await rail.send_payment(A, env) for _ in range(2)]
    bodies = [a.json() for a in first + later]
    assert {b["payment_id"] for b in bodies} == {bodies[0]["payment_id"]}
    assert sum(1 for b in bodies if not b.get("repeated")) == 1
    assert [b["status"] for b in bodies[-2:]] == ["settled", "settled"]
    assert await rail.balance(payer) == yuan(90)
    assert await rail.balance(payee) == yuan(10)
    other = seal(payer.key, env.type, {**env.body, "amount_fen": yuan(11)}, id=env.id)
    rail_support.assert_refused(await rail.send_payment(A, other), 409,
                                "instruction_id_reused")
    await rail.assert_balanced()


async def test_with_central_unreachable_the_wallet_hears_processing_and_the_outbox_settles_it_once(
        fast_rail):
    rail = fast_rail
    payer, payee, env = await across(rail, yuan(30))
    rail.net.down.add("central.test")
    try:
        batched = fast(rail).payments.items
        answer = (await rail.send_payment(A, env)).json()
        assert fast(rail).payments.items == batched + 1
        assert answer["status"] == "processing"
        assert answer["balance_after_fen"] == yuan(70)
        repeat = (await rail.send_payment(A, env)).json()
        assert (repeat["status"], repeat["repeated"]) == ("processing", True)
    finally:
        rail.net.down.discard("central.test")
    view = await rail.wait_for_payment(payer, answer["payment_id"])
    assert view["status"] == "settled"
    repeat = (await rail.send_payment(A, env)).json()
    assert (repeat["status"], repeat["repeated"]) == ("settled", True), \
        "a repeat after the outbox settled it is not answered with a stale processing"
    assert await rail.balance(payer) == yuan(70)
    assert await rail.balance(payee) == yuan(30)
    await rail.assert_balanced()


async def test_an_order_at_the_other_bank_is_paid_through_the_fast_path(fast_rail):
    rail = fast_rail
    shop = await rail.open_wallet(B, kind="merchant", kyc_class=1)
    order = await rail.client(shop).create_order(shop.key, shop.wallet_id, 2580, "table-9")
    payer = await rail.funded_wallet(A, yuan(100))
    env = rail.pay_envelope(payer, shop, 2580, order_id=order["order_id"])
    settles = fast(rail).sender.settles.items
    paid = (await rail.send_payment(A, env)).json()
    assert (paid["status"], paid["order_id"]) == ("settled", order["order_id"])
    assert fast(rail).sender.settles.items == settles + 1
    assert (await rail.client(shop).order(order["order_id"]))["status"] == "paid"
    again = rail.pay_envelope(await rail.funded_wallet(A, yuan(100)), shop, 2580,
                              order_id=order["order_id"])
    refused = (await rail.send_payment(A, again)).json()
    assert refused["status"] == "rejected", "bank B refuses an order paid already"
    await rail.assert_balanced()


async def test_many_interbank_payments_at_once_are_settled_in_few_transactions(fast_rail):
    rail = fast_rail
    payee = await rail.open_wallet(B, kind="merchant", kyc_class=1)
    payers = await rail.open_many(A, 60)
    await rail.payroll(A, payers, 1000)
    settle_batches = fast(rail).sender.settles.batches
    answers = await send_all(rail, A, [rail.pay_envelope(p, payee, 500) for p in payers])
    assert outcomes(answers) == {"settled": 60}
    assert fast(rail).sender.settles.batches - settle_batches < 60, "nothing was settled together"
    assert await rail.balance(payee) == 60 * 500
    await rail.assert_balanced()


async def test_money_in_flight_to_another_bank_keeps_its_room_under_the_cap_in_the_same_batch(
        fast_rail, monkeypatch):
    """A wallet at its balance cap pays 1,000 yuan to another bank while, in the same batch,
    it is paid 1,000 yuan: the credit is refused as `Bank` refuses it (the amount in flight
    may come back), so the refund of the refused transfer still fits under the cap."""
    rail = fast_rail
    full = await rail.funded_wallet(A, yuan(10_000))          # class 4: capped at 10,000
    other = await rail.funded_wallet(A, yuan(2_000))
    path = fast(rail)
    for payer, payee in ((full, other), (other, full)):       # their keys now cached
        await path.pay(rail.pay_envelope(payer, payee, 1).to_dict())
    batches: list[int] = []
    run = path.payments._run

    async def recording(batch, conn):
        batches.append(len(batch))
        await run(batch, conn)

    monkeypatch.setattr(path.payments, "_run", recording)
    away, paid_in = await asyncio.gather(
        path.pay(rail.pay_envelope(full, "pearl.00000000cafebabe", yuan(1_000)).to_dict()),
        path.pay(rail.pay_envelope(other, full, yuan(1_000)).to_dict()),
        return_exceptions=True)
    assert batches[0] == 2, "the two payments were not in one batch"
    assert isinstance(paid_in, RailError) and paid_in.code == "balance_cap_exceeded", paid_in
    assert away["status"] == "rejected"
    assert await rail.balance(full) == yuan(10_000)
    await rail.assert_balanced()


def calls_to_central(rail, monkeypatch) -> list[tuple[str, int]]:
    """Bank A's calls to central's message-1 endpoints as they are made: (path, transfers)."""
    bank_a = node(rail)
    calls: list[tuple[str, int]] = []
    request = bank_a.central.request

    async def recording(method, path, body=None, **params):
        if path in ("/v1/transfers/batch", "/v1/transfers/sealed-batch"):
            calls.append((path, len(body["transfers"])))
        elif path == "/v1/transfers":
            calls.append((path, 1))
        return await request(method, path, body, **params)

    monkeypatch.setattr(bank_a.central, "request", recording)
    return calls


def interbank_per_batch(rail, monkeypatch) -> list[int]:
    """How many interbank payments each payment batch committed (batches with none left out)."""
    batcher = fast(rail).payments
    counts: list[int] = []
    run = batcher._run

    async def counting(batch, conn):
        await run(batch, conn)
        away = sum(1 for item in batch if item.sent is not None)
        if away:
            counts.append(away)

    monkeypatch.setattr(batcher, "_run", counting)
    return counts


async def test_a_payment_batch_sends_all_its_transfers_to_central_in_one_call(
        fast_rail, monkeypatch):
    rail = fast_rail
    payee = await rail.open_wallet(B, kind="merchant", kyc_class=1)
    payers = await rail.open_many(A, 60)
    await rail.payroll(A, payers, 1000)
    calls = calls_to_central(rail, monkeypatch)
    batches = interbank_per_batch(rail, monkeypatch)
    answers = await send_all(rail, A, [rail.pay_envelope(p, payee, 500) for p in payers])
    assert outcomes(answers) == {"settled": 60}
    assert {path for path, _n in calls} == {"/v1/transfers/sealed-batch"}
    assert sorted(n for _path, n in calls) == sorted(batches), "not one call per batch"
    assert len(calls) < 60, "no two transfers went in one call"
    assert await rail.balance(payee) == 60 * 500
    await rail.assert_balanced()


async def test_each_transfer_of_one_call_gets_its_own_outcome(fast_rail, monkeypatch):
    """Settled, rejected by central (no such bank) and rejected by bank B (no such wallet)
    in the same call: each payment ends as it would alone."""
    rail = fast_rail
    good = await rail.open_wallet(B)
    payers = [await rail.funded_wallet(A, yuan(100)) for _ in range(3)]
    calls = calls_to_central(rail, monkeypatch)
    answers = await send_all(rail, A, [
        rail.pay_envelope(payers[0], good, yuan(10)),
        rail.pay_envelope(payers[1], "pearl.00000000beefdead", yuan(20)),
        rail.pay_envelope(payers[2], "pearl.00000000deadbeef", yuan(30))])
    assert [a.json()["status"] for a in answers] == ["settled", "rejected", "rejected"]
    assert sum(n for _path, n in calls) == 3
    for payer, answer, code in zip(payers[1:], answers[1:], ("unknown_wallet", "unknown_wallet")):
        view = await node(rail).reads.payment(payer.wallet_id, answer.json()["payment_id"])
        assert (view["status"], view["code"]) == ("rejected", code)
        assert await rail.balance(payer) == yuan(100)
    assert await rail.balance(payers[0]) == yuan(90)
    assert await rail.balance(good) == yuan(10)
    await rail.assert_balanced()


async def test_with_central_unreachable_a_whole_batch_stays_processing_and_settles_once(
        fast_rail):
    rail = fast_rail
    payee = await rail.open_wallet(B, kind="merchant", kyc_class=1)
    payers = await rail.open_many(A, 8)
    await rail.payroll(A, payers, 1000)
    rail.net.down.add("central.test")
    try:
        answers = await send_all(rail, A, [rail.pay_envelope(p, payee, 100 + n)
                                           for n, p in enumerate(payers)])
        assert outcomes(answers) == {"processing": 8}
    finally:
        rail.net.down.discard("central.test")
    for payer, answer in zip(payers, answers):
        view = await rail.wait_for_payment(payer, answer.json()["payment_id"])
        assert view["status"] == "settled"
        await rail.quiet()   # central's finish may follow bank A's settle
        transfer = await rail.central.get_transfer(answer.json()["transfer_id"])
        assert (transfer["status"], transfer["attempts"]) == ("settled", 1)
    assert await rail.balance(payee) == sum(100 + n for n in range(8))
    await rail.assert_balanced()


async def test_when_the_settle_batch_fails_the_payer_still_heard_settled_and_the_outbox_settles_it(
        fast_rail, monkeypatch):
    """The payer hears `settled` once central's statement says so, before bank A's settle
    batch commits (docs/interbank.md, "Answering before the finish"). If that batch fails,
    the row stays processing and the outbox, asking central again, settles it once."""
    rail = fast_rail
    payee = await rail.open_wallet(B)
    payer = await rail.funded_wallet(A, yuan(100))
    failed = []

    def failing_once(real):
        async def settle_with_postings(self, txn_ids, at_ms, per_fen):
            if not failed:
                failed.append(list(txn_ids))
                raise RuntimeError("the settle batch's statement fails")
            return await real(self, txn_ids, at_ms, per_fen)
        return settle_with_postings

    for tx_class in (batch_store.PgTx, batch_store.SqlTx):
        monkeypatch.setattr(tx_class, "settle_with_postings",
                            failing_once(tx_class.settle_with_postings))
    response = await rail.send_payment(A, rail.pay_envelope(payer, payee, yuan(7)))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "settled" and answer["balance_after_fen"] == yuan(93)
    assert failed, "the settle batch did not run"
    view = await rail.wait_for_payment(payer, answer["payment_id"])
    assert view["status"] == "settled"
    assert await rail.balance(payer) == yuan(93)
    assert await rail.balance(payee) == yuan(7)
    await rail.assert_balanced()
