"""docs/roles.md is the truth about who may call what: it lists every route of central and of
a bank node, and each route, called by every kind of caller with that caller's own
credential, answers 2xx exactly to the callers the table names and refuses every other
(401, 403, or 404 where the thing is not theirs to know of).

The rail is real (central and two banks on PostgreSQL, Redis); a third bank, `delta`, is
enrolled at central with no node, to be a bank that is neither named nor a party. Allowed
calls are real calls; the few made straight to central as a bank (issuance, redemption,
message 1) act for yangtze without its node's books, so this rail's audit is not asserted."""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jsonschema
import orjson
import pytest

from central.client import registration_envelope, transfer_envelope
from rail_protocol import instruction_types as kinds
from rail_protocol import offline, pin_guard
from rail_protocol.batches import seal_batch
from rail_protocol.envelope import MAX_TTL_MS, now_ms, seal, unsigned
from rail_protocol.errors import CODES
from rail_protocol.keys import SigningKey
from rail_protocol.money import yuan
from rail_protocol.payment_code import make_code
from rail_protocol.request_auth import sign_read
from tests.support.rail import BANK_TOKENS, CENTRAL_TOKEN, Rail, Wallet, new_phone, rail_factory  # noqa: F401

pytestmark = pytest.mark.integration
ROLES_DOC = Path(__file__).resolve().parents[2] / "docs" / "roles.md"
BANK, OTHER = "yangtze", "pearl"


# --- the table ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    service: str
    method: str
    path: str
    who: frozenset[str]


def read_table() -> list[Row]:
    rows = []
    for line in ROLES_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ("central", "bank"):
            rows.append(Row(cells[0], cells[1], cells[2], frozenset(cells[3].split(" or "))))
    return rows


# Which caller each name in the table's last column stands for, per service.
MEANS = {
    "central": {"central operator": {"central_operator"}, "the bank named": {"yangtze_key"},
                "an enrolled bank": {"yangtze_key", "pearl_key", "delta_key"},
                "a party bank": {"yangtze_key", "pearl_key"}},
    "bank": {"the wallet": {"wallet"}, "the merchant": {"merchant"},
             "bank operator": {"yangtze_operator"}, "central": {"central_key"},
             "the holder": {"other_wallet"}, "the receiver": {"other_wallet"},
             "the merchant's bank": {"pearl_key"}},
}
CALLERS = {
    "central": ["anonymous", "central_operator", "yangtze_operator", "yangtze_key", "pearl_key",
                "delta_key", "wallet"],
    "bank": ["anonymous", "central_operator", "yangtze_operator", "pearl_operator",
             "central_key", "pearl_key", "wallet", "other_wallet", "merchant", "other_merchant"],
}
REFUSALS = {401: {"unauthorized", "unsigned", "unknown_key", "bad_signature"},
            403: {"forbidden", "wrong_key", "signer_mismatch"},
            404: {"not_found"}}


def allowed_callers(row: Row) -> set[str]:
    if "anyone" in row.who:
        return set(CALLERS[row.service])
    unknown = row.who - set(MEANS[row.service])
    assert not unknown, f"docs/roles.md: {row.path} names callers this test does not know: {unknown}"
    return set().union(*(MEANS[row.service][name] for name in row.who))


# --- callers and requests ----------------------------------------------------------------------

@dataclass
class Caller:
    """One party, holding only its own credential: an operator token or a signing key."""
    name: str
    token: str | None = None
    key: SigningKey | None = None

    def read_auth(self, method: str, path: str) -> dict:
        if self.token:
            return {"authorization": f"Bearer {self.token}"}
        if self.key:
            return {"authorization": sign_read(self.key, method, path)}
        return {}

    def signing_key(self) -> SigningKey:
        """The key it signs instructions with: its own, or, holding none, a key of nobody's."""
        return self.key or SigningKey.generate()


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: dict | None = None


def read(caller: Caller, path: str, method: str = "GET") -> Request:
    return Request(method, path, caller.read_auth(method, path))


