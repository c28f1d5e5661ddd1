"""The raw SQL of group commit (bank/payment_engine.py, bank/credit_engine.py), in one place.

asyncpg statements over arrays (`unnest`), so a batch of any size is a fixed number of round
trips; the column tuples name each statement's arrays in order. `Bank` and its SQLAlchemy
adapter (books_sql.py) write the same rows one statement per row: a change to a table
changes both."""

from __future__ import annotations

from dataclasses import dataclass, field

from bank.domain.wallets import WalletState

TXN_COLUMNS = ("txn_id", "kind", "signer", "iid", "digest", "status", "code", "amount",
                "expires", "created", "result", "payer", "payee", "memo", "order_id",
                "counterparty", "transfer_id", "next_attempt")
POSTING_COLUMNS = ("txn_id", "account", "amount")
ORDER_COLUMNS = ("order_id", "payer", "at", "txn_id")
HOOK_COLUMNS = ("merchant", "txn_id", "event", "url", "at")

def _written_with_the_rows(first: int) -> str:
    """The end both batch writes share: appended credits, paid orders and queued webhooks,
    their arrays from parameter `$first` on; the answer is the transaction ids written."""
    n = [f"${first + i}" for i in range(11)]
    return f"""c AS (
    INSERT INTO wallet_credits (wallet_id, amount_fen)
    SELECT * FROM unnest({n[0]}::text[], {n[1]}::bigint[])),
o AS (
    UPDATE orders SET status = 'paid', payer_wallet = u.payer, updated_ms = u.at,
                      paid_txn_id = u.txn_id
    FROM unnest({n[2]}::text[], {n[3]}::text[], {n[4]}::bigint[], {n[5]}::bigint[])
         AS u(order_id, payer, at, txn_id)
    WHERE orders.order_id = u.order_id),
h AS (
    INSERT INTO webhook_deliveries (merchant_wallet, txn_id, event, url, status, attempts,
                                    next_attempt_ms, created_ms)
    SELECT u.merchant, u.txn_id, u.event, u.url, 'pending', 0, u.at, u.at
    FROM unnest({n[6]}::text[], {n[7]}::bigint[], {n[8]}::text[], {n[9]}::text[],
                {n[10]}::bigint[])
         AS u(merchant, txn_id, event, url, at))
SELECT txn_id FROM t"""


LOCK_ORDERS = """
SELECT order_id, merchant_wallet, amount_fen, status, expires_ms
FROM orders WHERE order_id = ANY($1::text[]) ORDER BY order_id FOR UPDATE"""

# Payers and capped payees locked in wallet-id order (two batches never deadlock), their
# appended credits folded in the same statement; uncapped payees read without a lock. The
# fold reads credits by wallet; written as `IN (SELECT ..)` the planner chose a sequential
# scan of every credit not yet folded, 5 ms a batch after 20,000 credits to 8 shops: the
# background fold (`Bank.fold_credits`) keeps that pile small whatever the plan. The
# batch's transaction ids come in the same round trip (rows with only `new_txn_id`): a
# sequence needs no snapshot. Each locked payee comes with what it has out that may come
# back (`pending_out`, as `lock_wallet(for_credit=True)` counts it) from a function that
# reads with a snapshot taken after that row's lock (migration 0009): a payment that held
# the wallet and committed meanwhile is seen, and no statement of its own is needed.
LOCK_WALLETS = """
WITH locked AS (
    SELECT wallet_id, status, kyc_class, balance_fen, day, spent_today_fen, topup_on_use,
           deposit_account, webhook_url
    FROM wallets
    WHERE wallet_id = ANY($1::text[])
       OR (wallet_id = ANY($2::text[]) AND kyc_class = ANY($3::int[]))
    ORDER BY wallet_id FOR UPDATE),
folded AS (
    DELETE FROM wallet_credits WHERE wallet_id = ANY(ARRAY(SELECT wallet_id FROM locked))
    RETURNING wallet_id, amount_fen)
SELECT l.*, true AS locked,
       COALESCE((SELECT sum(f.amount_fen) FROM folded f WHERE f.wallet_id = l.wallet_id), 0)
           ::bigint AS folded, NULL::bigint AS new_txn_id,
       CASE WHEN l.wallet_id = ANY($2::text[]) THEN wallet_pending_out(l.wallet_id) END
           AS pending_out
FROM locked l
UNION ALL
SELECT w.wallet_id, w.status, w.kyc_class, w.balance_fen, w.day, w.spent_today_fen,
       w.topup_on_use, w.deposit_account, w.webhook_url, false, 0::bigint, NULL, NULL
FROM wallets w
WHERE w.wallet_id = ANY($2::text[]) AND w.wallet_id NOT IN (SELECT wallet_id FROM locked)
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       nextval(pg_get_serial_sequence('transactions', 'txn_id')), NULL
FROM generate_series(1, $4::int)"""


