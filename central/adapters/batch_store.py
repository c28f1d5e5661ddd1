"""Where central's transfer batches are read and written: one interface, two databases.

`Transfers` (central/transfers.py) prepares and finishes interbank transfers in batches:
which are known, which payee banks exist, the paying banks' holdings locked, then the new
rows with their journal entries, or the answered ones finished with theirs. It does so
through a transaction of a `BatchStore`:

- `PgBatchStore`: PostgreSQL over asyncpg, each step one statement over arrays (the SQL
  below), so a batch of any size is a fixed number of round trips and nothing is compiled
  per call; the prepare batches keep a connection of their own.
- `SqlBatchStore`: any SQLAlchemy engine (SQLite, the demo's embedded default), through
  the same functions central's single requests use (`registry_sql`, `transfers_sql`,
  `chain_sql`).

Both answer with the same shapes (`TransferRow`, `BankRow`, dicts), so `Transfers` cannot
tell them apart; a change to a table changes both."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central import chain, domain
from central.adapters import chain_sql
from central.adapters import registry_sql as sql
from central.adapters import transfers_sql as tsql
from rail_protocol.canonical import canonical_bytes
from rail_protocol.errors import RailError
from rail_service.db import open_asyncpg_pool


@dataclass(frozen=True, slots=True)
class TransferRow:
    """What a batch reads of a transfer's row."""

    transfer_id: str
    from_bank: str
    to_bank: str
    amount_fen: int
    payee_wallet: str
    details: str | None
    digest: str
    status: str
    code: str | None
    created_ms: int
    attempts: int


@dataclass(frozen=True, slots=True)
class BankRow:
    """Where a payee bank is delivered to, and the key its answers are signed with."""

    bank_id: str
    url: str | None
    public_key: str


Entries = list[tuple[domain.Entry, str]]   # journal entries, each with its unique reference
# An entry to chain, with the (from bank, to bank) of its transfer for interbank entries.
Unsealed = list[tuple[chain.JournalEntry, tuple[str, str] | None]]
Links = list[tuple[chain.JournalEntry, int, str]]   # (entry, its place, its link hash)


def _deltas(entries: Entries) -> dict[str, int]:
    deltas: dict[str, int] = {}
    for entry, _reference in entries:
        for posting in entry.postings:
            deltas[posting.account] = deltas.get(posting.account, 0) + posting.amount_fen
    return {account: delta for account, delta in deltas.items() if delta != 0}


def _shortfall(deltas: dict[str, int], moved: set[str]) -> None:
    """Raise the shortfall code of the first account (in account order) not moved."""
    missing = sorted(set(deltas) - moved)
    if missing:
        raise RailError(domain.shortfall_code(missing[0]))


# --- PostgreSQL ---------------------------------------------------------------------------

_TRANSFER_COLUMNS = ("transfer_id, from_bank, to_bank, amount_fen, payee_wallet, details, "
                     "digest, status, code, created_ms, attempts")

FIND_TRANSFERS = f"""
SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE transfer_id = ANY($1::text[])"""

FIND_BANKS = """
SELECT bank_id, url, public_key FROM banks WHERE bank_id = ANY($1::text[])"""

# What a prepare batch reads, in one round trip: the batch's transfers already known, its
# payee banks, and the paying banks' holdings, locked in account order, as every transaction
# at central takes them (two never deadlock). One row per thing read, `kind` says which.
READ_FOR_PREPARE = f"""
WITH locked AS MATERIALIZED (
    SELECT account_id, balance_fen FROM accounts
    WHERE account_id = ANY($3::text[]) ORDER BY account_id FOR UPDATE)
SELECT 'transfer' AS kind, {_TRANSFER_COLUMNS}, NULL::text AS url, NULL::text AS public_key
FROM transfers WHERE transfer_id = ANY($1::text[])
UNION ALL
SELECT 'bank', bank_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, url,
       public_key
FROM banks WHERE bank_id = ANY($2::text[])
UNION ALL
SELECT 'account', account_id, NULL, NULL, balance_fen, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL
FROM locked"""

