"""A bank's wallet rules, in memory: what a debit or a credit may do (one test per refusal
code, first refusal wins), the daily cap's China day, top-up on use, the balance-cap
waterfall, KYC upgrades, and the pilot's limits as the defaults."""

import pytest

from bank.domain.wallets import (
    CHINA_UTC_OFFSET_MS,
    CLOSED,
    DAY_MS,
    DEFAULT_CLASS_LIMITS,
    OPEN,
    ClassLimits,
    CreditPlan,
    WalletState,
    china_day,
    class_after_upgrade,
    plan_credit,
    plan_debit,
)
from rail_protocol.errors import RailError
from rail_protocol.money import yuan

pytestmark = pytest.mark.unit

CLASS_4, CLASS_3 = DEFAULT_CLASS_LIMITS[4], DEFAULT_CLASS_LIMITS[3]
CLASS_2, CLASS_1 = DEFAULT_CLASS_LIMITS[2], DEFAULT_CLASS_LIMITS[1]
# 2024-05-01 12:00 Beijing time (04:00 UTC), well inside one China day.
NOON_MS = 1_714_536_000_000
TODAY = china_day(NOON_MS)


def wallet(balance_fen: int = yuan(1_000), *, status: str = OPEN, kyc_class: int = 4,
           spent_today_fen: int = 0, day: int = TODAY, topup_on_use: bool = False,
           deposit_account: str | None = None) -> WalletState:
    return WalletState(wallet_id="yangtze.0123456789abcdef", status=status, kyc_class=kyc_class,
                       balance_fen=balance_fen, day=day, spent_today_fen=spent_today_fen,
                       topup_on_use=topup_on_use, deposit_account=deposit_account)


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(RailError) as caught:
        call(*args, **kwargs)
    return caught.value.code


# --- the pilot's figures are the defaults -----------------------------------------------------

@pytest.mark.parametrize("kyc_class, balance_yuan, per_payment_yuan, daily_yuan", [
    (4, 10_000, 2_000, 5_000),     # phone number only
    (3, 20_000, 5_000, 10_000),    # + identity document
    (2, 500_000, 50_000, 100_000),  # + a bank account
])
def test_default_class_limits_are_the_e_cny_pilot_figures(kyc_class, balance_yuan,
                                                          per_payment_yuan, daily_yuan):
    assert DEFAULT_CLASS_LIMITS[kyc_class] == ClassLimits(
        kyc_class, balance_yuan * 100, per_payment_yuan * 100, daily_yuan * 100)


def test_class_1_has_no_caps_at_all():
    assert DEFAULT_CLASS_LIMITS[1] == ClassLimits(1, None, None, None)
    assert set(DEFAULT_CLASS_LIMITS) == {1, 2, 3, 4}


def test_limits_answer_as_a_plain_dict_in_fen():
    assert CLASS_4.to_dict() == {"kyc_class": 4, "balance_cap_fen": 1_000_000,
                                 "per_payment_cap_fen": 200_000, "daily_cap_fen": 500_000}


# --- debits: one refusal per code -------------------------------------------------------------

def test_a_debit_within_every_cap_leaves_the_rest_and_counts_toward_today():
    plan = plan_debit(wallet(yuan(1_000), spent_today_fen=yuan(100)), CLASS_4, yuan(300),
                      NOON_MS)
    assert plan.amount_fen == yuan(300)
    assert plan.balance_after_fen == yuan(700)
    assert plan.pulled_from_deposit_fen == 0
    assert plan.day == TODAY and plan.spent_today_after_fen == yuan(400)


def test_a_closed_wallet_cannot_pay():
    assert refusal(plan_debit, wallet(status=CLOSED), CLASS_4, 1, NOON_MS) == "wallet_closed"


def test_a_closed_wallet_is_refused_before_any_cap_is_looked_at():
    over_everything = wallet(yuan(1), status=CLOSED, spent_today_fen=yuan(5_000))
    assert refusal(plan_debit, over_everything, CLASS_4, yuan(9_999), NOON_MS) == "wallet_closed"


