"""Locust users of the rail's hot path, in a weighted mix of what a day of retail looks like:

    QRPayer         a merchant's till creates an order (dynamic QR); the customer's wallet
                    scans it and pays it, signed by the wallet's key           weight 4
    StaticQRPayer   the customer scans the shop's printed static QR, types the amount and
                    pays: one signed request                                   (own scenario)
    CodeCharger     the customer shows a payment code made on the phone; the merchant's
                    POS scans it and charges it, signed by the merchant's key  weight 2
    P2PPayer        a person pays another person at the same bank              weight 2
    InterbankPayer  a person pays a person at the other bank, through central weight 1
    Reader          a wallet reads its balance and its history (signed reads)  weight 2

Wallets, keys and merchants come from the setup step (`loadtests/provision.py`), named by
YUANRAIL_LOAD_PROVISION. Every payment is signed by its payer's key exactly as a wallet signs
it; where the flow allows (person-to-person, interbank, payment codes, reads) envelopes are
signed ahead in small batches, so signing stays out of the timed request. FastHttpUser keeps
the generator's own CPU low; `yuanrail loadtest` reports that CPU beside the results.

A refusal the rail is right to make (insufficient funds, a cap) is a "refusal:" failure;
anything else (5xx, a transport error, an unexpected code or body) is a real failure.
Run it by naming the users (`yuanrail loadtest` does): `locust -f loadtests/locustfile.py
QRPayer CodeCharger P2PPayer InterbankPayer Reader`. The baseline's user is in
loadtests/noop_locustfile.py."""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from collections import deque
from pathlib import Path

import orjson
from locust import FastHttpUser, constant, events, task

from rail_protocol import qr
from rail_protocol.envelope import seal
from rail_protocol.instruction_types import CHARGE_CODE, CREATE_ORDER, PAY
from rail_protocol.keys import SigningKey
from rail_protocol.payment_code import make_code
from rail_protocol.request_auth import sign_read

# Request names that are payments: payments/s and payment latency are computed over these.
QR_PAY, CODE_CHARGE, P2P_PAY, INTERBANK_PAY = ("qr: pay order", "code: charge", "p2p: pay",
                                                "interbank: pay")
STATIC_QR_PAY = "qr-static: pay"
PAYMENT_NAMES = (QR_PAY, STATIC_QR_PAY, CODE_CHARGE, P2P_PAY, INTERBANK_PAY)
# Refusals a correct rail makes under load: the user asked for something its limits forbid.
BUSINESS_REFUSALS = {"insufficient_funds", "daily_cap_exceeded", "per_payment_cap_exceeded",
                     "balance_cap_exceeded", "order_paid", "order_expired"}
SIGN_AHEAD = 16             # envelopes signed per batch
SIGNED_FRESH_MS = 60_000    # an envelope signed ahead is used within this (its TTL is 120 s)
CODE_FRESH_MS = 30_000      # a payment code lives 60 s; the POS scans it well within
AMOUNT_FEN = (100, 2_000)   # ¥1 to ¥20 a payment
JSON_HEADERS = {"content-type": "application/json"}


def _load_provision() -> dict:
    path = os.environ.get("YUANRAIL_LOAD_PROVISION")
    if not path:
        return {"bank_urls": {}, "payers": [], "merchants": []}
    return json.loads(Path(path).read_text())


PROVISION = _load_provision()
BANK_URLS: dict[str, str] = PROVISION["bank_urls"]
_keys: dict[str, SigningKey] = {}


def key_of(wallet: dict) -> SigningKey:
    """The wallet's key, parsed once per process (OpenSSL signs ~30x faster than ecdsa)."""
    key = _keys.get(wallet["wallet_id"])
    if key is None:
        key = _keys[wallet["wallet_id"]] = SigningKey.from_text(wallet["key"], engine="openssl")
    return key


PAYERS_AT = {b: [p for p in PROVISION["payers"] if p["bank_id"] == b] for b in BANK_URLS}
PAYERS_ELSEWHERE = {b: [p for other, payers in PAYERS_AT.items() if other != b for p in payers]
                    for b in BANK_URLS}
# One bank's payer, then the other's, and so on: users spread evenly over the banks.
PAYERS = [p for group in itertools.zip_longest(*PAYERS_AT.values()) for p in group if p]
MERCHANTS_AT = {b: [m for m in PROVISION["merchants"] if m["bank_id"] == b] for b in BANK_URLS}
# Each user holds payer wallets of its own; with n Locust worker processes in all (on one
# machine or many: YUANRAIL_LOAD_PROCESSES = n), worker i takes every n-th wallet from i, so
# no two users share one.
_PROCESSES = max(int(os.environ.get("YUANRAIL_LOAD_PROCESSES", "1")), 1)
_WALLETS_PER_USER = max(int(os.environ.get("YUANRAIL_LOAD_WALLETS_PER_USER", "4")), 1)
_taken = itertools.count()


