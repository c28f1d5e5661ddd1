"""The registration centre: banks, accounts, the journal, instructions, reserve deposits.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "banks",
        sa.Column("bank_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False, unique=True),
        sa.Column("public_key", sa.String(128), nullable=False),
        sa.Column("certificate", sa.Text, nullable=False),
        sa.Column("registered_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("balance_fen", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "journal_entries",
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("bank_id", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(160), nullable=False, unique=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "postings",
        sa.Column("posting_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.BigInteger, sa.ForeignKey("journal_entries.entry_id"),
                  nullable=False, index=True),
        sa.Column("account_id", sa.String(64), nullable=False, index=True),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "instructions",
        sa.Column("signer", sa.String(40), primary_key=True),
        sa.Column("instruction_id", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "reserve_deposits",
        sa.Column("deposit_id", sa.String(64), primary_key=True),
        sa.Column("bank_id", sa.String(32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("entry_id", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("reserve_deposits", "instructions", "postings", "journal_entries",
                  "accounts", "banks"):
        op.drop_table(table)
