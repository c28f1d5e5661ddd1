"""Where the payment engine's batches are read and written: one interface, two databases.

The engine (bank/payment_engine.py, bank/credit_engine.py) locks what a batch reads, asks the
domain, and writes the batch's `batch_sql.Plan` in one transaction. It does so through a
`BatchStore`:

- `PgBatchStore`: PostgreSQL over asyncpg, each step one statement over arrays
  (bank/adapters/batch_sql.py), so a batch of any size is a fixed number of round trips;
  each batch loop keeps a connection of its own.
- `SqlBatchStore`: any SQLAlchemy engine, used for SQLite (the demo's embedded default).
  Its transactions begin IMMEDIATE (rail_service/db.py), so a batch holds the one write lock
  from its first read: the same read-decide-write is as safe as under PostgreSQL's row locks.
  Transaction ids are taken as max + 1.. under that lock, as the sequence gives them there.

Both answer in the same shapes (dicts keyed by column name), so the engine cannot tell them
apart."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bank.adapters import batch_sql as sql
from bank.adapters import books_sql
from bank.adapters import tables as t
from bank.adapters.books_sql import VaultShort
from bank.domain.mandates import MandateTerms
from bank.domain.payments import MandateState, RefundedPayment
from rail_protocol.errors import RailError
from rail_service.db import open_asyncpg_pool

_WALLET_COLUMNS = ("wallet_id", "status", "kyc_class", "balance_fen", "day", "spent_today_fen",
                   "topup_on_use", "deposit_account", "webhook_url")


def _refunded(row: dict) -> RefundedPayment:
    return RefundedPayment(row["txn_id"], row["kind"], row["status"], row["payer_wallet"],
                           row["payee_wallet"], row["amount_fen"], row["refunded_fen"] or 0,
                           row["pulled_fen"] or 0)


def _mandate(row: dict) -> MandateState:
    return MandateState(row["status"], MandateTerms(row["per_payment_cap_fen"], row["period"],
                                                    row["period_cap_fen"]),
                        row["used_fen"], row["period_key"])


class PgTx:
    """One PostgreSQL transaction of a batch, on an asyncpg connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def lock_orders(self, order_ids: list[str]) -> list[dict]:
        if not order_ids:
            return []
        return [dict(r) for r in await self.conn.fetch(sql.LOCK_ORDERS, order_ids)]

    async def lock_wallets(self, payers: list[str], payees: list[str],
                           capped_classes: list[int], new_ids: int
                           ) -> tuple[list[dict], list[int]]:
        """The wallets (locked: `payers` and the capped of `payees`; the other payees read)
        and `new_ids` transaction ids; a locked payee's row carries `pending_out`, what it
        has out that may come back, read after its lock."""
        rows: list[dict] = []
        ids: list[int] = []
        for r in await self.conn.fetch(sql.LOCK_WALLETS, payers, payees, capped_classes,
                                       new_ids):
            if r["wallet_id"] is None:
                ids.append(r["new_txn_id"])
            else:
                rows.append(dict(r))
        return rows, ids

    async def lock_mandates(self, mandate_ids: list[str]) -> dict[str, MandateState]:
        if not mandate_ids:
            return {}
        return {r["mandate_id"]: _mandate(r)
                for r in await self.conn.fetch(sql.LOCK_MANDATES, mandate_ids)}

    async def lock_deposits(self, accounts: list[str]) -> dict[str, int]:
        if not accounts:
            return {}
        return {r["account_id"]: r["balance_fen"]
                for r in await self.conn.fetch(sql.LOCK_DEPOSITS, accounts)}

    async def lock_refunded(self, transfer_ids: list[str]) -> dict[str, RefundedPayment]:
        if not transfer_ids:
            return {}
        return {r["transfer_id"]: _refunded(r)
                for r in await self.conn.fetch(sql.LOCK_REFUNDED, transfer_ids)}

    async def lock_payments(self, txn_ids: list[int]) -> dict[int, dict]:
        if not txn_ids:
            return {}
        return {r["txn_id"]: dict(r) for r in await self.conn.fetch(sql.LOCK_PAYMENTS, txn_ids)}

    async def write_extras(self, plan: sql.Plan) -> None:
        """Deposit money and the vault moved, mandates used, pulled amounts recorded."""
        if plan.mandates:
            ids = list(plan.mandates)
            await self.conn.execute(sql.SAVE_MANDATES, ids,
                                    [plan.mandates[m][0] for m in ids],
                                    [plan.mandates[m][1] for m in ids])
        if plan.pulled:
            await self.conn.execute(sql.SET_PULLED, list(plan.pulled), list(plan.pulled.values()))
        if plan.refunded:
            await self.conn.execute(sql.SET_REFUNDED, list(plan.refunded),
                                    list(plan.refunded.values()), plan.at_ms)
        if plan.refund_of:
            await self.conn.execute(sql.SET_REFUND_OF, list(plan.refund_of),
                                    list(plan.refund_of.values()))
        if plan.order_refunds:
            ids = list(plan.order_refunds)
            await self.conn.execute(sql.REFUND_ORDERS, ids,
                                    [plan.order_refunds[o][0] for o in ids],
                                    [plan.order_refunds[o][1] for o in ids], plan.at_ms)
        if plan.deposits:
            done = await self.conn.execute(sql.MOVE_DEPOSITS, list(plan.deposits),
                                           list(plan.deposits.values()))
            if done != f"UPDATE {len(plan.deposits)}":
                raise RailError("insufficient_deposit")
        if plan.vault_delta_fen:
            done = await self.conn.execute(sql.MOVE_VAULT, plan.vault_delta_fen)
            if done != "UPDATE 1":
                raise VaultShort(-plan.vault_delta_fen)

    async def write_payments(self, plan: sql.Plan) -> set[int]:
        wallets = list(plan.wallets.values())
        rows = await self.conn.fetch(
            sql.WRITE_PAYMENTS, *(plan.txn[k] for k in sql.TXN_COLUMNS),
            *(plan.postings[k] for k in sql.POSTING_COLUMNS),
            [w.wallet_id for w in wallets], [w.balance_fen for w in wallets],
            [w.day for w in wallets], [w.spent_today_fen for w in wallets],
            plan.credits["wallet"], plan.credits["amount"],
            *(plan.paid_orders[k] for k in sql.ORDER_COLUMNS),
            *(plan.hooks[k] for k in sql.HOOK_COLUMNS))
        return {r["txn_id"] for r in rows}

    async def write_credits(self, plan: sql.Plan) -> set[int]:
        wallets = list(plan.wallets.values())
        rows = await self.conn.fetch(
            sql.WRITE_CREDITS, *plan.txn.values(), *plan.postings.values(),
            [w.wallet_id for w in wallets], [w.balance_fen for w in wallets],
            *plan.credits.values(), *plan.paid_orders.values(), *plan.hooks.values())
        return {r["txn_id"] for r in rows}

    async def settle(self, txn_ids: list[int], at_ms: int) -> list[dict]:
        return [dict(r) for r in await self.conn.fetch(sql.SETTLE, txn_ids, at_ms)]

    async def insert_postings(self, postings: dict[str, list]) -> None:
        await self.conn.execute(sql.INSERT_POSTINGS, *postings.values())

    async def settle_with_postings(self, txn_ids: list[int], at_ms: int,
                                   per_fen: list[tuple[str, int]]) -> list[dict]:
        """`settle`, and each settled payment's postings (`per_fen`: the postings of one
        fen, times its amount): one statement."""
        return [dict(r) for r in await self.conn.fetch(
            sql.SETTLE_WITH_POSTINGS, txn_ids, at_ms, [a for a, _ in per_fen],
            [f for _, f in per_fen])]

    async def insert_orders(self, columns: list[tuple]) -> set[str]:
        return {r["order_id"] for r in await self.conn.fetch(sql.INSERT_ORDERS, *columns)}

    async def known_transfers(self, transfer_ids: list[str]) -> dict[str, dict]:
        return {r["transfer_id"]: dict(r)
                for r in await self.conn.fetch(sql.KNOWN_TRANSFERS, transfer_ids)}

    async def wallet_by(self, column: str, value: str) -> dict | None:
        row = await self.conn.fetchrow(sql.WALLET_BY + f"{column} = $1", value)
        return dict(row) if row is not None else None

    async def retry_later(self, txn_ids: list[int], next_attempts_ms: list[int]) -> None:
        await self.conn.execute(sql.RETRY_LATER, txn_ids, next_attempts_ms)