_INSERT_PREPARED = """
INSERT INTO transfers (transfer_id, from_bank, to_bank, amount_fen, payee_wallet, details,
                       digest, status, code, created_ms, updated_ms, attempts,
                       next_attempt_ms)
SELECT u.transfer_id, u.from_bank, u.to_bank, u.amount, u.payee, u.details, u.digest,
       'prepared', NULL, {now}, {now}, 1, {lease}
FROM unnest({arrays}) AS u(transfer_id, from_bank, to_bank, amount, payee, details, digest)"""

# Journal entries, their postings (each entry's in the order given) and one move of each
# account by the sum of its postings, the accounts locked in account order first; a
# guarded account moves only if it stays >= 0. The answer names the accounts moved: one
# missing means a shortfall, and the caller's transaction rolls back.
POST_ENTRIES = """
WITH e AS (
    INSERT INTO journal_entries (kind, bank_id, reference, created_ms)
    SELECT u.kind, u.bank_id, u.reference, $4
    FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(kind, bank_id,
                                                                         reference, n)
    ORDER BY u.n
    RETURNING entry_id, reference),
p AS (
    INSERT INTO postings (entry_id, account_id, amount_fen)
    SELECT e.entry_id, u.account, u.amount
    FROM unnest($5::text[], $6::text[], $7::bigint[]) WITH ORDINALITY AS u(reference, account,
                                                                           amount, n)
    JOIN e ON e.reference = u.reference
    ORDER BY u.n),
m AS (
    UPDATE accounts SET balance_fen = accounts.balance_fen + u.delta
    FROM unnest($8::text[], $9::bigint[], $10::bool[]) AS u(account_id, delta, guarded)
    WHERE accounts.account_id = u.account_id
      AND accounts.account_id IN (SELECT account_id FROM accounts
                                  WHERE account_id = ANY($8::text[])
                                  ORDER BY account_id FOR UPDATE)
      AND (NOT u.guarded OR accounts.balance_fen + u.delta >= 0)
    RETURNING accounts.account_id)
SELECT account_id FROM m"""

# The new prepared transfers' rows and the journal entries (POST_ENTRIES) in one statement:
# a transfer id already there fails it whole, and the caller's transaction rolls back.
PREPARE_AND_POST = ("WITH t AS (" + _INSERT_PREPARED.format(
    now="$4", lease="$18", arrays="$11::text[], $12::text[], $13::text[], $14::bigint[], "
                                  "$15::text[], $16::text[], $17::text[]")
    + "),\n" + POST_ENTRIES.replace("WITH e AS (", "e AS (", 1).lstrip())

# Out of `prepared`, once: the transfers' rows locked in id order (two finishers never
# deadlock), only those still prepared changed; the answer names those moved here. The rows
# are found by primary key only and their status is tested as locked (`l`): a test of
# `transfers.status` could be planned through `ix_transfers_due`, which the planner takes
# once `ANALYZE` has seen nearly every transfer settled, and which holds an entry for every
# transfer settled since the last vacuum (docs/performance.md, thirteenth session).
FINISH = """
WITH l AS MATERIALIZED (
    SELECT transfer_id, status FROM transfers WHERE transfer_id = ANY($1::text[])
    ORDER BY transfer_id FOR UPDATE)
UPDATE transfers SET status = u.status, code = u.code, updated_ms = $4
FROM unnest($1::text[], $2::text[], $3::text[]) AS u(transfer_id, status, code), l
WHERE l.status = 'prepared' AND u.transfer_id = l.transfer_id
  AND transfers.transfer_id = l.transfer_id
RETURNING transfers.transfer_id, transfers.created_ms"""

# The next try after an unanswered delivery, unless another claimer took it since (its
# `attempts` moved on; then its lease stands). Found and tested as FINISH is.
POSTPONE = """
WITH l AS MATERIALIZED (
    SELECT transfer_id, status, attempts FROM transfers WHERE transfer_id = ANY($1::text[])
    ORDER BY transfer_id FOR UPDATE)
UPDATE transfers SET next_attempt_ms = $4 + u.delay, updated_ms = $4
FROM unnest($1::text[], $2::int[], $3::bigint[]) AS u(transfer_id, attempts, delay), l
WHERE l.status = 'prepared' AND l.attempts = u.attempts AND u.transfer_id = l.transfer_id
  AND transfers.transfer_id = l.transfer_id"""

