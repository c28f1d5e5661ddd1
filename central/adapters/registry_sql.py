"""The registry in SQL: post journal entries with balances kept beside them, remember
instructions for idempotency, and read back what the audit needs."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from central import domain
from central.adapters import tables as t
from central.adapters import transfers_sql
from rail_protocol.envelope import now_ms
from rail_protocol.errors import RailError


async def ensure_accounts(conn: AsyncConnection, account_ids: list[str]) -> None:
    existing = set(
        (await conn.execute(
            sa.select(t.accounts.c.account_id).where(t.accounts.c.account_id.in_(account_ids))
        )).scalars()
    )
    missing = [a for a in account_ids if a not in existing]
    if missing:
        await conn.execute(t.accounts.insert(), [{"account_id": a, "balance_fen": 0} for a in missing])


async def post_entry(conn: AsyncConnection, entry: domain.Entry, reference: str) -> int:
    """Write `entry` and move the balances in the caller's transaction (see `post_entries`);
    on a shortfall this raises and the caller's transaction rolls back."""
    return (await post_entries(conn, [(entry, reference)]))[0]


async def post_entries(conn: AsyncConnection,
                       entries: list[tuple[domain.Entry, str]]) -> list[int]:
    """Write many entries (each with its unique reference) in three statements whatever
    their number: the journal rows, their postings, and one UPDATE that moves each account
    once by the sum of its postings, so a hot account (`in_flight`) is written once per
    batch. A guarded account is debited only where its balance covers the sum (a
    conditional update); if one does not, this raises its shortfall code and the caller's
    transaction rolls back. Returns the entry ids in the order given."""
    deltas: dict[str, int] = {}
    for entry, _reference in entries:
        for posting in entry.postings:
            deltas[posting.account] = deltas.get(posting.account, 0) + posting.amount_fen
    await move_balances(conn, deltas)
    now = now_ms()
    rows = await conn.execute(
        t.journal_entries.insert().returning(t.journal_entries.c.entry_id,
                                             t.journal_entries.c.reference),
        [{"kind": entry.kind, "bank_id": entry.bank_id, "reference": reference,
          "created_ms": now} for entry, reference in entries])
    ids = {row.reference: row.entry_id for row in rows}
    if len(ids) != len(entries):
        raise AssertionError("entries posted together need distinct references")
    await conn.execute(
        t.postings.insert(),
        [{"entry_id": ids[reference], "account_id": p.account, "amount_fen": p.amount_fen}
         for entry, reference in entries for p in entry.postings])
    return [ids[reference] for _entry, reference in entries]


async def move_balances(conn: AsyncConnection, deltas: dict[str, int]) -> None:
    """Add each delta to its account in one statement. The rows are locked in account order
    first (every transaction takes them in that order, so two never deadlock); a guarded
    account is moved only if it stays >= 0. Raises the shortfall code of the first account
    (in that order) that was not moved: too poor, or missing."""
    deltas = {account: delta for account, delta in deltas.items() if delta != 0}
    if not deltas:
        return
    accounts = t.accounts.c
    delta = sa.case({account: sa.literal(d, sa.BigInteger) for account, d in deltas.items()},
                    value=accounts.account_id)
    debited = [a for a, d in deltas.items() if d < 0 and domain.is_guarded(a)]
    locked = (sa.select(accounts.account_id)
              .where(accounts.account_id.in_(sorted(deltas)))
              .order_by(accounts.account_id)
              .with_for_update())
    stmt = (t.accounts.update()
            .where(accounts.account_id.in_(locked))
            .values(balance_fen=accounts.balance_fen + delta)
            .returning(accounts.account_id))
    if debited:
        stmt = stmt.where(sa.or_(accounts.account_id.not_in(debited),
                                 accounts.balance_fen + delta >= 0))
    moved = set((await conn.execute(stmt)).scalars())
    missing = sorted(set(deltas) - moved)
    if missing:
        raise RailError(domain.shortfall_code(missing[0]))


async def balances(conn: AsyncConnection, account_ids: list[str], *,
                   lock: bool = False) -> dict[str, int]:
    """The balances of these accounts; with `lock`, also locked (in account order, as every
    transaction takes them) for the rest of the transaction, so decisions made on them hold
    until it commits."""
    query = (sa.select(t.accounts.c.account_id, t.accounts.c.balance_fen)
             .where(t.accounts.c.account_id.in_(sorted(account_ids))))
    if lock:
        query = query.order_by(t.accounts.c.account_id).with_for_update()
    return {row.account_id: row.balance_fen for row in await conn.execute(query)}


