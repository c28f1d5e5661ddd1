"""A bank's books in SQL: wallets locked for a debit, credits appended, balances kept beside
the postings in the same transaction, and everything the audit recomputes."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bank.adapters import tables as t
from bank.domain.holds import HELD_KINDS
from bank.domain.ledger import VAULT, Posting
from bank.domain.wallets import OPEN
from bank.domain.orders import PAID, OrderState
from bank.domain.wallets import MAY_COME_BACK, ClassLimits, WalletState
from rail_protocol.errors import RailError
from rail_service.db import index_scans_only


async def class_limits(conn: AsyncConnection) -> dict[int, ClassLimits]:
    rows = await conn.execute(sa.select(t.wallet_classes))
    return {r.kyc_class: ClassLimits(r.kyc_class, r.balance_cap_fen, r.per_payment_cap_fen,
                                     r.daily_cap_fen) for r in rows}


async def wallet_row(conn: AsyncConnection, wallet_id: str, *, lock: bool = False):
    stmt = sa.select(t.wallets).where(t.wallets.c.wallet_id == wallet_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).first()


async def wallet_by_key(conn: AsyncConnection, key_id: str):
    return (await conn.execute(sa.select(t.wallets).where(t.wallets.c.key_id == key_id))).first()


async def lock_wallet(conn: AsyncConnection, wallet_id: str, *,
                      for_credit: bool = False) -> tuple[object, WalletState]:
    """Lock the wallet's row and fold its appended credits into its balance. Everything a
    debit decides is then decided on a balance no one else can change under it. For a
    credit, also count the wallet's payments still in flight to other banks: should one be
    refused, its money comes back, and it must fit under the balance cap."""
    row = await wallet_row(conn, wallet_id, lock=True)
    if row is None:
        raise RailError("unknown_wallet", f"no wallet {wallet_id} at this bank")
    folded = (await conn.execute(
        t.wallet_credits.delete().where(t.wallet_credits.c.wallet_id == wallet_id)
        .returning(t.wallet_credits.c.amount_fen)
    )).scalars().all()
    state = WalletState(
        wallet_id=row.wallet_id, status=row.status, kyc_class=row.kyc_class,
        balance_fen=row.balance_fen + sum(folded), day=row.day,
        spent_today_fen=row.spent_today_fen, topup_on_use=row.topup_on_use,
        deposit_account=row.deposit_account,
    )
    if for_credit:
        state.pending_out_fen = (await pending_out(conn, [wallet_id])).get(wallet_id, 0)
    return row, state


async def pending_out(conn: AsyncConnection, wallet_ids: list[str]) -> dict[str, int]:
    """What each wallet has out that may come back (MAY_COME_BACK, still processing), for
    those that have any; read after the wallets' locks (PostgreSQL's batches read it in
    their lock statement instead: bank migration 0009 `wallet_pending_out`)."""
    if not wallet_ids:
        return {}
    x = t.transactions.c
    rows = await conn.execute(
        sa.select(x.payer_wallet, sa.func.sum(x.amount_fen)).where(
            x.payer_wallet.in_(wallet_ids), x.kind.in_(MAY_COME_BACK),
            x.status == "processing").group_by(x.payer_wallet))
    return {wallet_id: int(fen) for wallet_id, fen in rows}


async def due(conn: AsyncConnection, status: str, now_ms: int, limit: int) -> list[int]:
    """The transactions in `status` (processing: the outbox's; pending: the vault's) whose
    next attempt is due, soonest first; by index scan (`index_scans_only`: a payment settled
    since the last vacuum left an entry behind in the index of due rows)."""
    await index_scans_only(conn)
    x = t.transactions.c
    return list((await conn.execute(
        sa.select(x.txn_id).where(x.status == status, x.next_attempt_ms <= now_ms)
        .order_by(x.next_attempt_ms).limit(limit))).scalars().all())


async def save_wallet(conn: AsyncConnection, state: WalletState) -> None:
    """Write back a locked wallet's balance and daily spend."""
    await conn.execute(
        t.wallets.update().where(t.wallets.c.wallet_id == state.wallet_id)
        .values(balance_fen=state.balance_fen, day=state.day,
                spent_today_fen=state.spent_today_fen)
    )


