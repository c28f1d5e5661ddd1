"""A bank's check of central's signed checkpoint against its own books (docs/registry.md),
in plain Python.

A bank's books and central's line for it legitimately differ while money is between them:
a transfer central has prepared out of or into the bank, a payment the bank still counts as
processing, a vault refill or redemption whose answer the bank has not posted. The books are
compared only when neither side has anything in flight for the bank; then they must be
equal to the fen. A checkpoint is read at one moment and the books at another, so a
difference is only an alarm once it has stood unchanged for `confirm_ms`."""

from __future__ import annotations

from dataclasses import dataclass

# What one check found (the `status` of a bank's checkpoint report).
MATCH = "match"                    # books equal central's line: the checkpoint verifies
IN_FLIGHT = "in_flight"            # money between the bank and central: not compared
SUSPECT = "mismatch_suspected"     # they differ; not yet for long enough to be an alarm
MISMATCH = "mismatch"              # they have differed, unchanged, for `confirm_ms`: alarm
REFUSED = "refused"                # not signed by central or not a checkpoint: alarm
ROLLED_BACK = "rolled_back"        # older than, or forking from, one accepted before: alarm
UNAVAILABLE = "unavailable"        # central did not answer; nothing to compare
ALARMS = frozenset({MISMATCH, REFUSED, ROLLED_BACK})


@dataclass(frozen=True, slots=True)
class Comparison:
    status: str                    # MATCH, IN_FLIGHT or SUSPECT (a difference)
    books_fen: int | None          # None: not read, money was in flight
    holding_fen: int
    detail: str


def line_of(checkpoint: dict, bank_id: str) -> dict | None:
    return next((line for line in checkpoint["banks"] if line["bank_id"] == bank_id), None)


def central_in_flight(line: dict | None) -> dict[str, int]:
    """What central's line says is in flight out of and into the bank (nonzero only)."""
    line = line or {}
    moving = {"central: transfers out": line.get("in_flight_out_fen"),
              "central: transfers in": line.get("in_flight_in_fen")}
    return {name: value for name, value in moving.items() if value}


def compare_books(checkpoint: dict, bank_id: str, position: dict) -> Comparison:
    """Compare the bank's books with its line in a verified checkpoint. `position` is the
    bank's side (bank/reads.py `position`, or its whole audit): `books_fen`, which may be
    None when something is in flight, and what is in flight. A checkpoint signed before the
    bank registered has no line for it: it holds nothing."""
    books = position["books_fen"]
    line = line_of(checkpoint, bank_id) or {"holding_fen": 0}
    holding = line.get("holding_fen")
    moving = {**central_in_flight(line),
              "payments processing": sum(t["amount_fen"] for t in position["processing_out"]),
              "redemptions out": position.get("redeem_out_fen"),
              "vault instructions pending": position.get("pending_vault_ops")}
    moving = {name: value for name, value in moving.items() if value}
    if moving:
        return Comparison(IN_FLIGHT, books, holding, "not compared, in flight: " + ", ".join(
            f"{name} {value}" for name, value in moving.items()))
    if books is None:
        raise ValueError("the books are needed when nothing is in flight")
    if books == holding:
        return Comparison(MATCH, books, holding, f"books {books} = central's holding {holding}")
    return Comparison(SUSPECT, books, holding,
                      f"books {books} != central's holding {holding} at seq {checkpoint['seq']}")


def is_rollback(accepted: dict | None, checkpoint: dict) -> bool:
    """A checkpoint older than one accepted before, or at the same place with another head
    hash, means central's registry was rewound or forked."""
    if accepted is None:
        return False
    if checkpoint["seq"] < accepted["seq"]:
        return True
    return checkpoint["seq"] == accepted["seq"] and checkpoint["head_hash"] != accepted["head_hash"]


@dataclass(frozen=True, slots=True)
class Suspicion:
    """A difference first seen at `since_ms`, between these books and this holding."""

    books_fen: int
    holding_fen: int
    since_ms: int


def confirm(previous: Suspicion | None, found: Comparison, now_ms: int,
            confirm_ms: int) -> tuple[str, Suspicion | None]:
    """The status after a comparison, given the difference seen before (if any): a
    difference becomes MISMATCH once the same books and holding have differed for
    `confirm_ms`; anything else (a match, money moving, other figures) starts over."""
    if found.status != SUSPECT:
        return found.status, None
    if previous is None or (previous.books_fen, previous.holding_fen) != (
            found.books_fen, found.holding_fen):
        previous = Suspicion(found.books_fen, found.holding_fen, now_ms)
    status = MISMATCH if now_ms - previous.since_ms >= confirm_ms else SUSPECT
    return status, previous
