"""The hash chain and checkpoints in SQL: the sealer's reads and writes (chaining committed
journal entries after the fact), and the reads of a whole chain for its verification."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from central import chain
from central.adapters import tables as t

_J, _P = t.journal_entries, t.postings


async def lock_head(conn: AsyncConnection) -> tuple[int, str]:
    """The chain's head (seq, hash), locked until the transaction ends: one sealer at a
    time, whatever leads the background loops."""
    row = (await conn.execute(sa.select(t.chain_head.c.seq, t.chain_head.c.head_hash)
                              .where(t.chain_head.c.head_id == 1).with_for_update())).one()
    return row.seq, row.head_hash


async def set_head(conn: AsyncConnection, seq: int, head_hash: str) -> None:
    await conn.execute(t.chain_head.update().where(t.chain_head.c.head_id == 1)
                       .values(seq=seq, head_hash=head_hash))


async def _with_postings(conn: AsyncConnection, rows) -> list[tuple]:
    """(row, entry, transfer) for these journal rows: each entry with its postings in
    posting id order, and for interbank entries the transfer's (from bank, to bank)."""
    ids = [row.entry_id for row in rows]
    postings: dict[int, list[tuple[str, int]]] = {i: [] for i in ids}
    if ids:
        for p in await conn.execute(sa.select(_P.c.entry_id, _P.c.account_id, _P.c.amount_fen)
                                    .where(_P.c.entry_id.in_(ids)).order_by(_P.c.posting_id)):
            postings[p.entry_id].append((p.account_id, p.amount_fen))
    transfer_ids = chain.transfer_ids(rows)
    transfers = {}
    if transfer_ids:
        transfers = {r.transfer_id: (r.from_bank, r.to_bank) for r in await conn.execute(
            sa.select(t.transfers.c.transfer_id, t.transfers.c.from_bank, t.transfers.c.to_bank)
            .where(t.transfers.c.transfer_id.in_(transfer_ids)))}
    return [(row, chain.JournalEntry(row.entry_id, row.kind, row.bank_id, row.reference,
                                     row.created_ms, tuple(postings[row.entry_id])),
             transfers.get(chain.transfer_id_of(row.reference) or ""))
            for row in rows]


async def unsealed(conn: AsyncConnection, limit: int) -> list[tuple]:
    """Up to `limit` committed entries not yet chained, in entry id order (the partial index
    holds only these), as (row, entry, transfer)."""
    rows = (await conn.execute(sa.select(_J).where(_J.c.chain_seq.is_(None))
                               .order_by(_J.c.entry_id).limit(limit))).all()
    return await _with_postings(conn, rows)


async def write_links(conn: AsyncConnection, links: list[tuple[chain.JournalEntry, int, str]]
                      ) -> None:
    """Give each entry its place and link; only an entry not chained yet takes one (the
    unique index on chain_seq refuses a second entry at the same place)."""
    await conn.execute(
        _J.update().where(_J.c.entry_id == sa.bindparam("b_entry"), _J.c.chain_seq.is_(None))
        .values(chain_seq=sa.bindparam("b_seq"), chain_hash=sa.bindparam("b_hash")),
        [{"b_entry": entry.entry_id, "b_seq": seq, "b_hash": link}
         for entry, seq, link in links])


async def add_totals(conn: AsyncConnection, deltas: dict[str, int]) -> None:
    """Add each delta to the chain's running total of its account (made at 0 if new)."""
    deltas = {a: d for a, d in deltas.items() if d}
    if not deltas:
        return
    c = t.chain_totals.c
    existing = set((await conn.execute(
        sa.select(c.account_id).where(c.account_id.in_(sorted(deltas))))).scalars())
    missing = sorted(set(deltas) - existing)
    if missing:
        await conn.execute(t.chain_totals.insert(),
                           [{"account_id": a, "balance_fen": 0} for a in missing])
    delta = sa.case({a: sa.literal(d, sa.BigInteger) for a, d in deltas.items()},
                    value=c.account_id)
    await conn.execute(t.chain_totals.update().where(c.account_id.in_(sorted(deltas)))
                       .values(balance_fen=c.balance_fen + delta))


async def totals(conn: AsyncConnection) -> dict[str, int]:
    return {r.account_id: r.balance_fen for r in await conn.execute(sa.select(t.chain_totals))}


# --- checkpoints ----------------------------------------------------------------------

async def latest_checkpoint(conn: AsyncConnection):
    return (await conn.execute(sa.select(t.checkpoints).order_by(t.checkpoints.c.seq.desc())
                               .limit(1))).first()


async def save_checkpoint(conn: AsyncConnection, statement: dict, now_ms: int) -> None:
    """Store the checkpoint of its head, or re-sign that head's checkpoint in place."""
    text = orjson.dumps(statement).decode()
    c = t.checkpoints.c
    updated = await conn.execute(t.checkpoints.update().where(c.seq == statement["seq"])
                                 .values(statement=text, signed_ms=now_ms))
    if updated.rowcount == 0:
        await conn.execute(t.checkpoints.insert().values(
            seq=statement["seq"], head_hash=statement["head_hash"], statement=text,
            created_ms=now_ms, signed_ms=now_ms))


async def recent_checkpoints(conn: AsyncConnection, limit: int) -> list[tuple[int, dict]]:
    """The latest `limit` checkpoints, oldest first: (when first signed, the statement)."""
    rows = (await conn.execute(sa.select(t.checkpoints.c.created_ms, t.checkpoints.c.statement)
                               .order_by(t.checkpoints.c.seq.desc()).limit(limit))).all()
    return [(r.created_ms, orjson.loads(r.statement)) for r in reversed(rows)]


async def all_checkpoints(conn: AsyncConnection) -> list[dict]:
    return [orjson.loads(r.statement) for r in await conn.execute(
        sa.select(t.checkpoints.c.statement).order_by(t.checkpoints.c.seq))]


# --- verification reads -----------------------------------------------------------------

async def links(conn: AsyncConnection, page: int = 1_000) -> AsyncIterator[tuple]:
    """Every chained entry as stored, in chain order: (seq, stored hash, entry, transfer),
    read a page at a time."""
    after = -1
    while True:
        rows = (await conn.execute(sa.select(_J).where(_J.c.chain_seq > after)
                                   .order_by(_J.c.chain_seq).limit(page))).all()
        if not rows:
            return
        for row, entry, transfer in await _with_postings(conn, rows):
            yield row.chain_seq, row.chain_hash, entry, transfer
        after = rows[-1].chain_seq


async def unsealed_count(conn: AsyncConnection) -> int:
    return (await conn.execute(sa.select(sa.func.count()).select_from(_J)
                               .where(_J.c.chain_seq.is_(None)))).scalar_one()


async def orphan_postings(conn: AsyncConnection) -> int:
    """Postings whose entry is gone (possible only where the foreign key was dropped)."""
    return (await conn.execute(sa.select(sa.func.count()).select_from(
        _P.outerjoin(_J, _J.c.entry_id == _P.c.entry_id)).where(_J.c.entry_id.is_(None))
    )).scalar_one()
