"""A bank node's books: wallet classes, wallets, deposit accounts, transactions, postings.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

BIGID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    classes = op.create_table(
        "wallet_classes",
        sa.Column("kyc_class", sa.Integer, primary_key=True),
        sa.Column("balance_cap_fen", sa.BigInteger, nullable=True),
        sa.Column("per_payment_cap_fen", sa.BigInteger, nullable=True),
        sa.Column("daily_cap_fen", sa.BigInteger, nullable=True),
    )
    # The e-CNY pilot's figures in fen (yuan x 100); class 1 has no caps.
    op.bulk_insert(classes, [
        {"kyc_class": 4, "balance_cap_fen": 1_000_000, "per_payment_cap_fen": 200_000,
         "daily_cap_fen": 500_000},
        {"kyc_class": 3, "balance_cap_fen": 2_000_000, "per_payment_cap_fen": 500_000,
         "daily_cap_fen": 1_000_000},
        {"kyc_class": 2, "balance_cap_fen": 50_000_000, "per_payment_cap_fen": 5_000_000,
         "daily_cap_fen": 10_000_000},
        {"kyc_class": 1, "balance_cap_fen": None, "per_payment_cap_fen": None,
         "daily_cap_fen": None},
    ])
    op.create_table(
        "deposit_accounts",
        sa.Column("account_id", sa.String(40), primary_key=True),
        sa.Column("holder_name", sa.String(128), nullable=False),
        sa.Column("phone", sa.String(16), nullable=False),
        sa.Column("balance_fen", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "wallets",
        sa.Column("wallet_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("phone", sa.String(16), nullable=False),
        sa.Column("public_key", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False, unique=True),
        sa.Column("kyc_class", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("id_number_hash", sa.String(64), nullable=True),
        sa.Column("deposit_account", sa.String(40), nullable=True),
        sa.Column("topup_on_use", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("merchant_name", sa.String(25), nullable=True),
        sa.Column("mcc", sa.String(4), nullable=True),
        sa.Column("city", sa.String(15), nullable=True),
        sa.Column("balance_fen", sa.BigInteger, nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("spent_today_fen", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("phone", "kind", name="uq_wallet_phone_kind"),
    )
    # Credits to wallets with no balance cap are appended here instead of updating the
    # payee's row, so a popular merchant's row is never a point of contention; a debit of
    # the wallet folds them into its balance.
    op.create_table(
        "wallet_credits",
        sa.Column("credit_id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("wallet_id", sa.String(64), nullable=False, index=True),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "system_balances",
        sa.Column("account", sa.String(32), primary_key=True),
        sa.Column("balance_fen", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(sa.table("system_balances", sa.column("account"), sa.column("balance_fen")),
                   [{"account": "vault", "balance_fen": 0}])
    op.create_table(
        "transactions",
        sa.Column("txn_id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("signer", sa.String(40), nullable=False),
        sa.Column("instruction_id", sa.String(80), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("code", sa.String(40), nullable=True),
        sa.Column("payer_wallet", sa.String(64), nullable=True, index=True),
        sa.Column("payee_wallet", sa.String(64), nullable=True, index=True),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("counterparty_bank", sa.String(32), nullable=True),
        sa.Column("transfer_id", sa.String(80), nullable=True, unique=True),
        sa.Column("memo", sa.String(140), nullable=True),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger, nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False, index=True),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("signer", "instruction_id", name="uq_txn_instruction"),
    )
    op.create_index("ix_txn_pending", "transactions", ["status", "next_attempt_ms"])
    op.create_table(
        "postings",
        sa.Column("posting_id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("txn_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("postings", "transactions", "system_balances", "wallet_credits", "wallets",
                  "deposit_accounts", "wallet_classes"):
        op.drop_table(table)
