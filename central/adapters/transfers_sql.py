"""Interbank transfers in SQL: the row that says where each transfer stands, and the
conditional updates that let several processes deliver and finish transfers at once with
exactly one effect each."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from central import domain
from central.adapters import tables as t
from rail_protocol.canonical import canonical_bytes
from rail_service.db import index_scans_only

_T = t.transfers
_VIEW_COLUMNS = ("transfer_id", "from_bank", "to_bank", "amount_fen", "payee_wallet", "status",
                 "code", "created_ms", "updated_ms", "attempts", "next_attempt_ms")


async def find(conn: AsyncConnection, transfer_id: str):
    return (await conn.execute(sa.select(_T).where(_T.c.transfer_id == transfer_id))).first()


async def find_many(conn: AsyncConnection, transfer_ids) -> dict:
    """The rows of those of these transfers that exist, by transfer id."""
    rows = await conn.execute(sa.select(_T).where(_T.c.transfer_id.in_(sorted(transfer_ids))))
    return {row.transfer_id: row for row in rows}


async def insert_prepared(conn: AsyncConnection, orders: list[tuple[domain.TransferOrder, str]],
                          now_ms: int, lease_until_ms: int) -> None:
    """Record new transfers (each with its message's digest) as prepared and already
    claimed (attempts = 1, leased until `lease_until_ms`) by the request that prepares them,
    which delivers them at once. The primary key makes a concurrent first try of the same
    transfer fail here."""
    await conn.execute(_T.insert(), [{
        "transfer_id": order.transfer_id, "from_bank": order.from_bank,
        "to_bank": order.to_bank, "amount_fen": order.amount_fen,
        "payee_wallet": order.payee_wallet,
        "details": None if order.details is None else canonical_bytes(order.details).decode(),
        "digest": digest, "status": domain.TRANSFER_PREPARED, "code": None,
        "created_ms": now_ms, "updated_ms": now_ms, "attempts": 1,
        "next_attempt_ms": lease_until_ms,
    } for order, digest in orders])


async def due(conn: AsyncConnection, now_ms: int, limit: int) -> list:
    """Prepared transfers whose next delivery is due, oldest due first (a bounded batch);
    by index scan (`index_scans_only`: a transfer settled since the last vacuum left an
    entry behind in the index of due transfers, and the worker passes five times a second
    in each process)."""
    await index_scans_only(conn)
    return list((await conn.execute(
        sa.select(_T)
        .where(_T.c.status == domain.TRANSFER_PREPARED, _T.c.next_attempt_ms <= now_ms)
        .order_by(_T.c.next_attempt_ms, _T.c.transfer_id)
        .limit(limit)
    )).all())


def _prepared_locked(*conditions):
    """The ids of the prepared transfers that meet `conditions`, locked in id order: every
    statement that changes many transfer rows locks them this way, so two never deadlock."""
    return (sa.select(_T.c.transfer_id)
            .where(_T.c.status == domain.TRANSFER_PREPARED, *conditions)
            .order_by(_T.c.transfer_id)
            .with_for_update())


def _seen(tries: list[tuple[str, int]]):
    """Transfers whose `attempts` is still the count their claimer saw or made."""
    return sa.tuple_(_T.c.transfer_id, _T.c.attempts).in_(tries)


async def claim(conn: AsyncConnection, seen: list[tuple[str, int]],
                lease_until_ms: int) -> set[str]:
    """Take the next delivery of these transfers (id, attempts seen): each succeeds for one
    claimer only, since every claim bumps `attempts` and each claimer names the count it
    saw. The lease keeps other workers off them while this delivery runs; if the claimer
    dies, the lease runs out and another worker takes them. Returns the ids claimed."""
    result = await conn.execute(
        _T.update()
        .where(_T.c.transfer_id.in_(_prepared_locked(_seen(seen))), _seen(seen))
        .values(attempts=_T.c.attempts + 1, next_attempt_ms=lease_until_ms)
        .returning(_T.c.transfer_id, _T.c.created_ms)
    )
    return {row.transfer_id: row.created_ms for row in result}


async def postpone(conn: AsyncConnection, tries: list[tuple[str, int]], now_ms: int) -> None:
    """After unanswered deliveries (id, attempts made): try each again after its back-off,
    unless another claimer has taken it since (then its lease stands)."""
    delays = {attempts: domain.retry_delay_ms(attempts) for _id, attempts in tries}
    delay = sa.case({attempts: sa.literal(ms, sa.BigInteger) for attempts, ms in delays.items()},
                    value=_T.c.attempts)
    await conn.execute(
        _T.update()
        .where(_T.c.transfer_id.in_(_prepared_locked(_seen(tries))), _seen(tries))
        .values(next_attempt_ms=now_ms + delay, updated_ms=now_ms)
    )


async def finish(conn: AsyncConnection, transfer_ids: list[str], status: str,
                 code: str | None, now_ms: int) -> dict[str, int]:
    """Move these transfers out of `prepared`, once: the ids of those moved here, each with
    when it was prepared (`created_ms`); any that someone else finished first are left out
    (the row lock makes a concurrent finisher wait, then find it no longer prepared)."""
    result = await conn.execute(
        _T.update()
        .where(_T.c.transfer_id.in_(_prepared_locked(_T.c.transfer_id.in_(transfer_ids))),
               _T.c.status == domain.TRANSFER_PREPARED)
        .values(status=status, code=code, updated_ms=now_ms)
        .returning(_T.c.transfer_id, _T.c.created_ms)
    )
    return {row.transfer_id: row.created_ms for row in result}


async def prepared_count(conn: AsyncConnection) -> tuple[int, int | None]:
    """How many transfers wait for the payee bank's answer, and when the oldest was
    prepared (the `status` index keeps this cheap: prepared transfers are few)."""
    row = (await conn.execute(
        sa.select(sa.func.count(), sa.func.min(_T.c.created_ms))
        .where(_T.c.status == domain.TRANSFER_PREPARED)
    )).one()
    return int(row[0]), row[1]


async def prepared_sum(conn: AsyncConnection) -> int:
    """What the in_flight account must hold: the sum of transfers still prepared."""
    total = (await conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(_T.c.amount_fen), 0))
        .where(_T.c.status == domain.TRANSFER_PREPARED)
    )).scalar_one()
    return int(total)


def order_of(row) -> domain.TransferOrder:
    """The transfer as message 2 carries it, from its row."""
    return domain.TransferOrder(
        row.transfer_id, row.from_bank, row.to_bank, row.amount_fen, row.payee_wallet,
        None if row.details is None else orjson.loads(row.details))


def view(row) -> dict:
    """A transfer row as operators see it (the idempotency digest stays inside)."""
    return {**{name: getattr(row, name) for name in _VIEW_COLUMNS},
            "details": None if row.details is None else orjson.loads(row.details)}


async def page(conn: AsyncConnection, status: str | None, limit: int) -> list[dict]:
    query = sa.select(_T).order_by(_T.c.created_ms, _T.c.transfer_id).limit(limit)
    if status is not None:
        query = query.where(_T.c.status == status)
    return [view(row) for row in await conn.execute(query)]