async def append_credit(conn: AsyncConnection, wallet_id: str, amount_fen: int) -> None:
    """Credit a wallet without touching its row: the hot-merchant path."""
    if amount_fen:
        await conn.execute(t.wallet_credits.insert().values(wallet_id=wallet_id,
                                                            amount_fen=amount_fen))


async def piled_credits(conn: AsyncConnection, at_least: int, wallets: int) -> list[str]:
    """Up to `wallets` wallets with at least `at_least` appended credits, in id order."""
    c = t.wallet_credits.c
    return list((await conn.execute(
        sa.select(c.wallet_id).group_by(c.wallet_id).having(sa.func.count() >= at_least)
        .order_by(c.wallet_id).limit(wallets))).scalars())


async def fold_piled_credits(conn: AsyncConnection, at_least: int, wallets: int) -> int:
    """Fold the appended credits of up to `wallets` wallets that have at least `at_least` of
    them into their balances, as a debit folds them: the rows locked in wallet-id order
    first (as every path takes them), then their credits deleted and added. A credit
    appended meanwhile is left for the next fold. Returns how many credits were folded."""
    c, w = t.wallet_credits.c, t.wallets.c
    piled = await piled_credits(conn, at_least, wallets)
    if not piled:
        return 0
    await conn.execute(sa.select(w.wallet_id).where(w.wallet_id.in_(piled))
                       .order_by(w.wallet_id).with_for_update())
    totals: dict[str, int] = {}
    folded = 0
    for wallet_id, amount in await conn.execute(
            t.wallet_credits.delete().where(c.wallet_id.in_(piled))
            .returning(c.wallet_id, c.amount_fen)):
        totals[wallet_id] = totals.get(wallet_id, 0) + amount
        folded += 1
    for wallet_id, total in sorted(totals.items()):
        await conn.execute(t.wallets.update().where(w.wallet_id == wallet_id)
                           .values(balance_fen=w.balance_fen + total))
    return folded


async def wallet_balance(conn: AsyncConnection, wallet_id: str) -> int:
    """The folded balance plus the credits not yet folded, read in ONE statement: a debit
    folding them between two reads would otherwise make them vanish from the answer."""
    credits = (sa.select(sa.func.coalesce(sa.func.sum(t.wallet_credits.c.amount_fen), 0))
               .where(t.wallet_credits.c.wallet_id == wallet_id).scalar_subquery())
    value = (await conn.execute(
        sa.select(t.wallets.c.balance_fen + credits).where(t.wallets.c.wallet_id == wallet_id)
    )).scalar_one_or_none()
    if value is None:
        raise RailError("unknown_wallet")
    return int(value)


# --- deposit accounts and the vault: guarded balances, conditional updates ------------

async def move_deposit(conn: AsyncConnection, account_id: str, delta_fen: int) -> None:
    """Move a deposit account's balance; a debit happens only if the balance covers it."""
    if not delta_fen:
        return
    stmt = (t.deposit_accounts.update()
            .where(t.deposit_accounts.c.account_id == account_id)
            .values(balance_fen=t.deposit_accounts.c.balance_fen + delta_fen))
    if delta_fen < 0:
        stmt = stmt.where(t.deposit_accounts.c.balance_fen >= -delta_fen)
    if (await conn.execute(stmt)).rowcount != 1:
        raise RailError("insufficient_deposit")


async def deposit_balance(conn: AsyncConnection, account_id: str | None) -> int:
    if not account_id:
        return 0
    value = (await conn.execute(
        sa.select(t.deposit_accounts.c.balance_fen)
        .where(t.deposit_accounts.c.account_id == account_id)
    )).scalar_one_or_none()
    return value or 0


class VaultShort(Exception):
    """The vault cannot cover a movement; the service refills it from central and retries."""

    def __init__(self, needed_fen: int) -> None:
        self.needed_fen = needed_fen


async def move_vault(conn: AsyncConnection, delta_fen: int) -> None:
    if not delta_fen:
        return
    stmt = (t.system_balances.update().where(t.system_balances.c.account == VAULT)
            .values(balance_fen=t.system_balances.c.balance_fen + delta_fen))
    if delta_fen < 0:
        stmt = stmt.where(t.system_balances.c.balance_fen >= -delta_fen)
    if (await conn.execute(stmt)).rowcount != 1:
        raise VaultShort(-delta_fen)


