"""A typed client of one bank node's API, for the wallet.

It speaks the bank node's HTTP API itself (the routes `bank.client.BankClient` uses), with
httpx and rail_protocol only, so the phone carries no server code: `bank/` imports the
server side, and `rail_service.client` needs orjson, which python-for-android has no recipe
for. Its JSON answers become small frozen dataclasses, so a screen reads `view.balance_fen`
rather than `answer["balance_fen"]`, and a renamed field fails here, in one place. Every
network failure comes back as `RailError("upstream_unavailable")`, never as an httpx
exception; a typed refusal from the bank comes back as `RailError(code)`."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import httpx

from urllib.parse import urlencode

from rail_protocol.envelope import Envelope, seal
from rail_protocol.errors import CODES, RailError
from rail_protocol.instruction_types import (
    CHARGE_CODE,
    CREATE_ORDER,
    HOLD_RELEASE,
    MANDATE,
    OFFLINE_CLAIM,
    OFFLINE_RESERVE,
    OPEN_WALLET,
    PAY,
    REVOKE_MANDATE,
    PIN_GUARD,
    SHORT_CODE_SECRET,
    UPGRADE_WALLET,
    VOUCHER_SPEND,
    WALLET_SETTINGS,
)
from rail_protocol.keys import SigningKey
from rail_protocol.request_auth import sign_read

# The bank's default no-PIN threshold (bank setting `no_pin_threshold_fen`): a payment code
# above it must carry the PIN, and the wallet asks for the PIN above it. Used until the bank
# says its own figure in GET /v1/bank.
DEFAULT_NO_PIN_THRESHOLD_FEN = 100_000

T = TypeVar("T")


def _pick(cls: type[T], data: dict, **extra: Any) -> T:
    """Build dataclass `cls` from the fields of `data` it knows; others are ignored, so the
    bank may add fields without breaking older wallets."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names}, **extra)


@dataclass(frozen=True)
class ClassLimits:
    """A KYC class's caps in fen; None is no cap (class 1)."""

    kyc_class: int
    balance_cap_fen: int | None
    per_payment_cap_fen: int | None
    daily_cap_fen: int | None


@dataclass(frozen=True)
class BankInfo:
    bank_id: str
    name: str
    url: str
    classes: dict[int, ClassLimits]
    no_pin_threshold_fen: int = DEFAULT_NO_PIN_THRESHOLD_FEN
    public_key: str | None = None     # checks offline payments' purses with no network


@dataclass(frozen=True)
class Merchant:
    name: str
    mcc: str
    city: str


@dataclass(frozen=True)
class WalletView:
    """What the bank says of a wallet: balance, class, caps and today's spending."""

    wallet_id: str
    bank_id: str
    kind: str
    kyc_class: int
    status: str
    balance_fen: int
    limits: ClassLimits
    spent_today_fen: int
    daily_left_fen: int | None
    topup_on_use: bool
    deposit_account_linked: bool
    merchant: Merchant | None = None

    @property
    def is_merchant(self) -> bool:
        return self.kind == "merchant"


@dataclass(frozen=True)
class Payment:
    """One transaction as the wallet sees it (history rows and payment look-ups).
    `refund_of`, `order_id` and `refunded_fen` are filled when the bank reports them."""

    payment_id: str
    kind: str
    status: str
    amount_fen: int
    payer_wallet: str | None
    payee_wallet: str | None
    created_ms: int
    updated_ms: int | None = None
    instruction_id: str | None = None
    counterparty_bank: str | None = None
    memo: str | None = None
    code: str | None = None
    refund_of: str | None = None
    order_id: str | None = None
    refunded_fen: int | None = None

    @property
    def is_refund(self) -> bool:
        return self.kind == "refund" or self.refund_of is not None


@dataclass(frozen=True)
class PaymentResult:
    """The bank's answer to a money-moving instruction. `repeated` is True when the bank
    had already executed this very instruction (a retry): the same outcome, no new effect."""

    payment_id: str
    status: str
    amount_fen: int
    instruction_id: str
    balance_after_fen: int | None = None
    payer_wallet: str | None = None
    payee_wallet: str | None = None
    order_id: str | None = None
    pulled_from_deposit_fen: int | None = None
    repeated: bool = False
    code: str | None = None          # why, when the status is "rejected"


@dataclass(frozen=True)
class HistoryPage:
    items: list[Payment]
    next_before: int | None
    names: dict[str, str] = field(default_factory=dict)   # merchants' names, by wallet id


