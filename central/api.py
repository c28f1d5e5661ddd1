"""Central's HTTP routes: thin, each parses, calls one service, answers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from central.registry import Registry
from central import api_schemas as S
from central.services import Central
from rail_protocol.batches import MAX_BODY_BYTES as MAX_BATCH_BODY_BYTES
from rail_protocol.canonical import INT_MAX
from rail_protocol.errors import RailError
from rail_protocol import instruction_types as kinds
from rail_service.hot_edge import HotRoute
from rail_service.http import JSON, bearer_token, read_json
from rail_service.openapi import (FEN, TEXT, answers, both, obj, plain, sealed_batch, signed,
                                  signed_batch)

OperatorToken = Annotated[str | None, Depends(bearer_token)]


async def get_central(request: Request) -> Central:
    return request.app.state.central


CentralDep = Annotated[Central, Depends(get_central)]


async def get_registry(request: Request) -> Registry:
    return request.app.state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


async def get_reader(request: Request, central: CentralDep,
                     authorization: Annotated[str | None, Header()] = None) -> str | None:
    """Who reads: None for central's operator, else the enrolled bank that signed the read
    (docs/roles.md)."""
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return await central.reader(authorization, request.method, path)


Reader = Annotated[str | None, Depends(get_reader)]

router = APIRouter(prefix="/v1", default_response_class=JSON)


@router.get("/health", tags=["meta"],
            openapi_extra=answers(S.HEALTH))
async def health() -> dict:
    """Liveness."""
    return {"status": "ok"}


@router.get("/central", tags=["certification"],
            openapi_extra=answers(S.IDENTITY))
async def identity(central: CentralDep) -> dict:
    """Central's public key, with which banks check certificates and receipts."""
    return central.identity()


@router.post("/banks", tags=["certification"], status_code=201,
             openapi_extra=both(signed(kinds.REGISTER_BANK), answers(S.CERTIFICATE, 201)))
async def register_bank(request: Request, central: CentralDep, token: OperatorToken) -> dict:
    """Register a bank node (operator only; signed by the bank's key) and certify its key."""
    central.check_operator(token)
    return await central.register_bank(await read_json(request))


@router.get("/banks/{bank_id}/node", tags=["certification"],
            openapi_extra=answers(S.NODE))
async def node(bank_id: str, central: CentralDep) -> dict:
    """A bank node's URL and certificate, for other banks."""
    return await central.node(bank_id)


@router.get("/banks/{bank_id}/certificate", tags=["certification"],
            openapi_extra=answers(S.CERTIFICATE))
async def certificate(bank_id: str, central: CentralDep) -> dict:
    """The bank's key certificate, signed by central."""
    return await central.certificate(bank_id)


@router.get("/banks/{bank_id}", tags=["registry"],
            openapi_extra=answers(S.BANK))
async def bank(bank_id: str, central: CentralDep, reader: Reader) -> dict:
    """A bank's reserves and e-CNY holding (the operator, or a read signed by that bank)."""
    if reader not in (None, bank_id):
        raise RailError("forbidden", "a bank reads only its own account")
    return await central.bank_view(bank_id)


@router.post("/banks/{bank_id}/reserve-deposits", tags=["reserves"], status_code=201,
             openapi_extra=both(plain(obj({"deposit_id": TEXT, "amount_fen": {**FEN, "minimum": 1}}, closed=True)), answers(S.RESERVES, 201)))
async def deposit_reserves(
    bank_id: str, request: Request, central: CentralDep, token: OperatorToken
) -> dict:
    """Credit a bank's reserve account (operator only; idempotent by deposit_id)."""
    central.check_operator(token)
    body = await read_json(request)
    body = body if isinstance(body, dict) else {}
    return await central.deposit_reserves(bank_id, body.get("deposit_id"), body.get("amount_fen"))


@router.post("/issuance", tags=["issuance"],
             openapi_extra=both(signed(kinds.CENTRAL_ISSUE), answers(S.RECEIPT)))
async def issue(request: Request, central: CentralDep) -> dict:
    """Issue e-CNY to the signing bank against its reserves."""
    return await central.issue(await read_json(request))


@router.post("/redemption", tags=["issuance"],
             openapi_extra=both(signed(kinds.CENTRAL_REDEEM), answers(S.RECEIPT)))
async def redeem(request: Request, central: CentralDep) -> dict:
    """Redeem e-CNY from the signing bank back into its reserves."""
    return await central.redeem(await read_json(request))


