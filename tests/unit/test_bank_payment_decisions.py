"""The payment decider (bank/domain/payments.py): each money rule once, first refusal wins,
and a batch decided in turn, each payment seeing what the ones before it left."""

import pytest

from bank.domain import mandates, orders
from bank.domain.payments import (
    Credit,
    LockedBooks,
    MandateState,
    Payment,
    PaymentDecision,
    RefundedPayment,
    apply_credit,
    decide_credit,
    decide_payment,
    decide_payments,
    decide_redeem,
    decide_refund,
    decide_top_up,
)
from bank.domain.wallets import DEFAULT_CLASS_LIMITS, WalletState, china_day
from rail_protocol.errors import RailError
from rail_protocol.money import yuan

pytestmark = pytest.mark.unit

AT = 1_767_225_600_000          # 2026-01-01 08:00 Beijing time
TODAY = china_day(AT)


def wallet(wallet_id: str, balance_fen: int = 0, *, kyc_class: int = 4, status: str = "open",
           spent_today_fen: int = 0, deposit_account: str | None = None,
           topup_on_use: bool = False, pending_out_fen: int = 0) -> WalletState:
    return WalletState(wallet_id, status, kyc_class, balance_fen, TODAY, spent_today_fen,
                       topup_on_use, deposit_account, pending_out_fen)


def books(*locked: WalletState, payees: tuple[WalletState, ...] = (), **extra) -> LockedBooks:
    return LockedBooks(dict(DEFAULT_CLASS_LIMITS), wallets={w.wallet_id: w for w in locked},
                       payees={w.wallet_id: w for w in payees}, **extra)


def refusal(payment: Payment, at_books: LockedBooks) -> str:
    with pytest.raises(RailError) as refused:
        decide_payment(payment, at_books, AT)
    return refused.value.code


def test_a_payment_debits_the_payer_and_credits_the_payee():
    decided = decide_payment(Payment("b.payer", "b.payee", 300),
                             books(wallet("b.payer", 1_000), payees=(wallet("b.payee"),)), AT)
    assert decided.debit.balance_after_fen == 700
    assert decided.debit.spent_today_after_fen == 300
    assert (decided.credit.to_wallet_fen, decided.credit.swept_to_deposit_fen) == (300, 0)
    assert not decided.moves_deposits


def test_deciding_changes_nothing_until_applied():
    at_books = books(wallet("b.payer", 1_000), payees=(wallet("b.payee"),))
    decide_payment(Payment("b.payer", "b.payee", 300), at_books, AT)
    assert at_books.wallets["b.payer"].balance_fen == 1_000


@pytest.mark.parametrize("payment, at_books, code", [
    (Payment("b.payer", "b.payer", 100), books(wallet("b.payer", 1_000)), "self_payment"),
    (Payment("b.payer", "b.nobody", 100), books(wallet("b.payer", 1_000)), "unknown_wallet"),
    (Payment("b.payer", "b.payee", 100, order_id="O1"),
     books(wallet("b.payer", 1_000), payees=(wallet("b.payee"),)), "unknown_order"),
    (Payment("b.payer", "b.payee", 100, mandate_id="M1"),
     books(wallet("b.payer", 1_000), payees=(wallet("b.payee"),)), "unknown_mandate"),
    (Payment("b.payer", "b.payee", 100),
     books(wallet("b.payer", 1_000, status="closed"), payees=(wallet("b.payee"),)),
     "wallet_closed"),
    (Payment("b.payer", "b.payee", 100),
     books(wallet("b.payer", 1_000), payees=(wallet("b.payee", status="closed"),)),
     "wallet_closed"),
    (Payment("b.payer", "b.payee", yuan(2_001)),
     books(wallet("b.payer", yuan(3_000)), payees=(wallet("b.payee"),)),
     "per_payment_cap_exceeded"),
    (Payment("b.payer", "b.payee", yuan(1_000)),
     books(wallet("b.payer", yuan(3_000), spent_today_fen=yuan(4_500)),
           payees=(wallet("b.payee"),)), "daily_cap_exceeded"),
    (Payment("b.payer", "b.payee", 1_001),
     books(wallet("b.payer", 1_000), payees=(wallet("b.payee"),)), "insufficient_funds"),
    (Payment("b.payer", "b.payee", yuan(10)),
     books(wallet("b.payer", yuan(100)), wallet("b.payee", yuan(9_995))),
     "balance_cap_exceeded"),
])
def test_each_rule_refuses_with_its_own_code(payment, at_books, code):
    assert refusal(payment, at_books) == code