class PgBatchStore:
    """Batches on PostgreSQL, over a small asyncpg pool of the engine's own (no pre-ping)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, engine: AsyncEngine, size: int) -> PgBatchStore:
        return cls(await open_asyncpg_pool(engine, size))

    @property
    def loop_pool(self) -> Any:
        """What a `Batcher` keeps a connection of per loop."""
        return self.pool

    @contextlib.asynccontextmanager
    async def connection(self, conn: Any = None) -> AsyncIterator[Any]:
        if conn is not None:
            yield conn
            return
        async with self.pool.acquire() as acquired:
            yield acquired

    @contextlib.asynccontextmanager
    async def transaction(self, conn: Any = None) -> AsyncIterator[PgTx]:
        async with self.connection(conn) as c, c.transaction():
            yield PgTx(c)

    @contextlib.asynccontextmanager
    async def single(self, conn: Any = None) -> AsyncIterator[PgTx]:
        """Single statements, each its own transaction (no BEGIN/COMMIT round trips)."""
        async with self.connection(conn) as c:
            yield PgTx(c)

    async def aclose(self) -> None:
        await self.pool.close()


class SqlTx:
    """One transaction of a batch through SQLAlchemy Core (SQLite: BEGIN IMMEDIATE)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _rows(self, stmt) -> list[dict]:
        return [dict(r) for r in (await self.conn.execute(stmt)).mappings()]

    async def lock_orders(self, order_ids: list[str]) -> list[dict]:
        if not order_ids:
            return []
        o = t.orders.c
        return await self._rows(sa.select(o.order_id, o.merchant_wallet, o.amount_fen, o.status,
                                          o.expires_ms).where(o.order_id.in_(order_ids))
                                .order_by(o.order_id).with_for_update())

    async def lock_wallets(self, payers: list[str], payees: list[str],
                           capped_classes: list[int], new_ids: int
                           ) -> tuple[list[dict], list[int]]:
        w = t.wallets.c
        columns = [w[name] for name in _WALLET_COLUMNS]
        locked = await self._rows(sa.select(*columns).where(sa.or_(
            w.wallet_id.in_(payers),
            sa.and_(w.wallet_id.in_(payees), w.kyc_class.in_(capped_classes))))
            .order_by(w.wallet_id).with_for_update())
        ids = [r["wallet_id"] for r in locked]
        c = t.wallet_credits.c
        folded = dict((await self.conn.execute(
            sa.select(c.wallet_id, sa.func.sum(c.amount_fen)).where(c.wallet_id.in_(ids))
            .group_by(c.wallet_id))).all()) if ids else {}
        if folded:
            await self.conn.execute(t.wallet_credits.delete().where(
                c.wallet_id.in_(list(folded))))
        unlocked = await self._rows(sa.select(*columns).where(
            w.wallet_id.in_(payees), w.wallet_id.not_in(ids)))
        x = t.transactions.c
        top = (await self.conn.execute(sa.select(sa.func.max(x.txn_id)))).scalar() or 0
        wanted = set(payees)
        locked_payees = [r["wallet_id"] for r in locked if r["wallet_id"] in wanted]
        pending = await books_sql.pending_out(self.conn, locked_payees)
        return ([{**r, "locked": True, "folded": int(folded.get(r["wallet_id"], 0)),
                  "pending_out": pending.get(r["wallet_id"], 0)
                  if r["wallet_id"] in wanted else None} for r in locked]
                + [{**r, "locked": False, "folded": 0, "pending_out": None} for r in unlocked],
                list(range(top + 1, top + 1 + new_ids)))

    async def _insert_new(self, rows: list[dict]) -> set[int]:
        """Transaction rows, each skipped if its instruction (or transfer) is recorded."""
        written: set[int] = set()
        for row in rows:
            got = (await self.conn.execute(sqlite_insert(t.transactions).values(**row)
                                           .on_conflict_do_nothing()
                                           .returning(t.transactions.c.txn_id))).first()
            if got is not None:
                written.add(got[0])
        return written

    async def _write_common(self, plan: sql.Plan) -> None:
        """Postings, appended credits, paid orders and webhooks: the same for both plans."""
        if plan.postings["txn_id"]:
            await self.conn.execute(t.postings.insert(), [
                {"txn_id": n, "account": a, "amount_fen": v} for n, a, v in zip(
                    *(plan.postings[k] for k in sql.POSTING_COLUMNS), strict=True)])
        if plan.credits["wallet"]:
            await self.conn.execute(t.wallet_credits.insert(), [
                {"wallet_id": w, "amount_fen": v}
                for w, v in zip(plan.credits["wallet"], plan.credits["amount"], strict=True)])
        o = t.orders.c
        for order_id, payer, at, txn in zip(*(plan.paid_orders[k] for k in sql.ORDER_COLUMNS),
                                            strict=True):
            await self.conn.execute(t.orders.update().where(o.order_id == order_id).values(
                status="paid", payer_wallet=payer, updated_ms=at, paid_txn_id=txn))
        if plan.hooks["merchant"]:
            await self.conn.execute(t.webhook_deliveries.insert(), [
                {"merchant_wallet": m, "txn_id": n, "event": e, "url": u, "status": "pending",
                 "attempts": 0, "next_attempt_ms": at, "created_ms": at}
                for m, n, e, u, at in zip(*(plan.hooks[k] for k in sql.HOOK_COLUMNS),
                                          strict=True)])

    async def lock_mandates(self, mandate_ids: list[str]) -> dict[str, MandateState]:
        if not mandate_ids:
            return {}
        m = t.mandates.c
        return {r["mandate_id"]: _mandate(r) for r in await self._rows(
            sa.select(m.mandate_id, m.status, m.per_payment_cap_fen, m.period, m.period_cap_fen,
                      m.used_fen, m.period_key).where(m.mandate_id.in_(mandate_ids))
            .order_by(m.mandate_id).with_for_update())}

    async def lock_refunded(self, transfer_ids: list[str]) -> dict[str, RefundedPayment]:
        if not transfer_ids:
            return {}
        x = t.transactions.c
        return {r["transfer_id"]: _refunded(r) for r in await self._rows(
            sa.select(x.txn_id, x.transfer_id, x.kind, x.status, x.payer_wallet,
                      x.payee_wallet, x.amount_fen, x.refunded_fen, x.pulled_fen)
            .where(x.transfer_id.in_(transfer_ids)).order_by(x.txn_id).with_for_update())}

    async def lock_payments(self, txn_ids: list[int]) -> dict[int, dict]:
        if not txn_ids:
            return {}
        x = t.transactions.c
        rows = await self._rows(
            sa.select(x.txn_id, x.transfer_id, x.kind, x.status, x.payer_wallet, x.payee_wallet,
                      x.amount_fen, x.order_id, x.counterparty_bank, x.refunded_fen,
                      x.pulled_fen).where(x.txn_id.in_(txn_ids)).order_by(x.txn_id)
            .with_for_update())
        return {r["txn_id"]: {**r, "refunded_fen": r["refunded_fen"] or 0,
                              "pulled_fen": r["pulled_fen"] or 0} for r in rows}

    async def lock_deposits(self, accounts: list[str]) -> dict[str, int]:
        if not accounts:
            return {}
        d = t.deposit_accounts.c
        return {r["account_id"]: r["balance_fen"] for r in await self._rows(
            sa.select(d.account_id, d.balance_fen).where(d.account_id.in_(accounts))
            .order_by(d.account_id).with_for_update())}

    async def write_extras(self, plan: sql.Plan) -> None:
        """Deposit money and the vault moved, mandates used, pulled amounts recorded."""
        m, x = t.mandates.c, t.transactions.c
        for mandate_id, (period_key, used) in plan.mandates.items():
            await self.conn.execute(t.mandates.update().where(m.mandate_id == mandate_id)
                                    .values(period_key=period_key, used_fen=used))
        for txn_id, pulled in plan.pulled.items():
            await self.conn.execute(t.transactions.update().where(x.txn_id == txn_id)
                                    .values(pulled_fen=pulled))
        for txn_id, refunded in plan.refunded.items():
            await self.conn.execute(t.transactions.update().where(x.txn_id == txn_id)
                                    .values(refunded_fen=refunded, updated_ms=plan.at_ms))
        for txn_id, refund_of in plan.refund_of.items():
            await self.conn.execute(t.transactions.update().where(x.txn_id == txn_id)
                                    .values(refund_of=refund_of))
        o = t.orders.c
        for order_id, (refunded, status) in plan.order_refunds.items():
            await self.conn.execute(t.orders.update().where(o.order_id == order_id).values(
                refunded_fen=refunded, status=status, updated_ms=plan.at_ms))
        for account, delta in plan.deposits.items():
            await books_sql.move_deposit(self.conn, account, delta)
        await books_sql.move_vault(self.conn, plan.vault_delta_fen)

    async def write_payments(self, plan: sql.Plan) -> set[int]:
        cols = plan.txn
        written = await self._insert_new([{
            "txn_id": n, "kind": kind, "signer": signer, "instruction_id": iid,
            "digest": digest, "status": status, "code": code, "amount_fen": amount,
            "expires_ms": expires, "created_ms": created, "updated_ms": created,
            "result": result, "payer_wallet": payer, "payee_wallet": payee, "memo": memo,
            "order_id": order_id, "counterparty_bank": counterparty,
            "transfer_id": transfer_id, "next_attempt_ms": next_attempt}
            for (n, kind, signer, iid, digest, status, code, amount, expires, created, result,
                 payer, payee, memo, order_id, counterparty, transfer_id, next_attempt)
            in zip(*(cols[k] for k in sql.TXN_COLUMNS), strict=True)])
        await self._write_common(plan)
        w = t.wallets.c
        for state in plan.wallets.values():
            await self.conn.execute(t.wallets.update().where(w.wallet_id == state.wallet_id)
                                    .values(balance_fen=state.balance_fen, day=state.day,
                                            spent_today_fen=state.spent_today_fen))
        return written

    async def write_credits(self, plan: sql.Plan) -> set[int]:
        cols = plan.txn
        written = await self._insert_new([{
            "txn_id": n, "kind": "interbank_in", "signer": signer,
            "instruction_id": transfer_id, "transfer_id": transfer_id, "digest": digest,
            "status": status, "code": code, "amount_fen": amount, "expires_ms": expires,
            "created_ms": at, "updated_ms": at, "result": "{}", "payer_wallet": payer,
            "payee_wallet": payee, "order_id": order_id, "counterparty_bank": from_bank}
            for (n, signer, transfer_id, digest, status, code, amount, expires, at, payer,
                 payee, order_id, from_bank)
            in zip(*(cols[k] for k in sql.CREDIT_TXN_COLUMNS), strict=True)])
        await self._write_common(plan)
        w = t.wallets.c
        for state in plan.wallets.values():
            await self.conn.execute(t.wallets.update().where(w.wallet_id == state.wallet_id)
                                    .values(balance_fen=state.balance_fen))
        return written

    async def settle(self, txn_ids: list[int], at_ms: int) -> list[dict]:
        x = t.transactions.c
        return await self._rows(t.transactions.update().where(
            x.txn_id.in_(txn_ids), x.status == "processing").values(
            status="settled", updated_ms=at_ms).returning(x.txn_id, x.amount_fen))

    async def insert_postings(self, postings: dict[str, list]) -> None:
        await self.conn.execute(t.postings.insert(), [
            {"txn_id": n, "account": a, "amount_fen": v}
            for n, a, v in zip(*(postings[k] for k in sql.POSTING_COLUMNS), strict=True)])

    async def settle_with_postings(self, txn_ids: list[int], at_ms: int,
                                   per_fen: list[tuple[str, int]]) -> list[dict]:
        rows = await self.settle(txn_ids, at_ms)
        if rows:
            await self.conn.execute(t.postings.insert(), [
                {"txn_id": r["txn_id"], "account": account, "amount_fen": fen * r["amount_fen"]}
                for r in rows for account, fen in per_fen])
        return rows

    async def insert_orders(self, columns: list[tuple]) -> set[str]:
        inserted: set[str] = set()
        for order_id, merchant, reference, description, amount, created, expires in zip(
                *columns, strict=True):
            got = (await self.conn.execute(sqlite_insert(t.orders).values(
                order_id=order_id, merchant_wallet=merchant, reference=reference,
                description=description, amount_fen=amount, status="created", refunded_fen=0,
                created_ms=created, expires_ms=expires, updated_ms=created)
                .on_conflict_do_nothing().returning(t.orders.c.order_id))).first()
            if got is not None:
                inserted.add(got[0])
        return inserted

    async def known_transfers(self, transfer_ids: list[str]) -> dict[str, dict]:
        x = t.transactions.c
        return {r["transfer_id"]: r for r in await self._rows(
            sa.select(x.transfer_id, x.status, x.code).where(x.transfer_id.in_(transfer_ids)))}

    async def wallet_by(self, column: str, value: str) -> dict | None:
        w = t.wallets.c
        rows = await self._rows(sa.select(w.wallet_id, w.key_id, w.public_key, w.kind,
                                          w.merchant_name, w.mcc, w.city)
                                .where(w[column] == value))
        return rows[0] if rows else None

    async def retry_later(self, txn_ids: list[int], next_attempts_ms: list[int]) -> None:
        x = t.transactions.c
        for txn_id, next_ms in zip(txn_ids, next_attempts_ms, strict=True):
            await self.conn.execute(t.transactions.update().where(x.txn_id == txn_id)
                                    .values(next_attempt_ms=next_ms))


class SqlBatchStore:
    """Batches through a SQLAlchemy engine: SQLite, one writer at a time."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    loop_pool = None   # a `Batcher` loop opens a transaction per batch instead

    @contextlib.asynccontextmanager
    async def connection(self, conn: Any = None) -> AsyncIterator[None]:
        yield None

    @contextlib.asynccontextmanager
    async def transaction(self, conn: Any = None) -> AsyncIterator[SqlTx]:
        async with self.engine.begin() as c:
            yield SqlTx(c)

    single = transaction   # on SQLite, one transaction around them (the write lock)

    async def aclose(self) -> None:
        return None


BatchStore = PgBatchStore | SqlBatchStore


async def open_store(engine: AsyncEngine, pool_size: int) -> BatchStore:
    """The store for `engine`'s database."""
    if engine.url.get_backend_name() == "postgresql":
        return await PgBatchStore.open(engine, pool_size)
    return SqlBatchStore(engine)
