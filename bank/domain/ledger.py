"""The bank's double-entry books: two ledgers in one journal.

e-CNY ledger accounts (positive = holds e-CNY):
  <wallet id>      a customer's wallet
  vault            the bank's undistributed e-CNY
  interbank_out    paid out of a wallet to another bank, not yet settled by central
  redeem_out       surplus e-CNY on its way back to central, not yet confirmed
  held             conditional payments pending: holds and vouchers (bank/domain/holds.py)
  central          minus what the bank holds by its own books (the mirror of central's
                   holding:<bank>): issuing e-CNY to the bank makes it more negative
Deposit ledger accounts (commercial bank money, simulated core banking):
  dep:<account>    a customer's deposit account
  dep:exchange     the bank's clearing account for exchanges between deposits and e-CNY
  dep:cash         cash paid in and out at the counter (opening deposits)

Each ledger's postings in every entry sum to zero, so e-CNY is never created or lost inside
a bank: it only arrives from central (issue, interbank in) or leaves to it."""

from __future__ import annotations

from dataclasses import dataclass

from bank.domain.wallets import CreditPlan, DebitPlan

VAULT, INTERBANK_OUT, CENTRAL, EXCHANGE = "vault", "interbank_out", "central", "dep:exchange"
REDEEM_OUT, CASH = "redeem_out", "dep:cash"
HELD = "held"
SYSTEM_ECNY_ACCOUNTS = (VAULT, INTERBANK_OUT, REDEEM_OUT, CENTRAL, HELD)
# The bank's position with central: what it holds there (-central) and what it has asked
# central to redeem; their postings are also appended to `position_deltas` (migration 0011).
POSITION_ACCOUNTS = (CENTRAL, REDEEM_OUT)


def deposit_account(account_id: str) -> str:
    return f"dep:{account_id}"


def is_deposit_account(account: str) -> bool:
    return account.startswith("dep:")


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount_fen: int


class Postings(list):
    """Postings being built for one entry; `done()` checks both ledgers balance."""

    def add(self, account: str, amount_fen: int) -> Postings:
        if amount_fen:
            self.append(Posting(account, amount_fen))
        return self

    def done(self) -> list[Posting]:
        ecny = sum(p.amount_fen for p in self if not is_deposit_account(p.account))
        deposits = sum(p.amount_fen for p in self if is_deposit_account(p.account))
        if ecny or deposits:
            raise AssertionError("an entry's postings must sum to zero in each ledger")
        return list(self)


def _pull(p: Postings, wallet: str, deposit: str | None, amount: int) -> None:
    """Deposit money in, e-CNY out of the vault, into the wallet (exchange at par)."""
    if amount:
        assert deposit is not None
        p.add(deposit_account(deposit), -amount).add(EXCHANGE, amount)
        p.add(VAULT, -amount).add(wallet, amount)


def _sweep(p: Postings, deposit: str | None, amount: int) -> None:
    """e-CNY into the vault, deposit money out to the customer's account."""
    if amount:
        assert deposit is not None
        p.add(VAULT, amount).add(EXCHANGE, -amount).add(deposit_account(deposit), amount)


def vault_issue(amount_fen: int) -> list[Posting]:
    return Postings().add(VAULT, amount_fen).add(CENTRAL, -amount_fen).done()


def vault_redeem_started(amount_fen: int) -> list[Posting]:
    """Surplus leaves the vault before central is asked, so no payment can spend it."""
    return Postings().add(VAULT, -amount_fen).add(REDEEM_OUT, amount_fen).done()


def vault_redeem_done(amount_fen: int) -> list[Posting]:
    return Postings().add(REDEEM_OUT, -amount_fen).add(CENTRAL, amount_fen).done()


def vault_redeem_refused(amount_fen: int) -> list[Posting]:
    return Postings().add(REDEEM_OUT, -amount_fen).add(VAULT, amount_fen).done()


def cash_deposit(deposit: str, amount_fen: int) -> list[Posting]:
    """Money paid into a deposit account at the counter (how the demo funds customers)."""
    return Postings().add(CASH, -amount_fen).add(deposit_account(deposit), amount_fen).done()


def top_up(wallet: str, deposit: str, amount_fen: int) -> list[Posting]:
    p = Postings()
    _pull(p, wallet, deposit, amount_fen)
    return p.done()


def redeem(wallet: str, deposit: str, amount_fen: int) -> list[Posting]:
    p = Postings().add(wallet, -amount_fen)
    p.add(VAULT, amount_fen).add(EXCHANGE, -amount_fen).add(deposit_account(deposit), amount_fen)
    return p.done()


def payment(payer: str, payer_deposit: str | None, debit: DebitPlan,
            payee: str, payee_deposit: str | None, credit: CreditPlan) -> list[Posting]:
    """A payment between two wallets of this bank."""
    p = Postings()
    _pull(p, payer, payer_deposit, debit.pulled_from_deposit_fen)
    p.add(payer, -debit.amount_fen).add(payee, credit.to_wallet_fen)
    _sweep(p, payee_deposit, credit.swept_to_deposit_fen)
    return p.done()


def interbank_out(payer: str, payer_deposit: str | None, debit: DebitPlan) -> list[Posting]:
    """The payer is debited now; the e-CNY waits in `interbank_out` for central."""
    p = Postings()
    _pull(p, payer, payer_deposit, debit.pulled_from_deposit_fen)
    p.add(payer, -debit.amount_fen).add(INTERBANK_OUT, debit.amount_fen)
    return p.done()


def interbank_out_settled(amount_fen: int) -> list[Posting]:
    """Central moved it to the other bank: it leaves this bank's books."""
    return Postings().add(INTERBANK_OUT, -amount_fen).add(CENTRAL, amount_fen).done()


def interbank_out_rejected(payer: str, amount_fen: int) -> list[Posting]:
    """The other bank refused: the payer gets the whole amount back in the wallet."""
    return Postings().add(INTERBANK_OUT, -amount_fen).add(payer, amount_fen).done()


def interbank_in(payee: str, payee_deposit: str | None, credit: CreditPlan) -> list[Posting]:
    """A credit from another bank through central: it joins this bank's books."""
    amount = credit.to_wallet_fen + credit.swept_to_deposit_fen
    p = Postings().add(CENTRAL, -amount).add(payee, credit.to_wallet_fen)
    _sweep(p, payee_deposit, credit.swept_to_deposit_fen)
    return p.done()


def hold_opened(funder: str, amount_fen: int) -> list[Posting]:
    """A hold or voucher: out of the funder's wallet into `held`."""
    return Postings().add(funder, -amount_fen).add(HELD, amount_fen).done()


def held_out(wallet: str, deposit: str | None, plan: CreditPlan) -> list[Posting]:
    """Out of `held` to a wallet (the payee, or the funder back), past its cap swept to its
    deposit account as any credit is."""
    p = Postings().add(HELD, -(plan.to_wallet_fen + plan.swept_to_deposit_fen))
    p.add(wallet, plan.to_wallet_fen)
    _sweep(p, deposit, plan.swept_to_deposit_fen)
    return p.done()