def test_the_first_refusal_wins():
    """Closed, over the daily cap and short of funds at once: closed is said."""
    at_books = books(wallet("b.payer", 10, status="closed", spent_today_fen=yuan(5_000)),
                     payees=(wallet("b.payee"),))
    assert refusal(Payment("b.payer", "b.payee", 100), at_books) == "wallet_closed"


def test_a_payee_counts_what_it_has_in_flight_against_its_cap():
    """It sent 50 yuan to another bank; should that come back, it must still fit."""
    at_books = books(wallet("b.payer", yuan(100)),
                     wallet("b.payee", yuan(9_960), pending_out_fen=yuan(30)))
    assert refusal(Payment("b.payer", "b.payee", yuan(20)), at_books) == "balance_cap_exceeded"
    assert decide_payment(Payment("b.payer", "b.payee", yuan(10)), at_books, AT).credit \
        .to_wallet_fen == yuan(10)


def test_past_the_cap_the_excess_sweeps_to_a_linked_deposit_account():
    at_books = books(wallet("b.payer", yuan(100)),
                     wallet("b.payee", yuan(9_995), deposit_account="6200001"))
    decided = decide_payment(Payment("b.payer", "b.payee", yuan(10)), at_books, AT)
    assert (decided.credit.to_wallet_fen, decided.credit.swept_to_deposit_fen) == (
        yuan(5), yuan(5))
    assert decided.moves_deposits


def test_top_up_on_use_pulls_the_shortfall_from_the_deposit_account():
    at_books = books(wallet("b.payer", 300, topup_on_use=True, deposit_account="6200001"),
                     payees=(wallet("b.payee"),), deposits={"6200001": 500})
    decided = decide_payment(Payment("b.payer", "b.payee", 700), at_books, AT)
    assert (decided.debit.pulled_from_deposit_fen, decided.debit.balance_after_fen) == (400, 0)
    assert decided.moves_deposits
    assert refusal(Payment("b.payer", "b.payee", 801), at_books) == "insufficient_funds"


def test_an_order_is_paid_once_by_the_exact_amount_to_its_merchant():
    order = orders.OrderState("O1", "b.shop", 1_234, orders.CREATED, AT + 60_000)
    at_books = books(wallet("b.payer", yuan(100)), wallet("b.other", yuan(100)),
                     payees=(wallet("b.shop", kyc_class=1),), orders={"O1": order})
    assert refusal(Payment("b.payer", "b.shop", 1_000, order_id="O1"), at_books) == \
        "order_amount_mismatch"
    decided = decide_payments([Payment("b.payer", "b.shop", 1_234, order_id="O1"),
                               Payment("b.other", "b.shop", 1_234, order_id="O1")], at_books, AT)
    assert isinstance(decided[0], PaymentDecision)
    assert isinstance(decided[1], RailError) and decided[1].code == "order_paid"
    assert at_books.orders["O1"].status == orders.PAID
    assert at_books.wallets["b.other"].balance_fen == yuan(100)


def test_an_expired_order_is_refused():
    order = orders.OrderState("O1", "b.shop", 500, orders.CREATED, AT - 1)
    at_books = books(wallet("b.payer", yuan(100)), payees=(wallet("b.shop", kyc_class=1),),
                     orders={"O1": order})
    assert refusal(Payment("b.payer", "b.shop", 500, order_id="O1"), at_books) == "order_expired"


def test_charges_under_a_mandate_stop_at_its_period_cap():
    terms = mandates.MandateTerms(yuan(50), "month", yuan(100))
    at_books = books(wallet("b.payer", yuan(1_000), kyc_class=3),
                     payees=(wallet("b.shop", kyc_class=1),),
                     mandates={"M1": MandateState(mandates.ACTIVE, terms, 0, 0)})
    charges = [Payment("b.payer", "b.shop", yuan(30), mandate_id="M1") for _ in range(5)]
    decided = decide_payments(charges, at_books, AT)
    assert [d.code if isinstance(d, RailError) else "ok" for d in decided] == [
        "ok", "ok", "ok", "mandate_cap_exceeded", "mandate_cap_exceeded"]
    assert at_books.mandates["M1"].used_fen == yuan(90)
    assert at_books.wallets["b.payer"].balance_fen == yuan(910)


def test_a_revoked_mandate_charges_nothing():
    terms = mandates.MandateTerms(yuan(50), "month", yuan(100))
    at_books = books(wallet("b.payer", yuan(1_000)), payees=(wallet("b.shop", kyc_class=1),),
                     mandates={"M1": MandateState(mandates.REVOKED, terms, 0, 0)})
    assert refusal(Payment("b.payer", "b.shop", 100, mandate_id="M1"), at_books) == \
        "mandate_revoked"


