"""The bank's position with central, kept as it is posted (docs/registry.md): every posting
to `central` or `redeem_out` also appends its amount to `position_deltas`, by a trigger on
`postings`, so no writer (batch or single, PostgreSQL or SQLite, today's or a later one)
can miss it. The checkpoint watch reads its books there instead of summing every posting
the bank ever made; a background fold (`Bank.fold_positions`) keeps the table to a few
rows, and the audit checks it against the postings.

Appended, not a balance row updated in place: the settle and credit batches of one or more
processes would otherwise queue for one row lock, on the payment's path. No index: it is
only ever summed whole and folded whole.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"

# bank/domain/ledger.py POSITION_ACCOUNTS as of this revision (a migration is history: a
# change there needs a migration that replaces the trigger; tests/unit check they agree).
ACCOUNTS = ("central", "redeem_out")
_ACCOUNTS = ", ".join(f"'{account}'" for account in ACCOUNTS)


def upgrade() -> None:
    op.create_table(
        "position_deltas",
        sa.Column("account", sa.String(32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
    )
    op.execute(f"""
INSERT INTO position_deltas (account, amount_fen)
SELECT account, sum(amount_fen) FROM postings WHERE account IN ({_ACCOUNTS}) GROUP BY account""")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
CREATE FUNCTION append_position_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO position_deltas (account, amount_fen) VALUES (NEW.account, NEW.amount_fen);
    RETURN NULL;
END $$""")
        op.execute(f"""
CREATE TRIGGER position_delta AFTER INSERT ON postings FOR EACH ROW
WHEN (NEW.account IN ({_ACCOUNTS})) EXECUTE FUNCTION append_position_delta()""")
    else:
        op.execute(f"""
CREATE TRIGGER position_delta AFTER INSERT ON postings FOR EACH ROW
WHEN NEW.account IN ({_ACCOUNTS})
BEGIN
    INSERT INTO position_deltas (account, amount_fen) VALUES (NEW.account, NEW.amount_fen);
END""")


def downgrade() -> None:
    op.execute("DROP TRIGGER position_delta" + (
        " ON postings" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION append_position_delta()")
    op.drop_table("position_deltas")
