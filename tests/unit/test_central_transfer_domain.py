"""Central's interbank transfer rules, in memory: entries, message 1's checks, what counts as
bank B's answer, retry delays, and the audit's in-flight check."""

import os
import signal
import subprocess
import sys

import pytest

from central import domain
from rail_protocol.envelope import sign_statement
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey

pytestmark = pytest.mark.unit

A, B = "alpha", "beta"
TID = "alpha.0123456789abcdef0123456789abcdef"


def body(**changes) -> dict:
    return {"transfer_id": TID, "from_bank": A, "to_bank": B, "amount_fen": 12_345,
            "payee_wallet": "w-0001", **changes}


def funded() -> dict[str, int]:
    """Balances after issuing 1,000 fen to A and 500 to B."""
    balances: dict[str, int] = {}
    for bank, amount in ((A, 1_000), (B, 500)):
        domain.apply_entry(balances, domain.reserve_deposit(bank, amount))
        domain.apply_entry(balances, domain.issue(bank, amount))
    return balances


def audit_of(balances: dict[str, int], prepared_fen: int | None) -> domain.AuditReport:
    return domain.audit([A, B], dict(balances), dict(balances), [], 0,
                        prepared_transfers_fen=prepared_fen)


# --- entries ------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", [
    domain.transfer_prepare(A, 700),
    domain.transfer_settle(B, 700),
    domain.transfer_reject(A, 700),
])
def test_transfer_entries_sum_to_zero_and_move_the_amount(entry):
    assert sum(p.amount_fen for p in entry.postings) == 0
    assert {abs(p.amount_fen) for p in entry.postings} == {700}
    assert domain.IN_FLIGHT in {p.account for p in entry.postings}


def test_prepare_then_settle_moves_holding_from_a_to_b_through_in_flight():
    balances = funded()
    domain.apply_entry(balances, domain.transfer_prepare(A, 700))
    assert balances["holding:alpha"] == 300 and balances[domain.IN_FLIGHT] == 700
    assert audit_of(balances, prepared_fen=700).balanced
    domain.apply_entry(balances, domain.transfer_settle(B, 700))
    assert balances["holding:alpha"] == 300
    assert balances["holding:beta"] == 1_200
    assert balances[domain.IN_FLIGHT] == 0
    assert audit_of(balances, prepared_fen=0).balanced


def test_prepare_then_reject_gives_the_money_back_to_a():
    balances = funded()
    domain.apply_entry(balances, domain.transfer_prepare(A, 700))
    domain.apply_entry(balances, domain.transfer_reject(A, 700))
    assert balances["holding:alpha"] == 1_000 and balances["holding:beta"] == 500
    assert balances[domain.IN_FLIGHT] == 0
    assert audit_of(balances, prepared_fen=0).balanced


def test_prepare_beyond_holding_is_insufficient_holdings():
    balances = funded()
    with pytest.raises(RailError) as err:
        domain.apply_entry(balances, domain.transfer_prepare(A, 1_001))
    assert err.value.code == "insufficient_holdings"
    assert balances == funded()


def test_settling_twice_would_overdraw_in_flight():
    balances = funded()
    domain.apply_entry(balances, domain.transfer_prepare(A, 700))
    domain.apply_entry(balances, domain.transfer_settle(B, 700))
    with pytest.raises(RailError):
        domain.apply_entry(balances, domain.transfer_settle(B, 700))


# --- the audit's in-flight check ----------------------------------------------------------

def test_audit_detects_in_flight_that_no_prepared_transfer_explains():
    balances = funded()
    domain.apply_entry(balances, domain.transfer_prepare(A, 700))
    report = audit_of(balances, prepared_fen=0)
    assert not report.balanced
    assert any("in flight 700 != prepared transfers 0" in p for p in report.problems)
    assert report.to_dict()["prepared_transfers_fen"] == 0


