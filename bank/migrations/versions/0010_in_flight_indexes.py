"""The indexes of what is in flight hold only what is in flight (docs/performance.md,
"An index that read a wallet's history", twelfth session).

- `ix_txn_out_in_flight` (new): the payments still processing, by payer. What a wallet has
  out that may come back (`wallet_pending_out`, migration 0009; `books_sql.pending_out` on
  SQLite) is read on every lock of a capped wallet (a payee of the batches, the payee of
  every interbank credit). Without it, that read crossed the payer index (the wallet's whole
  history) with the outbox index (every row once processing, until vacuum): a batch grew
  dearer with every payment a wallet had made.
- `ix_txn_due` (was `ix_txn_pending`), the outbox's and the vault's due rows by their next
  attempt: partial, so a payment settled at once never enters it and one in flight leaves
  it when it settles. It held an entry for every transaction, by status, and only
  processing and pending rows are ever looked up in it; without `status` among its columns
  it is no rival for a lookup of one wallet's rows in flight (the planner, seeing few such
  rows either way, could take it and walk every wallet's).

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"

IN_FLIGHT = "status = 'processing'"
DUE = "status IN ('processing', 'pending')"


def upgrade() -> None:
    op.create_index("ix_txn_out_in_flight", "transactions", ["payer_wallet"],
                    postgresql_where=sa.text(IN_FLIGHT), sqlite_where=sa.text(IN_FLIGHT))
    op.drop_index("ix_txn_pending", table_name="transactions")
    op.create_index("ix_txn_due", "transactions", ["next_attempt_ms"],
                    postgresql_where=sa.text(DUE), sqlite_where=sa.text(DUE))


def downgrade() -> None:
    op.drop_index("ix_txn_due", table_name="transactions")
    op.create_index("ix_txn_pending", "transactions", ["status", "next_attempt_ms"])
    op.drop_index("ix_txn_out_in_flight", table_name="transactions")