def with_token(caller: Caller, method: str, path: str, body: dict | None = None) -> Request:
    """An operator's call: its credential goes in the header; a key-holder signs a read."""
    return Request(method, path, caller.read_auth(method, path), body)


def signed(caller: Caller, path: str, kind: str, body: dict, **seal_args) -> Request:
    """An instruction signed by the caller's key (an operator's token rides along)."""
    env = seal(caller.signing_key(), kind, body, **seal_args)
    headers = {"authorization": f"Bearer {caller.token}"} if caller.token else {}
    return Request("POST", path, headers, env.to_dict())


@dataclass
class World:
    rail: Rail
    wallet: Wallet
    other_wallet: Wallet
    merchant: Wallet
    other_merchant: Wallet
    pearl_merchant: Wallet
    payment_id: str            # the wallet paid the merchant: refundable
    mandate_id: str            # the wallet's mandate for the merchant
    order_id: str              # one of the merchant's orders, cancelled (its events end at once)
    transfer_id: str           # a real interbank transfer, yangtze -> pearl
    credit: dict               # message 2 of a real transfer pearl -> yangtze, as central sent it
    deposit_account: str
    callers: dict[str, Caller] = field(default_factory=dict)
    counter: itertools.count = field(default_factory=itertools.count)

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}-{secrets.token_hex(3)}"


Factory = Callable[[World, Caller], Awaitable[Request]]
FACTORIES: dict[tuple[str, str, str], Factory] = {}


def route(service: str, method: str, path: str):
    def register(factory: Factory) -> Factory:
        FACTORIES[(service, method, path)] = factory
        return factory
    return register


# --- central's routes --------------------------------------------------------------------------

for _path in ("/v1/health", "/v1/central"):
    route("central", "GET", _path)(lambda w, c, p=_path: _aread(c, p))
for _path in ("/v1/supply", "/v1/journal", "/v1/audit", "/v1/transfers", "/v1/checkpoints/latest",
              "/dashboard/figures.json",
              "/v1/banks/{bank_id}/node", "/v1/banks/{bank_id}/certificate", "/v1/banks/{bank_id}"):
    route("central", "GET", _path)(lambda w, c, p=_path: _aread(c, p.format(bank_id=BANK)))


async def _aread(caller: Caller, path: str) -> Request:
    return read(caller, path)


@route("central", "POST", "/v1/banks")
async def _enrol(w: World, c: Caller) -> Request:
    env = registration_envelope(SigningKey.generate(), w.unique("bank").replace("-", ""), "A Bank")
    return with_token(c, "POST", "/v1/banks", env.to_dict())


@route("central", "POST", "/v1/banks/{bank_id}/reserve-deposits")
async def _reserves(w: World, c: Caller) -> Request:
    return with_token(c, "POST", f"/v1/banks/{BANK}/reserve-deposits",
                      {"deposit_id": w.unique("deposit"), "amount_fen": 1})


@route("central", "POST", "/v1/issuance")
async def _issue(w: World, c: Caller) -> Request:
    return signed(c, "/v1/issuance", kinds.CENTRAL_ISSUE, {"bank_id": BANK, "amount_fen": 1})


@route("central", "POST", "/v1/redemption")
async def _redeem_at_central(w: World, c: Caller) -> Request:
    return signed(c, "/v1/redemption", kinds.CENTRAL_REDEEM, {"bank_id": BANK, "amount_fen": 1})


def _message1(w: World, c: Caller) -> dict:
    return transfer_envelope(c.signing_key(), BANK, OTHER, 1, w.pearl_merchant.wallet_id).to_dict()


@route("central", "POST", "/v1/transfers")
async def _transfer(w: World, c: Caller) -> Request:
    return with_token(c, "POST", "/v1/transfers", _message1(w, c)) if c.token else \
        Request("POST", "/v1/transfers", {}, _message1(w, c))