def test_a_payment_above_the_per_payment_cap_is_refused():
    rich = wallet(yuan(9_000))
    assert plan_debit(rich, CLASS_4, yuan(2_000), NOON_MS).amount_fen == yuan(2_000)
    assert refusal(plan_debit, rich, CLASS_4, yuan(2_000) + 1, NOON_MS) \
        == "per_payment_cap_exceeded"


def test_the_per_payment_cap_is_checked_before_the_daily_cap_and_the_funds():
    poor_and_spent = wallet(0, spent_today_fen=yuan(5_000))
    assert refusal(plan_debit, poor_and_spent, CLASS_4, yuan(3_000), NOON_MS) \
        == "per_payment_cap_exceeded"


def test_a_payment_past_the_daily_cap_is_refused():
    spent = wallet(yuan(9_000), spent_today_fen=yuan(4_000))
    assert plan_debit(spent, CLASS_4, yuan(1_000), NOON_MS).spent_today_after_fen == yuan(5_000)
    assert refusal(plan_debit, spent, CLASS_4, yuan(1_000) + 1, NOON_MS) == "daily_cap_exceeded"


def test_the_daily_cap_is_checked_before_the_funds():
    assert refusal(plan_debit, wallet(0, spent_today_fen=yuan(5_000)), CLASS_4, 1, NOON_MS) \
        == "daily_cap_exceeded"


def test_the_daily_cap_starts_afresh_on_a_new_china_day():
    spent_yesterday = wallet(yuan(9_000), spent_today_fen=yuan(5_000), day=TODAY - 1)
    plan = plan_debit(spent_yesterday, CLASS_4, yuan(2_000), NOON_MS)
    assert plan.day == TODAY and plan.spent_today_after_fen == yuan(2_000)


def test_a_china_day_turns_at_midnight_beijing_time_which_is_16_00_utc():
    midnight_beijing_ms = TODAY * DAY_MS - CHINA_UTC_OFFSET_MS
    assert midnight_beijing_ms % DAY_MS == 16 * 3600 * 1000
    assert china_day(midnight_beijing_ms) == TODAY
    assert china_day(midnight_beijing_ms - 1) == TODAY - 1
    spent = wallet(yuan(9_000), spent_today_fen=yuan(5_000), day=TODAY - 1)
    assert refusal(plan_debit, spent, CLASS_4, 1, midnight_beijing_ms - 1) \
        == "daily_cap_exceeded"
    assert plan_debit(spent, CLASS_4, 1, midnight_beijing_ms).spent_today_after_fen == 1


def test_a_payment_above_the_balance_is_refused():
    assert plan_debit(wallet(500), CLASS_4, 500, NOON_MS).balance_after_fen == 0
    assert refusal(plan_debit, wallet(500), CLASS_4, 501, NOON_MS) == "insufficient_funds"


def test_without_top_up_on_use_a_linked_deposit_is_not_touched():
    linked = wallet(500, deposit_account="6200000001")
    assert refusal(plan_debit, linked, CLASS_4, 501, NOON_MS,
                   deposit_available_fen=yuan(1_000)) == "insufficient_funds"


def test_top_up_on_use_pulls_exactly_the_shortfall_from_the_deposit_account():
    linked = wallet(yuan(100), topup_on_use=True, deposit_account="6200000001")
    plan = plan_debit(linked, CLASS_4, yuan(300), NOON_MS, deposit_available_fen=yuan(1_000))
    assert plan.pulled_from_deposit_fen == yuan(200)
    assert plan.balance_after_fen == 0


def test_top_up_on_use_pulls_nothing_when_the_balance_covers_the_payment():
    linked = wallet(yuan(300), topup_on_use=True, deposit_account="6200000001")
    plan = plan_debit(linked, CLASS_4, yuan(300), NOON_MS, deposit_available_fen=yuan(1_000))
    assert plan.pulled_from_deposit_fen == 0 and plan.balance_after_fen == 0


