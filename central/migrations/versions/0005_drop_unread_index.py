"""No index on postings.account_id: no query reads it (the audit sums every posting by
account in one scan; the chain reads postings by entry), and every transfer paid for it:
four index entries, one per posting. docs/performance.md, "Index entries nobody reads".

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.drop_index("ix_postings_account_id", table_name="postings")


def downgrade() -> None:
    op.create_index("ix_postings_account_id", "postings", ["account_id"])
