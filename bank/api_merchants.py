"""Merchant routes: orders and their QR codes, refunds, webhooks, the live cashier page."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from bank.api import WalletReader
from bank import api_schemas as S
from bank.merchants import MerchantDesk
from bank.payment_engine import charge_route, order_route
from rail_protocol import qr
from rail_protocol import instruction_types as kinds
from rail_protocol.money import format_fen
from rail_service.http import JSON, read_json
from rail_service.openapi import answers, both, signed

CASHIER_TEMPLATE = (Path(__file__).parent / "static" / "cashier.html").read_text()
SSE_MAX_S = 900  # a cashier page listens at most 15 minutes per connection


def get_desk(request: Request) -> MerchantDesk:
    return request.app.state.desk


DeskDep = Annotated[MerchantDesk, Depends(get_desk)]

router = APIRouter(default_response_class=JSON)


@router.post("/v1/merchant/orders", tags=["merchants"], status_code=201,
             openapi_extra=both(signed(kinds.CREATE_ORDER), answers(S.ORDER, 201)))
async def create_order(request: Request) -> dict:
    """Create an order and its dynamic QR; signed by the merchant's key."""
    return await order_route(await read_json(request), request.app.state)


@router.post("/v1/merchant/orders/{order_id}/cancel", tags=["merchants"],
             openapi_extra=both(signed(kinds.CANCEL_ORDER), answers(S.ORDER)))
async def cancel_order(order_id: str, request: Request, desk: DeskDep) -> dict:
    """Cancel an unpaid order; signed by the merchant's key."""
    return await desk.cancel_order(await read_json(request))


@router.post("/v1/merchant/refunds", tags=["merchants"],
             openapi_extra=both(signed(kinds.REFUND), answers(S.PAYMENT_RESULT)))
async def refund(request: Request) -> dict:
    """Refund a payment, fully or in part, to the payer; signed by the merchant's key."""
    return await request.app.state.payments.refund(await read_json(request))


@router.post("/v1/merchant/settings", tags=["merchants"],
             openapi_extra=both(signed(kinds.MERCHANT_SETTINGS), answers(S.MERCHANT_SETTINGS)))
async def merchant_settings(request: Request, desk: DeskDep) -> dict:
    """Set the webhook URL; signed by the merchant's key."""
    return await desk.settings(await read_json(request))


@router.get("/v1/wallets/{wallet_id}/webhook-deliveries", tags=["merchants"],
            openapi_extra=answers(S.DELIVERIES))
async def deliveries(wallet_id: WalletReader, desk: DeskDep,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
    """The merchant's webhook delivery log (signed read)."""
    return await desk.deliveries(wallet_id, limit)


@router.get("/v1/orders/{order_id}", tags=["orders"],
            openapi_extra=answers(S.ORDER))
async def order(order_id: str, desk: DeskDep) -> dict:
    """An order's merchant, amount and status."""
    return await desk.order_view(order_id)


@router.get("/v1/orders/{order_id}/qr.png", tags=["orders"],
            openapi_extra=answers(S.PNG, media="image/png"))
async def order_png(order_id: str, desk: DeskDep) -> Response:
    """The order's dynamic QR as PNG."""
    view = await desk.order_view(order_id)
    return Response(qr.to_png(view["qr_payload"]), media_type="image/png")


@router.get("/v1/orders/{order_id}/qr.svg", tags=["orders"],
            openapi_extra=answers(S.SVG, media="image/svg+xml"))
async def order_svg(order_id: str, desk: DeskDep) -> Response:
    """The order's dynamic QR as SVG."""
    view = await desk.order_view(order_id)
    return Response(qr.to_svg(view["qr_payload"]), media_type="image/svg+xml")


@router.get("/v1/merchants/{wallet_id}/qr", tags=["merchants"],
            openapi_extra=answers(S.STATIC_QR))
async def static_qr(wallet_id: str, desk: DeskDep) -> dict:
    """The merchant's static QR payload (the payer types the amount)."""
    return {"qr_payload": await desk.static_qr(wallet_id)}


@router.get("/v1/merchants/{wallet_id}/qr.png", tags=["merchants"],
            openapi_extra=answers(S.PNG, media="image/png"))
async def static_png(wallet_id: str, desk: DeskDep) -> Response:
    """The merchant's static QR as PNG."""
    return Response(qr.to_png(await desk.static_qr(wallet_id)), media_type="image/png")


@router.get("/v1/merchants/{wallet_id}/qr.svg", tags=["merchants"],
            openapi_extra=answers(S.SVG, media="image/svg+xml"))
async def static_svg(wallet_id: str, desk: DeskDep) -> Response:
    """The merchant's static QR as SVG."""
    return Response(qr.to_svg(await desk.static_qr(wallet_id)), media_type="image/svg+xml")


@router.get("/v1/orders/{order_id}/events", tags=["orders"],
            openapi_extra=answers(S.ORDER_EVENT, media="text/event-stream"))
async def order_events(order_id: str, request: Request, desk: DeskDep) -> StreamingResponse:
    """Server-sent events: the order's status now, then at every change. Fed by the
    order's Redis stream, and re-checked against the database every few seconds, so a
    lost notification only delays the page."""
    first = await desk.order_view(order_id)

    async def stream():
        last_status, last_event = None, "$"
        deadline = asyncio.get_running_loop().time() + SSE_MAX_S
        view = first
        while asyncio.get_running_loop().time() < deadline:
            if view["status"] != last_status:
                last_status = view["status"]
                yield f"event: order\ndata: {orjson.dumps(view).decode()}\n\n"
                if last_status != "created":
                    return
            if await request.is_disconnected():
                return
            try:
                events = await desk.bank.hot.read_events(f"order:{order_id}", last_event,
                                                         block_ms=500)
                if events:
                    last_event = events[-1][0]
            except Exception:  # Redis down: fall back to polling the database
                await asyncio.sleep(1)
            view = await desk.order_view(order_id)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})


