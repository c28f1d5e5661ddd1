"""A bank's comparison of its books with central's checkpoint (bank/domain/registry.py)."""

from __future__ import annotations

import pytest

from bank.domain import registry as rules

pytestmark = pytest.mark.unit


def checkpoint(seq=5, head="aa", **line) -> dict:
    return {"seq": seq, "head_hash": head, "banks": [
        {"bank_id": "other", "holding_fen": 9, "in_flight_out_fen": 3, "in_flight_in_fen": 0},
        {"bank_id": "me", "holding_fen": 100, "in_flight_out_fen": 0, "in_flight_in_fen": 0,
         **line}]}


def audit(books=100, **extra) -> dict:
    return {"books_fen": books, "processing_out": [], "redeem_out_fen": 0,
            "pending_vault_ops": 0, **extra}


def test_equal_books_match_and_other_banks_in_flight_do_not_matter():
    assert rules.compare_books(checkpoint(), "me", audit()).status == rules.MATCH


@pytest.mark.parametrize("line, extra", [
    ({"in_flight_out_fen": 5}, {}),
    ({"in_flight_in_fen": 5}, {}),
    ({}, {"processing_out": [{"transfer_id": "me.1", "amount_fen": 5}]}),
    ({}, {"redeem_out_fen": 5}),
    ({}, {"pending_vault_ops": 1}),
])
def test_money_in_flight_either_side_is_not_compared(line, extra):
    found = rules.compare_books(checkpoint(holding_fen=95, **line), "me", audit(**extra))
    assert found.status == rules.IN_FLIGHT and "in flight" in found.detail


def test_in_flight_needs_no_books_and_a_comparison_does():
    moving = checkpoint(in_flight_out_fen=5)
    assert rules.central_in_flight(rules.line_of(moving, "me")) == {
        "central: transfers out": 5}
    assert rules.central_in_flight(rules.line_of(checkpoint(), "me")) == {}
    found = rules.compare_books(moving, "me", audit(None))
    assert found.status == rules.IN_FLIGHT and found.books_fen is None
    with pytest.raises(ValueError):
        rules.compare_books(checkpoint(), "me", audit(None))


def test_a_bank_without_a_line_holds_nothing():
    assert rules.compare_books(checkpoint(), "new", audit(0)).status == rules.MATCH
    assert rules.compare_books(checkpoint(), "new", audit(1)).status == rules.SUSPECT


def test_a_difference_alarms_only_once_it_has_stood_unchanged_for_the_confirmation_time():
    found = rules.compare_books(checkpoint(), "me", audit(101))
    status, seen = rules.confirm(None, found, 1_000, 500)
    assert status == rules.SUSPECT and seen.since_ms == 1_000
    status, seen = rules.confirm(seen, found, 1_400, 500)
    assert status == rules.SUSPECT
    status, seen = rules.confirm(seen, found, 1_500, 500)
    assert status == rules.MISMATCH and status in rules.ALARMS
    other = rules.compare_books(checkpoint(), "me", audit(102))   # the books moved: start over
    status, seen = rules.confirm(seen, other, 1_600, 500)
    assert status == rules.SUSPECT and seen.since_ms == 1_600
    status, seen = rules.confirm(seen, rules.compare_books(checkpoint(), "me", audit()), 1_700, 500)
    assert (status, seen) == (rules.MATCH, None)


def test_an_older_or_forked_checkpoint_is_a_rollback():
    accepted = checkpoint(5, "aa")
    assert not rules.is_rollback(None, accepted)
    assert not rules.is_rollback(accepted, checkpoint(5, "aa"))
    assert not rules.is_rollback(accepted, checkpoint(6, "bb"))
    assert rules.is_rollback(accepted, checkpoint(4, "cc"))
    assert rules.is_rollback(accepted, checkpoint(5, "bb"))
