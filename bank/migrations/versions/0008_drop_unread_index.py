"""No index on transactions.created_ms: no query reads it (a wallet's history is found by
its payer and payee indexes; its time range is a filter on those rows), and every payment
paid for it: an index entry at the insert, and another at each non-HOT update (an
interbank payment's settle). docs/performance.md, "Index entries nobody reads".

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.drop_index("ix_transactions_created_ms", table_name="transactions")


def downgrade() -> None:
    op.create_index("ix_transactions_created_ms", "transactions", ["created_ms"])
