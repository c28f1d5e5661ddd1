"""Interbank transfers: each bank node's API URL, and the transfers central settles.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # Where central delivers credits to the bank (message 2 of docs/interbank.md).
    op.add_column("banks", sa.Column("url", sa.String(200), nullable=True))
    op.create_table(
        "transfers",
        sa.Column("transfer_id", sa.String(80), primary_key=True),
        sa.Column("from_bank", sa.String(32), nullable=False),
        sa.Column("to_bank", sa.String(32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("payee_wallet", sa.String(80), nullable=False),
        # Bank A's note to bank B (canonical JSON), carried unread into message 2.
        sa.Column("details", sa.Text, nullable=True),
        # SHA-256 of the signed envelope of message 1: a repeat must carry the same one.
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("code", sa.String(40), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("status IN ('prepared', 'settled', 'rejected')",
                           name="ck_transfers_status"),
        sa.CheckConstraint("amount_fen > 0", name="ck_transfers_amount"),
    )
    op.create_index("ix_transfers_due", "transfers", ["status", "next_attempt_ms"])


def downgrade() -> None:
    op.drop_index("ix_transfers_due", table_name="transfers")
    op.drop_table("transfers")
    with op.batch_alter_table("banks") as batch:
        batch.drop_column("url")
