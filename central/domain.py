"""The registration centre's double-entry rules, in plain Python.

Accounts (balances are signed integers in fen; positive = held by that account):
  reserve:<bank>   the bank's reserve account at central (central bank money)
  holding:<bank>   the e-CNY central records the bank as holding (its vault + its wallets)
  backing          reserves set aside 1:1 for every fen of e-CNY outstanding
  issuance         minus the e-CNY outstanding: it goes negative as e-CNY is issued
  reserve_source   the outside world that reserve deposits come from (goes negative)
  in_flight        interbank transfers prepared but not yet committed or aborted

Every journal entry's postings sum to zero, so money is neither created nor lost; issuing
moves reserves into backing at the same moment as it creates e-CNY, so e-CNY is always 100%
backed. Accounts that hold something may never go negative (`guarded`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rail_protocol.errors import RailError
from rail_protocol.money import parse_fen

ISSUANCE = "issuance"
BACKING = "backing"
RESERVE_SOURCE = "reserve_source"
IN_FLIGHT = "in_flight"
SYSTEM_ACCOUNTS = (ISSUANCE, BACKING, RESERVE_SOURCE, IN_FLIGHT)
_BANK_ID = re.compile(r"^[a-z][a-z0-9-]{1,31}$")


def check_bank_id(bank_id: object) -> str:
    """A bank id is 2-32 of lowercase letters, digits and '-', starting with a letter."""
    if not isinstance(bank_id, str) or not _BANK_ID.match(bank_id):
        raise RailError("invalid_field", "bank_id must be 2-32 of [a-z0-9-], starting a-z")
    return bank_id


def reserve_account(bank_id: str) -> str:
    return f"reserve:{bank_id}"


def holding_account(bank_id: str) -> str:
    return f"holding:{bank_id}"


def bank_accounts(bank_id: str) -> tuple[str, str]:
    return reserve_account(bank_id), holding_account(bank_id)


def is_guarded(account: str) -> bool:
    """Accounts that hold money and so may never go below zero."""
    return account not in (ISSUANCE, RESERVE_SOURCE)


# What running short of each kind of guarded account is called.
_SHORTFALL = {"reserve": "insufficient_reserves", "holding": "insufficient_holdings"}


def shortfall_code(account: str) -> str:
    return _SHORTFALL.get(account.split(":", 1)[0], "insufficient_holdings")


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount_fen: int  # signed: + into the account, - out of it


@dataclass(frozen=True, slots=True)
class Entry:
    """One immutable journal entry. A reversal is a new entry, never an edit."""

    kind: str
    bank_id: str
    postings: tuple[Posting, ...]

    def __post_init__(self) -> None:
        if sum(p.amount_fen for p in self.postings) != 0:
            raise AssertionError("a journal entry's postings must sum to zero")
        if any(p.amount_fen == 0 for p in self.postings):
            raise AssertionError("a posting of zero moves nothing")


def reserve_deposit(bank_id: str, amount_fen: int) -> Entry:
    """The bank deposits reserves at central (an operator action stands for the wire)."""
    amount = parse_fen(amount_fen)
    return Entry(
        "reserve_deposit",
        bank_id,
        (Posting(RESERVE_SOURCE, -amount), Posting(reserve_account(bank_id), amount)),
    )


def issue(bank_id: str, amount_fen: int) -> Entry:
    """Issue e-CNY to a bank: its reserves become backing and its holding grows by as much."""
    amount = parse_fen(amount_fen)
    return Entry(
        "issue",
        bank_id,
        (
            Posting(reserve_account(bank_id), -amount),
            Posting(BACKING, amount),
            Posting(ISSUANCE, -amount),
            Posting(holding_account(bank_id), amount),
        ),
    )


def redeem(bank_id: str, amount_fen: int) -> Entry:
    """Redeem e-CNY: the bank's holding shrinks and the backing returns to its reserves."""
    amount = parse_fen(amount_fen)
    return Entry(
        "redeem",
        bank_id,
        (
            Posting(holding_account(bank_id), -amount),
            Posting(ISSUANCE, amount),
            Posting(BACKING, -amount),
            Posting(reserve_account(bank_id), amount),
        ),
    )


def check_entry_against(balances: dict[str, int], entry: Entry) -> None:
    """Refuse an entry that would take a guarded account below zero (for in-memory use;
    the SQL adapter enforces the same rule with conditional updates)."""
    for posting in entry.postings:
        after = balances.get(posting.account, 0) + posting.amount_fen
        if after < 0 and is_guarded(posting.account):
            raise RailError(shortfall_code(posting.account))


def apply_entry(balances: dict[str, int], entry: Entry) -> None:
    check_entry_against(balances, entry)
    for posting in entry.postings:
        balances[posting.account] = balances.get(posting.account, 0) + posting.amount_fen


@dataclass
class AuditReport:
    """The conservation audit: every rule checked, every problem named."""

    total_issued_fen: int = 0
    backing_fen: int = 0
    in_flight_fen: int = 0
    holdings_fen: int = 0
    banks: list[dict] = field(default_factory=list)
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "balanced": self.balanced,
            "total_issued_fen": self.total_issued_fen,
            "backing_fen": self.backing_fen,
            "holdings_fen": self.holdings_fen,
            "in_flight_fen": self.in_flight_fen,
            "entries": self.entries,
            "banks": self.banks,
            "problems": self.problems,
        }


def audit(
    bank_ids: list[str],
    stored_balances: dict[str, int],
    posted_balances: dict[str, int],
    unbalanced_entries: list[int],
    entry_count: int,
) -> AuditReport:
    """Recompute conservation from the journal (`posted_balances`, the sums of postings) and
    compare with the balances kept beside it. Names every mismatch; says nothing is fine
    unless all of these hold:
      - each entry sums to zero;
      - each stored balance equals the sum of its postings;
      - no guarded account is negative;
      - total issued == sum of bank holdings + in flight == backing (100% backed)."""
    report = AuditReport(entries=entry_count)
    for entry_id in unbalanced_entries:
        report.problems.append(f"journal entry {entry_id} does not sum to zero")
    for account in sorted(set(stored_balances) | set(posted_balances)):
        stored = stored_balances.get(account, 0)
        posted = posted_balances.get(account, 0)
        if stored != posted:
            report.problems.append(
                f"account {account}: stored balance {stored} != journal {posted}"
            )
        if is_guarded(account) and posted < 0:
            report.problems.append(f"account {account} is negative: {posted}")
    report.total_issued_fen = -posted_balances.get(ISSUANCE, 0)
    report.backing_fen = posted_balances.get(BACKING, 0)
    report.in_flight_fen = posted_balances.get(IN_FLIGHT, 0)
    for bank_id in sorted(bank_ids):
        reserves = posted_balances.get(reserve_account(bank_id), 0)
        holding = posted_balances.get(holding_account(bank_id), 0)
        report.banks.append({"bank_id": bank_id, "reserves_fen": reserves, "holding_fen": holding})
        report.holdings_fen += holding
    known = {a for b in bank_ids for a in bank_accounts(b)} | set(SYSTEM_ACCOUNTS)
    for account in sorted(set(posted_balances) - known):
        report.problems.append(f"account {account} belongs to no registered bank")
    if report.total_issued_fen != report.holdings_fen + report.in_flight_fen:
        report.problems.append(
            f"total issued {report.total_issued_fen} != holdings {report.holdings_fen}"
            f" + in flight {report.in_flight_fen}"
        )
    if report.backing_fen != report.total_issued_fen:
        report.problems.append(
            f"backing {report.backing_fen} != total issued {report.total_issued_fen}"
        )
    return report
