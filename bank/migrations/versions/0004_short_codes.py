"""Short payment codes: each wallet's registered secret and its slot (rail_protocol/short_code.py).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "short_codes",
        sa.Column("wallet_id", sa.String(64), primary_key=True),
        sa.Column("slot", sa.String(8), nullable=False, unique=True),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("locked_until_ms", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("short_codes")