@route("central", "POST", "/v1/transfers/batch")
async def _transfers(w: World, c: Caller) -> Request:
    body = {"transfers": [_message1(w, c)]}
    return with_token(c, "POST", "/v1/transfers/batch", body) if c.token else \
        Request("POST", "/v1/transfers/batch", {}, body)


@route("central", "POST", "/v1/transfers/sealed-batch")
async def _sealed_transfers(w: World, c: Caller) -> Request:
    """The same message 1 in a sealed batch, under one signature of the caller's."""
    key = c.signing_key()
    env = transfer_envelope(key, BANK, OTHER, 1, w.pearl_merchant.wallet_id)
    item = unsigned(key.key_id, env.type, env.body, id=env.id, created_ms=env.created_ms,
                    ttl_ms=env.expires_ms - env.created_ms)
    body = seal_batch(key, "transfers", [item])
    return with_token(c, "POST", "/v1/transfers/sealed-batch", body) if c.token else \
        Request("POST", "/v1/transfers/sealed-batch", {}, body)


@route("central", "GET", "/v1/transfers/{transfer_id}")
async def _transfer_view(w: World, c: Caller) -> Request:
    return read(c, f"/v1/transfers/{w.transfer_id}")


# --- a bank's routes ---------------------------------------------------------------------------

for _path in ("/v1/health", "/v1/bank"):
    route("bank", "GET", _path)(lambda w, c, p=_path: _aread(c, p))
for _path in ("/v1/orders/{order_id}", "/v1/orders/{order_id}/qr.png",
              "/v1/orders/{order_id}/qr.svg", "/v1/orders/{order_id}/events",
              "/cashier/{order_id}"):
    route("bank", "GET", _path)(lambda w, c, p=_path: _aread(c, p.format(order_id=w.order_id)))
for _path in ("/v1/merchants/{wallet_id}/qr", "/v1/merchants/{wallet_id}/qr.png",
              "/v1/merchants/{wallet_id}/qr.svg"):
    route("bank", "GET", _path)(
        lambda w, c, p=_path: _aread(c, p.format(wallet_id=w.merchant.wallet_id)))
for _path in ("/v1/wallets/{wallet_id}", "/v1/wallets/{wallet_id}/history",
              "/v1/wallets/{wallet_id}/mandates", "/v1/wallets/{wallet_id}/holds"):
    route("bank", "GET", _path)(
        lambda w, c, p=_path: _aread(c, p.format(wallet_id=w.wallet.wallet_id)))
for _path in ("/v1/operator/wallets/{wallet_id}", "/v1/operator/audit",
              "/v1/operator/checkpoint", "/v1/registry/finding", "/dashboard/figures.json", "/v1/operator/deposit-accounts/{account_id}"):
    route("bank", "GET", _path)(lambda w, c, p=_path: _aread(
        c, p.format(wallet_id=w.wallet.wallet_id, account_id=w.deposit_account)))


@route("bank", "GET", "/v1/wallets/{wallet_id}/payments/{payment_id}")
async def _payment(w: World, c: Caller) -> Request:
    return read(c, f"/v1/wallets/{w.wallet.wallet_id}/payments/{w.payment_id}")


@route("bank", "GET", "/v1/wallets/{wallet_id}/webhook-deliveries")
async def _deliveries(w: World, c: Caller) -> Request:
    return read(c, f"/v1/wallets/{w.merchant.wallet_id}/webhook-deliveries")


@route("bank", "POST", "/v1/wallets")
async def _open(w: World, c: Caller) -> Request:
    key = SigningKey.generate()        # anyone opens a wallet with a key made on the device
    env = seal(key, kinds.OPEN_WALLET, {"phone": new_phone(), "public_key": key.public_key.to_text(),
                                        "kind": "personal"})
    return Request("POST", "/v1/wallets", c.read_auth("POST", "/v1/wallets"), env.to_dict())


def _wallet_instruction(path: str, kind: str, body: Callable[[World], dict]) -> None:
    async def factory(w: World, c: Caller) -> Request:
        return signed(c, path.format(wallet_id=w.wallet.wallet_id), kind, body(w))
    route("bank", "POST", path)(factory)


