"""Central's double-entry rules: entries balance, issuing is 100% backed, audit finds faults."""

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from central import domain
from central.domain import (
    BACKING,
    IN_FLIGHT,
    ISSUANCE,
    RESERVE_SOURCE,
    Entry,
    Posting,
    apply_entry,
    audit,
    holding_account,
    reserve_account,
)
from rail_protocol.errors import RailError
from rail_protocol.money import MAX_FEN

pytestmark = pytest.mark.unit


def postings_of(entry: Entry) -> dict[str, int]:
    return {p.account: p.amount_fen for p in entry.postings}


def ledger(*entries: Entry) -> dict[str, int]:
    balances: dict[str, int] = {}
    for entry in entries:
        apply_entry(balances, entry)
    return balances


def run_audit(balances: dict[str, int], banks=("bank-a",), **overrides) -> domain.AuditReport:
    args = {
        "bank_ids": list(banks),
        "stored_balances": dict(balances),
        "posted_balances": dict(balances),
        "unbalanced_entries": [],
        "entry_count": 3,
    }
    args.update(overrides)
    return audit(**args)


def refusal_code(balances: dict[str, int], entry: Entry) -> str:
    before = dict(balances)
    with pytest.raises(RailError) as caught:
        apply_entry(balances, entry)
    assert balances == before, "a refused entry must change nothing"
    return caught.value.code


# --- entries --------------------------------------------------------------------------------


def test_an_entry_whose_postings_do_not_sum_to_zero_cannot_exist():
    with pytest.raises(AssertionError):
        Entry("issue", "bank-a", (Posting("backing", 5), Posting("issuance", -4)))


def test_an_entry_with_a_zero_posting_cannot_exist():
    with pytest.raises(AssertionError):
        Entry("issue", "bank-a", (Posting("backing", 0), Posting("issuance", 0)))


def test_a_reserve_deposit_moves_money_from_outside_into_the_banks_reserves():
    entry = domain.reserve_deposit("bank-a", 700)
    assert entry.kind == "reserve_deposit" and entry.bank_id == "bank-a"
    assert postings_of(entry) == {RESERVE_SOURCE: -700, "reserve:bank-a": 700}


def test_issuing_turns_reserves_into_backing_and_creates_holding_of_the_same_amount():
    entry = domain.issue("bank-a", 300)
    assert entry.kind == "issue"
    assert postings_of(entry) == {
        "reserve:bank-a": -300, BACKING: 300, ISSUANCE: -300, "holding:bank-a": 300,
    }
    assert sum(p.amount_fen for p in entry.postings) == 0


def test_redeeming_is_the_mirror_of_issuing():
    issued, redeemed = postings_of(domain.issue("bank-a", 300)), domain.redeem("bank-a", 300)
    assert redeemed.kind == "redeem"
    assert postings_of(redeemed) == {account: -amount for account, amount in issued.items()}


@pytest.mark.parametrize("make", [domain.reserve_deposit, domain.issue, domain.redeem])
@pytest.mark.parametrize("amount", [0, -5, 5.0, "5", True, MAX_FEN + 1])
def test_entries_are_only_made_for_valid_amounts(make, amount):
    with pytest.raises(RailError) as caught:
        make("bank-a", amount)
    assert caught.value.code == "invalid_amount"


def test_account_names():
    assert reserve_account("bank-a") == "reserve:bank-a"
    assert holding_account("bank-a") == "holding:bank-a"
    assert domain.bank_accounts("bank-a") == ("reserve:bank-a", "holding:bank-a")


def test_only_issuance_and_the_reserve_source_may_go_negative():
    assert not domain.is_guarded(ISSUANCE)
    assert not domain.is_guarded(RESERVE_SOURCE)
    for account in (BACKING, IN_FLIGHT, "reserve:bank-a", "holding:bank-a"):
        assert domain.is_guarded(account)


@pytest.mark.parametrize("bank_id", ["ab", "bank-a", "icbc", "b" + "x" * 31, "a1-2"])
def test_valid_bank_ids(bank_id):
    assert domain.check_bank_id(bank_id) == bank_id


@pytest.mark.parametrize(
    "bank_id", ["a", "Bank", "1bank", "-bank", "bank_a", "b" + "x" * 32, "", None, 5, "bank a"]
)
def test_invalid_bank_ids_are_refused(bank_id):
    with pytest.raises(RailError) as caught:
        domain.check_bank_id(bank_id)
    assert caught.value.code == "invalid_field"


# --- applying entries -----------------------------------------------------------------------


def test_issuing_within_reserves_is_applied():
    balances = ledger(domain.reserve_deposit("bank-a", 1000), domain.issue("bank-a", 1000))
    assert balances["reserve:bank-a"] == 0
    assert balances["holding:bank-a"] == 1000
    assert balances[BACKING] == 1000 and balances[ISSUANCE] == -1000


