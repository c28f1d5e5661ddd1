"""SQLAlchemy Core tables of central's registry (the schema itself lives in migrations)."""

import sqlalchemy as sa

metadata = sa.MetaData()

banks = sa.Table(
    "banks", metadata,
    sa.Column("bank_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128)),
    sa.Column("key_id", sa.String(40)),
    sa.Column("public_key", sa.String(128)),
    sa.Column("certificate", sa.Text),
    sa.Column("registered_ms", sa.BigInteger),
    sa.Column("url", sa.String(200)),
)
accounts = sa.Table(
    "accounts", metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("balance_fen", sa.BigInteger),
)
journal_entries = sa.Table(
    "journal_entries", metadata,
    sa.Column("entry_id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32)),
    sa.Column("bank_id", sa.String(32)),
    sa.Column("reference", sa.String(160)),
    sa.Column("created_ms", sa.BigInteger),
    sa.Column("chain_seq", sa.BigInteger),     # set after commit by the sealer (chain_sql)
    sa.Column("chain_hash", sa.String(64)),
)
postings = sa.Table(
    "postings", metadata,
    sa.Column("posting_id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("entry_id", sa.BigInteger),
    sa.Column("account_id", sa.String(64)),
    sa.Column("amount_fen", sa.BigInteger),
)
instructions = sa.Table(
    "instructions", metadata,
    sa.Column("signer", sa.String(40), primary_key=True),
    sa.Column("instruction_id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(64)),
    sa.Column("digest", sa.String(64)),
    sa.Column("status", sa.String(16)),
    sa.Column("result", sa.Text),
    sa.Column("expires_ms", sa.BigInteger),
    sa.Column("created_ms", sa.BigInteger),
)
reserve_deposits = sa.Table(
    "reserve_deposits", metadata,
    sa.Column("deposit_id", sa.String(64), primary_key=True),
    sa.Column("bank_id", sa.String(32)),
    sa.Column("amount_fen", sa.BigInteger),
    sa.Column("entry_id", sa.BigInteger),
    sa.Column("result", sa.Text),
)
transfers = sa.Table(
    "transfers", metadata,
    sa.Column("transfer_id", sa.String(80), primary_key=True),
    sa.Column("from_bank", sa.String(32)),
    sa.Column("to_bank", sa.String(32)),
    sa.Column("amount_fen", sa.BigInteger),
    sa.Column("payee_wallet", sa.String(80)),
    sa.Column("details", sa.Text),
    sa.Column("digest", sa.String(64)),
    sa.Column("status", sa.String(16)),
    sa.Column("code", sa.String(40)),
    sa.Column("created_ms", sa.BigInteger),
    sa.Column("updated_ms", sa.BigInteger),
    sa.Column("attempts", sa.Integer),
    sa.Column("next_attempt_ms", sa.BigInteger),
)
chain_head = sa.Table(
    "chain_head", metadata,
    sa.Column("head_id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger),
    sa.Column("head_hash", sa.String(64)),
)
chain_totals = sa.Table(
    "chain_totals", metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("balance_fen", sa.BigInteger),
)
checkpoints = sa.Table(
    "checkpoints", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("head_hash", sa.String(64)),
    sa.Column("statement", sa.Text),
    sa.Column("created_ms", sa.BigInteger),
    sa.Column("signed_ms", sa.BigInteger),
)