@dataclass(frozen=True)
class Order:
    """A merchant's order, the thing a dynamic QR code stands for."""

    order_id: str
    merchant_wallet: str
    merchant_name: str | None
    merchant_city: str | None
    amount_fen: int
    status: str
    expires_ms: int
    qr_payload: str
    reference: str | None = None
    description: str | None = None
    payment_id: str | None = None
    refunded_fen: int = 0


@dataclass(frozen=True)
class Hold:
    """A hold this wallet funds or is paid by, a voucher it gave or holds, or its offline
    reserve (kind `purse`)."""

    hold_id: str
    kind: str
    status: str
    funder_wallet: str
    payee_wallet: str | None
    holder_wallet: str | None
    amount_fen: int
    remaining_fen: int
    mcc: str | None
    deadline_ms: int
    release_by: str | None = None
    memo: str | None = None


@dataclass(frozen=True)
class Mandate:
    """A sub-wallet: a merchant app allowed to charge within caps until revoked."""

    mandate_id: str
    merchant_wallet: str
    merchant_name: str | None
    per_payment_cap_fen: int
    period: str
    period_cap_fen: int
    used_this_period_fen: int
    left_this_period_fen: int
    status: str
    created_ms: int


def _guard(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn any transport failure into the rail's `upstream_unavailable`."""

    @functools.wraps(method)
    async def guarded(self: WalletClient, *args: Any, **kwargs: Any) -> T:
        try:
            return await method(self, *args, **kwargs)
        except httpx.HTTPError as exc:
            raise RailError("upstream_unavailable", f"{self.url}: {type(exc).__name__}") from None

    return guarded


def payment_result(answer: dict, instruction_id: str) -> PaymentResult:
    fields = {"amount_fen": 0, **answer}
    fields.pop("instruction_id", None)  # a repeat answered from the database carries it
    return _pick(PaymentResult, fields, instruction_id=instruction_id)


class WalletClient:
    """One bank node, as a wallet (or a merchant's POS) talks to it."""

    def __init__(self, url: str, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout_s: float = 10.0, operator_token: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"content-type": "application/json"}
        if operator_token:
            headers["authorization"] = f"Bearer {operator_token}"
        self.http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout_s,
                                      transport=transport)

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- HTTP: JSON in and out, typed refusals back as RailError ---
    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        content = None if body is None else json.dumps(
            body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            response = await self.http.request(method, path, content=content)
        except httpx.TransportError as exc:
            raise RailError("upstream_unavailable", f"{self.url}: {exc!r}") from None
        return _decode(response)

    async def _signed_get(self, key: SigningKey, path: str, **params: Any) -> Any:
        """A read signed by the wallet's key over the exact path and query it sends."""
        query = urlencode({k: v for k, v in params.items() if v is not None})
        full = f"{path}?{query}" if query else path
        try:
            response = await self.http.get(
                full, headers={"authorization": sign_read(key, "GET", full)})
        except httpx.TransportError as exc:
            raise RailError("upstream_unavailable", f"{self.url}: {exc!r}") from None
        return _decode(response)

    async def _instruct(self, path: str, key: SigningKey, kind: str, body: dict) -> dict:
        return await self.send(path, seal(key, kind, body))

    def pay_envelope(self, key: SigningKey, payer: str, payee: str, amount_fen: int,
                     memo: str | None = None, order_id: str | None = None,
                     **seal_args: Any) -> Envelope:
        body: dict[str, Any] = {"payer_wallet": payer, "payee_wallet": payee,
                                "amount_fen": amount_fen}
        if memo:
            body["memo"] = memo
        if order_id:
            body["order_id"] = order_id
        return seal(key, PAY, body, **seal_args)

    # --- the API ---
    @_guard
    async def identity(self) -> BankInfo:
        answer = await self._request("GET", "/v1/bank")
        classes = {c["kyc_class"]: _pick(ClassLimits, c) for c in answer["classes"]}
        threshold = answer.get("no_pin_threshold_fen", DEFAULT_NO_PIN_THRESHOLD_FEN)
        return BankInfo(answer["bank_id"], answer["name"], self.url, classes, threshold,
                        answer.get("public_key"))

    @_guard
    async def open_wallet(self, key: SigningKey, phone: str, *, kind: str = "personal",
                          merchant: dict | None = None) -> WalletView:
        body: dict[str, Any] = {"phone": phone, "public_key": key.public_key.to_text(),
                                "kind": kind}
        if merchant is not None:
            body["merchant"] = merchant
        return wallet_view(await self._instruct("/v1/wallets", key, OPEN_WALLET, body))

    @_guard
    async def wallet(self, key: SigningKey, wallet_id: str) -> WalletView:
        return wallet_view(await self._signed_get(key, f"/v1/wallets/{wallet_id}"))

    @_guard
    async def upgrade(self, key: SigningKey, wallet_id: str, **evidence: str) -> WalletView:
        return wallet_view(await self._instruct(f"/v1/wallets/{wallet_id}/upgrade", key,
                                                UPGRADE_WALLET,
                                                {"wallet_id": wallet_id, **evidence}))

    @_guard
    async def settings(self, key: SigningKey, wallet_id: str, *, topup_on_use: bool
                       ) -> WalletView:
        return wallet_view(await self._instruct(
            f"/v1/wallets/{wallet_id}/settings", key, WALLET_SETTINGS,
            {"wallet_id": wallet_id, "topup_on_use": topup_on_use}))

    @_guard
    async def send(self, path: str, envelope: Envelope | dict) -> dict:
        """POST one signed instruction; the outbox resends the same one to retry."""
        body = envelope.to_dict() if isinstance(envelope, Envelope) else envelope
        return await self._request("POST", path, body)

    @_guard
    async def history(self, key: SigningKey, wallet_id: str, *, before: int | None = None,
                      limit: int = 20, since_ms: int | None = None,
                      status: str | None = None) -> HistoryPage:
        answer = await self._signed_get(key, f"/v1/wallets/{wallet_id}/history",
                                        before=before, limit=limit, since_ms=since_ms,
                                        status=status)
        return HistoryPage([_pick(Payment, item) for item in answer["items"]],
                           answer.get("next_before"), dict(answer.get("names") or {}))

    @_guard
    async def payment(self, key: SigningKey, wallet_id: str, payment_id: str) -> Payment:
        return _pick(Payment, await self._signed_get(
            key, f"/v1/wallets/{wallet_id}/payments/{payment_id}"))

    @_guard
    async def order(self, order_id: str) -> Order:
        return _pick(Order, await self._request("GET", f"/v1/orders/{order_id}"))

    @_guard
    async def create_order(self, key: SigningKey, merchant: str, amount_fen: int,
                           reference: str, description: str | None = None,
                           ttl_ms: int | None = None) -> Order:
        body: dict[str, Any] = {"merchant_wallet": merchant, "amount_fen": amount_fen,
                                "reference": reference}
        if description:
            body["description"] = description
        if ttl_ms is not None:
            body["ttl_ms"] = ttl_ms
        return _pick(Order, await self._instruct("/v1/merchant/orders", key, CREATE_ORDER,
                                                 body))

    @_guard
    async def charge_code(self, key: SigningKey, merchant: str, code: str,
                          amount_fen: int) -> dict:
        return await self._instruct("/v1/merchant/charges", key, CHARGE_CODE, {
            "merchant_wallet": merchant, "code": code, "amount_fen": amount_fen})

    @_guard
    async def register_short_code(self, key: SigningKey, wallet_id: str, secret: bytes) -> dict:
        """Register the short payment codes' secret; the wallet's issuer number and slot."""
        return await self._instruct(f"/v1/wallets/{wallet_id}/short-code", key,
                                    SHORT_CODE_SECRET, {"wallet_id": wallet_id,
                                                        "secret": secret.hex()})

    @_guard
    async def register_pin_guard(self, key: SigningKey, wallet_id: str, guard_hash: str,
                                 verifier_hash: str) -> bytes:
        """Register the guard the PIN is checked by (rail_protocol/pin_guard.py); the bank's
        share of the key file's key."""
        answer = await self._instruct(f"/v1/wallets/{wallet_id}/pin-guard", key, PIN_GUARD, {
            "wallet_id": wallet_id, "guard_hash": guard_hash, "verifier_hash": verifier_hash})
        return bytes.fromhex(answer["share"])

    @_guard
    async def open_pin_guard(self, guard_id: str, verifier: str) -> bytes:
        """The bank's share, for the right PIN's verifier (a wrong one is counted)."""
        answer = await self._request("POST", "/v1/pin-guard/open",
                                     {"guard_id": guard_id, "verifier": verifier})
        return bytes.fromhex(answer["share"])

    @_guard
    async def holds(self, key: SigningKey, wallet_id: str) -> list[Hold]:
        answer = await self._signed_get(key, f"/v1/wallets/{wallet_id}/holds")
        return [_pick(Hold, h) for h in answer["holds"]]

    @_guard
    async def release_hold(self, key: SigningKey, wallet_id: str, hold_id: str,
                           amount_fen: int) -> Hold:
        return _pick(Hold, await self._instruct(f"/v1/holds/{hold_id}/release", key,
                                                HOLD_RELEASE, {"hold_id": hold_id,
                                                               "signer_wallet": wallet_id,
                                                               "amount_fen": amount_fen}))

    @_guard
    async def spend_voucher(self, key: SigningKey, wallet_id: str, hold_id: str,
                            merchant: str, amount_fen: int) -> Hold:
        return _pick(Hold, await self._instruct(f"/v1/vouchers/{hold_id}/spend", key,
                                                VOUCHER_SPEND, {"hold_id": hold_id,
                                                                "holder_wallet": wallet_id,
                                                                "payee_wallet": merchant,
                                                                "amount_fen": amount_fen}))

    @_guard
    async def offline_reserve(self, key: SigningKey, wallet_id: str, amount_fen: int,
                              max_payments: int, purse_key: str | None = None) -> dict:
        body: dict[str, Any] = {"wallet_id": wallet_id, "amount_fen": amount_fen,
                                "max_payments": max_payments}
        if purse_key is not None:
            body["purse_key"] = purse_key
        return await self._instruct(f"/v1/wallets/{wallet_id}/offline-reserve", key,
                                    OFFLINE_RESERVE, body)

    @_guard
    async def offline_claim(self, key: SigningKey, wallet_id: str, payment: str) -> dict:
        return await self._instruct("/v1/offline/claims", key, OFFLINE_CLAIM,
                                    {"payee_wallet": wallet_id, "payment": payment})

    @_guard
    async def static_qr(self, merchant: str) -> str:
        return (await self._request("GET", f"/v1/merchants/{merchant}/qr"))["qr_payload"]

    @_guard
    async def mandates(self, key: SigningKey, wallet_id: str) -> list[Mandate]:
        answer = await self._signed_get(key, f"/v1/wallets/{wallet_id}/mandates")
        return [_pick(Mandate, m) for m in answer["mandates"]]

    @_guard
    async def create_mandate(self, key: SigningKey, payer: str, merchant: str,
                             merchant_public_key: str, *, per_payment_cap_fen: int,
                             period_cap_fen: int, period: str = "month",
                             merchant_name: str | None = None) -> Mandate:
        body: dict[str, Any] = {"payer_wallet": payer, "merchant_wallet": merchant,
                                "merchant_public_key": merchant_public_key,
                                "per_payment_cap_fen": per_payment_cap_fen,
                                "period_cap_fen": period_cap_fen, "period": period}
        if merchant_name:
            body["merchant_name"] = merchant_name
        return _pick(Mandate, await self._instruct(f"/v1/wallets/{payer}/mandates", key,
                                                   MANDATE, body))

    @_guard
    async def revoke_mandate(self, key: SigningKey, wallet_id: str, mandate_id: str
                             ) -> Mandate:
        return _pick(Mandate, await self._instruct(
            f"/v1/wallets/{wallet_id}/mandates/revoke", key, REVOKE_MANDATE,
            {"payer_wallet": wallet_id, "mandate_id": mandate_id}))

    @_guard
    async def open_deposit_account(self, phone: str, holder_name: str, opening_fen: int
                                   ) -> str:
        """Operator only (a demo's bank counter): a deposit account for `phone`."""
        answer = await self._request("POST", "/v1/operator/deposit-accounts", {
            "phone": phone, "holder_name": holder_name, "opening_fen": opening_fen})
        return answer["account_id"]


def _decode(response: httpx.Response) -> Any:
    """The JSON answer; a refusal with one of the rail's codes is RailError(code), anything
    else unexpected is upstream_unavailable."""
    try:
        data = json.loads(response.content) if response.content else None
    except ValueError:
        raise RailError("upstream_unavailable",
                        f"HTTP {response.status_code}: not JSON") from None
    if response.status_code >= 400:
        error = (data or {}).get("error", {}) if isinstance(data, dict) else {}
        code = error.get("code") if isinstance(error, dict) else None
        if code not in CODES:
            raise RailError("upstream_unavailable",
                            f"HTTP {response.status_code}: {error or response.text[:200]}")
        details = error.get("details")
        details = {k: v for k, v in details.items() if k not in ("code", "message")} \
            if isinstance(details, dict) else {}
        raise RailError(code, error.get("message"), **details)
    return data


def wallet_view(answer: dict) -> WalletView:
    merchant = answer.get("merchant")
    return _pick(WalletView, {**answer, "limits": _pick(ClassLimits, answer["limits"]),
                              "merchant": _pick(Merchant, merchant) if merchant else None})