class Holder:
    """One payer wallet as its phone knows it, and the envelopes it has signed ahead."""

    def __init__(self, wallet: dict) -> None:
        self.wallet, self.key, self.bank_id = wallet, key_of(wallet), wallet["bank_id"]
        self.ahead: deque = deque()


def _amount() -> int:
    return random.randint(*AMOUNT_FEN)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RailUser(FastHttpUser):
    """A stream of customers at a till or on a phone: each task is made by the next of the
    user's own payer wallets (YUANRAIL_LOAD_WALLETS_PER_USER of them, never shared with
    another user), so a long run spreads its spending and no wallet meets its daily cap."""

    abstract = True
    wait_time = constant(float(os.environ.get("YUANRAIL_LOAD_WAIT_S", "0")))
    host = next(iter(BANK_URLS.values()), "http://127.0.0.1")
    # A connection per user, kept alive, as a phone's HTTP client does; never retried here.
    max_retries = 0
    connection_timeout = 10.0
    network_timeout = 30.0

    def on_start(self) -> None:
        if not PAYERS:
            raise RuntimeError("no payers provisioned: set YUANRAIL_LOAD_PROVISION")
        worker = max(getattr(self.environment.runner, "worker_index", 0), 0)
        first = next(_taken) * _WALLETS_PER_USER
        self.holders = [Holder(PAYERS[((first + j) * _PROCESSES + worker) % len(PAYERS)])
                        for j in range(_WALLETS_PER_USER)]
        self.turn = 0
        self.next_holder()

    def next_holder(self) -> None:
        """The next customer: its wallet, key and bank for this task."""
        holder = self.holders[self.turn % len(self.holders)]
        self.turn += 1
        self.wallet, self.key, self.ahead = holder.wallet, holder.key, holder.ahead
        self.bank_id, self.bank_url = holder.bank_id, BANK_URLS[holder.bank_id]

    # --- sending and judging ------------------------------------------------------

    def send(self, url: str, payload: dict, name: str, *, accept=("settled",)) -> dict | None:
        """POST a signed instruction; judge the answer; return the body when it is good."""
        with self.client.post(url, data=orjson.dumps(payload), headers=JSON_HEADERS,
                              name=name, catch_response=True) as response:
            return judge(response, accept)

    def get_signed(self, path: str, name: str, header: str) -> dict | None:
        with self.client.get(self.bank_url + path, headers={"authorization": header},
                             name=name, catch_response=True) as response:
            return judge(response, None)

    def signed_ahead(self, make) -> object:
        """The next envelope signed ahead (`make()` signs one); stale ones are dropped."""
        now = _now_ms()
        while self.ahead and now - self.ahead[0][0] > SIGNED_FRESH_MS:
            self.ahead.popleft()
        if not self.ahead:
            self.ahead.extend((now, make()) for _ in range(SIGN_AHEAD))
        return self.ahead.popleft()[1]


def judge(response, accept) -> dict | None:
    """Mark the response: success, a business refusal, or a real failure."""
    status = response.status_code
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    if status in (200, 201) and isinstance(body, dict):
        if accept is None or body.get("status") in accept:
            response.success()
            if body.get("status") == "processing":
                events.request.fire(request_type="NOTE", name="interbank: answered processing",
                                    response_time=0, response_length=0, exception=None,
                                    context={})
            return body
        response.failure(f"unexpected status {body.get('status')!r}")
        return None
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    if code in BUSINESS_REFUSALS:
        response.failure(f"refusal: {code}")
    elif status == 0:
        response.failure(f"transport: {response.error!r}"[:200])
    else:
        response.failure(f"HTTP {status}: {code or (response.text or '')[:120]}")
    return None


class QRPayer(RailUser):
    """Dynamic QR at a till: the merchant creates the order, the wallet scans and pays."""

    weight = 4

    @task
    def pay_order(self) -> None:
        self.next_holder()
        merchant = random.choice(MERCHANTS_AT[self.bank_id])
        order = self.send(f"{self.bank_url}/v1/merchant/orders", seal(
            key_of(merchant), CREATE_ORDER,
            {"merchant_wallet": merchant["wallet_id"], "amount_fen": _amount(),
             "reference": uuid.uuid4().hex}).to_dict(), "qr: create order", accept=("created",))
        if order is None:
            return
        scanned = qr.decode(order["qr_payload"])  # what the phone's camera reads
        body = {"payer_wallet": self.wallet["wallet_id"], "payee_wallet": scanned.merchant_id,
                "amount_fen": scanned.amount_fen, "order_id": scanned.order_id}
        self.send(f"{self.bank_url}/v1/payments", seal(self.key, PAY, body).to_dict(), QR_PAY)