# The sealer's: the chain's head locked (one sealer at a time), the committed entries not
# chained yet with their postings in posting order (the partial index holds only these),
# and the banks of their transfers.
LOCK_HEAD = "SELECT seq, head_hash FROM chain_head WHERE head_id = 1 FOR UPDATE"

UNSEALED = """
SELECT j.entry_id, j.kind, j.bank_id, j.reference, j.created_ms,
       ARRAY(SELECT p.account_id FROM postings p WHERE p.entry_id = j.entry_id
             ORDER BY p.posting_id) AS accounts,
       ARRAY(SELECT p.amount_fen FROM postings p WHERE p.entry_id = j.entry_id
             ORDER BY p.posting_id) AS amounts
FROM journal_entries j WHERE j.chain_seq IS NULL ORDER BY j.entry_id LIMIT $1"""

TRANSFER_BANKS = """
SELECT transfer_id, from_bank, to_bank FROM transfers WHERE transfer_id = ANY($1::text[])"""

# Only an entry not chained yet takes a place (the unique index on chain_seq refuses a
# second entry at the same place).
WRITE_LINKS = """
UPDATE journal_entries SET chain_seq = u.seq, chain_hash = u.link
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u(entry_id, seq, link)
WHERE journal_entries.entry_id = u.entry_id AND journal_entries.chain_seq IS NULL"""

ADD_TOTALS = """
INSERT INTO chain_totals (account_id, balance_fen)
SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (account_id) DO UPDATE SET balance_fen = chain_totals.balance_fen
                                                     + EXCLUDED.balance_fen"""

SET_HEAD = "UPDATE chain_head SET seq = $1, head_hash = $2 WHERE head_id = 1"


