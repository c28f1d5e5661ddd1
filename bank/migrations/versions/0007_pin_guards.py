"""PIN guards: the bank's share of each wallet's key-file key, and its count of wrong PINs
(rail_protocol/pin_guard.py).

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "pin_guards",
        sa.Column("wallet_id", sa.String(64), primary_key=True),
        sa.Column("guard_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("verifier_hash", sa.String(64), nullable=False),
        sa.Column("share", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("locked_until_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pin_guards")