def wallet_state(row) -> WalletState:
    """A row of LOCK_WALLETS as the domain reads it: a locked wallet with its credits folded
    in and what it has in flight (a capped payee's; none for a payer); a payee only read,
    not locked, with its class, status and links but no balance to decide on."""
    if row["locked"]:
        return WalletState(row["wallet_id"], row["status"], row["kyc_class"],
                           row["balance_fen"] + row["folded"], row["day"],
                           row["spent_today_fen"], row["topup_on_use"],
                           row["deposit_account"], pending_out_fen=row["pending_out"] or 0)
    return WalletState(row["wallet_id"], row["status"], row["kyc_class"], 0, 0, 0,
                       row["topup_on_use"], row["deposit_account"])


# Everything a batch writes, in one statement. A repeated instruction is skipped by the
# unique key and missing from the answer: the caller then rolls the whole batch back.
WRITE_PAYMENTS = """
WITH t AS (
    INSERT INTO transactions (txn_id, kind, signer, instruction_id, digest, status, code,
                              amount_fen, expires_ms, created_ms, updated_ms, result,
                              payer_wallet, payee_wallet, memo, order_id, counterparty_bank,
                              transfer_id, next_attempt_ms)
    SELECT u.txn_id, u.kind, u.signer, u.iid, u.digest, u.status, u.code, u.amount,
           u.expires, u.created, u.created, u.result, u.payer, u.payee, u.memo, u.order_id,
           u.counterparty, u.transfer_id, u.next_attempt
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[],
                $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                $18::bigint[])
         AS u(txn_id, kind, signer, iid, digest, status, code, amount, expires, created,
              result, payer, payee, memo, order_id, counterparty, transfer_id, next_attempt)
    ON CONFLICT (signer, instruction_id) DO NOTHING
    RETURNING txn_id),
p AS (
    INSERT INTO postings (txn_id, account, amount_fen)
    SELECT * FROM unnest($19::bigint[], $20::text[], $21::bigint[])),
w AS (
    UPDATE wallets SET balance_fen = u.balance, day = u.day, spent_today_fen = u.spent
    FROM unnest($22::text[], $23::bigint[], $24::int[], $25::bigint[])
         AS u(wallet_id, balance, day, spent)
    WHERE wallets.wallet_id = u.wallet_id),
""" + _written_with_the_rows(26)

# What a batch also locks and writes when a payment moves deposit money (top-up on use pulls
# from the payer's deposit account, a credit past the cap sweeps to the payee's) or is
# charged under a mandate: rare, so statements of their own, only when needed.
LOCK_MANDATES = """
SELECT mandate_id, status, per_payment_cap_fen, period, period_cap_fen, used_fen, period_key
FROM mandates WHERE mandate_id = ANY($1::text[]) ORDER BY mandate_id FOR UPDATE"""

LOCK_DEPOSITS = """
SELECT account_id, balance_fen
FROM deposit_accounts WHERE account_id = ANY($1::text[]) ORDER BY account_id FOR UPDATE"""

SAVE_MANDATES = """
UPDATE mandates SET period_key = u.period_key, used_fen = u.used
FROM unnest($1::text[], $2::int[], $3::bigint[]) AS u(mandate_id, period_key, used)
WHERE mandates.mandate_id = u.mandate_id"""

LOCK_REFUNDED = """
SELECT txn_id, transfer_id, kind, status, payer_wallet, payee_wallet, amount_fen,
       COALESCE(refunded_fen, 0) AS refunded_fen, COALESCE(pulled_fen, 0) AS pulled_fen
FROM transactions WHERE transfer_id = ANY($1::text[]) ORDER BY txn_id FOR UPDATE"""