_wallet_instruction("/v1/wallets/{wallet_id}/upgrade", kinds.UPGRADE_WALLET, lambda w: {
    "wallet_id": w.wallet.wallet_id, "id_number": w.wallet.id_number,
    "deposit_account": w.wallet.deposit_account})
_wallet_instruction("/v1/wallets/{wallet_id}/settings", kinds.WALLET_SETTINGS, lambda w: {
    "wallet_id": w.wallet.wallet_id, "topup_on_use": False})
_wallet_instruction("/v1/wallets/{wallet_id}/top-up", kinds.TOP_UP, lambda w: {
    "wallet_id": w.wallet.wallet_id, "amount_fen": 1})
_wallet_instruction("/v1/wallets/{wallet_id}/redeem", kinds.REDEEM, lambda w: {
    "wallet_id": w.wallet.wallet_id, "amount_fen": 1})
_wallet_instruction("/v1/wallets/{wallet_id}/short-code", kinds.SHORT_CODE_SECRET, lambda w: {
    "wallet_id": w.wallet.wallet_id, "secret": "ab" * 32})
_wallet_instruction("/v1/wallets/{wallet_id}/pin-guard", kinds.PIN_GUARD, lambda w: {
    "wallet_id": w.wallet.wallet_id, "guard_hash": secrets.token_hex(32),
    "verifier_hash": secrets.token_hex(32)})


@route("bank", "POST", "/v1/pin-guard/open")
async def _open_pin_guard(w: World, c: Caller) -> Request:
    """Whoever holds the guard id and the right verifier (a wallet's own file)."""
    guard_id, verifier = secrets.token_hex(16), secrets.token_hex(32)
    await w.rail.client(BANK).send(f"/v1/wallets/{w.other_wallet.wallet_id}/pin-guard", seal(
        w.other_wallet.key, kinds.PIN_GUARD, {
            "wallet_id": w.other_wallet.wallet_id, "guard_hash": pin_guard.digest(guard_id),
            "verifier_hash": pin_guard.digest(verifier)}))
    return Request("POST", "/v1/pin-guard/open", c.read_auth("POST", "/v1/pin-guard/open"),
                   {"guard_id": guard_id, "verifier": verifier})


_wallet_instruction("/v1/wallets/{wallet_id}/mandates", kinds.MANDATE, lambda w: {
    "payer_wallet": w.wallet.wallet_id, "merchant_wallet": w.merchant.wallet_id,
    "merchant_public_key": w.merchant.key.public_key.to_text(), "per_payment_cap_fen": 100,
    "period_cap_fen": 1_000, "period": "month"})


@route("bank", "POST", "/v1/payments")
async def _pay(w: World, c: Caller) -> Request:
    return signed(c, "/v1/payments", kinds.PAY, {"payer_wallet": w.wallet.wallet_id,
                                                 "payee_wallet": w.other_wallet.wallet_id,
                                                 "amount_fen": 1})


@route("bank", "POST", "/v1/wallets/{wallet_id}/mandates/revoke")
async def _revoke(w: World, c: Caller) -> Request:
    mandate = await w.rail.client(BANK).create_mandate(
        w.wallet.key, w.wallet.wallet_id, w.merchant.wallet_id,
        w.merchant.key.public_key.to_text(), per_payment_cap_fen=100, period_cap_fen=1_000)
    return signed(c, f"/v1/wallets/{w.wallet.wallet_id}/mandates/revoke", kinds.REVOKE_MANDATE,
                  {"payer_wallet": w.wallet.wallet_id, "mandate_id": mandate["mandate_id"]})


def _hold_body(w: World) -> dict:
    return {"payer_wallet": w.wallet.wallet_id, "payee_wallet": w.merchant.wallet_id,
            "amount_fen": 1, "deadline_ms": now_ms() + 3_600_000, "release_by": "merchant"}


