"""A bank's double-entry books, in memory: every entry builder balances in both ledgers (the
e-CNY ledger and the deposit ledger) for any amounts, moves exactly what it says, and the
bank's audit names each kind of problem on its own."""

from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bank.domain import ledger
from bank.domain.audit import audit
from bank.domain.ledger import (
    CASH,
    CENTRAL,
    EXCHANGE,
    INTERBANK_OUT,
    VAULT,
    Posting,
    Postings,
    deposit_account,
    is_deposit_account,
)
from bank.domain.wallets import DEFAULT_CLASS_LIMITS, CreditPlan, DebitPlan
from rail_protocol.money import MAX_FEN

pytestmark = pytest.mark.unit

PAYER, PAYEE = "yangtze.payer000000000001", "yangtze.payee000000000002"
PAYER_DEP, PAYEE_DEP = "6200000000000001", "6200000000000002"
amounts = st.integers(min_value=1, max_value=MAX_FEN)


def ledger_sums(postings: list[Posting]) -> tuple[int, int]:
    """(sum of the e-CNY ledger, sum of the deposit ledger)."""
    ecny = sum(p.amount_fen for p in postings if not is_deposit_account(p.account))
    deposits = sum(p.amount_fen for p in postings if is_deposit_account(p.account))
    return ecny, deposits