async def vault_balance(conn: AsyncConnection) -> int:
    return (await conn.execute(
        sa.select(t.system_balances.c.balance_fen).where(t.system_balances.c.account == VAULT)
    )).scalar_one()


# --- transactions and postings ---------------------------------------------------------

async def insert_transaction(conn: AsyncConnection, **values) -> int:
    return (await conn.execute(
        t.transactions.insert().values(**values).returning(t.transactions.c.txn_id)
    )).scalar_one()


async def insert_postings(conn: AsyncConnection, txn_id: int, postings: Iterable[Posting]) -> None:
    rows = [{"txn_id": txn_id, "account": p.account, "amount_fen": p.amount_fen}
            for p in postings]
    if rows:
        await conn.execute(t.postings.insert(), rows)


async def find_transaction(conn: AsyncConnection, signer: str, instruction_id: str):
    return (await conn.execute(
        sa.select(t.transactions).where(t.transactions.c.signer == signer,
                                        t.transactions.c.instruction_id == instruction_id)
    )).first()


async def transaction_by_id(conn: AsyncConnection, txn_id: int):
    return (await conn.execute(
        sa.select(t.transactions).where(t.transactions.c.txn_id == txn_id))).first()


async def transaction_by_transfer(conn: AsyncConnection, transfer_id: str):
    return (await conn.execute(
        sa.select(t.transactions).where(t.transactions.c.transfer_id == transfer_id))).first()


async def set_transaction_status(conn: AsyncConnection, txn_id: int, *, from_status: str,
                                 to_status: str, now_ms: int, **values) -> bool:
    """Change a transaction's status only from the one expected: the second of two racing
    finishers changes nothing and learns so."""
    result = await conn.execute(
        t.transactions.update()
        .where(t.transactions.c.txn_id == txn_id, t.transactions.c.status == from_status)
        .values(status=to_status, updated_ms=now_ms, **values)
    )
    return result.rowcount == 1


# --- audit reads -------------------------------------------------------------------------

async def audit_inputs(conn: AsyncConnection) -> dict:
    posted = {
        r.account: int(r.total) for r in await conn.execute(
            sa.select(t.postings.c.account, sa.func.sum(t.postings.c.amount_fen).label("total"))
            .group_by(t.postings.c.account))
    }
    # Each transaction balances within each ledger (e-CNY, deposit money): summed by the
    # database, so only a transaction that does not balance comes back, never every posting.
    unbalanced = sorted({r.txn_id for r in await conn.execute(
        sa.select(t.postings.c.txn_id)
        .group_by(t.postings.c.txn_id, t.postings.c.account.startswith("dep:"))
        .having(sa.func.sum(t.postings.c.amount_fen) != 0))})
    credits = {
        r.wallet_id: int(r.total) for r in await conn.execute(
            sa.select(t.wallet_credits.c.wallet_id,
                      sa.func.sum(t.wallet_credits.c.amount_fen).label("total"))
            .group_by(t.wallet_credits.c.wallet_id))
    }
    wallets = [
        {"wallet_id": r.wallet_id, "kyc_class": r.kyc_class,
         "balance_fen": r.balance_fen + credits.get(r.wallet_id, 0)}
        for r in await conn.execute(sa.select(t.wallets.c.wallet_id, t.wallets.c.kyc_class,
                                              t.wallets.c.balance_fen))
    ]
    deposits = {r.account_id: r.balance_fen
                for r in await conn.execute(sa.select(t.deposit_accounts))}
    processing = await processing_out(conn)
    held_pending = int((await conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(t.transactions.c.amount_fen), 0))
        .where(t.transactions.c.kind.in_(HELD_KINDS),
               t.transactions.c.status == "processing"))).scalar_one())
    return {"posted": posted, "position": await position(conn),
            "unbalanced_txns": unbalanced, "wallets": wallets,
            "deposits": deposits, "vault_fen": await vault_balance(conn),
            "limits": await class_limits(conn), "processing_out": processing,
            "held_pending_fen": held_pending}