def _voucher_body(w: World) -> dict:
    return {"issuer_wallet": w.wallet.wallet_id, "holder_wallet": w.other_wallet.wallet_id,
            "amount_fen": 2, "deadline_ms": now_ms() + 3_600_000}


@route("bank", "POST", "/v1/holds")
async def _hold(w: World, c: Caller) -> Request:
    return signed(c, "/v1/holds", kinds.HOLD, _hold_body(w))


async def _new_hold(w: World) -> str:
    made = await w.rail.client(BANK).send("/v1/holds", seal(w.wallet.key, kinds.HOLD,
                                                            _hold_body(w)))
    return made["hold_id"]


async def _new_voucher(w: World) -> str:
    made = await w.rail.client(BANK).send("/v1/vouchers", seal(w.wallet.key, kinds.VOUCHER,
                                                               _voucher_body(w)))
    return made["hold_id"]


@route("bank", "POST", "/v1/holds/{hold_id}/release")
async def _release(w: World, c: Caller) -> Request:
    hold_id = await _new_hold(w)
    return signed(c, f"/v1/holds/{hold_id}/release", kinds.HOLD_RELEASE, {
        "hold_id": hold_id, "signer_wallet": w.merchant.wallet_id, "amount_fen": 1})


@route("bank", "POST", "/v1/holds/{hold_id}/void")
async def _void_hold(w: World, c: Caller) -> Request:
    hold_id = await _new_hold(w)
    return signed(c, f"/v1/holds/{hold_id}/void", kinds.HOLD_VOID, {
        "hold_id": hold_id, "signer_wallet": w.merchant.wallet_id})


@route("bank", "POST", "/v1/vouchers")
async def _voucher(w: World, c: Caller) -> Request:
    return signed(c, "/v1/vouchers", kinds.VOUCHER, _voucher_body(w))


@route("bank", "POST", "/v1/vouchers/{hold_id}/spend")
async def _spend(w: World, c: Caller) -> Request:
    hold_id = await _new_voucher(w)
    return signed(c, f"/v1/vouchers/{hold_id}/spend", kinds.VOUCHER_SPEND, {
        "hold_id": hold_id, "holder_wallet": w.other_wallet.wallet_id,
        "payee_wallet": w.merchant.wallet_id, "amount_fen": 1})


@route("bank", "POST", "/v1/vouchers/{hold_id}/void")
async def _void_voucher(w: World, c: Caller) -> Request:
    hold_id = await _new_voucher(w)
    return signed(c, f"/v1/vouchers/{hold_id}/void", kinds.HOLD_VOID, {
        "hold_id": hold_id, "signer_wallet": w.wallet.wallet_id})


@route("bank", "POST", "/v1/wallets/{wallet_id}/offline-reserve")
async def _offline_reserve(w: World, c: Caller) -> Request:
    return signed(c, f"/v1/wallets/{w.wallet.wallet_id}/offline-reserve",
                  kinds.OFFLINE_RESERVE, {"wallet_id": w.wallet.wallet_id, "amount_fen": 1,
                                          "max_payments": 1})


@route("bank", "POST", "/v1/offline/claims")
async def _offline_claim(w: World, c: Caller) -> Request:
    """The wallet paid the other wallet offline; the caller syncs the note."""
    made = await w.rail.client(BANK).offline_reserve(w.wallet.key, w.wallet.wallet_id, 1, 1)
    note = offline.make_note(w.wallet.key, made["purse"], 1, w.other_wallet.wallet_id, 1)
    return signed(c, "/v1/offline/claims", kinds.OFFLINE_CLAIM, {
        "payee_wallet": w.other_wallet.wallet_id, "payment": note.text})


@route("bank", "POST", "/v1/merchant/orders")
async def _order(w: World, c: Caller) -> Request:
    return signed(c, "/v1/merchant/orders", kinds.CREATE_ORDER, {
        "merchant_wallet": w.merchant.wallet_id, "amount_fen": 100, "reference": w.unique("ref")})