class PgTx:
    """One PostgreSQL transaction of a batch (transfers, the sealer), on an asyncpg
    connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def find_transfers(self, transfer_ids) -> dict[str, TransferRow]:
        rows = await self.conn.fetch(FIND_TRANSFERS, list(transfer_ids))
        return {row["transfer_id"]: TransferRow(*row) for row in rows}

    async def find_banks(self, bank_ids) -> dict[str, BankRow]:
        rows = await self.conn.fetch(FIND_BANKS, sorted(bank_ids))
        return {row["bank_id"]: BankRow(*row) for row in rows}

    async def read_for_prepare(self, transfer_ids, bank_ids, accounts
                               ) -> tuple[dict[str, TransferRow], dict[str, BankRow],
                                          dict[str, int]]:
        """The known transfers among `transfer_ids`, the registered banks among
        `bank_ids`, and the balances of `accounts`, locked: one round trip."""
        known: dict[str, TransferRow] = {}
        banks: dict[str, BankRow] = {}
        balances: dict[str, int] = {}
        for row in await self.conn.fetch(READ_FOR_PREPARE, list(transfer_ids),
                                         sorted(bank_ids), sorted(accounts)):
            kind, key = row[0], row[1]
            if kind == "transfer":
                known[key] = TransferRow(*row[1:12])
            elif kind == "bank":
                banks[key] = BankRow(key, row[12], row[13])
            else:
                balances[key] = row[4]
        return known, banks, balances

    async def prepare_and_post(self, orders: list[tuple[domain.TransferOrder, str]],
                               entries: Entries, now_ms: int, lease_until_ms: int) -> None:
        """Insert the prepared transfers' rows and post the entries: one round trip."""
        await self.post_entries(entries, now_ms, prepared=(orders, lease_until_ms))

    async def post_entries(self, entries: Entries, now_ms: int, *,
                           prepared: tuple[list, int] | None = None) -> None:
        if len({reference for _entry, reference in entries}) != len(entries):
            raise AssertionError("entries posted together need distinct references")
        deltas = _deltas(entries)
        accounts = sorted(deltas)
        args = [[e.kind for e, _ in entries], [e.bank_id for e, _ in entries],
                [reference for _, reference in entries], now_ms,
                [reference for e, reference in entries for _ in e.postings],
                [p.account for e, _ in entries for p in e.postings],
                [p.amount_fen for e, _ in entries for p in e.postings],
                accounts, [deltas[a] for a in accounts],
                [deltas[a] < 0 and domain.is_guarded(a) for a in accounts]]
        if prepared is None:
            moved = await self.conn.fetch(POST_ENTRIES, *args)
        else:
            orders, lease_until_ms = prepared
            moved = await self.conn.fetch(
                PREPARE_AND_POST, *args, [o.transfer_id for o, _ in orders],
                [o.from_bank for o, _ in orders], [o.to_bank for o, _ in orders],
                [o.amount_fen for o, _ in orders], [o.payee_wallet for o, _ in orders],
                [None if o.details is None else canonical_bytes(o.details).decode()
                 for o, _ in orders],
                [digest for _, digest in orders], lease_until_ms)
        _shortfall(deltas, {row[0] for row in moved})

    async def finish(self, outcomes: list[tuple[str, str, str | None]],
                     now_ms: int) -> dict[str, int]:
        rows = await self.conn.fetch(FINISH, [tid for tid, _, _ in outcomes],
                                     [status for _, status, _ in outcomes],
                                     [code for _, _, code in outcomes], now_ms)
        return dict(rows)

    async def postpone(self, tries: list[tuple[str, int]], now_ms: int) -> None:
        await self.conn.execute(POSTPONE, [tid for tid, _ in tries],
                                [attempts for _, attempts in tries],
                                [domain.retry_delay_ms(attempts) for _, attempts in tries],
                                now_ms)

    # --- the sealer ---------------------------------------------------------------------

    async def lock_head(self) -> tuple[int, str]:
        row = await self.conn.fetchrow(LOCK_HEAD)
        return row[0], row[1]

    async def unsealed(self, limit: int) -> Unsealed:
        rows = await self.conn.fetch(UNSEALED, limit)
        entries = [chain.JournalEntry(r[0], r[1], r[2], r[3], r[4], tuple(zip(r[5], r[6])))
                   for r in rows]
        transfer_ids = chain.transfer_ids(entries)
        banks = {}
        if transfer_ids:
            banks = {r[0]: (r[1], r[2])
                     for r in await self.conn.fetch(TRANSFER_BANKS, transfer_ids)}
        return [(e, banks.get(chain.transfer_id_of(e.reference) or "")) for e in entries]

    async def write_links(self, links: Links) -> None:
        await self.conn.execute(WRITE_LINKS, [entry.entry_id for entry, _, _ in links],
                                [seq for _, seq, _ in links], [link for _, _, link in links])

    async def add_totals(self, deltas: dict[str, int]) -> None:
        deltas = {a: d for a, d in deltas.items() if d}
        if deltas:
            accounts = sorted(deltas)
            await self.conn.execute(ADD_TOTALS, accounts, [deltas[a] for a in accounts])

    async def set_head(self, seq: int, head_hash: str) -> None:
        await self.conn.execute(SET_HEAD, seq, head_hash)


