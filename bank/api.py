"""A bank node's HTTP routes: thin, each parses, calls one service, answers."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request

from bank.credit_engine import credits_route, sealed_credits_route
from bank.payment_engine import pay_route
from bank.services import Bank
from bank import api_schemas as S
from rail_protocol import instruction_types as kinds
from rail_protocol.batches import MAX_BODY_BYTES as MAX_BATCH_BODY_BYTES
from rail_protocol.canonical import INT_MAX
from rail_protocol.keys import PublicKey
from rail_protocol.request_auth import verify_read
from rail_service.http import JSON, bearer_token, read_json
from rail_service.openapi import (FEN, TEXT, answers, array, both, obj, plain, sealed_batch,
                                  signed, signed_batch)

OperatorToken = Annotated[str | None, Depends(bearer_token)]


def get_bank(request: Request) -> Bank:
    return request.app.state.bank


BankDep = Annotated[Bank, Depends(get_bank)]


async def signed_reader(wallet_id: str, request: Request, bank: BankDep,
                        authorization: Annotated[str | None, Header()] = None) -> str:
    """A read of a wallet's data must be signed by that wallet's key."""
    wallet = await bank.reads.wallet_for_read(wallet_id)
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    verify_read(authorization, PublicKey.from_text(wallet.public_key), request.method, path)
    return wallet_id


WalletReader = Annotated[str, Depends(signed_reader)]

router = APIRouter(prefix="/v1", default_response_class=JSON)


@router.get("/health", tags=["meta"],
            openapi_extra=answers(S.HEALTH))
async def health() -> dict:
    """Liveness."""
    return {"status": "ok"}


@router.get("/bank", tags=["meta"],
            openapi_extra=answers(S.IDENTITY))
async def identity(bank: BankDep) -> dict:
    """Who this bank node is, its key, its wallet classes' limits, and the link its QR code
    carries for a new wallet to choose it (`yuanrail:bank?url=...`)."""
    return {"bank_id": bank.bank_id, "name": bank.name, "key_id": bank.key.key_id,
            "wallet_link": "yuanrail:bank?" + urlencode({"url": bank.public_url}),
            "public_key": bank.key.public_key.to_text(),
            "no_pin_threshold_fen": bank.no_pin_threshold_fen,
            "classes": [limits.to_dict() for _, limits in sorted(bank.limits.items())]}


# --- wallets --------------------------------------------------------------------------

@router.post("/wallets", tags=["wallets"], status_code=201,
             openapi_extra=both(signed(kinds.OPEN_WALLET), answers(S.WALLET, 201)))
async def open_wallet(request: Request, bank: BankDep) -> dict:
    """Open a class-4 wallet; signed by the key made on the device."""
    return await bank.wallets.open_wallet(await read_json(request))


@router.get("/wallets/{wallet_id}", tags=["wallets"],
            openapi_extra=answers(S.WALLET))
async def wallet(wallet_id: WalletReader, bank: BankDep) -> dict:
    """Balance, class, limits and what is left of today's cap (signed read)."""
    return await bank.wallets.wallet_view(wallet_id)


@router.post("/wallets/{wallet_id}/upgrade", tags=["wallets"],
             openapi_extra=both(signed(kinds.UPGRADE_WALLET), answers(S.WALLET)))
async def upgrade(wallet_id: str, request: Request, bank: BankDep) -> dict:
    """Raise the wallet's class with identity evidence."""
    return await bank.wallets.upgrade_wallet(await read_json(request))


@router.post("/wallets/{wallet_id}/settings", tags=["wallets"],
             openapi_extra=both(signed(kinds.WALLET_SETTINGS), answers(S.WALLET)))
async def settings(wallet_id: str, request: Request, bank: BankDep) -> dict:
    """Switch top-up on use on or off."""
    return await bank.wallets.wallet_settings(await read_json(request))


@router.post("/wallets/{wallet_id}/pin-guard", tags=["wallets"],
             openapi_extra=both(signed(kinds.PIN_GUARD), answers(S.PIN_GUARD_SHARE)))
async def register_pin_guard(wallet_id: str, request: Request) -> dict:
    """Register the guard the wallet's PIN is checked by (rail_protocol/pin_guard.py), in
    place of any before it; answers the bank's share of the key file's key."""
    return await request.app.state.pin_guards.register(await read_json(request))


@router.post("/pin-guard/open", tags=["wallets"],
             openapi_extra=both(plain(obj({"guard_id": {"type": "string",
                                                        "pattern": "^[0-9a-f]{32}$"},
                                           "verifier": S.HEX64}, closed=True)),
                                answers(S.PIN_GUARD_SHARE)))
async def open_pin_guard(request: Request) -> dict:
    """The share, for a guard id and the right PIN's verifier; wrong PINs are counted and
    lock the guard (no signature: the wallet's key is what the share opens)."""
    return await request.app.state.pin_guards.open(await read_json(request))


@router.post("/wallets/{wallet_id}/top-up", tags=["exchange"],
             openapi_extra=both(signed(kinds.TOP_UP), answers(S.PAYMENT_RESULT)))
async def top_up(wallet_id: str, request: Request) -> dict:
    """Deposit money into e-CNY."""
    return await request.app.state.payments.top_up(await read_json(request))


@router.post("/wallets/{wallet_id}/redeem", tags=["exchange"],
             openapi_extra=both(signed(kinds.REDEEM), answers(S.PAYMENT_RESULT)))
async def redeem(wallet_id: str, request: Request) -> dict:
    """e-CNY back into the linked deposit account."""
    return await request.app.state.payments.redeem(await read_json(request))


@router.get("/wallets/{wallet_id}/history", tags=["wallets"],
            openapi_extra=answers(S.HISTORY))