@route("bank", "POST", "/v1/merchant/orders/{order_id}/cancel")
async def _cancel(w: World, c: Caller) -> Request:
    order = await w.rail.client(BANK).create_order(w.merchant.key, w.merchant.wallet_id, 100,
                                                   w.unique("ref"))
    return signed(c, f"/v1/merchant/orders/{order['order_id']}/cancel", kinds.CANCEL_ORDER,
                  {"merchant_wallet": w.merchant.wallet_id, "order_id": order["order_id"]})


@route("bank", "POST", "/v1/merchant/refunds")
async def _refund(w: World, c: Caller) -> Request:
    return signed(c, "/v1/merchant/refunds", kinds.REFUND, {
        "merchant_wallet": w.merchant.wallet_id, "payment_id": w.payment_id, "amount_fen": 1})


@route("bank", "POST", "/v1/merchant/settings")
async def _merchant_settings(w: World, c: Caller) -> Request:
    return signed(c, "/v1/merchant/settings", kinds.MERCHANT_SETTINGS, {
        "merchant_wallet": w.merchant.wallet_id, "webhook_url": None})


@route("bank", "POST", "/v1/merchant/charges")
async def _charge(w: World, c: Caller) -> Request:
    return signed(c, "/v1/merchant/charges", kinds.CHARGE_CODE, {
        "merchant_wallet": w.merchant.wallet_id, "amount_fen": 1,
        "code": make_code(w.wallet.key, w.wallet.wallet_id)})


@route("bank", "POST", "/v1/merchant/mandate-charges")
async def _mandate_charge(w: World, c: Caller) -> Request:
    return signed(c, "/v1/merchant/mandate-charges", kinds.MANDATE_CHARGE, {
        "merchant_wallet": w.merchant.wallet_id, "payer_wallet": w.wallet.wallet_id,
        "mandate_id": w.mandate_id, "amount_fen": 1})


@route("bank", "POST", "/v1/interbank/charges")
async def _interbank_charge(w: World, c: Caller) -> Request:
    """The payer's code, scanned at a merchant of pearl, forwarded by pearl's node."""
    return signed(c, "/v1/interbank/charges", kinds.INTERBANK_CHARGE, {
        "merchant_bank": OTHER, "merchant_wallet": w.pearl_merchant.wallet_id, "amount_fen": 1,
        "code": make_code(w.wallet.key, w.wallet.wallet_id)})


def _credit(w: World, c: Caller) -> dict:
    """Message 2 of a transfer yangtze was paid by, signed by the caller: from central, a
    repeat, answered with the first outcome; from anyone else, a forgery."""
    return seal(c.signing_key(), kinds.INTERBANK_CREDIT, w.credit["body"],
                id=w.credit["body"]["transfer_id"], ttl_ms=MAX_TTL_MS).to_dict()


@route("bank", "POST", "/v1/interbank/credits")
async def _interbank_credit(w: World, c: Caller) -> Request:
    return Request("POST", "/v1/interbank/credits", c.read_auth("POST", "/x"), _credit(w, c))


@route("bank", "POST", "/v1/interbank/credits/batch")
async def _interbank_credits(w: World, c: Caller) -> Request:
    return Request("POST", "/v1/interbank/credits/batch", c.read_auth("POST", "/x"),
                   {"credits": [_credit(w, c)]})


@route("bank", "POST", "/v1/interbank/credits/sealed-batch")
async def _sealed_credits(w: World, c: Caller) -> Request:
    """The same message 2 in a sealed batch, under one signature of the caller's."""
    key = c.signing_key()
    env = unsigned(key.key_id, kinds.INTERBANK_CREDIT, w.credit["body"],
                   id=w.credit["body"]["transfer_id"], ttl_ms=MAX_TTL_MS)
    return Request("POST", "/v1/interbank/credits/sealed-batch", c.read_auth("POST", "/x"),
                   seal_batch(key, "credits", [env]))