@router.get("/cashier/{order_id}", tags=["orders"], response_class=HTMLResponse,
            openapi_extra=answers({"type": "string"}, media="text/html"))
async def cashier_page(order_id: str, desk: DeskDep) -> HTMLResponse:
    """The cashier's page for one order: QR, amount, merchant, and live status."""
    view = await desk.order_view(order_id)
    texts = {"created": "Waiting for payment", "paid": "Paid", "expired": "Expired",
             "cancelled": "Cancelled"}
    page = CASHIER_TEMPLATE.format(
        merchant_name=html.escape(view["merchant_name"] or ""),
        merchant_city=html.escape(view["merchant_city"] or ""),
        amount_text=html.escape(format_fen(view["amount_fen"])),
        order_id=html.escape(view["order_id"]), status=view["status"],
        status_text=texts.get(view["status"], view["status"]),
        description=html.escape(view["description"] or view["reference"]))
    return HTMLResponse(page)


# --- payment codes and mandates --------------------------------------------------------

def get_charges(request: Request):
    return request.app.state.charges


ChargesDep = Annotated[object, Depends(get_charges)]


@router.post("/v1/merchant/charges", tags=["merchants"],
             openapi_extra=both(signed(kinds.CHARGE_CODE), answers(S.PAYMENT_RESULT)))
async def charge_code(request: Request) -> dict:
    """Charge a customer's payment code scanned at the POS; signed by the merchant's key."""
    return await charge_route(await read_json(request), request.app.state)


@router.post("/v1/merchant/mandate-charges", tags=["merchants"],
             openapi_extra=both(signed(kinds.MANDATE_CHARGE), answers(S.PAYMENT_RESULT)))
async def mandate_charge(request: Request, charges: ChargesDep) -> dict:
    """Charge under a user's mandate, with no user interaction; signed by the merchant."""
    return await charges.mandate_charge(await read_json(request))


@router.post("/v1/wallets/{wallet_id}/mandates", tags=["mandates"], status_code=201,
             openapi_extra=both(signed(kinds.MANDATE), answers(S.MANDATE, 201)))
async def create_mandate(wallet_id: str, request: Request, charges: ChargesDep) -> dict:
    """Authorise a merchant app to charge within caps; signed by the payer's wallet."""
    return await charges.create_mandate(await read_json(request))


@router.post("/v1/wallets/{wallet_id}/mandates/revoke", tags=["mandates"],
             openapi_extra=both(signed(kinds.REVOKE_MANDATE), answers(S.MANDATE)))
async def revoke_mandate(wallet_id: str, request: Request, charges: ChargesDep) -> dict:
    """Revoke a mandate at once; signed by the payer's wallet."""
    return await charges.revoke_mandate(await read_json(request))


@router.post("/v1/wallets/{wallet_id}/short-code", tags=["payment codes"],
             openapi_extra=both(signed(kinds.SHORT_CODE_SECRET), answers(S.SHORT_CODE_SLOT)))
async def register_short_code(wallet_id: str, request: Request, charges: ChargesDep) -> dict:
    """Register the secret the wallet's short payment codes are made with; answers the
    wallet's slot and its bank's issuer number (signed by the wallet)."""
    return await charges.register_short_code(await read_json(request))


@router.get("/v1/wallets/{wallet_id}/mandates", tags=["mandates"],
            openapi_extra=answers(S.MANDATES))
async def list_mandates(wallet_id: WalletReader, charges: ChargesDep) -> dict:
    """The wallet's mandates, their caps and what is used (signed read)."""
    return await charges.list_mandates(wallet_id)


@router.post("/v1/interbank/charges", tags=["interbank"],
             openapi_extra=both(signed(kinds.INTERBANK_CHARGE), answers(S.PAYMENT_RESULT)))
async def interbank_charge(request: Request, charges: ChargesDep) -> dict:
    """A charge forwarded by the merchant's bank; signed by that bank's certified key."""
    return await charges.interbank_charge(await read_json(request))