def test_audit_detects_a_prepared_transfer_missing_from_in_flight():
    report = audit_of(funded(), prepared_fen=250)
    assert not report.balanced
    assert any("prepared transfers 250" in p for p in report.problems)


def test_audit_without_the_prepared_sum_keeps_its_old_behaviour():
    balances = funded()
    domain.apply_entry(balances, domain.transfer_prepare(A, 700))
    report = domain.audit([A, B], dict(balances), dict(balances), [], 4)
    assert report.balanced and report.prepared_transfers_fen is None


# --- message 1's checks, one test per code ------------------------------------------------

def test_a_valid_order():
    order = domain.transfer_order(body(), TID, A)
    assert order == domain.TransferOrder(TID, A, B, 12_345, "w-0001")


@pytest.mark.parametrize("changes, signer_bank, code", [
    ({"from_bank": "gamma", "transfer_id": "gamma.0123456789"}, A, "signer_mismatch"),
    ({}, "gamma", "signer_mismatch"),
    ({"transfer_id": "alpha.other"}, A, "invalid_field"),
    ({"to_bank": A}, A, "invalid_field"),
    ({"to_bank": "Not A Bank"}, A, "invalid_field"),
    ({"to_bank": None}, A, "invalid_field"),
    ({"amount_fen": 0}, A, "invalid_amount"),
    ({"amount_fen": 1.5}, A, "invalid_amount"),
    ({"amount_fen": "100"}, A, "invalid_amount"),
    ({"amount_fen": True}, A, "invalid_amount"),
    ({"payee_wallet": "ab"}, A, "invalid_field"),
    ({"payee_wallet": "w" * 81}, A, "invalid_field"),
    ({"payee_wallet": 1234}, A, "invalid_field"),
    ({"memo": "hi"}, A, "invalid_field"),
    ({"details": "payer w-1"}, A, "invalid_field"),
    ({"details": {"note": "x" * domain.MAX_DETAILS_BYTES}}, A, "invalid_field"),
])
def test_order_refusals(changes, signer_bank, code):
    with pytest.raises(RailError) as err:
        domain.transfer_order(body(**changes), TID, signer_bank)
    assert err.value.code == code


def test_details_for_bank_b_are_carried_as_given():
    details = {"payer_wallet": "alpha.w-0009", "order_id": "o-1"}
    assert domain.transfer_order(body(details=details), TID, A).details == details
    assert domain.transfer_order(body(details=None), TID, A).details is None


def test_transfer_id_must_start_with_the_paying_bank():
    tid = "beta.0123456789abcdef"
    with pytest.raises(RailError) as err:
        domain.transfer_order(body(transfer_id=tid), tid, A)
    assert err.value.code == "invalid_field"


# --- bank B's answer ----------------------------------------------------------------------

def result(key: SigningKey, **fields) -> dict:
    return sign_statement(key, {"type": domain.CREDIT_RESULT, "transfer_id": TID, **fields})


def test_accepted_and_refused_results_are_answers():
    b = SigningKey.generate()
    assert domain.read_credit_result(result(b, accepted=True), b.public_key, TID) == \
        domain.CreditAnswer(domain.TRANSFER_SETTLED)
    assert domain.read_credit_result(
        result(b, accepted=False, code="unknown_wallet"), b.public_key, TID
    ) == domain.CreditAnswer(domain.TRANSFER_REJECTED, "unknown_wallet")


@pytest.mark.parametrize("make", [
    lambda b, other: result(other, accepted=True),  # signed by another key
    lambda b, other: {**result(b, accepted=True), "accepted": False},  # altered after signing
    lambda b, other: sign_statement(b, {"type": domain.CREDIT_RESULT,
                                        "transfer_id": "alpha.another", "accepted": True}),
    lambda b, other: sign_statement(b, {"type": "bank.receipt", "transfer_id": TID,
                                        "accepted": True}),
    lambda b, other: result(b, accepted=False),  # refused without a code
    lambda b, other: result(b, accepted=False, code="Not A Code!"),
    lambda b, other: result(b, accepted="yes"),
    lambda b, other: None,
    lambda b, other: ["not", "a", "statement"],
])
def test_anything_else_is_no_answer(make):
    b, other = SigningKey.generate(), SigningKey.generate()
    assert domain.read_credit_result(make(b, other), b.public_key, TID) is None


