"""The registration centre's double-entry rules, in plain Python.

Accounts (balances are signed integers in fen; positive = held by that account):
  reserve:<bank>   the bank's reserve account at central (central bank money)
  holding:<bank>   the e-CNY central records the bank as holding (its vault + its wallets)
  backing          reserves set aside 1:1 for every fen of e-CNY outstanding
  issuance         minus the e-CNY outstanding: it goes negative as e-CNY is issued
  reserve_source   the outside world that reserve deposits come from (goes negative)
  in_flight        interbank transfers prepared but not yet settled or rejected

Every journal entry's postings sum to zero, so money is neither created nor lost; issuing
moves reserves into backing at the same moment as it creates e-CNY, so e-CNY is always 100%
backed. Accounts that hold something may never go negative (`guarded`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from rail_protocol.canonical import canonical_bytes
from rail_protocol.envelope import verify_statement
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import (  # noqa: F401 - the messages, as domain.X
    CREDIT_RESULT,
    INTERBANK_CREDIT,
    TRANSFER,
    TRANSFER_STATUS,
)
from rail_protocol.keys import PublicKey
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


def check_bank_url(url: object) -> str:
    """A bank node's API base URL, where central delivers its credits: http(s), a host,
    at most 200 characters, nothing after the path (no query, no fragment)."""
    if not isinstance(url, str) or not 8 <= len(url) <= 200:
        raise RailError("invalid_field", "url must be an http(s) URL of at most 200 characters")
    parts = urlsplit(url)
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or not url.isprintable() or any(c.isspace() for c in url)):
        raise RailError("invalid_field", "url must be an http:// or https:// URL of the bank's API")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise RailError("invalid_field", "url has a malformed port") from None
    return url


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


# --- interbank transfers (docs/interbank.md) -----------------------------------------------
# A transfer's status at central; it only ever leaves `prepared`, and only once.
TRANSFER_PREPARED = "prepared"  # holding:A moved to in_flight; waiting for bank B's answer
TRANSFER_SETTLED = "settled"  # B credited the payee: in_flight moved to holding:B (final)
TRANSFER_REJECTED = "rejected"  # B refused with a business code: in_flight back to A (final)
TRANSFER_STATUSES = (TRANSFER_PREPARED, TRANSFER_SETTLED, TRANSFER_REJECTED)
TRANSFER_FIELDS = frozenset({"transfer_id", "from_bank", "to_bank", "amount_fen", "payee_wallet",
                             "details"})
# `details` is bank A's note to bank B (payer's wallet pseudonym, order id, refunded transfer):
# central carries it unread from message 1 to message 2, so it is bounded and kept small.
MAX_DETAILS_BYTES = 2_048
# Delivery retries back off from 0.2 s, doubling, to at most 5 s: a bank that is down is
# asked again soon after it is back, and a long outage costs one request per 5 s per transfer.
FIRST_RETRY_MS = 200
MAX_RETRY_MS = 5_000
# Envelope and statement types of the interbank messages.
# The messages: TRANSFER (1, bank A -> central), TRANSFER_STATUS (central's answer),
# INTERBANK_CREDIT (2, central -> bank B), CREDIT_RESULT (bank B's answer); named in
# rail_protocol.instruction_types, which every party imports.
_REFUSAL_CODE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


@dataclass(frozen=True, slots=True)
class TransferOrder:
    """Message 1, checked: bank A asks central to move `amount_fen` to a wallet at bank B."""

    transfer_id: str
    from_bank: str
    to_bank: str
    amount_fen: int
    payee_wallet: str
    details: dict | None = None  # A's note to B, carried unread


def transfer_order(body: dict, instruction_id: str, signer_bank: str) -> TransferOrder:
    """Check message 1's body against the envelope that carries it (first error wins): a
    bank moves only its own holding (`signer_mismatch`), the transfer id is the envelope id
    and starts with the paying bank's id (so ids of different banks never collide), and the
    payee is at another bank. An optional `details` object is bank A's note to bank B."""
    extra = set(body) - TRANSFER_FIELDS
    if extra:
        raise RailError("invalid_field", f"unknown transfer fields {sorted(extra)}")
    if body.get("from_bank") != signer_bank:
        raise RailError("signer_mismatch", "a bank may only transfer its own e-CNY")
    transfer_id = body.get("transfer_id")
    if transfer_id != instruction_id:
        raise RailError("invalid_field", "transfer_id must equal the envelope id")
    if not transfer_id.startswith(signer_bank + ".") or len(transfer_id) <= len(signer_bank) + 1:
        raise RailError("invalid_field", "transfer_id must be '<from_bank>.<unique part>'")
    to_bank = body.get("to_bank")
    try:
        check_bank_id(to_bank)
    except RailError:
        raise RailError("invalid_field", "to_bank must be a bank id") from None
    if to_bank == signer_bank:
        raise RailError("invalid_field", "to_bank must differ from from_bank")
    amount = parse_fen(body.get("amount_fen"))
    payee = body.get("payee_wallet")
    if not isinstance(payee, str) or not 3 <= len(payee) <= 80 or not payee.isprintable():
        raise RailError("invalid_field", "payee_wallet must be 3-80 printable characters")
    details = body.get("details")
    if details is not None and (not isinstance(details, dict)
                                or len(canonical_bytes(details)) > MAX_DETAILS_BYTES):
        raise RailError("invalid_field",
                        f"details must be an object of at most {MAX_DETAILS_BYTES} bytes")
    return TransferOrder(transfer_id, signer_bank, to_bank, amount, payee, details)