def test_a_batch_stops_each_payer_at_its_balance_and_daily_cap():
    at_books = books(wallet("b.payer", yuan(10_000)), payees=(wallet("b.shop", kyc_class=1),))
    decided = decide_payments([Payment("b.payer", "b.shop", yuan(1_000))] * 10, at_books, AT)
    codes = [d.code if isinstance(d, RailError) else "ok" for d in decided]
    assert codes == ["ok"] * 5 + ["daily_cap_exceeded"] * 5
    assert at_books.wallets["b.payer"].balance_fen == yuan(5_000)


def test_a_locked_payee_sees_each_credit_of_the_batch_before_the_next():
    at_books = books(wallet("b.payer", yuan(20_000), kyc_class=1), wallet("b.payee"))
    decided = decide_payments([Payment("b.payer", "b.payee", yuan(4_000))] * 3, at_books, AT)
    assert [isinstance(d, PaymentDecision) for d in decided] == [True, True, False]
    assert decided[2].code == "balance_cap_exceeded"
    assert at_books.wallets["b.payee"].balance_fen == yuan(8_000)


def test_a_payment_to_another_bank_is_only_a_debit_counted_as_in_flight():
    at_books = books(wallet("b.payer", yuan(100), kyc_class=4))
    decided = decide_payments([Payment("b.payer", "c.payee", yuan(60), to_bank="c"),
                               Payment("b.payer", "c.payee", yuan(60), to_bank="c")],
                              at_books, AT)
    assert decided[0].credit is None
    assert isinstance(decided[1], RailError) and decided[1].code == "insufficient_funds"
    assert at_books.wallets["b.payer"].pending_out_fen == yuan(60)


def test_an_order_for_a_payee_at_another_bank_is_left_to_that_bank():
    at_books = books(wallet("b.payer", yuan(100)))
    decided = decide_payment(Payment("b.payer", "c.shop", 500, order_id="O-at-c", to_bank="c"),
                             at_books, AT)
    assert decided.debit.balance_after_fen == yuan(100) - 500


# --- credits from other banks ------------------------------------------------------------

def test_a_credit_from_another_bank_lands_in_the_wallet():
    decided = decide_credit(Credit("b.payee", 500), books(payees=(wallet("b.payee"),)), AT)
    assert (decided.to_wallet_fen, decided.swept_to_deposit_fen) == (500, 0)


@pytest.mark.parametrize("credit, at_books, code", [
    (Credit("b.nobody", 500), books(), "unknown_wallet"),
    (Credit("b.payee", 500), books(payees=(wallet("b.payee", status="closed"),)),
     "wallet_closed"),
    (Credit("b.payee", 500, order_id="O1"), books(payees=(wallet("b.payee"),)),
     "unknown_order"),
    (Credit("b.payee", yuan(10)), books(wallet("b.payee", yuan(9_995))),
     "balance_cap_exceeded"),
])
def test_a_credit_is_refused_with_its_rules_code(credit, at_books, code):
    with pytest.raises(RailError) as refused:
        decide_credit(credit, at_books, AT)
    assert refused.value.code == code


def test_a_refund_of_a_topped_up_payment_goes_back_to_the_deposit_account_first():
    """300 of a 1,000 refund came from the deposit account: 300 back there, 700 to the
    wallet, past whose cap nothing else is swept."""
    decided = decide_credit(Credit("b.payee", 1_000, to_deposit_fen=300),
                            books(wallet("b.payee", 0, deposit_account="6200001")), AT)
    assert (decided.to_wallet_fen, decided.swept_to_deposit_fen) == (700, 300)


def test_credits_for_one_order_pay_it_once():
    order = orders.OrderState("O1", "b.shop", 800, orders.CREATED, AT + 60_000)
    at_books = books(payees=(wallet("b.shop", kyc_class=1),), orders={"O1": order})
    first = Credit("b.shop", 800, order_id="O1")
    apply_credit(first, decide_credit(first, at_books, AT), at_books)
    with pytest.raises(RailError) as refused:
        decide_credit(Credit("b.shop", 800, order_id="O1"), at_books, AT)
    assert refused.value.code == "order_paid"


def test_credits_to_a_locked_payee_count_against_its_cap_in_turn():
    at_books = books(wallet("b.payee", yuan(9_000)))
    credit = Credit("b.payee", yuan(600))
    apply_credit(credit, decide_credit(credit, at_books, AT), at_books)
    assert at_books.wallets["b.payee"].balance_fen == yuan(9_600)
    with pytest.raises(RailError):
        decide_credit(credit, at_books, AT)


# --- refunds ------------------------------------------------------------------------------

