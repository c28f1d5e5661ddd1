"""SQLAlchemy Core tables of a bank node's books (the schema itself lives in migrations)."""

import sqlalchemy as sa

metadata = sa.MetaData()

wallet_classes = sa.Table(
    "wallet_classes", metadata,
    sa.Column("kyc_class", sa.Integer, primary_key=True),
    sa.Column("balance_cap_fen", sa.BigInteger),
    sa.Column("per_payment_cap_fen", sa.BigInteger),
    sa.Column("daily_cap_fen", sa.BigInteger),
)
deposit_accounts = sa.Table(
    "deposit_accounts", metadata,
    sa.Column("account_id", sa.String(40), primary_key=True),
    sa.Column("holder_name", sa.String(128)),
    sa.Column("phone", sa.String(16)),
    sa.Column("balance_fen", sa.BigInteger),
    sa.Column("created_ms", sa.BigInteger),
)
wallets = sa.Table(
    "wallets", metadata,
    sa.Column("wallet_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16)),
    sa.Column("phone", sa.String(16)),
    sa.Column("public_key", sa.String(128)),
    sa.Column("key_id", sa.String(40)),
    sa.Column("kyc_class", sa.Integer),
    sa.Column("status", sa.String(16)),
    sa.Column("id_number_hash", sa.String(64)),
    sa.Column("deposit_account", sa.String(40)),
    sa.Column("topup_on_use", sa.Boolean),
    sa.Column("merchant_name", sa.String(25)),
    sa.Column("mcc", sa.String(4)),
    sa.Column("city", sa.String(15)),
    sa.Column("webhook_url", sa.String(300)),
    sa.Column("balance_fen", sa.BigInteger),
    sa.Column("day", sa.Integer),
    sa.Column("spent_today_fen", sa.BigInteger),
    sa.Column("created_ms", sa.BigInteger),
)
wallet_credits = sa.Table(
    "wallet_credits", metadata,
    sa.Column("credit_id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("wallet_id", sa.String(64)),
    sa.Column("amount_fen", sa.BigInteger),
)
system_balances = sa.Table(
    "system_balances", metadata,
    sa.Column("account", sa.String(32), primary_key=True),
    sa.Column("balance_fen", sa.BigInteger),
)
position_deltas = sa.Table(      # appended by a trigger on postings (migration 0011)
    "position_deltas", metadata,
    sa.Column("account", sa.String(32)),
    sa.Column("amount_fen", sa.BigInteger),
)
transactions = sa.Table(
    "transactions", metadata,
    sa.Column("txn_id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(24)),
    sa.Column("signer", sa.String(40)),
    sa.Column("instruction_id", sa.String(80)),
    sa.Column("digest", sa.String(64)),
    sa.Column("status", sa.String(16)),
    sa.Column("code", sa.String(40)),
    sa.Column("payer_wallet", sa.String(64)),
    sa.Column("payee_wallet", sa.String(64)),
    sa.Column("amount_fen", sa.BigInteger),
    sa.Column("counterparty_bank", sa.String(32)),
    sa.Column("transfer_id", sa.String(80)),
    sa.Column("memo", sa.String(140)),
    sa.Column("result", sa.Text),
    sa.Column("expires_ms", sa.BigInteger),
    sa.Column("next_attempt_ms", sa.BigInteger),
    sa.Column("created_ms", sa.BigInteger),
    sa.Column("updated_ms", sa.BigInteger),
    sa.Column("order_id", sa.String(25)),
    sa.Column("refund_of", sa.BigInteger),
    sa.Column("refunded_fen", sa.BigInteger),
    sa.Column("pulled_fen", sa.BigInteger),
)
postings = sa.Table(
    "postings", metadata,
    sa.Column("posting_id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("txn_id", sa.BigInteger),
    sa.Column("account", sa.String(64)),
    sa.Column("amount_fen", sa.BigInteger),
)
orders = sa.Table(
    "orders", metadata,
    sa.Column("order_id", sa.String(25), primary_key=True),
    sa.Column("merchant_wallet", sa.String(64)),
    sa.Column("reference", sa.String(64)),
    sa.Column("description", sa.String(140)),
    sa.Column("amount_fen", sa.BigInteger),
    sa.Column("status", sa.String(20)),
    sa.Column("payer_wallet", sa.String(64)),
    sa.Column("paid_txn_id", sa.BigInteger),
    sa.Column("refunded_fen", sa.BigInteger),
    sa.Column("created_ms", sa.BigInteger),
    sa.Column("expires_ms", sa.BigInteger),
    sa.Column("updated_ms", sa.BigInteger),
)
webhook_deliveries = sa.Table(
    "webhook_deliveries", metadata,
    sa.Column("delivery_id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("merchant_wallet", sa.String(64)),
    sa.Column("txn_id", sa.BigInteger),
    sa.Column("event", sa.Text),
    sa.Column("url", sa.String(300)),
    sa.Column("status", sa.String(16)),
    sa.Column("attempts", sa.Integer),
    sa.Column("last_error", sa.String(200)),
    sa.Column("next_attempt_ms", sa.BigInteger),
    sa.Column("created_ms", sa.BigInteger),
    sa.Column("delivered_ms", sa.BigInteger),
)
mandates = sa.Table(
    "mandates", metadata,
    sa.Column("mandate_id", sa.String(32), primary_key=True),
    sa.Column("payer_wallet", sa.String(64)),
    sa.Column("merchant_wallet", sa.String(64)),
    sa.Column("merchant_key", sa.String(128)),
    sa.Column("merchant_name", sa.String(64)),
    sa.Column("per_payment_cap_fen", sa.BigInteger),
    sa.Column("period", sa.String(8)),
    sa.Column("period_cap_fen", sa.BigInteger),
    sa.Column("period_key", sa.Integer),
    sa.Column("used_fen", sa.BigInteger),
    sa.Column("status", sa.String(12)),
    sa.Column("created_ms", sa.BigInteger),
    sa.Column("revoked_ms", sa.BigInteger),
)
short_codes = sa.Table(
    "short_codes", metadata,
    sa.Column("wallet_id", sa.String(64), primary_key=True),
    sa.Column("slot", sa.String(8), unique=True),
    sa.Column("secret", sa.String(64)),          # hex
    sa.Column("failures", sa.Integer),           # wrong codes for this slot since the last lock
    sa.Column("locked_until_ms", sa.BigInteger),
    sa.Column("created_ms", sa.BigInteger),
)
pin_guards = sa.Table(
    "pin_guards", metadata,
    sa.Column("wallet_id", sa.String(64), primary_key=True),
    sa.Column("guard_hash", sa.String(64), unique=True),   # SHA-256 of the guard id
    sa.Column("verifier_hash", sa.String(64)),             # SHA-256 of the PIN's verifier
    sa.Column("share", sa.String(64)),                     # hex; the bank's half of the key
    sa.Column("failures", sa.Integer),                     # wrong PINs since the last right one
    sa.Column("locked_until_ms", sa.BigInteger),
    sa.Column("updated_ms", sa.BigInteger),
)
holds = sa.Table(
    "holds", metadata,
    sa.Column("hold_id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(8)),             # hold | voucher
    sa.Column("funder_wallet", sa.String(64)),   # the payer of a hold, a voucher's issuer
    sa.Column("payee_wallet", sa.String(64)),    # a hold's merchant
    sa.Column("holder_wallet", sa.String(64)),   # a voucher's holder
    sa.Column("amount_fen", sa.BigInteger),
    sa.Column("remaining_fen", sa.BigInteger),
    sa.Column("mcc", sa.String(4)),
    sa.Column("deadline_ms", sa.BigInteger),
    sa.Column("release_by", sa.String(8)),
    sa.Column("status", sa.String(8)),           # pending | posted | voided | expired
    sa.Column("txn_id", sa.BigInteger),          # its `processing` row while pending
    sa.Column("memo", sa.String(140)),
    sa.Column("created_ms", sa.BigInteger),
    sa.Column("closed_ms", sa.BigInteger),
    sa.Column("max_payments", sa.Integer),      # a purse's
)
offline_notes = sa.Table(
    "offline_notes", metadata,
    sa.Column("purse_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("digest", sa.String(64)),          # of the note: the same note claimed again
    sa.Column("payee_wallet", sa.String(64)),
    sa.Column("amount_fen", sa.BigInteger),
    sa.Column("claimed_ms", sa.BigInteger),
)