def transfer_prepare(from_bank: str, amount_fen: int) -> Entry:
    """Bank A's e-CNY leaves its holding for in_flight; refused if A holds less."""
    amount = parse_fen(amount_fen)
    return Entry(
        "transfer_prepare",
        from_bank,
        (Posting(holding_account(from_bank), -amount), Posting(IN_FLIGHT, amount)),
    )


def transfer_settle(to_bank: str, amount_fen: int) -> Entry:
    """Bank B credited the payee: the amount in flight becomes B's holding."""
    amount = parse_fen(amount_fen)
    return Entry(
        "transfer_settle",
        to_bank,
        (Posting(IN_FLIGHT, -amount), Posting(holding_account(to_bank), amount)),
    )


def transfer_reject(from_bank: str, amount_fen: int) -> Entry:
    """Bank B refused the credit: the amount in flight goes back to bank A's holding."""
    amount = parse_fen(amount_fen)
    return Entry(
        "transfer_reject",
        from_bank,
        (Posting(IN_FLIGHT, -amount), Posting(holding_account(from_bank), amount)),
    )


def unknown_bank(bank_id: str) -> RailError:
    return RailError("unknown_bank", f"to_bank {bank_id} is not registered")


def prepare_in_turn(orders: list[TransferOrder], registered: set[str],
                    balances: dict[str, int]) -> list[Entry | RailError]:
    """Decide new transfers one after another, exactly as they would be decided one at a
    time: a payee bank that is not registered is `unknown_bank`; a transfer that A's
    holding (as left by the transfers before it) does not cover is refused with its
    shortfall code; otherwise its prepare entry, applied to `balances` (the locked balances
    of the paying banks' holdings, updated in place) before the next one is decided."""
    outcomes: list[Entry | RailError] = []
    for order in orders:
        if order.to_bank not in registered:
            outcomes.append(unknown_bank(order.to_bank))
            continue
        entry = transfer_prepare(order.from_bank, order.amount_fen)
        try:
            apply_entry(balances, entry)
        except RailError as exc:
            outcomes.append(exc)
            continue
        outcomes.append(entry)
    return outcomes


def credit_body(order: TransferOrder) -> dict:
    """Message 2's body: message 1's transfer as central checked it, `details` unread."""
    body = {"transfer_id": order.transfer_id, "from_bank": order.from_bank,
            "to_bank": order.to_bank, "amount_fen": order.amount_fen,
            "payee_wallet": order.payee_wallet}
    if order.details is not None:
        body["details"] = order.details
    return body


@dataclass(frozen=True, slots=True)
class CreditAnswer:
    """Bank B's answer to message 2: settle, or reject with B's business code."""

    status: str  # TRANSFER_SETTLED or TRANSFER_REJECTED
    code: str | None = None


def read_credit_result(
    result: object, bank_key: PublicKey, transfer_id: str, *, signature_checked: bool = False
) -> CreditAnswer | None:
    """Decide whether what bank B sent back is its answer for this transfer. Only a statement
    signed by B's registered key, of type `CREDIT_RESULT`, naming this transfer, with
    `accepted` true, or false and a snake_case code, is one; anything else (forged, for
    another transfer, malformed) is None, no answer, and the transfer stays prepared: money
    never moves on something B did not say. `signature_checked`: the statement came in a
    sealed answer whose one signature by B's key was checked (rail_protocol/batches.py)."""
    if not isinstance(result, dict):
        return None
    if signature_checked:
        if result.get("issuer") != bank_key.key_id:
            return None
    else:
        try:
            verify_statement(bank_key, result)
        except RailError:
            return None
    if result.get("type") != CREDIT_RESULT or result.get("transfer_id") != transfer_id:
        return None
    accepted = result.get("accepted")
    if accepted is True:
        return CreditAnswer(TRANSFER_SETTLED)
    code = result.get("code")
    if accepted is False and isinstance(code, str) and _REFUSAL_CODE.match(code):
        return CreditAnswer(TRANSFER_REJECTED, code)
    return None


def transfer_finish(order: TransferOrder, answer: CreditAnswer) -> Entry:
    """The entry that follows bank B's answer: settle to B, or reject back to A."""
    if answer.status == TRANSFER_SETTLED:
        return transfer_settle(order.to_bank, order.amount_fen)
    return transfer_reject(order.from_bank, order.amount_fen)


def retry_delay_ms(attempts: int) -> int:
    """How long to wait before delivering again after `attempts` unanswered tries."""
    return min(FIRST_RETRY_MS << min(max(attempts - 1, 0), 16), MAX_RETRY_MS)


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
    prepared_transfers_fen: int | None = None
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
            "prepared_transfers_fen": self.prepared_transfers_fen,
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
    prepared_transfers_fen: int | None = None,
) -> AuditReport:
    """Recompute conservation from the journal (`posted_balances`, the sums of postings) and
    compare with the balances kept beside it. Names every mismatch; says nothing is fine
    unless all of these hold:
      - each entry sums to zero;
      - each stored balance equals the sum of its postings;
      - no guarded account is negative;
      - total issued == sum of bank holdings + in flight == backing (100% backed);
      - in flight == the sum of the transfers still `prepared` (when that sum is given), so
        no transfer was settled or rejected twice, or moved money without a status change."""
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
    report.prepared_transfers_fen = prepared_transfers_fen
    if prepared_transfers_fen is not None and report.in_flight_fen != prepared_transfers_fen:
        report.problems.append(
            f"in flight {report.in_flight_fen} != prepared transfers {prepared_transfers_fen}"
        )
    if report.backing_fen != report.total_issued_fen:
        report.problems.append(
            f"backing {report.backing_fen} != total issued {report.total_issued_fen}"
        )
    return report
