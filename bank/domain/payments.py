"""Deciding payments: every money rule of a wallet payment, in one place, for one payment or
a batch of them.

Both ways a bank writes payments ask here: one transaction per payment (`bank/services.py`,
on SQLite and PostgreSQL) and many to one transaction (`bank/payment_engine.py`). The caller locks
what a payment reads (the payer, a capped payee, the order, the mandate), puts it in a
`LockedBooks`, and writes exactly what the decisions say. Nothing here touches a database.

The rules, first refusal wins: not to oneself; the mandate allows it (a charge under a
mandate); the order is payable (a dynamic QR); the payee is a wallet here; the payer may pay
(open, per-payment cap, daily cap, funds, top-up on use); the payee may receive (open,
balance cap counting what it has in flight, the excess swept to its deposit account).
A payee at another bank is decided by its bank; here only the debit."""

from __future__ import annotations

from dataclasses import dataclass, field

from bank.domain import mandates, orders
from bank.domain.wallets import (
    OPEN,
    ClassLimits,
    CreditPlan,
    DebitPlan,
    WalletState,
    plan_credit,
    plan_debit,
)
from rail_protocol.errors import RailError


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment to decide: `to_bank` is set when the payee is at another bank."""

    payer_id: str
    payee_id: str
    amount_fen: int
    order_id: str | None = None
    mandate_id: str | None = None
    to_bank: str | None = None


@dataclass(slots=True)
class MandateState:
    """A mandate as a charge under it needs it, read with its row locked."""

    status: str
    terms: mandates.MandateTerms
    used_fen: int
    period_key: int


@dataclass(frozen=True, slots=True)
class PaymentDecision:
    """What a payment does: the payer's debit and, for a payee here, its credit."""

    debit: DebitPlan
    credit: CreditPlan | None = None
    mandate_period_key: int | None = None
    mandate_used_fen: int | None = None

    @property
    def moves_deposits(self) -> bool:
        """Whether money also moves in or out of a deposit account (top-up on use, sweep)."""
        swept = self.credit.swept_to_deposit_fen if self.credit else 0
        return bool(self.debit.pulled_from_deposit_fen or swept)


@dataclass(slots=True)
class LockedBooks:
    """What a batch of payments is decided against. `wallets` holds the states read with
    their rows locked (payers, and payees whose balance cap must be checked); `payees` the
    payees read without a lock (no balance cap: a popular merchant is never locked), whose
    balance the rules do not need. Deciding a payment and applying it updates these, so the
    next payment of the batch sees what the one before it left."""

    limits: dict[int, ClassLimits]
    wallets: dict[str, WalletState] = field(default_factory=dict)
    payees: dict[str, WalletState] = field(default_factory=dict)
    orders: dict[str, orders.OrderState] = field(default_factory=dict)
    mandates: dict[str, MandateState] = field(default_factory=dict)
    deposits: dict[str, int] = field(default_factory=dict)   # linked account -> balance

    def payee(self, wallet_id: str) -> WalletState:
        """The payee as the rules see it: locked with its balance, or unlocked with none."""
        if wallet_id in self.wallets:
            return self.wallets[wallet_id]
        state = self.payees.get(wallet_id)
        if state is None:
            raise RailError("unknown_wallet", f"no wallet {wallet_id} at this bank")
        return WalletState(state.wallet_id, state.status, state.kyc_class, 0, 0, 0,
                           state.topup_on_use, state.deposit_account)


def check_code_pin(amount_fen: int, pin_verified: bool, no_pin_threshold_fen: int) -> None:
    """A customer's payment code pays up to the bank's no-PIN threshold; above it, only if
    the payer entered the PIN when the wallet made the code."""
    if amount_fen > no_pin_threshold_fen and not pin_verified:
        raise RailError("pin_required", f"above {no_pin_threshold_fen} fen the code needs the PIN")