# --- instructions: idempotency by (signer, id) ----------------------------------------

async def find_instruction(conn: AsyncConnection, signer: str, instruction_id: str):
    return (
        await conn.execute(
            sa.select(t.instructions).where(
                t.instructions.c.signer == signer,
                t.instructions.c.instruction_id == instruction_id,
            )
        )
    ).first()


async def record_instruction(conn: AsyncConnection, env, status: str, result: dict) -> None:
    """Insert the instruction's outcome; the primary key makes a second insert fail, which is
    how two concurrent tries of one instruction end with one effect."""
    await conn.execute(
        t.instructions.insert().values(
            signer=env.signer, instruction_id=env.id, type=env.type, digest=env.digest(),
            status=status, result=orjson.dumps(result).decode(), expires_ms=env.expires_ms,
            created_ms=now_ms(),
        )
    )


# --- banks ----------------------------------------------------------------------------

async def find_bank(conn: AsyncConnection, bank_id: str):
    return (await conn.execute(sa.select(t.banks).where(t.banks.c.bank_id == bank_id))).first()


async def find_banks(conn: AsyncConnection, bank_ids) -> dict:
    """The rows of these banks that are registered, by bank id."""
    rows = await conn.execute(sa.select(t.banks).where(t.banks.c.bank_id.in_(sorted(bank_ids))))
    return {row.bank_id: row for row in rows}


async def find_bank_by_key(conn: AsyncConnection, key_id: str):
    return (await conn.execute(sa.select(t.banks).where(t.banks.c.key_id == key_id))).first()


async def set_bank_url(conn: AsyncConnection, bank_id: str, url: str) -> None:
    await conn.execute(t.banks.update().where(t.banks.c.bank_id == bank_id).values(url=url))


async def all_banks(conn: AsyncConnection) -> dict:
    """Every registered bank's row, by bank id."""
    return {row.bank_id: row for row in await conn.execute(sa.select(t.banks))}


async def bank_ids(conn: AsyncConnection) -> list[str]:
    return list((await conn.execute(sa.select(t.banks.c.bank_id).order_by("bank_id"))).scalars())


# --- audit reads ----------------------------------------------------------------------

async def audit_inputs(conn: AsyncConnection) -> dict:
    stored = {r.account_id: r.balance_fen for r in await conn.execute(sa.select(t.accounts))}
    posted = {
        r.account_id: int(r.total)
        for r in await conn.execute(
            sa.select(t.postings.c.account_id, sa.func.sum(t.postings.c.amount_fen).label("total"))
            .group_by(t.postings.c.account_id)
        )
    }
    unbalanced = list(
        (await conn.execute(
            sa.select(t.postings.c.entry_id)
            .group_by(t.postings.c.entry_id)
            .having(sa.func.sum(t.postings.c.amount_fen) != 0)
        )).scalars()
    )
    entry_count = (await conn.execute(sa.select(sa.func.count()).select_from(t.journal_entries))).scalar_one()
    return {
        "stored_balances": stored,
        "posted_balances": posted,
        "unbalanced_entries": unbalanced,
        "entry_count": entry_count,
        "bank_ids": await bank_ids(conn),
        "prepared_transfers_fen": await transfers_sql.prepared_sum(conn),
    }


async def journal_page(conn: AsyncConnection, after_entry_id: int, limit: int) -> list[dict]:
    entries = (
        await conn.execute(
            sa.select(t.journal_entries)
            .where(t.journal_entries.c.entry_id > after_entry_id)
            .order_by(t.journal_entries.c.entry_id)
            .limit(limit)
        )
    ).all()
    if not entries:
        return []
    ids = [e.entry_id for e in entries]
    by_entry: dict[int, list[dict]] = {i: [] for i in ids}
    for p in await conn.execute(
        sa.select(t.postings).where(t.postings.c.entry_id.in_(ids)).order_by(t.postings.c.posting_id)
    ):
        by_entry[p.entry_id].append({"account": p.account_id, "amount_fen": p.amount_fen})
    return [
        {"entry_id": e.entry_id, "kind": e.kind, "bank_id": e.bank_id, "reference": e.reference,
         "created_ms": e.created_ms, "postings": by_entry[e.entry_id]}
        for e in entries
    ]
