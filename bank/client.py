"""A bank node's HTTP client: what wallets (the Kivy app, the demo, tests) and operators use."""

from __future__ import annotations

from urllib.parse import urlencode

from rail_protocol import short_code
from rail_protocol.envelope import Envelope, seal
from rail_protocol.instruction_types import (
    CANCEL_ORDER,
    CHARGE_CODE,
    CREATE_ORDER,
    HOLD,
    HOLD_RELEASE,
    HOLD_VOID,
    MANDATE,
    MANDATE_CHARGE,
    MERCHANT_SETTINGS,
    OFFLINE_CLAIM,
    OFFLINE_RESERVE,
    OPEN_WALLET,
    PAY,
    REDEEM,
    REFUND,
    REVOKE_MANDATE,
    SHORT_CODE_SECRET,
    TOP_UP,
    UPGRADE_WALLET,
    VOUCHER,
    VOUCHER_SPEND,
    WALLET_SETTINGS,
)
from rail_protocol.keys import SigningKey
from rail_service.client import JSONClient


class BankClient(JSONClient):
    async def identity(self) -> dict:
        return await self.request("GET", "/v1/bank")

    async def send(self, path: str, env: Envelope) -> dict:
        """Send a signed instruction; resend the same envelope to retry it safely."""
        return await self.request("POST", path, env.to_dict())

    async def signed_get(self, key: SigningKey, path: str, **params) -> dict:
        """A read signed by the wallet's key over the exact path and query it sends."""
        query = urlencode({k: v for k, v in params.items() if v is not None})
        full = f"{path}?{query}" if query else path
        return await self.signed_request(key, "GET", full)

    # --- wallet side ---
    async def open_wallet(self, key: SigningKey, phone: str, *, kind: str = "personal",
                          merchant: dict | None = None) -> dict:
        body = {"phone": phone, "public_key": key.public_key.to_text(), "kind": kind}
        if merchant is not None:
            body["merchant"] = merchant
        return await self.send("/v1/wallets", seal(key, OPEN_WALLET, body))

    async def upgrade(self, key: SigningKey, wallet_id: str, **evidence) -> dict:
        return await self.send(f"/v1/wallets/{wallet_id}/upgrade",
                               seal(key, UPGRADE_WALLET, {"wallet_id": wallet_id, **evidence}))

    async def settings(self, key: SigningKey, wallet_id: str, *, topup_on_use: bool) -> dict:
        return await self.send(f"/v1/wallets/{wallet_id}/settings", seal(
            key, WALLET_SETTINGS, {"wallet_id": wallet_id, "topup_on_use": topup_on_use}))

    def pay_envelope(self, key: SigningKey, payer: str, payee: str, amount_fen: int,
                     memo: str | None = None, order_id: str | None = None,
                     **seal_args) -> Envelope:
        body = {"payer_wallet": payer, "payee_wallet": payee, "amount_fen": amount_fen}
        if memo:
            body["memo"] = memo
        if order_id:
            body["order_id"] = order_id
        return seal(key, PAY, body, **seal_args)

    async def pay(self, key: SigningKey, payer: str, payee: str, amount_fen: int,
                  memo: str | None = None, order_id: str | None = None) -> dict:
        return await self.send("/v1/payments", self.pay_envelope(
            key, payer, payee, amount_fen, memo, order_id))

    # --- merchant side ---
    async def create_order(self, key: SigningKey, merchant: str, amount_fen: int,
                           reference: str, description: str | None = None,
                           ttl_ms: int | None = None) -> dict:
        body = {"merchant_wallet": merchant, "amount_fen": amount_fen, "reference": reference}
        if description:
            body["description"] = description
        if ttl_ms is not None:
            body["ttl_ms"] = ttl_ms
        return await self.send("/v1/merchant/orders", seal(key, CREATE_ORDER, body))

    async def cancel_order(self, key: SigningKey, merchant: str, order_id: str) -> dict:
        return await self.send(f"/v1/merchant/orders/{order_id}/cancel", seal(
            key, CANCEL_ORDER, {"merchant_wallet": merchant, "order_id": order_id}))

    def refund_envelope(self, key: SigningKey, merchant: str, payment_id: str,
                        amount_fen: int, **seal_args) -> Envelope:
        return seal(key, REFUND, {"merchant_wallet": merchant, "payment_id": payment_id,
                                  "amount_fen": amount_fen}, **seal_args)

    async def refund(self, key: SigningKey, merchant: str, payment_id: str,
                     amount_fen: int) -> dict:
        return await self.send("/v1/merchant/refunds",
                               self.refund_envelope(key, merchant, payment_id, amount_fen))

    async def merchant_settings(self, key: SigningKey, merchant: str,
                                webhook_url: str | None) -> dict:
        return await self.send("/v1/merchant/settings", seal(
            key, MERCHANT_SETTINGS, {"merchant_wallet": merchant, "webhook_url": webhook_url}))

    async def webhook_deliveries(self, key: SigningKey, merchant: str) -> dict:
        return await self.signed_get(key, f"/v1/wallets/{merchant}/webhook-deliveries")

    async def charge_code(self, key: SigningKey, merchant: str, code: str, amount_fen: int) -> dict:
        return await self.send("/v1/merchant/charges", seal(key, CHARGE_CODE, {
            "merchant_wallet": merchant, "code": code, "amount_fen": amount_fen}))

    async def register_short_code(self, key: SigningKey, wallet_id: str) -> dict:
        """Register the wallet's short-code secret (derived from its key); its slot back."""
        secret = short_code.derive_secret(key).hex()
        return await self.send(f"/v1/wallets/{wallet_id}/short-code", seal(
            key, SHORT_CODE_SECRET, {"wallet_id": wallet_id, "secret": secret}))

    # --- holds and vouchers (bank/holds.py) ------------------------------------------

    async def open_hold(self, key: SigningKey, payer: str, merchant: str, amount_fen: int, *,
                        deadline_ms: int, release_by: str = "merchant",
                        memo: str | None = None) -> dict:
        body = {"payer_wallet": payer, "payee_wallet": merchant, "amount_fen": amount_fen,
                "deadline_ms": deadline_ms, "release_by": release_by, "memo": memo}
        return await self.send("/v1/holds", seal(key, HOLD, body))

    async def release_hold(self, key: SigningKey, signer: str, hold_id: str,
                           amount_fen: int) -> dict:
        return await self.send(f"/v1/holds/{hold_id}/release", seal(key, HOLD_RELEASE, {
            "hold_id": hold_id, "signer_wallet": signer, "amount_fen": amount_fen}))

    async def void_hold(self, key: SigningKey, signer: str, hold_id: str,
                        voucher: bool = False) -> dict:
        path = f"/v1/{'vouchers' if voucher else 'holds'}/{hold_id}/void"
        return await self.send(path, seal(key, HOLD_VOID, {"hold_id": hold_id,
                                                           "signer_wallet": signer}))

    async def open_voucher(self, key: SigningKey, issuer: str, holder: str, amount_fen: int, *,
                           deadline_ms: int, mcc: str | None = None,
                           memo: str | None = None) -> dict:
        body = {"issuer_wallet": issuer, "holder_wallet": holder, "amount_fen": amount_fen,
                "deadline_ms": deadline_ms, "mcc": mcc, "memo": memo}
        return await self.send("/v1/vouchers", seal(key, VOUCHER, body))

    async def spend_voucher(self, key: SigningKey, holder: str, hold_id: str, merchant: str,
                            amount_fen: int) -> dict:
        return await self.send(f"/v1/vouchers/{hold_id}/spend", seal(key, VOUCHER_SPEND, {
            "hold_id": hold_id, "holder_wallet": holder, "payee_wallet": merchant,
            "amount_fen": amount_fen}))

    async def offline_reserve(self, key: SigningKey, wallet_id: str, amount_fen: int,
                              max_payments: int, purse_key: str | None = None) -> dict:
        body = {"wallet_id": wallet_id, "amount_fen": amount_fen, "max_payments": max_payments}
        if purse_key is not None:
            body["purse_key"] = purse_key
        return await self.send(f"/v1/wallets/{wallet_id}/offline-reserve", seal(
            key, OFFLINE_RESERVE, body))

    async def offline_claim(self, key: SigningKey, wallet_id: str, payment: str) -> dict:
        return await self.send("/v1/offline/claims", seal(
            key, OFFLINE_CLAIM, {"payee_wallet": wallet_id, "payment": payment}))

    async def holds(self, key: SigningKey, wallet_id: str) -> dict:
        return await self.signed_get(key, f"/v1/wallets/{wallet_id}/holds")

    async def create_mandate(self, key: SigningKey, payer: str, merchant: str,
                             merchant_public_key: str, *, per_payment_cap_fen: int,
                             period_cap_fen: int, period: str = "month",
                             merchant_name: str | None = None) -> dict:
        body = {"payer_wallet": payer, "merchant_wallet": merchant,
                "merchant_public_key": merchant_public_key,
                "per_payment_cap_fen": per_payment_cap_fen, "period_cap_fen": period_cap_fen,
                "period": period}
        if merchant_name:
            body["merchant_name"] = merchant_name
        return await self.send(f"/v1/wallets/{payer}/mandates", seal(key, MANDATE, body))

    async def revoke_mandate(self, key: SigningKey, payer: str, mandate_id: str) -> dict:
        return await self.send(f"/v1/wallets/{payer}/mandates/revoke", seal(
            key, REVOKE_MANDATE, {"payer_wallet": payer, "mandate_id": mandate_id}))

    async def mandates(self, key: SigningKey, payer: str) -> dict:
        return await self.signed_get(key, f"/v1/wallets/{payer}/mandates")

    async def mandate_charge(self, key: SigningKey, merchant: str, payer: str,
                             mandate_id: str, amount_fen: int) -> dict:
        return await self.send("/v1/merchant/mandate-charges", seal(key, MANDATE_CHARGE, {
            "merchant_wallet": merchant, "payer_wallet": payer, "mandate_id": mandate_id,
            "amount_fen": amount_fen}))

    async def order(self, order_id: str) -> dict:
        return await self.request("GET", f"/v1/orders/{order_id}")

    async def static_qr(self, merchant: str) -> str:
        return (await self.request("GET", f"/v1/merchants/{merchant}/qr"))["qr_payload"]

    async def top_up(self, key: SigningKey, wallet_id: str, amount_fen: int) -> dict:
        return await self.send(f"/v1/wallets/{wallet_id}/top-up", seal(
            key, TOP_UP, {"wallet_id": wallet_id, "amount_fen": amount_fen}))

    async def redeem(self, key: SigningKey, wallet_id: str, amount_fen: int) -> dict:
        return await self.send(f"/v1/wallets/{wallet_id}/redeem", seal(
            key, REDEEM, {"wallet_id": wallet_id, "amount_fen": amount_fen}))

    async def wallet(self, key: SigningKey, wallet_id: str) -> dict:
        return await self.signed_get(key, f"/v1/wallets/{wallet_id}")

    async def history(self, key: SigningKey, wallet_id: str, **filters) -> dict:
        return await self.signed_get(key, f"/v1/wallets/{wallet_id}/history", **filters)

    async def payment(self, key: SigningKey, wallet_id: str, payment_id: str) -> dict:
        return await self.signed_get(key, f"/v1/wallets/{wallet_id}/payments/{payment_id}")

    # --- operator side ---
    async def open_deposit_account(self, phone: str, holder_name: str, opening_fen: int,
                                   account_id: str | None = None) -> dict:
        body = {"phone": phone, "holder_name": holder_name, "opening_fen": opening_fen}
        if account_id:
            body["account_id"] = account_id
        return await self.request("POST", "/v1/operator/deposit-accounts", body)

    async def deposit_account(self, account_id: str) -> dict:
        return await self.request("GET", f"/v1/operator/deposit-accounts/{account_id}")

    async def set_class(self, wallet_id: str, kyc_class: int) -> dict:
        return await self.request("POST", f"/v1/operator/wallets/{wallet_id}/class",
                                  {"kyc_class": kyc_class})

    async def close_wallet(self, wallet_id: str) -> dict:
        return await self.request("POST", f"/v1/operator/wallets/{wallet_id}/close", {})

    async def operator_wallet(self, wallet_id: str) -> dict:
        return await self.request("GET", f"/v1/operator/wallets/{wallet_id}")

    async def audit(self) -> dict:
        return await self.request("GET", "/v1/operator/audit")

    async def checkpoint(self) -> dict:
        """Central's latest checkpoint against this bank's books, and any alarm."""
        return await self.request("GET", "/v1/operator/checkpoint")

    async def check_checkpoint(self) -> dict:
        """Have the bank fetch, verify and compare central's latest checkpoint now."""
        return await self.request("POST", "/v1/operator/checkpoint/check")

    async def credited(self, transfer_ids: list[str]) -> dict:
        return await self.request("POST", "/v1/operator/credited", {"transfer_ids": transfer_ids})