def decide_payment(payment: Payment, books: LockedBooks, at_ms: int) -> PaymentDecision:
    """Decide one payment against `books`, first refusal wins (the module's list); raises
    the refusal as a `RailError`. Changes nothing: `apply_payment` does."""
    if payment.payee_id == payment.payer_id:
        raise RailError("self_payment")
    key = used = None
    if payment.mandate_id is not None:
        mandate = books.mandates.get(payment.mandate_id)
        if mandate is None:
            raise RailError("unknown_mandate")
        key, used = mandates.plan_charge(mandate.status, mandate.terms, mandate.used_fen,
                                         mandate.period_key, payment.amount_fen, at_ms)
    if payment.order_id is not None and payment.to_bank is None:   # else the payee's bank's
        order = books.orders.get(payment.order_id)
        if order is None:
            raise RailError("unknown_order")
        orders.check_payable(order, payment.payee_id, payment.amount_fen, at_ms)
    payee = books.payee(payment.payee_id) if payment.to_bank is None else None
    payer = books.wallets[payment.payer_id]
    available = books.deposits.get(payer.deposit_account, 0) \
        if payer.topup_on_use and payer.deposit_account else 0
    debit = plan_debit(payer, books.limits[payer.kyc_class], payment.amount_fen, at_ms,
                       available)
    credit = None
    if payee is not None:
        credit = plan_credit(payee, books.limits[payee.kyc_class], payment.amount_fen)
    return PaymentDecision(debit, credit, key, used)


def apply_payment(payment: Payment, decision: PaymentDecision, books: LockedBooks) -> None:
    """What a decided payment leaves in `books` for the next one: the payer debited, a
    locked payee credited, the order paid, the mandate's period used, an interbank payment
    counted as in flight (a later credit to the payer counts it against its cap)."""
    payer = books.wallets[payment.payer_id]
    debit = decision.debit
    payer.balance_fen, payer.day = debit.balance_after_fen, debit.day
    payer.spent_today_fen = debit.spent_today_after_fen
    if debit.pulled_from_deposit_fen:
        books.deposits[payer.deposit_account] -= debit.pulled_from_deposit_fen
    swept = decision.credit.swept_to_deposit_fen if decision.credit else 0
    payee_account = books.payee(payment.payee_id).deposit_account if swept else None
    if payee_account in books.deposits:
        books.deposits[payee_account] += swept
    if payment.to_bank is not None:
        payer.pending_out_fen += payment.amount_fen
    elif payment.payee_id in books.wallets:
        books.wallets[payment.payee_id].balance_fen += decision.credit.to_wallet_fen
    if payment.order_id is not None and payment.to_bank is None:
        _mark_paid(books, payment.order_id)
    if payment.mandate_id is not None:
        mandate = books.mandates[payment.mandate_id]
        mandate.period_key, mandate.used_fen = decision.mandate_period_key, \
            decision.mandate_used_fen


def decide_payments(payments: list[Payment], books: LockedBooks,
                    at_ms: int) -> list[PaymentDecision | RailError]:
    """A batch, in turn: each payment decided against what the ones before it left, and
    applied when it passes. One request is a batch of one."""
    decided: list[PaymentDecision | RailError] = []
    for payment in payments:
        try:
            decision = decide_payment(payment, books, at_ms)
        except RailError as refusal:
            decided.append(refusal)
            continue
        apply_payment(payment, decision, books)
        decided.append(decision)
    return decided


@dataclass(frozen=True, slots=True)
class Credit:
    """Money from another bank for a wallet here (interbank message 2). A refund of one of
    our payments names `to_deposit_fen`: what goes back to the deposit account it came from."""

    payee_id: str
    amount_fen: int
    order_id: str | None = None
    to_deposit_fen: int = 0


def decide_credit(credit: Credit, books: LockedBooks, at_ms: int) -> CreditPlan:
    """Decide one credit against `books`, first refusal wins: the order is payable, the
    payee is a wallet here, open, and may hold it (or sweeps the excess past its cap).
    Changes nothing: `apply_credit` does."""
    if credit.order_id is not None:
        order = books.orders.get(credit.order_id)
        if order is None:
            raise RailError("unknown_order")
        orders.check_payable(order, credit.payee_id, credit.amount_fen, at_ms)
    payee = books.payee(credit.payee_id)
    if payee.status != OPEN:
        raise RailError("wallet_closed")
    into_wallet = credit.amount_fen - credit.to_deposit_fen
    plan = plan_credit(payee, books.limits[payee.kyc_class], into_wallet) \
        if into_wallet else CreditPlan(0, 0)
    return CreditPlan(plan.to_wallet_fen, plan.swept_to_deposit_fen + credit.to_deposit_fen)


def apply_credit(credit: Credit, plan: CreditPlan, books: LockedBooks) -> None:
    """What a decided credit leaves in `books`: a locked payee credited, the order paid."""
    if credit.payee_id in books.wallets:
        books.wallets[credit.payee_id].balance_fen += plan.to_wallet_fen
    if credit.order_id is not None:
        _mark_paid(books, credit.order_id)