def moves(postings: list[Posting]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for p in postings:
        out[p.account] += p.amount_fen
    return {account: total for account, total in out.items() if total}


def debit(amount: int, pulled: int = 0) -> DebitPlan:
    return DebitPlan(amount, pulled, 0, 0, amount)


# --- every builder balances both ledgers ------------------------------------------------------

@given(amount=amounts)
def test_vault_and_cash_entries_balance_both_ledgers(amount):
    for entry in (ledger.vault_issue(amount), ledger.vault_redeem_started(amount),
                  ledger.vault_redeem_done(amount), ledger.vault_redeem_refused(amount),
                  ledger.cash_deposit(PAYER_DEP, amount), ledger.top_up(PAYER, PAYER_DEP, amount),
                  ledger.redeem(PAYER, PAYER_DEP, amount),
                  ledger.interbank_out_settled(amount),
                  ledger.interbank_out_rejected(PAYER, amount)):
        assert ledger_sums(entry) == (0, 0)
        assert all(p.amount_fen != 0 for p in entry)


@given(amount=amounts, data=st.data())
def test_a_payment_balances_both_ledgers_with_any_pull_and_sweep(amount, data):
    pulled = data.draw(st.integers(min_value=0, max_value=amount), label="pulled")
    swept = data.draw(st.integers(min_value=0, max_value=amount), label="swept")
    entry = ledger.payment(PAYER, PAYER_DEP, debit(amount, pulled),
                           PAYEE, PAYEE_DEP, CreditPlan(amount - swept, swept))
    assert ledger_sums(entry) == (0, 0)
    moved = moves(entry)
    assert moved.get(PAYER, 0) == pulled - amount
    assert moved.get(PAYEE, 0) == amount - swept
    assert moved.get(deposit_account(PAYER_DEP), 0) == -pulled
    assert moved.get(deposit_account(PAYEE_DEP), 0) == swept
    assert moved.get(VAULT, 0) == swept - pulled
    assert CENTRAL not in moved, "a payment inside one bank changes nothing central knows"


@given(amount=amounts, data=st.data())
def test_interbank_entries_balance_both_ledgers(amount, data):
    pulled = data.draw(st.integers(min_value=0, max_value=amount), label="pulled")
    swept = data.draw(st.integers(min_value=0, max_value=amount), label="swept")
    out = ledger.interbank_out(PAYER, PAYER_DEP, debit(amount, pulled))
    into = ledger.interbank_in(PAYEE, PAYEE_DEP, CreditPlan(amount - swept, swept))
    assert ledger_sums(out) == (0, 0) and ledger_sums(into) == (0, 0)
    assert moves(out)[INTERBANK_OUT] == amount
    assert moves(out).get(PAYER, 0) == pulled - amount
    assert moves(into)[CENTRAL] == -amount, "the whole credit joins the receiving bank's books"
    assert moves(into).get(PAYEE, 0) == amount - swept


@given(amount=amounts)
def test_issue_grows_the_books_and_redeem_shrinks_them_by_the_amount(amount):
    assert moves(ledger.vault_issue(amount)) == {VAULT: amount, CENTRAL: -amount}
    started, done = ledger.vault_redeem_started(amount), ledger.vault_redeem_done(amount)
    assert moves(started + done) == {VAULT: -amount, CENTRAL: amount}
    refused = ledger.vault_redeem_refused(amount)
    assert moves(started + refused) == {}, "a refused redemption puts the vault back"


@given(amount=amounts)
def test_a_rejected_interbank_payment_gives_the_payer_everything_back(amount):
    out = ledger.interbank_out(PAYER, None, debit(amount))
    assert moves(out + ledger.interbank_out_rejected(PAYER, amount)) == {}


@given(amount=amounts)
def test_top_up_then_redeem_of_the_same_amount_changes_nothing(amount):
    entry = ledger.top_up(PAYER, PAYER_DEP, amount) + ledger.redeem(PAYER, PAYER_DEP, amount)
    assert moves(entry) == {}
    assert moves(ledger.top_up(PAYER, PAYER_DEP, amount)) == {
        deposit_account(PAYER_DEP): -amount, EXCHANGE: amount, VAULT: -amount, PAYER: amount}


def test_postings_refuse_an_entry_that_does_not_balance_in_either_ledger():
    with pytest.raises(AssertionError):
        Postings().add(VAULT, 5).add(PAYER, -4).done()
    with pytest.raises(AssertionError):  # sums to zero overall but mixes the two ledgers
        Postings().add(VAULT, 5).add(deposit_account(PAYER_DEP), -5).done()


def test_zero_postings_are_left_out():
    assert Postings().add(VAULT, 0).add(PAYER, 0).done() == []


# --- the bank's audit -------------------------------------------------------------------------

class Books:
    """A bank's books kept the way the SQL adapter keeps them: postings, and balances
    stored beside them."""

    def __init__(self) -> None:
        self.entries: list[list[Posting]] = []
        self.wallets: dict[str, int] = {}       # wallet id -> kyc class
        self.stored: dict[str, int] = defaultdict(int)
        self.processing_out: list[dict] = []

    def post(self, entry: list[Posting]) -> None:
        self.entries.append(entry)
        for p in entry:
            self.stored[p.account] += p.amount_fen

    def audit(self, unbalanced: list[int] | None = None, position: dict | None = None):
        posted: dict[str, int] = defaultdict(int)
        for entry in self.entries:
            for p in entry:
                posted[p.account] += p.amount_fen
        wallets = [{"wallet_id": w, "kyc_class": c, "balance_fen": self.stored[w]}
                   for w, c in self.wallets.items()]
        deposits = {a[4:]: b for a, b in self.stored.items() if a.startswith("dep:")
                    and a not in (EXCHANGE, CASH)}
        return audit(dict(posted), unbalanced or [], wallets, deposits, self.stored[VAULT],
                     DEFAULT_CLASS_LIMITS, list(self.processing_out), position=position)


def healthy_books() -> Books:
    """Issued 10,000 yuan; a customer topped up, paid a merchant, and has 50 yuan on its
    way to another bank."""
    books = Books()
    books.wallets = {PAYER: 2, PAYEE: 1}
    books.post(ledger.vault_issue(1_000_000))
    books.post(ledger.cash_deposit(PAYER_DEP, 500_000))
    books.post(ledger.top_up(PAYER, PAYER_DEP, 300_000))
    books.post(ledger.payment(PAYER, PAYER_DEP, debit(20_000), PAYEE, None,
                              CreditPlan(20_000, 0)))
    books.post(ledger.interbank_out(PAYER, PAYER_DEP, debit(5_000)))
    books.processing_out = [{"transfer_id": "yangtze.t1", "amount_fen": 5_000}]
    return books


def test_the_position_kept_at_posting_must_equal_the_journal():
    books = healthy_books()
    kept = {"central": -1_000_000}            # what the vault drew; nothing redeemed
    assert books.audit(position=kept).balanced
    report = books.audit(position={"central": -999_999})
    assert report.problems == ["position central -999999 != journal -1000000"]
    assert books.audit(position={**kept, "redeem_out": 5}).problems == [
        "position redeem_out 5 != journal 0"]


def test_the_trigger_appends_the_position_accounts_of_the_ledger():
    """Migration 0011's trigger appends the postings of POSITION_ACCOUNTS: an account added
    there needs a migration that replaces the trigger."""
    import importlib

    migration = importlib.import_module("bank.migrations.versions.0011_position_deltas")
    assert migration.ACCOUNTS == ledger.POSITION_ACCOUNTS


def test_healthy_books_are_balanced_and_add_up():
    report = healthy_books().audit()
    assert report.balanced, report.problems
    assert report.books_fen == 1_000_000
    assert report.vault_fen == 700_000
    assert report.wallets_fen == 275_000 + 20_000
    assert report.interbank_out_fen == 5_000
    assert report.wallet_count == 2


def only_problem(books: Books, unbalanced: list[int] | None = None) -> str:
    report = books.audit(unbalanced)
    assert not report.balanced
    assert len(report.problems) == 1, report.problems
    return report.problems[0]


def test_audit_names_a_transaction_that_does_not_balance():
    assert "transaction 7 does not balance" in only_problem(healthy_books(), unbalanced=[7])


def test_audit_names_a_wallet_whose_stored_balance_differs_from_its_postings():
    books = healthy_books()
    books.stored[PAYEE] += 1
    report = books.audit()
    assert f"wallet {PAYEE}: balance 20001 != journal 20000" in report.problems


def test_audit_names_a_negative_wallet():
    books = healthy_books()
    books.wallets["yangtze.overdrawn"] = 4
    books.post([Posting("yangtze.overdrawn", -100), Posting(VAULT, 100)])
    assert "is negative" in only_problem(books)


def test_audit_names_a_wallet_over_its_class_cap():
    books = healthy_books()
    books.wallets["yangtze.toorich"] = 4
    books.post([Posting("yangtze.toorich", 1_000_001), Posting(VAULT, -1_000_001)])
    books.post(ledger.vault_issue(1_000_001))
    assert "over its cap 1000000" in only_problem(books)


def test_audit_names_a_deposit_account_that_differs_from_its_postings():
    books = healthy_books()
    books.stored[deposit_account(PAYER_DEP)] += 1
    assert f"deposit {PAYER_DEP}" in only_problem(books)


def test_audit_names_a_negative_deposit_account():
    books = healthy_books()
    books.post([Posting(deposit_account("6299999999"), -1), Posting(CASH, 1)])
    assert "deposit 6299999999 is negative" in only_problem(books)


def test_audit_names_a_vault_whose_stored_balance_differs_from_its_postings():
    books = healthy_books()
    books.stored[VAULT] += 1
    assert "vault 700001 != journal 700000" in books.audit().problems


def test_audit_names_a_negative_vault():
    books = Books()
    books.wallets = {PAYER: 1}
    books.post([Posting(VAULT, -100), Posting(PAYER, 100)])  # paid out e-CNY it never had
    assert only_problem(books) == "the vault is negative"


def test_audit_names_interbank_out_that_differs_from_the_payments_still_processing():
    books = healthy_books()
    books.processing_out = []
    assert "interbank_out does not equal" in only_problem(books)


def test_audit_names_money_that_is_neither_in_the_vault_nor_a_wallet():
    books = healthy_books()
    books.post([Posting(PAYER, -1), Posting("nowhere", 1)])
    assert "!= books 1000000" in only_problem(books)
