"""The tamper-evident registry, in plain Python (docs/registry.md): the hash chain over
central's journal, the signed checkpoint, and their verification.

Each journal entry, once committed, is given a chain sequence number (1, 2, 3, ... with no
gap) and a link hash that commits to the entry, its postings and the previous link:

    link(seq) = sha256(canonical({"prev": link(seq - 1), "seq": seq, "entry": entry}))
    link(0)   = GENESIS (64 zeros)

Editing, deleting or reordering an entry or a posting that is chained changes a link, so
every later link and the head hash in any signed checkpoint no longer match. Entries are
chained after they commit, in the order the sealer finds them (entry id order among those
committed), so chain order may differ from entry id order; the link names its entry id.

A checkpoint is central's signed statement of the chain at one head: its sequence and hash,
total supply, and each bank's reserves, holding and transfers in flight as of that head."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from rail_protocol.canonical import canonical_bytes
from rail_protocol.envelope import verify_statement
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey

GENESIS = "0" * 64
CHECKPOINT = "central.checkpoint"  # the statement type of a checkpoint
# Pseudo-accounts of the chain's running totals: per bank, what is in flight as of the head
# (transfers prepared and not yet settled or rejected), out of it and into it.
FLIGHT_OUT = "flight_out:"
FLIGHT_IN = "flight_in:"
TRANSFER_KINDS = ("transfer_prepare", "transfer_settle", "transfer_reject")
_ISSUANCE, _BACKING, _IN_FLIGHT = "issuance", "backing", "in_flight"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A journal entry as stored: what its link hash covers. `postings` are (account,
    amount_fen) in posting id order."""

    entry_id: int
    kind: str
    bank_id: str
    reference: str
    created_ms: int
    postings: tuple[tuple[str, int], ...]

    def body(self) -> dict:
        return {"entry_id": self.entry_id, "kind": self.kind, "bank_id": self.bank_id,
                "reference": self.reference, "created_ms": self.created_ms,
                "postings": [{"account": a, "amount_fen": f} for a, f in self.postings]}


def link_hash(prev_hash: str, seq: int, entry: JournalEntry) -> str:
    """The link of `entry` at `seq` after `prev_hash`: sha256 (hex) of the canonical bytes of
    the previous hash, the sequence number and the entry with its postings."""
    return hashlib.sha256(canonical_bytes(
        {"prev": prev_hash, "seq": seq, "entry": entry.body()})).hexdigest()


def seal(prev_seq: int, prev_hash: str,
         entries: Iterable[JournalEntry]) -> list[tuple[JournalEntry, int, str]]:
    """Chain `entries` (in the order given) after the head (`prev_seq`, `prev_hash`):
    (entry, seq, hash) for each, seq counting on from the head without a gap."""
    links = []
    for entry in entries:
        prev_seq += 1
        prev_hash = link_hash(prev_hash, prev_seq, entry)
        links.append((entry, prev_seq, prev_hash))
    return links


def transfer_id_of(reference: str) -> str | None:
    """The transfer an interbank entry belongs to: its reference is
    `transfer:<transfer id>:<phase>` (the id may itself hold ':')."""
    if not reference.startswith("transfer:") or reference.count(":") < 2:
        return None
    return reference[len("transfer:"):reference.rindex(":")]


def transfer_ids(entries: Iterable) -> list[str]:
    """The transfers the interbank ones of these entries (anything with a `kind` and a
    `reference`) belong to, sorted: whose banks the chain's totals need."""
    return sorted({transfer_id_of(e.reference) for e in entries
                   if e.kind in TRANSFER_KINDS} - {None})


def chain_deltas(entry: JournalEntry, transfer: tuple[str, str] | None) -> dict[str, int]:
    """What chaining `entry` adds to the running totals: each posting to its account, and
    for an interbank entry (whose transfer goes from bank `transfer[0]` to `transfer[1]`)
    the amount in flight out of the paying bank and into the payee bank (up at prepare, down
    at settle or reject)."""
    deltas: dict[str, int] = {}
    for account, amount in entry.postings:
        deltas[account] = deltas.get(account, 0) + amount
    if entry.kind in TRANSFER_KINDS and transfer is not None:
        moved = deltas.get(_IN_FLIGHT, 0)   # + at prepare, - at settle or reject
        if moved:
            from_bank, to_bank = transfer
            deltas[FLIGHT_OUT + from_bank] = deltas.get(FLIGHT_OUT + from_bank, 0) + moved
            deltas[FLIGHT_IN + to_bank] = deltas.get(FLIGHT_IN + to_bank, 0) + moved
    return deltas


