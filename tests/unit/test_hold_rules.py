"""The rules of holds and vouchers (bank/domain/holds.py): who may release, void or spend,
how much goes where, and that each closes once."""

import pytest

from bank.domain import holds as rules
from rail_protocol.errors import RailError

NOW = 1_796_000_000_000
HOUR = 3_600_000


def hold(**over) -> rules.HoldState:
    base = dict(hold_id="H1", kind=rules.HOLD, funder="b.payer", payee="b.shop", holder=None,
                amount_fen=5_000, remaining_fen=5_000, mcc=None, deadline_ms=NOW + HOUR,
                release_by="merchant", status=rules.PENDING)
    return rules.HoldState(**{**base, **over})


def voucher(**over) -> rules.HoldState:
    return hold(**{"kind": rules.VOUCHER, "payee": None, "holder": "b.kid", "release_by": None,
                   "mcc": "5812", **over})


def refused(code: str, decide, *args) -> None:
    with pytest.raises(RailError) as caught:
        decide(*args)
    assert caught.value.code == code


def test_a_partial_release_pays_the_merchant_and_sends_the_rest_back_posting_the_hold():
    move = rules.decide_release(hold(), "b.shop", 3_800, NOW)
    assert move == rules.Movement(3_800, 1_200, rules.POSTED)


def test_only_the_named_releaser_releases_and_never_more_than_is_held():
    refused("signer_mismatch", rules.decide_release, hold(), "b.payer", 1, NOW)
    escrow = hold(release_by="payer")
    assert rules.decide_release(escrow, "b.payer", 5_000, NOW).to_payee_fen == 5_000
    refused("signer_mismatch", rules.decide_release, escrow, "b.shop", 1, NOW)
    refused("release_exceeds_hold", rules.decide_release, hold(), "b.shop", 5_001, NOW)
    refused("invalid_amount", rules.decide_release, hold(), "b.shop", 0, NOW)


def test_a_closed_or_expired_hold_moves_nothing_more():
    for status in (rules.POSTED, rules.VOIDED, rules.EXPIRED):
        refused("hold_closed", rules.decide_release, hold(status=status), "b.shop", 1, NOW)
        refused("hold_closed", rules.decide_void, hold(status=status), "b.shop", NOW)
        assert rules.decide_expiry(hold(status=status), NOW + 2 * HOUR) is None
    refused("hold_expired", rules.decide_release, hold(), "b.shop", 1, NOW + HOUR)


def test_the_merchant_voids_a_hold_the_issuer_a_voucher():
    assert rules.decide_void(hold(), "b.shop", NOW) == rules.Movement(0, 5_000, rules.VOIDED)
    refused("signer_mismatch", rules.decide_void, hold(), "b.payer", NOW)
    assert rules.decide_void(voucher(remaining_fen=700), "b.payer", NOW).back_fen == 700
    refused("signer_mismatch", rules.decide_void, voucher(), "b.kid", NOW)


def test_expiry_comes_at_the_deadline_and_returns_what_is_left():
    assert rules.decide_expiry(hold(), NOW + HOUR - 1) is None
    assert rules.decide_expiry(voucher(remaining_fen=300), NOW + HOUR) == rules.Movement(
        0, 300, rules.EXPIRED)


def test_a_voucher_is_spent_by_its_holder_at_its_category_in_parts():
    part = rules.decide_spend(voucher(), "b.kid", "5812", 2_000, NOW)
    assert part == rules.Movement(2_000, 0, rules.PENDING)
    last = rules.decide_spend(voucher(remaining_fen=2_000), "b.kid", "5812", 2_000, NOW)
    assert last.status_after == rules.POSTED
    refused("mcc_not_allowed", rules.decide_spend, voucher(), "b.kid", "5942", 1, NOW)
    refused("mcc_not_allowed", rules.decide_spend, voucher(), "b.kid", None, 1, NOW)
    refused("signer_mismatch", rules.decide_spend, voucher(), "b.payer", "5812", 1, NOW)
    refused("release_exceeds_hold", rules.decide_spend, voucher(), "b.kid", "5812", 5_001, NOW)
    assert rules.decide_spend(voucher(mcc=None), "b.kid", "5942", 1, NOW).to_payee_fen == 1


def test_terms_are_checked():
    assert rules.check_deadline(NOW + HOUR, NOW) == NOW + HOUR
    for bad in (NOW, NOW + 59_999, NOW + 91 * 24 * HOUR, float(NOW + HOUR), True, None):
        refused("invalid_field", rules.check_deadline, bad, NOW)
    assert rules.check_deadline(NOW + 2_000, NOW, min_life_ms=2_000) == NOW + 2_000
    refused("invalid_field", rules.check_release_by, "bank")
    assert rules.check_mcc(None) is None and rules.check_mcc("5812") == "5812"
    for bad in ("58a2", "581", 5812):
        refused("invalid_field", rules.check_mcc, bad)