def test_issuing_beyond_reserves_is_refused_and_writes_nothing():
    balances = ledger(domain.reserve_deposit("bank-a", 1000))
    assert refusal_code(balances, domain.issue("bank-a", 1001)) == "insufficient_reserves"


def test_issuing_to_a_bank_with_no_reserves_at_all_is_refused():
    assert refusal_code({}, domain.issue("bank-a", 1)) == "insufficient_reserves"


def test_redeeming_beyond_holding_is_refused_and_writes_nothing():
    balances = ledger(domain.reserve_deposit("bank-a", 1000), domain.issue("bank-a", 400))
    assert refusal_code(balances, domain.redeem("bank-a", 401)) == "insufficient_holdings"


def test_one_bank_cannot_redeem_what_another_bank_holds():
    balances = ledger(
        domain.reserve_deposit("bank-a", 1000), domain.issue("bank-a", 1000),
        domain.reserve_deposit("bank-b", 10),
    )
    assert refusal_code(balances, domain.redeem("bank-b", 1)) == "insufficient_holdings"


def test_redeeming_everything_returns_the_ledger_to_its_reserves():
    balances = ledger(
        domain.reserve_deposit("bank-a", 1000), domain.issue("bank-a", 600),
        domain.redeem("bank-a", 600),
    )
    assert balances["reserve:bank-a"] == 1000
    assert balances["holding:bank-a"] == 0
    assert balances[BACKING] == 0 and balances[ISSUANCE] == 0


# --- the audit ------------------------------------------------------------------------------


def consistent_ledger() -> dict[str, int]:
    return ledger(
        domain.reserve_deposit("bank-a", 1000), domain.issue("bank-a", 600),
        domain.reserve_deposit("bank-b", 500), domain.issue("bank-b", 500),
        domain.redeem("bank-a", 100),
    )


def test_a_consistent_ledger_audits_balanced_with_its_figures():
    report = run_audit(consistent_ledger(), banks=["bank-b", "bank-a"], entry_count=5)
    assert report.balanced, report.problems
    assert report.problems == []
    assert report.total_issued_fen == 1000
    assert report.backing_fen == 1000
    assert report.holdings_fen == 1000
    assert report.in_flight_fen == 0
    assert report.banks == [
        {"bank_id": "bank-a", "reserves_fen": 500, "holding_fen": 500},
        {"bank_id": "bank-b", "reserves_fen": 0, "holding_fen": 500},
    ]
    data = report.to_dict()
    assert data["balanced"] is True and data["entries"] == 5 and data["problems"] == []


def test_an_empty_ledger_audits_balanced():
    assert run_audit({}, banks=[]).balanced


def test_audit_finds_a_stored_balance_that_differs_from_the_journal():
    posted = consistent_ledger()
    stored = {**posted, "holding:bank-a": posted["holding:bank-a"] + 1}
    report = run_audit(posted, banks=["bank-a", "bank-b"], stored_balances=stored)
    assert not report.balanced
    assert report.to_dict()["balanced"] is False
    assert any("holding:bank-a" in p and "stored" in p for p in report.problems)


def test_audit_finds_a_stored_balance_of_an_account_with_no_postings():
    posted = consistent_ledger()
    report = run_audit(posted, banks=["bank-a", "bank-b"],
                       stored_balances={**posted, "reserve:bank-c": 10})
    assert any("reserve:bank-c" in p for p in report.problems)


@pytest.mark.parametrize("account", ["reserve:bank-a", "holding:bank-a", IN_FLIGHT])
def test_audit_finds_a_negative_guarded_account(account):
    posted = {**consistent_ledger()}
    posted[account] = posted.get(account, 0) - 10_000
    posted[RESERVE_SOURCE] += 10_000  # keep the books summing to zero
    report = run_audit(posted, banks=["bank-a", "bank-b"])
    assert any(account in p and "negative" in p for p in report.problems)


def test_audit_does_not_call_issuance_or_the_reserve_source_negative():
    report = run_audit(consistent_ledger(), banks=["bank-a", "bank-b"])
    assert not any("negative" in p for p in report.problems)


def test_audit_finds_an_unbalanced_entry():
    report = run_audit(consistent_ledger(), banks=["bank-a", "bank-b"], unbalanced_entries=[7, 9])
    assert not report.balanced
    assert any("entry 7" in p for p in report.problems)
    assert any("entry 9" in p for p in report.problems)


def test_audit_finds_issued_not_equal_to_holdings_plus_in_flight():
    posted = consistent_ledger()
    # e-CNY created out of nothing, with backing to match: only holdings betray it.
    posted[ISSUANCE] -= 50
    posted[BACKING] += 50
    posted[RESERVE_SOURCE] -= 50
    posted["reserve:bank-a"] += 50
    report = run_audit(posted, banks=["bank-a", "bank-b"])
    assert any(p.startswith("total issued") for p in report.problems)
    assert not any(p.startswith("backing") for p in report.problems)