@router.get("/supply", tags=["registry"],
            openapi_extra=answers(S.SUPPLY))
async def supply(central: CentralDep, token: OperatorToken) -> dict:
    """Total e-CNY issued and what each bank holds (operator only)."""
    central.check_operator(token)
    return await central.supply()


@router.get("/journal", tags=["registry"],
            openapi_extra=answers(S.JOURNAL))
async def journal(
    central: CentralDep,
    token: OperatorToken,
    after: Annotated[int, Query(ge=0, le=INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict:
    """The registration centre's journal, a page at a time (operator only)."""
    central.check_operator(token)
    return await central.journal(after, limit)


@router.get("/audit", tags=["registry"],
            openapi_extra=answers(S.AUDIT))
async def audit(central: CentralDep, token: OperatorToken) -> dict:
    """Recompute conservation of money from the journal (operator only)."""
    central.check_operator(token)
    return (await central.audit()).to_dict()


@router.get("/checkpoints/latest", tags=["registry"],
            openapi_extra=answers(S.CHECKPOINT))
async def latest_checkpoint(registry: RegistryDep, _reader: Reader) -> dict:
    """The latest checkpoint signed by central (operator, or a read signed by a bank)."""
    return await registry.latest()


@router.post("/transfers", tags=["interbank"],
             openapi_extra=both(signed(kinds.TRANSFER), answers(S.STATEMENT)))
async def transfer(request: Request) -> dict:
    """Message 1 of an interbank transfer (signed by the paying bank); a repeat polls it."""
    return await transfer_route(await read_json(request), request.app.state)


@router.post("/transfers/batch", tags=["interbank"],
             openapi_extra=both(signed_batch("transfers", kinds.TRANSFER), answers(S.STATEMENTS)))
async def transfers_batch(request: Request) -> dict:
    """Message 1 in a batch: many transfers of the signing banks, each answered in its place."""
    return await transfers_route(await read_json(request, MAX_BATCH_BODY_BYTES),
                                 request.app.state)


@router.post("/transfers/sealed-batch", tags=["interbank"],
             openapi_extra=both(sealed_batch("transfers", kinds.TRANSFER),
                                answers(S.SEALED_STATEMENTS)))
async def transfers_sealed_batch(request: Request) -> dict:
    """Message 1 in a sealed batch: many transfers of the signing bank under one signature,
    each answered in its place, the statements under one signature of central's."""
    return await sealed_transfers_route(await read_json(request, MAX_BATCH_BODY_BYTES),
                                        request.app.state)


@router.get("/transfers/{transfer_id}", tags=["interbank"],
            openapi_extra=answers(S.TRANSFER))
async def transfer_view(transfer_id: str, central: CentralDep, reader: Reader) -> dict:
    """One interbank transfer as central records it (the operator, or a read signed by
    either bank of the transfer; to any other bank it does not exist)."""
    view = await central.transfers.view(transfer_id)
    if reader not in (None, view["from_bank"], view["to_bank"]):
        raise RailError("not_found", "no transfer with that id")
    return view


@router.get("/transfers", tags=["interbank"],
            openapi_extra=answers(S.TRANSFERS))
async def transfers(
    central: CentralDep,
    token: OperatorToken,
    status: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict:
    """Interbank transfers, oldest first, optionally of one status (operator only)."""
    central.check_operator(token)
    return await central.transfers.page(status, limit)


# --- the hot edge (rail_service/hot_edge.py): message 1s, served without the middleware ------

async def transfer_route(body: object, state) -> dict:
    """`POST /v1/transfers`."""
    return await state.central.transfers.submit(body)


async def transfers_route(body: object, state) -> dict:
    """`POST /v1/transfers/batch`."""
    return await state.central.transfers.submit_many(body)


async def sealed_transfers_route(body: object, state) -> dict:
    """`POST /v1/transfers/sealed-batch`."""
    return await state.central.transfers.submit_sealed(body)


def hot_routes() -> dict[str, HotRoute]:
    """Central's hot edge; the routes above of the same paths call the same handlers (for a
    request the edge passes on) and stay in the OpenAPI page."""
    return {"/v1/transfers": HotRoute(transfer_route),
            "/v1/transfers/batch": HotRoute(transfers_route, max_bytes=MAX_BATCH_BODY_BYTES),
            "/v1/transfers/sealed-batch": HotRoute(sealed_transfers_route,
                                                   max_bytes=MAX_BATCH_BODY_BYTES)}