def _mark_paid(books: LockedBooks, order_id: str) -> None:
    order = books.orders[order_id]
    books.orders[order_id] = orders.OrderState(order.order_id, order.merchant_wallet,
                                               order.amount_fen, orders.PAID,
                                               order.expires_ms, order.refunded_fen)


@dataclass(frozen=True, slots=True)
class RefundedPayment:
    """A payment a merchant asks to refund, as recorded, read with its row locked."""

    txn_id: int
    kind: str              # "payment" (here) or "interbank_in" (from another bank)
    status: str
    payer_wallet: str | None
    payee_wallet: str | None
    amount_fen: int
    refunded_fen: int
    pulled_fen: int        # what top-up on use pulled from the payer's deposit account


@dataclass(frozen=True, slots=True)
class RefundDecision:
    """The merchant's debit, and for a payer here its credit (deposit share included)."""

    debit: DebitPlan
    credit: CreditPlan | None
    refunded_after_fen: int


def decide_refund(merchant_id: str, payment: RefundedPayment | None, amount_fen: int,
                  books: LockedBooks, at_ms: int) -> RefundDecision:
    """Decide a refund, first refusal wins: a settled payment the merchant received from a
    wallet; refunds in total never past what was paid; the merchant may pay it (open, caps,
    funds); a payer here may hold it. What the payment pulled from the payer's deposit
    account goes back there first; a payer at another bank is that bank's to credit."""
    if payment is None or payment.payee_wallet != merchant_id \
            or payment.kind not in ("payment", "interbank_in") \
            or payment.status != "settled" or not payment.payer_wallet:
        raise RailError("not_refundable")
    orders.check_refund(payment.amount_fen, payment.refunded_fen, amount_fen)
    shop = books.wallets[merchant_id]
    debit = plan_debit(shop, books.limits[shop.kyc_class], amount_fen, at_ms)
    refunded = payment.refunded_fen + amount_fen
    if payment.kind == "interbank_in":
        return RefundDecision(debit, None, refunded)
    payer = books.wallets[payment.payer_wallet]
    to_deposit, to_wallet = orders.refund_split(amount_fen, payment.pulled_fen,
                                                payment.refunded_fen)
    credit = plan_credit(payer, books.limits[payer.kyc_class], to_wallet) \
        if to_wallet else CreditPlan(0, 0)
    return RefundDecision(debit, CreditPlan(credit.to_wallet_fen,
                                            credit.swept_to_deposit_fen + to_deposit), refunded)


def decide_refund_back(payee_id: str, original: RefundedPayment | None, amount_fen: int) -> int:
    """A refund arriving from another bank for one of our wallet's payments to it: it must
    refund a settled payment of that wallet, never past what was paid. Returns how much of
    it goes back to the deposit account the payment pulled from (back the way it came)."""
    if original is None or original.payer_wallet != payee_id \
            or original.kind != "interbank_out" or original.status != "settled":
        raise RailError("not_refundable", "no such settled payment from this wallet")
    orders.check_refund(original.amount_fen, original.refunded_fen, amount_fen)
    to_deposit, _to_wallet = orders.refund_split(amount_fen, original.pulled_fen,
                                                 original.refunded_fen)
    return to_deposit


def decide_top_up(wallet: WalletState, limits: ClassLimits, amount_fen: int,
                  deposit_fen: int) -> None:
    """Deposit money becomes e-CNY in the wallet, first refusal wins: a linked deposit
    account, an open wallet that stays within its balance cap (a top-up never sweeps: the
    excess would go straight back), and the account holding the amount."""
    if not wallet.deposit_account:
        raise RailError("no_linked_account")
    if plan_credit(wallet, limits, amount_fen).swept_to_deposit_fen:
        raise RailError("balance_cap_exceeded", "the top-up would pass the balance cap")
    if deposit_fen < amount_fen:
        raise RailError("insufficient_deposit")


def decide_redeem(wallet: WalletState, amount_fen: int) -> None:
    """e-CNY goes back to deposit money: a linked account, an open wallet holding it."""
    if not wallet.deposit_account:
        raise RailError("no_linked_account")
    if wallet.status != OPEN:
        raise RailError("wallet_closed")
    if wallet.balance_fen < amount_fen:
        raise RailError("insufficient_funds")