@route("bank", "POST", "/v1/operator/deposit-accounts")
async def _deposit_account(w: World, c: Caller) -> Request:
    return with_token(c, "POST", "/v1/operator/deposit-accounts", {
        "phone": new_phone(), "holder_name": "Wang Fang", "opening_fen": 100})


@route("bank", "POST", "/v1/operator/wallets/{wallet_id}/class")
async def _set_class(w: World, c: Caller) -> Request:
    return with_token(c, "POST", f"/v1/operator/wallets/{w.other_wallet.wallet_id}/class",
                      {"kyc_class": 4})


@route("bank", "POST", "/v1/operator/wallets/{wallet_id}/close")
async def _close(w: World, c: Caller) -> Request:
    spare = await w.rail.open_wallet(BANK)
    return with_token(c, "POST", f"/v1/operator/wallets/{spare.wallet_id}/close", {})


@route("bank", "POST", "/v1/operator/credited")
async def _credited(w: World, c: Caller) -> Request:
    return with_token(c, "POST", "/v1/operator/credited", {"transfer_ids": [w.transfer_id]})


@route("bank", "POST", "/v1/operator/checkpoint/check")
async def _check_checkpoint(w: World, c: Caller) -> Request:
    return with_token(c, "POST", "/v1/operator/checkpoint/check", {})


# --- the walk ----------------------------------------------------------------------------------

async def build_world(rail: Rail) -> World:
    wallet = await rail.funded_wallet(BANK, yuan(100), kyc_class=2, linked_deposit_fen=yuan(100))
    other_wallet = await rail.funded_wallet(BANK, yuan(1))
    merchant = await rail.open_wallet(BANK, kind="merchant", kyc_class=1)
    other_merchant = await rail.open_wallet(BANK, kind="merchant", kyc_class=1)
    pearl_merchant = await rail.open_wallet(OTHER, kind="merchant", kyc_class=1)
    pearl_payer = await rail.funded_wallet(OTHER, yuan(10))
    client = rail.client(BANK)
    paid = await rail.pay(wallet, merchant, yuan(1))
    mandate = await client.create_mandate(
        wallet.key, wallet.wallet_id, merchant.wallet_id, merchant.key.public_key.to_text(),
        per_payment_cap_fen=100, period_cap_fen=1_000)
    order = await client.create_order(merchant.key, merchant.wallet_id, 100, "walk")
    await client.cancel_order(merchant.key, merchant.wallet_id, order["order_id"])
    out = await rail.pay(wallet, pearl_merchant, 100)
    inbound = await rail.pay(pearl_payer, wallet, 100)
    assert out["status"] == inbound["status"] == "settled"
    credit = await rail.central.get_transfer(inbound["transfer_id"])
    body = {name: credit[name] for name in ("transfer_id", "from_bank", "to_bank", "amount_fen",
                                            "payee_wallet")}
    if credit.get("details"):
        body["details"] = credit["details"]
    delta = SigningKey.generate()
    await rail.central.register_bank(delta, "delta", "Delta Bank (no node)")
    world = World(rail, wallet, other_wallet, merchant, other_merchant, pearl_merchant,
                  paid["payment_id"], mandate["mandate_id"], order["order_id"],
                  out["transfer_id"], {"body": body}, wallet.deposit_account)
    world.callers = {c.name: c for c in [
        Caller("anonymous"), Caller("central_operator", token=CENTRAL_TOKEN),
        Caller("yangtze_operator", token=BANK_TOKENS[BANK]),
        Caller("pearl_operator", token=BANK_TOKENS[OTHER]),
        Caller("yangtze_key", key=rail.banks[BANK].node.key),
        Caller("pearl_key", key=rail.banks[OTHER].node.key), Caller("delta_key", key=delta),
        Caller("central_key", key=rail.central_key), Caller("wallet", key=wallet.key),
        Caller("other_wallet", key=other_wallet.key), Caller("merchant", key=merchant.key),
        Caller("other_merchant", key=other_merchant.key)]}
    return world


