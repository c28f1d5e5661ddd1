"""The tamper-evident registry (docs/registry.md): each journal entry's place and link in
the hash chain, the chain's head and running totals, and central's signed checkpoints.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

GENESIS = "0" * 64


def upgrade() -> None:
    # Set once by the sealer after the entry committed; NULL until then. Money writers never
    # touch these columns, so chaining takes no lock they wait on.
    with op.batch_alter_table("journal_entries") as batch:
        batch.add_column(sa.Column("chain_seq", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("chain_hash", sa.String(64), nullable=True))
    op.create_index("ux_journal_chain_seq", "journal_entries", ["chain_seq"], unique=True)
    # The sealer's queue: only the entries not chained yet are in this index.
    op.create_index("ix_journal_unsealed", "journal_entries", ["entry_id"],
                    postgresql_where=sa.text("chain_seq IS NULL"),
                    sqlite_where=sa.text("chain_seq IS NULL"))
    # One row: the chain's head. The sealer locks it, so two sealers never chain at once.
    head = op.create_table(
        "chain_head",
        sa.Column("head_id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"head_id": 1, "seq": 0, "head_hash": GENESIS}])
    # Balances as of the head (accounts, and per bank what is in flight out of and into it).
    op.create_table(
        "chain_totals",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("balance_fen", sa.BigInteger, nullable=False),
    )
    # Signed checkpoints, one per head; re-signed in place while the head stands still.
    op.create_table(
        "checkpoints",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("statement", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("signed_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("checkpoints", "chain_totals", "chain_head"):
        op.drop_table(table)
    op.drop_index("ix_journal_unsealed", "journal_entries")
    op.drop_index("ux_journal_chain_seq", "journal_entries")
    with op.batch_alter_table("journal_entries") as batch:
        batch.drop_column("chain_hash")
        batch.drop_column("chain_seq")