class StaticQRPayer(RailUser):
    """A shop's printed static QR: the wallet scanned it once (the code never changes), the
    customer types the amount, and the wallet signs and sends the payment: one request, the
    merchant's till only told by the notification."""

    weight = 4
    scanned: dict[str, qr.MerchantQR] = {}   # merchant wallet id -> what the camera read

    def static_code(self, merchant: dict) -> qr.MerchantQR:
        code = self.scanned.get(merchant["wallet_id"])
        if code is None:
            with self.client.get(f"{self.bank_url}/v1/merchants/{merchant['wallet_id']}/qr",
                                 name="qr-static: scan the shop's code",
                                 catch_response=True) as response:
                body = judge(response, None)
            if body is None:
                raise RuntimeError("the shop's static QR could not be read")
            code = self.scanned[merchant["wallet_id"]] = qr.decode(body["qr_payload"])
        return code

    @task
    def pay(self) -> None:
        self.next_holder()
        scanned = self.static_code(random.choice(MERCHANTS_AT[self.bank_id]))
        body = {"payer_wallet": self.wallet["wallet_id"], "payee_wallet": scanned.merchant_id,
                "amount_fen": _amount()}      # typed by the customer: signed now, not ahead
        self.send(f"{self.bank_url}/v1/payments", seal(self.key, PAY, body).to_dict(),
                  STATIC_QR_PAY)


class CodeCharger(RailUser):
    """A customer-presented payment code (made offline, signed ahead), charged at a POS."""

    weight = 2

    @task
    def charge(self) -> None:
        self.next_holder()
        now = _now_ms()
        while self.ahead and now - self.ahead[0][0] > CODE_FRESH_MS:
            self.ahead.popleft()
        if not self.ahead:
            self.ahead.extend((now, make_code(self.key, self.wallet["wallet_id"]))
                              for _ in range(4))
        code = self.ahead.popleft()[1]
        merchant = random.choice(MERCHANTS_AT[self.bank_id])
        self.send(f"{self.bank_url}/v1/merchant/charges", seal(
            key_of(merchant), CHARGE_CODE,
            {"merchant_wallet": merchant["wallet_id"], "code": code,
             "amount_fen": _amount()}).to_dict(), CODE_CHARGE)


class P2PPayer(RailUser):
    """A person pays another person at the same bank (a capped payee: its row is locked)."""

    weight = 2

    @task
    def pay(self) -> None:
        self.next_holder()
        peers = PAYERS_AT[self.bank_id]

        def make() -> dict:
            payee = random.choice(peers)
            while payee is self.wallet and len(peers) > 1:
                payee = random.choice(peers)
            return seal(self.key, PAY, {"payer_wallet": self.wallet["wallet_id"],
                                        "payee_wallet": payee["wallet_id"],
                                        "amount_fen": _amount()}).to_dict()

        self.send(f"{self.bank_url}/v1/payments", self.signed_ahead(make), P2P_PAY)


class InterbankPayer(RailUser):
    """A person pays a person at the other bank: bank A, central, bank B, end to end."""

    weight = 1

    @task
    def pay(self) -> None:
        self.next_holder()
        others = PAYERS_ELSEWHERE[self.bank_id]

        def make() -> dict:
            return seal(self.key, PAY, {"payer_wallet": self.wallet["wallet_id"],
                                        "payee_wallet": random.choice(others)["wallet_id"],
                                        "amount_fen": _amount()}).to_dict()

        self.send(f"{self.bank_url}/v1/payments", self.signed_ahead(make), INTERBANK_PAY,
                  accept=("settled", "processing"))


class Reader(RailUser):
    """A wallet opens its app: the balance, then now and then the history."""

    weight = 2

    @task(3)
    def balance(self) -> None:
        self.next_holder()
        path = f"/v1/wallets/{self.wallet['wallet_id']}"
        self.get_signed(path, "read: balance", sign_read(self.key, "GET", path))

    @task(1)
    def history(self) -> None:
        self.next_holder()
        path = f"/v1/wallets/{self.wallet['wallet_id']}/history?limit=20"
        self.get_signed(path, "read: history", sign_read(self.key, "GET", path))
