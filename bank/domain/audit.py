"""A bank's own conservation audit, recomputed from its journal."""

from __future__ import annotations

from dataclasses import dataclass, field

from bank.domain.ledger import (CENTRAL, HELD, INTERBANK_OUT, POSITION_ACCOUNTS, REDEEM_OUT,
                                VAULT)
from bank.domain.wallets import ClassLimits


@dataclass
class BankAudit:
    books_fen: int = 0          # what the bank holds by its own books (= -central mirror)
    vault_fen: int = 0
    wallets_fen: int = 0
    interbank_out_fen: int = 0
    redeem_out_fen: int = 0
    held_fen: int = 0           # holds and vouchers pending (bank/domain/holds.py)
    wallet_count: int = 0
    processing_out: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"balanced": self.balanced, "books_fen": self.books_fen,
                "vault_fen": self.vault_fen, "wallets_fen": self.wallets_fen,
                "interbank_out_fen": self.interbank_out_fen,
                "redeem_out_fen": self.redeem_out_fen, "held_fen": self.held_fen,
                "wallet_count": self.wallet_count,
                "processing_out": self.processing_out, "problems": self.problems}


def audit(posted: dict[str, int], unbalanced_txns: list[int], wallets: list[dict],
          deposits: dict[str, int], vault_fen: int, limits: dict[int, ClassLimits],
          processing_out: list[dict], held_pending_fen: int = 0,
          position: dict[str, int] | None = None) -> BankAudit:
    """Every transaction balances in each ledger; every stored balance equals its postings
    (`position`, the position accounts as appended at posting, included when given);
    no wallet is negative or over its class's cap; `held` equals what the pending holds and
    vouchers hold; vault + wallets + interbank_out + redeem_out + held equals what the bank
    holds by its books."""
    report = BankAudit(processing_out=processing_out, wallet_count=len(wallets))
    for txn in unbalanced_txns:
        report.problems.append(f"transaction {txn} does not balance")
    for wallet in wallets:
        wid, balance = wallet["wallet_id"], wallet["balance_fen"]
        if balance != posted.get(wid, 0):
            report.problems.append(f"wallet {wid}: balance {balance} != journal {posted.get(wid, 0)}")
        if balance < 0:
            report.problems.append(f"wallet {wid} is negative: {balance}")
        cap = limits[wallet["kyc_class"]].balance_cap_fen
        if cap is not None and balance > cap:
            report.problems.append(f"wallet {wid} holds {balance} over its cap {cap}")
        report.wallets_fen += balance
    for account_id, balance in deposits.items():
        if balance != posted.get(f"dep:{account_id}", 0):
            report.problems.append(f"deposit {account_id}: {balance} != journal "
                                   f"{posted.get(f'dep:{account_id}', 0)}")
        if balance < 0:
            report.problems.append(f"deposit {account_id} is negative")
    if vault_fen != posted.get(VAULT, 0):
        report.problems.append(f"vault {vault_fen} != journal {posted.get(VAULT, 0)}")
    if vault_fen < 0:
        report.problems.append("the vault is negative")
    report.vault_fen = vault_fen
    report.interbank_out_fen = posted.get(INTERBANK_OUT, 0)
    if report.interbank_out_fen != sum(t["amount_fen"] for t in processing_out):
        report.problems.append("interbank_out does not equal the payments still processing")
    report.redeem_out_fen = posted.get(REDEEM_OUT, 0)
    report.held_fen = posted.get(HELD, 0)
    if report.held_fen != held_pending_fen:
        report.problems.append(f"held {report.held_fen} != the pending holds and vouchers "
                               f"{held_pending_fen}")
    for account in POSITION_ACCOUNTS if position is not None else ():
        if position.get(account, 0) != posted.get(account, 0):
            report.problems.append(f"position {account} {position.get(account, 0)} != "
                                   f"journal {posted.get(account, 0)}")
    report.books_fen = -posted.get(CENTRAL, 0)
    total = (report.vault_fen + report.wallets_fen + report.interbank_out_fen
             + report.redeem_out_fen + report.held_fen)
    if total != report.books_fen:
        report.problems.append(
            f"vault {report.vault_fen} + wallets {report.wallets_fen} + interbank out "
            f"{report.interbank_out_fen} + redeem out {report.redeem_out_fen} + held "
            f"{report.held_fen} != books {report.books_fen}")
    return report