async def processing_out(conn: AsyncConnection) -> list[dict]:
    """Payments to other banks still processing (read by the in-flight index, so only
    those)."""
    return [{"transfer_id": r.transfer_id, "amount_fen": r.amount_fen}
            for r in await conn.execute(
                sa.select(t.transactions.c.transfer_id, t.transactions.c.amount_fen)
                .where(t.transactions.c.kind == "interbank_out",
                       t.transactions.c.status == "processing"))]


async def count_status(conn: AsyncConnection, status: str) -> int:
    """How many transactions are in `status` (pending or processing: the due index holds
    only those)."""
    return (await conn.execute(sa.select(sa.func.count()).where(
        t.transactions.c.status == status))).scalar_one()


async def position(conn: AsyncConnection) -> dict[str, int]:
    """The bank's position accounts (`central`, `redeem_out`) as posted: the sum of what the
    trigger on postings appended (migration 0011), a few rows once folded."""
    d = t.position_deltas.c
    return {r.account: int(r.total) for r in await conn.execute(
        sa.select(d.account, sa.func.sum(d.amount_fen).label("total")).group_by(d.account))}


async def position_rows(conn: AsyncConnection) -> int:
    return (await conn.execute(sa.select(sa.func.count()).select_from(t.position_deltas))
            ).scalar_one()


async def fold_position(conn: AsyncConnection) -> None:
    """Replace the appended deltas by one row per account, in the caller's transaction. On
    PostgreSQL one statement: the rows it deletes are the ones it sums, and a delta appended
    meanwhile stays for the next fold. SQLite's one writer holds the database throughout."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("""
WITH d AS (DELETE FROM position_deltas RETURNING account, amount_fen)
INSERT INTO position_deltas (account, amount_fen)
SELECT account, sum(amount_fen) FROM d GROUP BY account"""))
        return
    sums = await position(conn)
    await conn.execute(t.position_deltas.delete())
    if sums:
        await conn.execute(t.position_deltas.insert(),
                           [{"account": a, "amount_fen": v} for a, v in sums.items()])


async def lock_order(conn: AsyncConnection, order_id: str) -> OrderState | None:
    """Lock an order for paying it: of two wallets paying it at once, the second waits and
    then finds it paid."""
    row = (await conn.execute(sa.select(t.orders).where(
        t.orders.c.order_id == order_id).with_for_update())).first()
    if row is None:
        return None
    return OrderState(row.order_id, row.merchant_wallet, row.amount_fen, row.status,
                      row.expires_ms, row.refunded_fen)


async def mark_order_paid(conn: AsyncConnection, order_id: str, payer_wallet: str, at_ms: int,
                          txn_id: int | None = None) -> None:
    values = {"status": PAID, "payer_wallet": payer_wallet, "updated_ms": at_ms}
    if txn_id is not None:
        values["paid_txn_id"] = txn_id
    await conn.execute(t.orders.update().where(t.orders.c.order_id == order_id).values(**values))


# --- operator views (the dashboard: bank/dashboard.py) ----------------------------------

async def open_wallets_by_class(conn: AsyncConnection) -> dict[int, int]:
    w = t.wallets.c
    return {r.kyc_class: r.n for r in await conn.execute(
        sa.select(w.kyc_class, sa.func.count().label("n"))
        .where(w.status == OPEN).group_by(w.kyc_class))}


async def unfinished(conn: AsyncConnection, statuses: list[str]
                     ) -> dict[str, tuple[int, int | None]]:
    """How many transactions are in each of these statuses, and the oldest one's
    `created_ms` (the `status` index: unfinished ones are few)."""
    c = t.transactions.c
    return {r.status: (r.n, r.oldest) for r in await conn.execute(
        sa.select(c.status, sa.func.count().label("n"), sa.func.min(c.created_ms).label("oldest"))
        .where(c.status.in_(statuses)).group_by(c.status))}


async def webhooks_pending(conn: AsyncConnection) -> tuple[int, int | None]:
    """Webhook deliveries not yet acknowledged, and the oldest one's `created_ms`."""
    c = t.webhook_deliveries.c
    row = (await conn.execute(sa.select(sa.func.count(), sa.func.min(c.created_ms))
                              .where(c.status == "pending"))).one()
    return int(row[0]), row[1]
