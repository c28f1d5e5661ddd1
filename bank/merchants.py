"""The merchant desk of a bank node: orders with dynamic QR codes, the static QR code,
webhooks (signed, retried until acknowledged, logged) and live events for cashier pages.
Money moves only through `Bank` (payments and refunds); this module never posts."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bank.adapters import tables as t
from bank.domain import events, orders
from bank.domain.wallets import MERCHANT
from bank.services import Bank
from bank.webhook_targets import check_webhook_url
from rail_protocol import qr
from rail_protocol.envelope import check_live, now_ms, sign_statement
from rail_protocol.errors import RailError

log = logging.getLogger("yuanrail.bank.merchants")

from rail_protocol.instruction_types import CANCEL_ORDER, CREATE_ORDER, MERCHANT_SETTINGS  # noqa: E402

WEBHOOK_TIMEOUT_S = 3.0
WEBHOOK_MAX_ATTEMPTS = 12


def webhook_delay_ms(attempts: int) -> int:
    """Backoff between webhook tries: 0.5 s doubling, capped at 60 s."""
    return min(500 * 2 ** max(attempts - 1, 0), 60_000)


class MerchantDesk:
    def __init__(self, bank: Bank, *, http: httpx.AsyncClient | None = None,
                 allowed_hosts: Collection[str] = ()) -> None:
        self.bank = bank
        self.allowed_hosts = frozenset(allowed_hosts)
        self.http = http or httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _merchant(self, raw: object, kind: str):
        env, wallet = await self.bank.signed_by_wallet(raw, kind, "merchant_wallet")
        check_live(env)
        if wallet.kind != MERCHANT:
            raise RailError("not_a_merchant")
        return env, wallet

    # --- orders -------------------------------------------------------------------------

    async def create_order(self, raw: object) -> dict:
        """Create an order and its dynamic QR. The merchant's own reference makes it
        idempotent: the same reference and amount give the same order."""
        env, merchant = await self._merchant(raw, CREATE_ORDER)
        request = orders.parse_new_order(env.body)
        amount, reference = request.amount_fen, request.reference
        description, ttl_ms = request.description, request.ttl_ms
        at = now_ms()
        order_id = "O" + secrets.token_hex(8)
        try:
            async with self.bank.engine.begin() as conn:
                await conn.execute(t.orders.insert().values(
                    order_id=order_id, merchant_wallet=merchant.wallet_id, reference=reference,
                    description=description, amount_fen=amount, status=orders.CREATED,
                    refunded_fen=0, created_ms=at, expires_ms=at + ttl_ms, updated_ms=at))
        except IntegrityError:
            async with self.bank.engine.connect() as conn:
                row = (await conn.execute(sa.select(t.orders).where(
                    t.orders.c.merchant_wallet == merchant.wallet_id,
                    t.orders.c.reference == reference))).first()
            if row is None or row.amount_fen != amount:
                raise RailError("order_reference_reused") from None
            order_id = row.order_id
        return await self.order_view(order_id)

    async def cancel_order(self, raw: object) -> dict:
        env, merchant = await self._merchant(raw, CANCEL_ORDER)
        order_id = env.body.get("order_id")
        async with self.bank.engine.begin() as conn:
            done = await conn.execute(t.orders.update().where(
                t.orders.c.order_id == order_id,
                t.orders.c.merchant_wallet == merchant.wallet_id,
                t.orders.c.status == orders.CREATED).values(
                status=orders.CANCELLED, updated_ms=now_ms()))
        if done.rowcount != 1:
            view = await self.order_view(order_id if isinstance(order_id, str) else "")
            if view["merchant_wallet"] != merchant.wallet_id:
                raise RailError("unknown_order")   # another merchant's order: not theirs to see
            if view["status"] == orders.CANCELLED:
                return view                        # cancelled already: a retry, one effect
            raise RailError("order_paid" if view["status"] != orders.EXPIRED else "order_expired")
        self.bank.notify(merchant.wallet_id, events.order_cancelled(order_id))
        return await self.order_view(order_id)

    async def _order_row(self, order_id: str):
        async with self.bank.engine.connect() as conn:
            order = (await conn.execute(sa.select(t.orders).where(
                t.orders.c.order_id == order_id))).first()
            if order is None:
                raise RailError("unknown_order")
            merchant = (await conn.execute(sa.select(t.wallets).where(
                t.wallets.c.wallet_id == order.merchant_wallet))).first()
        return order, merchant

    async def order_view(self, order_id: str) -> dict:
        """What anyone holding the order id may see: the cashier page, the paying wallet."""
        order, merchant = await self._order_row(order_id)
        state = orders.OrderState(order.order_id, order.merchant_wallet, order.amount_fen,
                                  order.status, order.expires_ms, order.refunded_fen)
        return {
            "order_id": order.order_id, "merchant_wallet": order.merchant_wallet,
            "merchant_name": merchant.merchant_name, "merchant_city": merchant.city,
            "amount_fen": order.amount_fen, "reference": order.reference,
            "description": order.description, "refunded_fen": order.refunded_fen,
            "status": orders.effective_status(state, now_ms()),
            "created_ms": order.created_ms, "expires_ms": order.expires_ms,
            "payment_id": f"P{order.paid_txn_id}" if order.paid_txn_id else None,
            "qr_payload": qr.encode(self._qr(merchant, order.amount_fen, order.order_id)),
        }

    def _qr(self, merchant: Any, amount_fen: int | None, order_id: str | None) -> qr.MerchantQR:
        return qr.MerchantQR(dynamic=amount_fen is not None, bank_id=self.bank.bank_id,
                             merchant_id=merchant.wallet_id, mcc=merchant.mcc,
                             merchant_name=merchant.merchant_name,
                             merchant_city=merchant.city, amount_fen=amount_fen,
                             order_id=order_id)

    async def static_qr(self, merchant_wallet: str) -> str:
        """The merchant's static code: the payer types the amount."""
        async with self.bank.engine.connect() as conn:
            merchant = (await conn.execute(sa.select(t.wallets).where(
                t.wallets.c.wallet_id == merchant_wallet))).first()
        if merchant is None or merchant.kind != MERCHANT:
            raise RailError("unknown_wallet", "no merchant with that wallet id here")
        return qr.encode(self._qr(merchant, None, None))

    # --- webhooks -----------------------------------------------------------------------

    async def settings(self, raw: object) -> dict:
        """Set (or clear) the merchant's webhook URL; events from then on are delivered."""
        env, merchant = await self._merchant(raw, MERCHANT_SETTINGS)
        url = env.body.get("webhook_url")
        if url is not None:
            await check_webhook_url(url, self.allowed_hosts)
        async with self.bank.engine.begin() as conn:
            await conn.execute(t.wallets.update().where(
                t.wallets.c.wallet_id == merchant.wallet_id).values(webhook_url=url))
        return {"merchant_wallet": merchant.wallet_id, "webhook_url": url}

    async def deliver_webhooks(self, limit: int = 50) -> int:
        """POST due deliveries, signed by the bank's key; retry with backoff until a 2xx."""
        async with self.bank.engine.connect() as conn:
            due = (await conn.execute(sa.select(t.webhook_deliveries).where(
                t.webhook_deliveries.c.status == "pending",
                t.webhook_deliveries.c.next_attempt_ms <= now_ms()).order_by(
                t.webhook_deliveries.c.delivery_id).limit(limit))).all()
        await asyncio.gather(*(self._deliver(row) for row in due))
        return len(due)

    async def _deliver(self, row: Any) -> None:
        payload = sign_statement(self.bank.key, {
            "type": "bank.webhook", "delivery_id": row.delivery_id, "bank_id": self.bank.bank_id,
            "merchant_wallet": row.merchant_wallet, **orjson.loads(row.event)})
        error = None
        try:
            target = await check_webhook_url(row.url, self.allowed_hosts)
            response = await self.http.post(
                target.connect_url, content=orjson.dumps(payload),
                headers={"content-type": "application/json", "host": urlsplit(row.url).netloc},
                extensions={"sni_hostname": target.host})
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}"
        except RailError as exc:
            error = exc.message[:200]
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        attempts = row.attempts + 1
        at = now_ms()
        values: dict[str, Any] = {"attempts": attempts, "last_error": error}
        if error is None:
            values.update(status="delivered", delivered_ms=at)
        elif attempts >= WEBHOOK_MAX_ATTEMPTS:
            values.update(status="failed")
        else:
            values.update(next_attempt_ms=at + webhook_delay_ms(attempts))
        async with self.bank.engine.begin() as conn:
            await conn.execute(t.webhook_deliveries.update().where(
                t.webhook_deliveries.c.delivery_id == row.delivery_id).values(**values))

    async def deliveries(self, merchant_wallet: str, limit: int = 50) -> dict:
        """The merchant's delivery log, newest first."""
        async with self.bank.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.webhook_deliveries).where(
                t.webhook_deliveries.c.merchant_wallet == merchant_wallet).order_by(
                t.webhook_deliveries.c.delivery_id.desc()).limit(min(max(limit, 1), 200)))).all()
        return {"deliveries": [
            {"delivery_id": r.delivery_id, "event": orjson.loads(r.event), "url": r.url,
             "status": r.status, "attempts": r.attempts, "last_error": r.last_error,
             "created_ms": r.created_ms, "delivered_ms": r.delivered_ms} for r in rows]}
