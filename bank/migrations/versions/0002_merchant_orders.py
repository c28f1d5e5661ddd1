"""Merchant orders (dynamic QR), refunds against payments, webhooks.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

BIGID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(25), primary_key=True),
        sa.Column("merchant_wallet", sa.String(64), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("description", sa.String(140), nullable=True),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("payer_wallet", sa.String(64), nullable=True),
        sa.Column("paid_txn_id", sa.BigInteger, nullable=True),
        sa.Column("refunded_fen", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("merchant_wallet", "reference", name="uq_order_reference"),
    )
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("order_id", sa.String(25), nullable=True))
        batch.add_column(sa.Column("refund_of", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("refunded_fen", sa.BigInteger, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("pulled_fen", sa.BigInteger, nullable=False,
                                   server_default="0"))
    # A merchant's webhook: a payment to it queues its delivery in the payment's own
    # transaction, so no event is lost or doubled whatever order transactions commit in.
    with op.batch_alter_table("wallets") as batch:
        batch.add_column(sa.Column("webhook_url", sa.String(300), nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("merchant_wallet", sa.String(64), nullable=False, index=True),
        sa.Column("txn_id", sa.BigInteger, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("url", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("next_attempt_ms", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("delivered_ms", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_webhook_due", "webhook_deliveries", ["status", "next_attempt_ms"])
    op.create_index("ix_webhook_event", "webhook_deliveries", ["merchant_wallet", "txn_id", "event"],
                    unique=True)


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("wallets") as batch:
        batch.drop_column("webhook_url")
    with op.batch_alter_table("transactions") as batch:
        for column in ("pulled_fen", "refunded_fen", "refund_of", "order_id"):
            batch.drop_column(column)
    op.drop_table("orders")
