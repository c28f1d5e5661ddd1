"""Offline payments: a purse's payment count, and every note paid out of a purse, one per
(purse, number) (rail_protocol/offline.py).

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.add_column(sa.Column("max_payments", sa.Integer, nullable=True))
    op.create_table(
        "offline_notes",
        sa.Column("purse_id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("payee_wallet", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("claimed_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("offline_notes")
    with op.batch_alter_table("holds") as batch:
        batch.drop_column("max_payments")