def add_deltas(totals: dict[str, int], deltas: dict[str, int]) -> None:
    for account, delta in deltas.items():
        totals[account] = totals.get(account, 0) + delta


# --- checkpoints ----------------------------------------------------------------------------

def bank_line(bank_id: str, totals: dict[str, int]) -> dict:
    return {"bank_id": bank_id,
            "reserves_fen": totals.get(f"reserve:{bank_id}", 0),
            "holding_fen": totals.get(f"holding:{bank_id}", 0),
            "in_flight_out_fen": totals.get(FLIGHT_OUT + bank_id, 0),
            "in_flight_in_fen": totals.get(FLIGHT_IN + bank_id, 0)}


def checkpoint(seq: int, head_hash: str, totals: dict[str, int], bank_ids: Iterable[str],
               at_ms: int) -> dict:
    """The checkpoint to sign at a head: its sequence and hash, total supply (e-CNY
    outstanding), backing, in flight, and one line per bank, all as of that head (`totals`
    are the chain's running totals there), and the time it was made."""
    return {"type": CHECKPOINT, "seq": seq, "head_hash": head_hash, "currency": "CNY",
            "total_supply_fen": -totals.get(_ISSUANCE, 0),
            "backing_fen": totals.get(_BACKING, 0),
            "in_flight_fen": totals.get(_IN_FLIGHT, 0),
            "banks": [bank_line(b, totals) for b in sorted(bank_ids)],
            "at_ms": at_ms}


def read_checkpoint(statement: object, central_key: PublicKey) -> dict:
    """Accept a checkpoint only if central signed it and it has the checkpoint's shape;
    refuse anything else (`bad_signature`, `unknown_key`, `invalid_field`)."""
    if not isinstance(statement, dict):
        raise RailError("invalid_field", "a checkpoint is a signed object")
    verify_statement(central_key, statement)
    ints = ("seq", "total_supply_fen", "backing_fen", "in_flight_fen", "at_ms")
    if (statement.get("type") != CHECKPOINT
            or not all(type(statement.get(n)) is int for n in ints)
            or not isinstance(statement.get("head_hash"), str)
            or not isinstance(statement.get("banks"), list)
            or not all(isinstance(line, dict) and isinstance(line.get("bank_id"), str)
                       for line in statement["banks"])):
        raise RailError("invalid_field", "the statement is not a checkpoint")
    return statement


# --- verification ---------------------------------------------------------------------------

@dataclass
class ChainReport:
    """What a verification of the whole chain found; `problems` empty means it holds."""

    links: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    unsealed: int = 0
    checkpoints: int = 0
    signatures_checked: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"intact": self.intact, "links": self.links, "head_seq": self.head_seq,
                "head_hash": self.head_hash, "unsealed": self.unsealed,
                "checkpoints": self.checkpoints,
                "signatures_checked": self.signatures_checked, "problems": self.problems}


# Problems named once each, at most this many (a broken chain breaks every link after it).
MAX_PROBLEMS = 50


