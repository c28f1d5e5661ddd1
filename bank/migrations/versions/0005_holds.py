"""Conditional payments: holds and vouchers, pending in the `held` account until posted,
voided or expired (bank/domain/holds.py).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("hold_id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("funder_wallet", sa.String(64), nullable=False, index=True),
        sa.Column("payee_wallet", sa.String(64), nullable=True, index=True),
        sa.Column("holder_wallet", sa.String(64), nullable=True, index=True),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("remaining_fen", sa.BigInteger, nullable=False),
        sa.Column("mcc", sa.String(4), nullable=True),
        sa.Column("deadline_ms", sa.BigInteger, nullable=False),
        sa.Column("release_by", sa.String(8), nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("txn_id", sa.BigInteger, nullable=False),
        sa.Column("memo", sa.String(140), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("closed_ms", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_holds_due", "holds", ["status", "deadline_ms"])


def downgrade() -> None:
    op.drop_table("holds")