# The payments merchants refund, locked first (as everywhere: the refunded payment, then
# wallets), by transaction id.
LOCK_PAYMENTS = """
SELECT txn_id, transfer_id, kind, status, payer_wallet, payee_wallet, amount_fen, order_id,
       counterparty_bank, COALESCE(refunded_fen, 0) AS refunded_fen,
       COALESCE(pulled_fen, 0) AS pulled_fen
FROM transactions WHERE txn_id = ANY($1::bigint[]) ORDER BY txn_id FOR UPDATE"""

REFUND_ORDERS = """
UPDATE orders SET refunded_fen = u.refunded, status = u.status, updated_ms = $4
FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(order_id, refunded, status)
WHERE orders.order_id = u.order_id"""

SET_REFUNDED = """
UPDATE transactions SET refunded_fen = u.refunded, updated_ms = $3
FROM unnest($1::bigint[], $2::bigint[]) AS u(txn_id, refunded)
WHERE transactions.txn_id = u.txn_id"""

SET_REFUND_OF = """
UPDATE transactions SET refund_of = u.refund_of
FROM unnest($1::bigint[], $2::bigint[]) AS u(txn_id, refund_of)
WHERE transactions.txn_id = u.txn_id"""

SET_PULLED = """
UPDATE transactions SET pulled_fen = u.pulled
FROM unnest($1::bigint[], $2::bigint[]) AS u(txn_id, pulled)
WHERE transactions.txn_id = u.txn_id"""

# Only if every account covers its debit (locked and decided before: a guard, not a rule).
MOVE_DEPOSITS = """
UPDATE deposit_accounts SET balance_fen = balance_fen + u.delta
FROM unnest($1::text[], $2::bigint[]) AS u(account_id, delta)
WHERE deposit_accounts.account_id = u.account_id AND balance_fen + u.delta >= 0"""

# The vault's e-CNY follows deposit money: pulled out for a top-up, back in for a sweep.
MOVE_VAULT = """
UPDATE system_balances SET balance_fen = balance_fen + $1::bigint
WHERE account = 'vault' AND balance_fen + $1::bigint >= 0"""

# Interbank payments central said settled, finished many to one transaction, each exactly
# once (`Bank.finish_transfer`, settled): the rows locked in id order (two finishers never
# deadlock), only those still processing changed; the postings follow for those returned.
SETTLE = """
UPDATE transactions SET status = 'settled', updated_ms = $2
FROM (SELECT txn_id FROM transactions
      WHERE txn_id = ANY($1::bigint[]) AND status = 'processing'
      ORDER BY txn_id FOR UPDATE) AS l
WHERE transactions.txn_id = l.txn_id AND transactions.status = 'processing'
RETURNING transactions.txn_id, transactions.amount_fen"""

# SETTLE and the settled payments' postings in one statement (atomic by itself: no
# BEGIN/COMMIT round trips): each settled row gets the postings of one fen of it ($3, $4:
# account, fen per fen), times its recorded amount.
SETTLE_WITH_POSTINGS = """
WITH s AS (""" + SETTLE + """),
p AS (
    INSERT INTO postings (txn_id, account, amount_fen)
    SELECT s.txn_id, t.account, t.per_fen * s.amount_fen
    FROM s CROSS JOIN unnest($3::text[], $4::bigint[]) WITH ORDINALITY AS t(account, per_fen, n)
    ORDER BY s.txn_id, t.n)
SELECT txn_id, amount_fen FROM s"""

# The outbox's next try of payments central gave no final answer (`Bank._retry_later`).
RETRY_LATER = """
UPDATE transactions SET next_attempt_ms = u.next_attempt
FROM unnest($1::bigint[], $2::bigint[]) AS u(txn_id, next_attempt)
WHERE transactions.txn_id = u.txn_id"""

INSERT_POSTINGS = """
INSERT INTO postings (txn_id, account, amount_fen)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])"""

INSERT_ORDERS = """
INSERT INTO orders (order_id, merchant_wallet, reference, description, amount_fen, status,
                    refunded_fen, created_ms, expires_ms, updated_ms)
SELECT u.order_id, u.merchant, u.reference, u.description, u.amount, 'created', 0, u.created,
       u.expires, u.created
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
            $7::bigint[]) AS u(order_id, merchant, reference, description, amount, created, expires)
ON CONFLICT DO NOTHING
RETURNING order_id"""

WALLET_BY = ("SELECT wallet_id, key_id, public_key, kind, merchant_name, mcc, city "
              "FROM wallets WHERE ")