async def history(
    wallet_id: WalletReader,
    bank: BankDep,
    before: Annotated[int | None, Query(ge=1, le=INT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    since_ms: Annotated[int | None, Query(ge=0, le=INT_MAX)] = None,
    until_ms: Annotated[int | None, Query(ge=0, le=INT_MAX)] = None,
    counterparty: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> dict:
    """The wallet's payments, newest first, paged (signed read)."""
    return await bank.reads.history(wallet_id, before_id=before, limit=limit, since_ms=since_ms,
                              until_ms=until_ms, counterparty=counterparty, status=status)


@router.get("/wallets/{wallet_id}/payments/{payment_id}", tags=["payments"],
            openapi_extra=answers(S.PAYMENT))
async def payment(wallet_id: WalletReader, payment_id: str, bank: BankDep) -> dict:
    """The status of one payment (signed read)."""
    return await bank.reads.payment(wallet_id, payment_id)


@router.post("/payments", tags=["payments"],
             openapi_extra=both(signed(kinds.PAY), answers(S.PAYMENT_RESULT)))
async def pay(request: Request) -> dict:
    """Pay another wallet, here or at another bank; signed by the payer's wallet."""
    return await pay_route(await read_json(request), request.app.state)


# --- interbank (from central) --------------------------------------------------------

@router.post("/interbank/credits", tags=["interbank"],
             openapi_extra=both(signed(kinds.INTERBANK_CREDIT), answers(S.CREDIT_RESULT)))
async def interbank_credit(request: Request) -> dict:
    """Message 2 of an interbank payment: credit a payee here; signed by central."""
    return await request.app.state.credits.interbank_credit(await read_json(request))


@router.post("/interbank/credits/batch", tags=["interbank"],
             openapi_extra=both(signed_batch("credits", kinds.INTERBANK_CREDIT), answers(S.CREDIT_RESULTS)))
async def interbank_credits(request: Request) -> dict:
    """Message 2 in a batch: many credits from central, each answered in its place."""
    return await credits_route(await read_json(request, MAX_BATCH_BODY_BYTES),
                               request.app.state)


@router.post("/interbank/credits/sealed-batch", tags=["interbank"],
             openapi_extra=both(sealed_batch("credits", kinds.INTERBANK_CREDIT),
                                answers(S.SEALED_CREDIT_RESULTS)))
async def sealed_interbank_credits(request: Request) -> dict:
    """Message 2 in a sealed batch: many credits from central under one signature, each
    answered in its place, the answers under one signature of this bank's."""
    return await sealed_credits_route(await read_json(request, MAX_BATCH_BODY_BYTES),
                                      request.app.state)


# --- operator ------------------------------------------------------------------------

@router.post("/operator/deposit-accounts", tags=["operator"], status_code=201,
             openapi_extra=both(plain(obj({"phone": TEXT, "holder_name": TEXT}, {"opening_fen": FEN}, closed=True)), answers(S.DEPOSIT_ACCOUNT, 201)))
async def open_deposit_account(request: Request, bank: BankDep, token: OperatorToken) -> dict:
    """Open a (simulated core-banking) deposit account, funded in cash."""
    bank.check_operator(token)
    return await bank.wallets.open_deposit_account(await read_json(request))


@router.get("/operator/deposit-accounts/{account_id}", tags=["operator"],
            openapi_extra=answers(S.DEPOSIT_ACCOUNT))
async def deposit_account(account_id: str, bank: BankDep, token: OperatorToken) -> dict:
    """A deposit account's balance."""
    bank.check_operator(token)
    return await bank.wallets.deposit_view(account_id)


@router.post("/operator/wallets/{wallet_id}/class", tags=["operator"],
             openapi_extra=both(plain(obj({"kyc_class": {"type": "integer", "minimum": 1, "maximum": 4}}, closed=True)), answers(S.WALLET)))
async def set_class(wallet_id: str, request: Request, bank: BankDep, token: OperatorToken) -> dict:
    """Set a wallet's KYC class (class 1 after an in-person check)."""
    bank.check_operator(token)
    body = await read_json(request)
    return await bank.wallets.set_wallet_class(wallet_id, body.get("kyc_class") if isinstance(body, dict) else None)


@router.post("/operator/wallets/{wallet_id}/close", tags=["operator"],
             openapi_extra=answers(S.WALLET))
async def close_wallet(wallet_id: str, bank: BankDep, token: OperatorToken) -> dict:
    """Close (freeze) a wallet."""
    bank.check_operator(token)
    return await bank.wallets.close_wallet(wallet_id)


@router.get("/operator/wallets/{wallet_id}", tags=["operator"],
            openapi_extra=answers(S.WALLET))
async def operator_wallet(wallet_id: str, bank: BankDep, token: OperatorToken) -> dict:
    """A wallet as the bank sees it."""
    bank.check_operator(token)
    return await bank.wallets.wallet_view(wallet_id)


@router.get("/operator/audit", tags=["operator"],
            openapi_extra=answers(S.AUDIT))
async def audit(bank: BankDep, token: OperatorToken) -> dict:
    """This bank's conservation audit, recomputed from its journal."""
    bank.check_operator(token)
    return await bank.reads.audit()


@router.post("/operator/credited", tags=["operator"],
             openapi_extra=both(plain(obj({"transfer_ids": array(TEXT)}, closed=True)), answers(S.CREDITED)))
async def credited(request: Request, bank: BankDep, token: OperatorToken) -> dict:
    """Which of the given inbound transfer ids this bank has credited."""
    bank.check_operator(token)
    body = await read_json(request)
    ids = body.get("transfer_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        from rail_protocol.errors import RailError
        raise RailError("invalid_field", "transfer_ids must be a list of strings")
    return {"credited": await bank.reads.credited_transfers(ids)}
