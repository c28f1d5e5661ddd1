"""Mandates: a user authorises a merchant app to charge within caps (sub-wallets).

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "mandates",
        sa.Column("mandate_id", sa.String(32), primary_key=True),
        sa.Column("payer_wallet", sa.String(64), nullable=False, index=True),
        sa.Column("merchant_wallet", sa.String(64), nullable=False),
        sa.Column("merchant_key", sa.String(128), nullable=False),
        sa.Column("merchant_name", sa.String(64), nullable=True),
        sa.Column("per_payment_cap_fen", sa.BigInteger, nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("period_cap_fen", sa.BigInteger, nullable=False),
        sa.Column("period_key", sa.Integer, nullable=False),
        sa.Column("used_fen", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked_ms", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("mandates")