class ChainVerifier:
    """Verify a chain fed link by link in sequence order (streaming: memory holds only the
    running totals): sequence numbers run 1, 2, 3 ... without gap or repeat, each stored
    hash equals the link recomputed from its entry and the recomputed previous link, and at
    each checkpoint's sequence the head hash and every figure equal the recomputed ones.
    Checkpoints are checked for central's signature when `central_key` is given."""

    def __init__(self, checkpoints: Iterable[dict] = (),
                 central_key: PublicKey | None = None) -> None:
        self.report = ChainReport(signatures_checked=central_key is not None)
        self.totals: dict[str, int] = {}
        self._prev_hash = GENESIS
        self._seq = 0
        self._checkpoints: dict[int, list[dict]] = {}
        for statement in checkpoints:
            self.report.checkpoints += 1
            if central_key is not None:
                try:
                    read_checkpoint(statement, central_key)
                except RailError as exc:
                    self._problem(f"checkpoint at seq {statement.get('seq')}: {exc.message}")
                    continue
            seq = statement.get("seq")
            if type(seq) is not int or seq < 0:
                self._problem("a checkpoint without a sequence number")
                continue
            self._checkpoints.setdefault(seq, []).append(statement)
        self._check_checkpoints_at(0)

    def _problem(self, text: str) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(text)

    def feed(self, seq: int, stored_hash: str | None, entry: JournalEntry,
             transfer: tuple[str, str] | None = None) -> None:
        """The next link: its stored sequence number and hash, and its entry as stored."""
        expected_seq = self._seq + 1
        if seq != expected_seq:
            what = "repeated" if seq <= self._seq else f"missing {expected_seq}..{seq - 1}"
            self._problem(f"chain seq {seq} (entry {entry.entry_id}): sequence {what}")
        recomputed = link_hash(self._prev_hash, seq, entry)
        if stored_hash != recomputed:
            self._problem(f"chain seq {seq} (entry {entry.entry_id}): hash does not match "
                          "the entry, its postings and the link before it")
        self._seq, self._prev_hash = max(seq, self._seq), recomputed
        add_deltas(self.totals, chain_deltas(entry, transfer))
        self.report.links += 1
        self.report.head_seq, self.report.head_hash = self._seq, recomputed
        self._check_checkpoints_at(seq)

    def _check_checkpoints_at(self, seq: int) -> None:
        for statement in self._checkpoints.pop(seq, []):
            if statement.get("head_hash") != self._prev_hash:
                self._problem(f"checkpoint at seq {seq}: head hash differs from the chain's")
            banks = [line.get("bank_id") for line in statement.get("banks") or []
                     if isinstance(line, dict)]
            expected = checkpoint(seq, self._prev_hash, self.totals, banks,
                                  statement.get("at_ms"))
            for name in ("total_supply_fen", "backing_fen", "in_flight_fen", "banks"):
                if statement.get(name) != expected[name]:
                    self._problem(f"checkpoint at seq {seq}: {name} differs from the "
                                  "chain's totals")

    def finish(self, unsealed: int = 0) -> ChainReport:
        """End of the chain; `unsealed` entries are committed but not yet chained (the
        sealer's next pass chains them): counted, not a problem."""
        for seq in sorted(self._checkpoints):
            self._problem(f"checkpoint at seq {seq}: the chain has no link there (links "
                          "deleted or renumbered)")
        self._checkpoints.clear()
        self.report.unsealed = unsealed
        return self.report


def verify(links: Iterable[tuple[int, str | None, JournalEntry, tuple[str, str] | None]],
           checkpoints: Iterable[dict] = (), central_key: PublicKey | None = None,
           unsealed: int = 0) -> ChainReport:
    """Verify a whole chain at once: (seq, stored hash, entry, transfer) in seq order."""
    verifier = ChainVerifier(checkpoints, central_key)
    for seq, stored, entry, transfer in links:
        verifier.feed(seq, stored, entry, transfer)
    return verifier.finish(unsealed)


# --- exports ----------------------------------------------------------------------------------

def entry_from_body(body: dict) -> JournalEntry:
    """The entry a link's body describes (the inverse of `JournalEntry.body`)."""
    try:
        return JournalEntry(int(body["entry_id"]), str(body["kind"]), str(body["bank_id"]),
                            str(body["reference"]), int(body["created_ms"]),
                            tuple((str(p["account"]), int(p["amount_fen"]))
                                  for p in body["postings"]))
    except (KeyError, TypeError, ValueError):
        raise RailError("invalid_field", "a link's entry is malformed") from None


def verify_export(data: object, central_key: PublicKey | None = None) -> ChainReport:
    """Verify an export of the chain (`yuanrail audit --export-chain`): {"links": [{"seq",
    "hash", "entry", "transfer"}], "checkpoints": [...], "unsealed": n}, links in order."""
    if not isinstance(data, dict) or not isinstance(data.get("links"), list):
        raise RailError("invalid_field", "a chain export is an object with a list of links")
    verifier = ChainVerifier(data.get("checkpoints") or [], central_key)
    for link in data["links"]:
        if not isinstance(link, dict) or type(link.get("seq")) is not int:
            raise RailError("invalid_field", "a link has a seq, a hash and an entry")
        transfer = link.get("transfer")
        verifier.feed(link["seq"], link.get("hash"), entry_from_body(link.get("entry") or {}),
                      tuple(transfer) if isinstance(transfer, list) and len(transfer) == 2
                      else None)
    unsealed = data.get("unsealed", 0)
    return verifier.finish(unsealed if type(unsealed) is int else 0)