def test_audit_counts_money_in_flight_as_issued():
    posted = ledger(domain.reserve_deposit("bank-a", 100), domain.issue("bank-a", 100),
                    domain.transfer_prepare("bank-a", 40))
    report = run_audit(posted, banks=["bank-a"], prepared_transfers_fen=40)
    assert report.balanced, report.problems
    assert report.in_flight_fen == 40 and report.holdings_fen == 60


def test_audit_finds_in_flight_that_no_prepared_transfer_accounts_for():
    posted = ledger(domain.reserve_deposit("bank-a", 100), domain.issue("bank-a", 100),
                    domain.transfer_prepare("bank-a", 40))
    report = run_audit(posted, banks=["bank-a"], prepared_transfers_fen=0)
    assert any(p.startswith("in flight") for p in report.problems)


def test_audit_finds_backing_not_equal_to_issued():
    posted = consistent_ledger()
    posted[BACKING] -= 10
    posted["reserve:bank-a"] += 10
    report = run_audit(posted, banks=["bank-a", "bank-b"])
    assert any(p.startswith("backing") for p in report.problems)


def test_audit_finds_an_account_of_an_unregistered_bank():
    posted = ledger(domain.reserve_deposit("bank-a", 100), domain.reserve_deposit("ghost", 5))
    report = run_audit(posted, banks=["bank-a"])
    assert any("reserve:ghost" in p and "no registered bank" in p for p in report.problems)


def test_audit_names_every_problem_at_once():
    posted = consistent_ledger()
    posted[BACKING] -= 10
    posted["reserve:bank-a"] += 10
    posted["holding:ghost"] = 1
    posted[RESERVE_SOURCE] -= 1
    report = run_audit(posted, banks=["bank-a", "bank-b"], unbalanced_entries=[3],
                       stored_balances={**posted, "backing": 0})
    problems = report.problems
    assert "journal entry 3 does not sum to zero" in problems
    assert "account backing: stored balance 0 != journal 990" in problems
    assert "account holding:ghost belongs to no registered bank" in problems
    assert "backing 990 != total issued 1000" in problems


# --- a random walk over several banks keeps the books balanced ---------------------------

BANKS = ("bank-a", "bank-b", "bank-c")
amounts = st.integers(min_value=1, max_value=5_000)


class CentralLedger(RuleBasedStateMachine):
    """Random deposits, issues and redeems; refusals exactly when the model says so."""

    def __init__(self) -> None:
        super().__init__()
        self.balances: dict[str, int] = {}
        self.reserves = dict.fromkeys(BANKS, 0)
        self.holdings = dict.fromkeys(BANKS, 0)
        self.entries = 0

    def post(self, entry: Entry, refused_with: str | None) -> None:
        if refused_with is None:
            apply_entry(self.balances, entry)
            self.entries += 1
        else:
            assert refusal_code(self.balances, entry) == refused_with

    @rule(bank=st.sampled_from(BANKS), amount=amounts)
    def deposit(self, bank, amount):
        self.post(domain.reserve_deposit(bank, amount), None)
        self.reserves[bank] += amount

    @rule(bank=st.sampled_from(BANKS), amount=amounts)
    def issue(self, bank, amount):
        short = amount > self.reserves[bank]
        self.post(domain.issue(bank, amount), "insufficient_reserves" if short else None)
        if not short:
            self.reserves[bank] -= amount
            self.holdings[bank] += amount

    @precondition(lambda self: any(self.holdings.values()))
    @rule(bank=st.sampled_from(BANKS), data=st.data())
    def redeem_part_of_holding(self, bank, data):
        if self.holdings[bank] == 0:
            return
        amount = data.draw(st.integers(min_value=1, max_value=self.holdings[bank]))
        self.post(domain.redeem(bank, amount), None)
        self.holdings[bank] -= amount
        self.reserves[bank] += amount

    @rule(bank=st.sampled_from(BANKS), amount=amounts)
    def redeem(self, bank, amount):
        short = amount > self.holdings[bank]
        self.post(domain.redeem(bank, amount), "insufficient_holdings" if short else None)
        if not short:
            self.holdings[bank] -= amount
            self.reserves[bank] += amount

    @invariant()
    def audit_balances_and_matches_the_model(self):
        report = audit(list(BANKS), dict(self.balances), dict(self.balances), [], self.entries)
        assert report.balanced, report.problems
        assert report.total_issued_fen == sum(self.holdings.values())
        assert report.backing_fen == report.total_issued_fen
        for bank in BANKS:
            assert self.balances.get(reserve_account(bank), 0) == self.reserves[bank]
            assert self.balances.get(holding_account(bank), 0) == self.holdings[bank]
        assert all(v >= 0 for k, v in self.balances.items() if domain.is_guarded(k))
        assert sum(self.balances.values()) == 0


CentralLedger.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCentralLedgerRandomWalk = CentralLedger.TestCase