def answer_of(response: httpx.Response) -> tuple[int, str | None]:
    """(status, error code) of an answer; a batch of one answers in its only item."""
    assert response.status_code < 500, response.text
    if not response.headers.get("content-type", "").startswith("application/json"):
        return response.status_code, None
    body = response.json()
    if response.status_code == 200 and isinstance(body, dict) and "results" in body:
        [item] = body["results"]
        if isinstance(item, dict) and "error" in item:
            return CODES[item["error"]["code"]][0], item["error"]["code"]
    error = body.get("error") if isinstance(body, dict) else None
    return response.status_code, error.get("code") if isinstance(error, dict) else None


def documented_routes(app) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in app.openapi()["paths"].items()
            for method in ops}


def test_the_roles_table_lists_every_route_of_both_services_once():
    from bank.app import create_app as bank_app
    from bank.config import BankSettings
    from central.app import create_app as central_app
    from central.config import CentralSettings

    rows = read_table()
    listed = [(r.service, r.method, r.path) for r in rows]
    assert len(listed) == len(set(listed)), "a route is listed twice"
    for service, app in (("central", central_app(CentralSettings())),
                         ("bank", bank_app(BankSettings()))):
        in_table = {(m, p) for s, m, p in listed if s == service}
        assert in_table == documented_routes(app), \
            f"{service}: missing {documented_routes(app) - in_table}, " \
            f"stale {in_table - documented_routes(app)}"
    assert set(listed) == set(FACTORIES), "every row has a way to call it, and no more"


def documented_answer(document: dict, method: str, path: str, response: httpx.Response) -> dict:
    """The schema the OpenAPI document gives this answer (its status, its media type)."""
    answers = document["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in answers, f"{method} {path}: {response.status_code} undocumented"
    media = response.headers.get("content-type", "").split(";")[0]
    content = answers[str(response.status_code)].get("content", {})
    assert media in content, f"{method} {path}: {media} undocumented"
    return content[media]["schema"]


async def test_every_route_answers_exactly_the_callers_the_table_allows(rail_factory):
    """... and every answer, allowed or refused, has the shape the OpenAPI document states."""
    async with rail_factory() as rail:
        world = await build_world(rail)
        urls = {"central": str(rail.central.http.base_url), "bank": rail.banks[BANK].url}
        documents = {"central": (await rail.central.http.get("/openapi.json")).json(),
                     "bank": (await rail.client(BANK).http.get("/openapi.json")).json()}
        wrong: list[str] = []
        async with httpx.AsyncClient(transport=rail.net, timeout=30) as http:
            for row in read_table():
                allowed = allowed_callers(row)
                for name in CALLERS[row.service]:
                    request = await FACTORIES[(row.service, row.method, row.path)](
                        world, world.callers[name])
                    response = await http.request(
                        request.method, urls[row.service].rstrip("/") + request.path,
                        headers=request.headers,
                        content=None if request.body is None else orjson.dumps(request.body))
                    status, code = answer_of(response)
                    schema = documented_answer(documents[row.service], row.method, row.path,
                                               response)
                    if response.headers.get("content-type", "").startswith("application/json"):
                        try:
                            jsonschema.validate(response.json(), schema)
                        except jsonschema.ValidationError as error:
                            wrong.append(f"{row.service} {row.method} {row.path} as {name}: "
                                         f"the answer is not as documented: {error.message}")
                    if name in allowed:
                        ok = 200 <= status < 300 and code is None
                    else:
                        ok = code in REFUSALS.get(status, ())
                    if not ok:
                        wrong.append(f"{row.service} {row.method} {row.path} as {name}: "
                                     f"{'allowed' if name in allowed else 'refused'} expected, "
                                     f"got {status} {code}: {response.text[:160]}")
        assert not wrong, "\n".join(wrong)


def test_the_callers_the_table_names_are_the_ones_this_test_walks():
    for row in read_table():
        assert allowed_callers(row) <= set(CALLERS[row.service])
    assert re.search(r"tests/integration/test_roles\.py", ROLES_DOC.read_text())