def test_retry_delay_doubles_from_200_ms_to_a_5_s_cap():
    assert [domain.retry_delay_ms(n) for n in range(1, 8)] == \
        [200, 400, 800, 1_600, 3_200, 5_000, 5_000]
    assert domain.retry_delay_ms(10_000) == 5_000


# --- bank urls ----------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://127.0.0.1:8801", "https://bank-b.example/api/"])
def test_bank_url_accepted(url):
    assert domain.check_bank_url(url) == url


@pytest.mark.parametrize("url", ["ftp://bank.example", "bank.example", "http://", 5,
                                 "http://bank.example/?q=1", "http://bank example",
                                 "https://b.example/" + "x" * 200, "http://b.example:port"])
def test_bank_url_refused(url):
    with pytest.raises(RailError) as err:
        domain.check_bank_url(url)
    assert err.value.code == "invalid_field"


# --- crash points -------------------------------------------------------------------------

@pytest.mark.parametrize("armed, expected", [("here", -signal.SIGKILL), ("elsewhere", 0)])
def test_crash_point_kills_its_process_only_when_named(armed, expected):
    code = "from rail_service.crash import crash_point; crash_point('here')"
    done = subprocess.run([sys.executable, "-c", code], timeout=60,
                          env={**os.environ, "YUANRAIL_CRASH_AT": armed})
    assert done.returncode == expected


# --- a batch of new transfers, decided in turn ----------------------------------------------

def order(amount_fen: int, to_bank: str = B, n: int = 0) -> domain.TransferOrder:
    return domain.TransferOrder(f"alpha.{n:032x}", A, to_bank, amount_fen, "w-0001")


def test_a_batch_is_decided_in_turn_as_one_at_a_time_would_be():
    balances = {domain.holding_account(A): 1_000}
    outcomes = domain.prepare_in_turn(
        [order(600, n=1), order(500, n=2), order(100, to_bank="nobank", n=3), order(400, n=4)],
        {B}, balances)
    assert isinstance(outcomes[0], domain.Entry)
    assert outcomes[0] == domain.transfer_prepare(A, 600)
    # 500 no longer fits after the 600 before it; the 400 after it still does
    assert isinstance(outcomes[1], RailError) and outcomes[1].code == "insufficient_holdings"
    assert isinstance(outcomes[2], RailError) and outcomes[2].code == "unknown_bank"
    assert outcomes[3] == domain.transfer_prepare(A, 400)
    assert balances[domain.holding_account(A)] == 0
    assert balances[domain.IN_FLIGHT] == 1_000


def test_a_bank_with_no_holding_account_is_short():
    outcomes = domain.prepare_in_turn([order(1)], {B}, {})
    assert outcomes[0].code == "insufficient_holdings"


def test_the_finishing_entry_follows_bs_answer():
    settle = domain.transfer_finish(order(70), domain.CreditAnswer(domain.TRANSFER_SETTLED))
    reject = domain.transfer_finish(order(70), domain.CreditAnswer(domain.TRANSFER_REJECTED,
                                                                   "unknown_wallet"))
    assert settle == domain.transfer_settle(B, 70)
    assert reject == domain.transfer_reject(A, 70)


def test_message_2_carries_message_1_as_checked():
    plain = domain.transfer_order(body(), TID, A)
    assert domain.credit_body(plain) == body()
    noted = domain.transfer_order(body(details={"order_id": "o-1"}), TID, A)
    assert domain.credit_body(noted) == body(details={"order_id": "o-1"})