def paid(amount_fen: int = 1_000, *, refunded_fen: int = 0, pulled_fen: int = 0,
         kind: str = "payment", status: str = "settled") -> RefundedPayment:
    return RefundedPayment(7, kind, status, "b.payer", "b.shop", amount_fen, refunded_fen,
                           pulled_fen)


def shop_and_payer(shop_fen: int = yuan(100)) -> LockedBooks:
    return books(wallet("b.shop", shop_fen, kyc_class=1), wallet("b.payer", 0))


@pytest.mark.parametrize("payment, code", [
    (None, "not_refundable"),
    (paid(status="rejected"), "not_refundable"),
    (paid(kind="top_up"), "not_refundable"),
    (paid(refunded_fen=800), "refund_exceeds_payment"),
])
def test_a_refund_is_refused_with_its_rules_code(payment, code):
    with pytest.raises(RailError) as refused:
        decide_refund("b.shop", payment, 300, shop_and_payer(), AT)
    assert refused.value.code == code


def test_only_the_merchant_paid_may_refund():
    with pytest.raises(RailError) as refused:
        decide_refund("b.other", paid(), 300, books(wallet("b.other", yuan(100), kyc_class=1)),
                      AT)
    assert refused.value.code == "not_refundable"


def test_a_refund_needs_the_merchants_funds():
    with pytest.raises(RailError) as refused:
        decide_refund("b.shop", paid(), 300, shop_and_payer(shop_fen=299), AT)
    assert refused.value.code == "insufficient_funds"


def test_refunds_in_parts_up_to_what_was_paid():
    decided = decide_refund("b.shop", paid(refunded_fen=700), 300, shop_and_payer(), AT)
    assert decided.refunded_after_fen == 1_000
    assert decided.debit.balance_after_fen == yuan(100) - 300
    assert (decided.credit.to_wallet_fen, decided.credit.swept_to_deposit_fen) == (300, 0)


def test_what_top_up_on_use_pulled_goes_back_to_the_deposit_account_first():
    decided = decide_refund("b.shop", paid(pulled_fen=400, refunded_fen=100), 500,
                            shop_and_payer(), AT)
    assert (decided.credit.to_wallet_fen, decided.credit.swept_to_deposit_fen) == (200, 300)


def test_a_refund_to_another_bank_is_only_the_merchants_debit():
    decided = decide_refund("b.shop", paid(kind="interbank_in"), 300,
                            books(wallet("b.shop", yuan(100), kyc_class=1)), AT)
    assert decided.credit is None and decided.debit.amount_fen == 300


# --- top-ups and redemptions ----------------------------------------------------------------

@pytest.mark.parametrize("state, deposit_fen, code", [
    (wallet("b.w", 0), yuan(10), "no_linked_account"),
    (wallet("b.w", 0, status="closed", deposit_account="62001"), yuan(10), "wallet_closed"),
    (wallet("b.w", yuan(9_995), deposit_account="62001"), yuan(10), "balance_cap_exceeded"),
    (wallet("b.w", 0, deposit_account="62001"), yuan(10) - 1, "insufficient_deposit"),
])
def test_a_top_up_is_refused_with_its_rules_code(state, deposit_fen, code):
    with pytest.raises(RailError) as refused:
        decide_top_up(state, DEFAULT_CLASS_LIMITS[4], yuan(10), deposit_fen)
    assert refused.value.code == code


def test_a_top_up_counts_what_the_wallet_has_in_flight_against_its_cap():
    state = wallet("b.w", yuan(9_980), deposit_account="62001", pending_out_fen=yuan(15))
    with pytest.raises(RailError):
        decide_top_up(state, DEFAULT_CLASS_LIMITS[4], yuan(10), yuan(10))
    decide_top_up(state, DEFAULT_CLASS_LIMITS[4], yuan(5), yuan(10))


@pytest.mark.parametrize("state, code", [
    (wallet("b.w", yuan(10)), "no_linked_account"),
    (wallet("b.w", yuan(10), status="closed", deposit_account="62001"), "wallet_closed"),
    (wallet("b.w", yuan(10) - 1, deposit_account="62001"), "insufficient_funds"),
])
def test_a_redemption_is_refused_with_its_rules_code(state, code):
    with pytest.raises(RailError) as refused:
        decide_redeem(state, yuan(10))
    assert refused.value.code == code


def test_the_databases_pending_out_function_counts_the_kinds_the_rules_count():
    """Migration 0009's `wallet_pending_out` sums the kinds of MAY_COME_BACK: a kind added
    to the rules needs a migration that replaces the function."""
    import importlib

    from bank.domain.wallets import MAY_COME_BACK

    migration = importlib.import_module("bank.migrations.versions.0009_pending_out_function")
    assert set(migration.KINDS) == set(MAY_COME_BACK)