class PgBatchStore:
    """Central's batches on PostgreSQL, over a small asyncpg pool of their own."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, engine: AsyncEngine, size: int) -> PgBatchStore:
        return cls(await open_asyncpg_pool(engine, size, custom_plans=True))

    @property
    def loop_pool(self) -> Any:
        """What a `Batcher` keeps a connection of per loop."""
        return self.pool

    @contextlib.asynccontextmanager
    async def transaction(self, conn: Any = None) -> AsyncIterator[PgTx]:
        if conn is not None:
            async with conn.transaction():
                yield PgTx(conn)
            return
        async with self.pool.acquire() as acquired, acquired.transaction():
            yield PgTx(acquired)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[PgTx]:
        """Single reads outside a transaction."""
        async with self.pool.acquire() as acquired:
            yield PgTx(acquired)

    async def aclose(self) -> None:
        await self.pool.close()


# --- SQLAlchemy (SQLite) ----------------------------------------------------------------

def _transfer_row(row) -> TransferRow:
    return TransferRow(row.transfer_id, row.from_bank, row.to_bank, row.amount_fen,
                       row.payee_wallet, row.details, row.digest, row.status, row.code,
                       row.created_ms, row.attempts)


class SqlTx:
    """One transaction of a batch (transfers, the sealer) through SQLAlchemy."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def find_transfers(self, transfer_ids) -> dict[str, TransferRow]:
        rows = await tsql.find_many(self.conn, transfer_ids)
        return {tid: _transfer_row(row) for tid, row in rows.items()}

    async def find_banks(self, bank_ids) -> dict[str, BankRow]:
        rows = await sql.find_banks(self.conn, bank_ids)
        return {bid: BankRow(row.bank_id, row.url, row.public_key) for bid, row in rows.items()}

    async def read_for_prepare(self, transfer_ids, bank_ids, accounts
                               ) -> tuple[dict[str, TransferRow], dict[str, BankRow],
                                          dict[str, int]]:
        return (await self.find_transfers(transfer_ids), await self.find_banks(bank_ids),
                await sql.balances(self.conn, sorted(accounts), lock=True))

    async def prepare_and_post(self, orders: list[tuple[domain.TransferOrder, str]],
                               entries: Entries, now_ms: int, lease_until_ms: int) -> None:
        await tsql.insert_prepared(self.conn, orders, now_ms, lease_until_ms)
        await self.post_entries(entries, now_ms)

    async def post_entries(self, entries: Entries, now_ms: int) -> None:
        await sql.post_entries(self.conn, entries)

    async def finish(self, outcomes: list[tuple[str, str, str | None]],
                     now_ms: int) -> dict[str, int]:
        by_outcome: dict[tuple[str, str | None], list[str]] = {}
        for tid, status, code in outcomes:
            by_outcome.setdefault((status, code), []).append(tid)
        moved: dict[str, int] = {}
        for (status, code), tids in sorted(by_outcome.items(), key=lambda kv: (kv[0][0],
                                                                               kv[0][1] or "")):
            moved |= await tsql.finish(self.conn, tids, status, code, now_ms)
        return moved

    async def postpone(self, tries: list[tuple[str, int]], now_ms: int) -> None:
        await tsql.postpone(self.conn, tries, now_ms)

    async def lock_head(self) -> tuple[int, str]:
        return await chain_sql.lock_head(self.conn)

    async def unsealed(self, limit: int) -> Unsealed:
        return [(entry, transfer)
                for _row, entry, transfer in await chain_sql.unsealed(self.conn, limit)]

    async def write_links(self, links: Links) -> None:
        await chain_sql.write_links(self.conn, links)

    async def add_totals(self, deltas: dict[str, int]) -> None:
        await chain_sql.add_totals(self.conn, deltas)

    async def set_head(self, seq: int, head_hash: str) -> None:
        await chain_sql.set_head(self.conn, seq, head_hash)


class SqlBatchStore:
    """Central's batches through a SQLAlchemy engine: SQLite, one writer at a time."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    loop_pool = None   # a `Batcher` loop opens a transaction per batch instead

    @contextlib.asynccontextmanager
    async def transaction(self, conn: Any = None) -> AsyncIterator[SqlTx]:
        async with self.engine.begin() as c:
            yield SqlTx(c)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[SqlTx]:
        async with self.engine.connect() as c:
            yield SqlTx(c)

    async def aclose(self) -> None:
        return None


BatchStore = PgBatchStore | SqlBatchStore


async def open_store(engine: AsyncEngine, pool_size: int) -> BatchStore:
    """The store for `engine`'s database."""
    if engine.url.get_backend_name() == "postgresql":
        return await PgBatchStore.open(engine, pool_size)
    return SqlBatchStore(engine)