KNOWN_TRANSFERS = ("SELECT transfer_id, status, code FROM transactions "
                   "WHERE transfer_id = ANY($1::text[])")

# Everything a batch writes, in one statement. A transfer recorded meanwhile by someone
# else is skipped by a unique key and missing from the answer: the batch is then rolled back.
WRITE_CREDITS = """
WITH t AS (
    INSERT INTO transactions (txn_id, kind, signer, instruction_id, transfer_id, digest,
                              status, code, amount_fen, expires_ms, created_ms, updated_ms,
                              result, payer_wallet, payee_wallet, order_id, counterparty_bank)
    SELECT u.txn_id, 'interbank_in', u.signer, u.transfer_id, u.transfer_id, u.digest,
           u.status, u.code, u.amount, u.expires, u.at, u.at, '{}', u.payer, u.payee,
           u.order_id, u.from_bank
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], $11::text[],
                $12::text[], $13::text[])
         AS u(txn_id, signer, transfer_id, digest, status, code, amount, expires, at, payer,
              payee, order_id, from_bank)
    ON CONFLICT DO NOTHING
    RETURNING txn_id),
p AS (
    INSERT INTO postings (txn_id, account, amount_fen)
    SELECT * FROM unnest($14::bigint[], $15::text[], $16::bigint[])),
w AS (
    UPDATE wallets SET balance_fen = u.balance
    FROM unnest($17::text[], $18::bigint[]) AS u(wallet_id, balance)
    WHERE wallets.wallet_id = u.wallet_id),
""" + _written_with_the_rows(19)

CREDIT_TXN_COLUMNS = ("txn_id", "signer", "transfer_id", "digest", "status", "code", "amount",
                      "expires", "at", "payer", "payee", "order_id", "from_bank")
CREDIT_COLUMNS = ("wallet", "amount")


def columns(names: tuple[str, ...]) -> dict[str, list]:
    """Empty arrays for the named columns of a statement."""
    return {name: [] for name in names}


def add_postings(table: dict[str, list], txn: int, postings) -> None:
    """Append one transaction's postings to POSTING_COLUMNS arrays."""
    for posting in postings:
        table["txn_id"].append(txn)
        table["account"].append(posting.account)
        table["amount"].append(posting.amount_fen)


@dataclass(slots=True)
class Plan:
    """What one batch writes, column by column, for WRITE_PAYMENTS (`txn_columns` =
    TXN_COLUMNS) or WRITE_CREDITS (CREDIT_TXN_COLUMNS): one statement, arrays unnested.
    `written` holds the batch's items that have a row; `wallets` the locked wallets, all
    written back."""

    txn_columns: tuple[str, ...]
    txn: dict[str, list] = field(init=False)
    postings: dict[str, list] = field(default_factory=lambda: columns(POSTING_COLUMNS))
    credits: dict[str, list] = field(default_factory=lambda: columns(CREDIT_COLUMNS))
    paid_orders: dict[str, list] = field(default_factory=lambda: columns(ORDER_COLUMNS))
    hooks: dict[str, list] = field(default_factory=lambda: columns(HOOK_COLUMNS))
    written: list = field(default_factory=list)
    wallets: dict[str, WalletState] = field(default_factory=dict)
    # Rare: deposit money moved, mandates used (written apart, when there are any).
    pulled: dict[int, int] = field(default_factory=dict)          # txn id -> fen pulled
    deposits: dict[str, int] = field(default_factory=dict)        # account -> change in fen
    vault_delta_fen: int = 0
    mandates: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (period, used)
    refunded: dict[int, int] = field(default_factory=dict)   # refunded txn -> refunded in all
    refund_of: dict[int, int] = field(default_factory=dict)  # new txn -> the txn it refunds
    order_refunds: dict[str, tuple[int, str]] = field(default_factory=dict)  # (refunded, status)
    at_ms: int = 0

    def move_deposit(self, account: str | None, delta_fen: int) -> None:
        if delta_fen:
            self.deposits[account] = self.deposits.get(account, 0) + delta_fen

    def __post_init__(self) -> None:
        self.txn = columns(self.txn_columns)

    @staticmethod
    def add(table: dict[str, list], names: tuple[str, ...], values: tuple) -> None:
        """Append one row's `values` to the arrays of `names`, in order."""
        for name, value in zip(names, values, strict=True):
            table[name].append(value)
