"""A bank node's routes for conditional payments (bank/holds.py: holds and vouchers) and
offline payments (bank/offline.py), each step a signed instruction of the party it belongs
to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from bank import api_schemas as S
from bank.api import WalletReader
from bank.holds import Holds
from bank.offline import Offline
from rail_protocol import instruction_types as kinds
from rail_service.http import JSON, read_json
from rail_service.openapi import answers, both, signed

router = APIRouter(prefix="/v1", default_response_class=JSON, tags=["holds and vouchers"])


def get_holds(request: Request) -> Holds:
    return request.app.state.holds


HoldsDep = Annotated[Holds, Depends(get_holds)]


def get_offline(request: Request) -> Offline:
    return request.app.state.offline


OfflineDep = Annotated[Offline, Depends(get_offline)]


@router.post("/holds", status_code=201,
             openapi_extra=both(signed(kinds.HOLD), answers(S.HOLD, 201)))
async def open_hold(request: Request, holds: HoldsDep) -> dict:
    """Freeze an amount for a merchant until a deadline; signed by the payer."""
    return await holds.open_hold(await read_json(request))


@router.post("/holds/{hold_id}/release",
             openapi_extra=both(signed(kinds.HOLD_RELEASE), answers(S.HOLD)))
async def release(hold_id: str, request: Request, holds: HoldsDep) -> dict:
    """Post a hold, all or part, the rest back to the payer; signed by its releaser."""
    return await holds.release(hold_id, await read_json(request))


@router.post("/holds/{hold_id}/void",
             openapi_extra=both(signed(kinds.HOLD_VOID), answers(S.HOLD)))
async def void_hold(hold_id: str, request: Request, holds: HoldsDep) -> dict:
    """Return a hold to the payer; signed by its merchant."""
    return await holds.void(hold_id, await read_json(request))


@router.post("/vouchers", status_code=201,
             openapi_extra=both(signed(kinds.VOUCHER), answers(S.HOLD, 201)))
async def open_voucher(request: Request, holds: HoldsDep) -> dict:
    """Give a holder money to spend by a deadline (at one category of merchant, if named);
    signed by the issuer."""
    return await holds.open_voucher(await read_json(request))


@router.post("/vouchers/{hold_id}/spend",
             openapi_extra=both(signed(kinds.VOUCHER_SPEND), answers(S.HOLD)))
async def spend(hold_id: str, request: Request, holds: HoldsDep) -> dict:
    """Pay a merchant with part of a voucher; signed by its holder."""
    return await holds.spend(hold_id, await read_json(request))


@router.post("/vouchers/{hold_id}/void",
             openapi_extra=both(signed(kinds.HOLD_VOID), answers(S.HOLD)))
async def void_voucher(hold_id: str, request: Request, holds: HoldsDep) -> dict:
    """Recall what is unspent of a voucher; signed by its issuer."""
    return await holds.void(hold_id, await read_json(request))


@router.get("/wallets/{wallet_id}/holds", openapi_extra=answers(S.HOLDS))
async def of_wallet(wallet_id: WalletReader, holds: HoldsDep) -> dict:
    """The holds and vouchers the wallet funds, is paid by, or holds (signed read)."""
    return await holds.of_wallet(wallet_id)


# --- offline payments (bank/offline.py) -----------------------------------------------------

@router.post("/wallets/{wallet_id}/offline-reserve", status_code=201, tags=["offline"],
             openapi_extra=both(signed(kinds.OFFLINE_RESERVE), answers(S.OFFLINE_RESERVE, 201)))
async def offline_reserve(wallet_id: str, request: Request, offline: OfflineDep) -> dict:
    """Set money aside for offline payments (at most ¥500, 10 payments); the purse the
    bank signs, which receivers check with no network. Signed by the wallet."""
    return await offline.reserve(await read_json(request))


@router.post("/offline/claims", tags=["offline"],
             openapi_extra=both(signed(kinds.OFFLINE_CLAIM), answers(S.OFFLINE_CLAIM)))
async def offline_claim(request: Request, offline: OfflineDep) -> dict:
    """Sync an offline payment this wallet received: credited once, out of the payer's
    reserve; a double spend is refused. Signed by the receiving wallet."""
    return await offline.claim(await read_json(request))
