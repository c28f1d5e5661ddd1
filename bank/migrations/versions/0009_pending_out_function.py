"""`wallet_pending_out(wallet)`: what a wallet has out that may come back (MAY_COME_BACK,
still processing), read with a snapshot of its own, so the batches' wallet lock
(bank/adapters/batch_sql.py LOCK_WALLETS) returns it in the same round trip.

Why a function: a statement reads with the snapshot taken when it starts, and a payment
that held the wallet and committed while the lock waited would be missing from it (its debit
seen by the lock, its amount in flight not). A VOLATILE function takes a fresh snapshot at
each query it runs, and it is called on a row only once that row is locked. PostgreSQL
only: SQLite's batches hold the one write lock from their first read.

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = "0009"
down_revision = "0008"

# bank/domain/wallets.py MAY_COME_BACK as of this revision (a migration is history: a change
# there needs a migration that replaces the function; tests/unit check they agree).
KINDS = ("interbank_out", "hold", "voucher", "purse")
_KINDS = ", ".join(f"'{kind}'" for kind in KINDS)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
CREATE FUNCTION wallet_pending_out(wallet text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT COALESCE(sum(amount_fen), 0)::bigint FROM transactions
            WHERE payer_wallet = wallet AND kind IN ({_KINDS}) AND status = 'processing');
END $$""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION wallet_pending_out(text)")