def test_top_up_on_use_refuses_when_balance_and_deposit_together_are_short():
    linked = wallet(yuan(100), topup_on_use=True, deposit_account="6200000001")
    assert plan_debit(linked, CLASS_4, yuan(300), NOON_MS,
                      deposit_available_fen=yuan(200)).pulled_from_deposit_fen == yuan(200)
    assert refusal(plan_debit, linked, CLASS_4, yuan(300), NOON_MS,
                   deposit_available_fen=yuan(200) - 1) == "insufficient_funds"


def test_top_up_on_use_without_a_linked_account_pulls_nothing():
    unlinked = wallet(yuan(100), topup_on_use=True, deposit_account=None)
    assert refusal(plan_debit, unlinked, CLASS_4, yuan(300), NOON_MS,
                   deposit_available_fen=yuan(1_000)) == "insufficient_funds"


def test_class_1_pays_any_amount_any_number_of_times_a_day():
    whale = wallet(yuan(10_000_000), kyc_class=1, spent_today_fen=yuan(9_000_000))
    plan = plan_debit(whale, CLASS_1, yuan(1_000_000), NOON_MS)
    assert plan.balance_after_fen == yuan(9_000_000)


@pytest.mark.parametrize("amount", [0, -1, 1.0, "100", True, None])
def test_a_debit_amount_must_be_a_positive_integer_of_fen(amount):
    assert refusal(plan_debit, wallet(), CLASS_4, amount, NOON_MS) == "invalid_amount"


# --- credits and the waterfall ----------------------------------------------------------------

def test_a_credit_within_the_balance_cap_lands_whole_in_the_wallet():
    assert plan_credit(wallet(yuan(9_000)), CLASS_4, yuan(1_000)) == CreditPlan(yuan(1_000), 0)


def test_a_closed_wallet_cannot_receive():
    assert refusal(plan_credit, wallet(status=CLOSED), CLASS_4, 1) == "wallet_closed"


def test_a_credit_past_the_cap_sweeps_the_excess_to_the_linked_deposit_account():
    linked = wallet(yuan(9_000), deposit_account="6200000001")
    assert plan_credit(linked, CLASS_4, yuan(1_500)) == CreditPlan(yuan(1_000), yuan(500))


def test_a_wallet_already_at_its_cap_sweeps_the_whole_credit():
    full = wallet(yuan(10_000), deposit_account="6200000001")
    assert plan_credit(full, CLASS_4, yuan(42)) == CreditPlan(0, yuan(42))


def test_a_credit_past_the_cap_with_no_account_to_sweep_to_is_refused():
    unlinked = wallet(yuan(9_000))
    assert plan_credit(unlinked, CLASS_4, yuan(1_000)) == CreditPlan(yuan(1_000), 0)
    assert refusal(plan_credit, unlinked, CLASS_4, yuan(1_000) + 1) == "balance_cap_exceeded"


def test_class_1_holds_any_amount():
    assert plan_credit(wallet(10**14, kyc_class=1), CLASS_1, 10**14) == CreditPlan(10**14, 0)


@pytest.mark.parametrize("amount", [0, -5, 2.5, "1"])
def test_a_credit_amount_must_be_a_positive_integer_of_fen(amount):
    assert refusal(plan_credit, wallet(), CLASS_4, amount) == "invalid_amount"


# --- KYC upgrades -----------------------------------------------------------------------------

@pytest.mark.parametrize("current, has_id, has_account, expected", [
    (4, False, False, 4),
    (4, True, False, 3),     # an identity document
    (4, True, True, 2),      # and a bank account
    (4, False, True, 4),     # an account without an identity proves nothing
    (3, True, False, 3),
    (3, True, True, 2),
    (2, True, False, 2),     # evidence never lowers a class
    (2, False, False, 2),
    (1, True, True, 1),      # class 1 is granted in person and never taken away here
])
def test_class_after_upgrade(current, has_id, has_account, expected):
    assert class_after_upgrade(current, has_id, has_account) == expected
