"""Merchant webhooks over real HTTP: the bank node (in-process, on real PostgreSQL and Redis,
its webhook worker running every 0.3 s) POSTs to a real receiver listening on 127.0.0.1,
a threaded `http.server` that records every request and can be told to answer 500 or to
stall past the bank's 3 s timeout.

What a merchant may rely on: each payment to it (and each refund it makes) is POSTed as a
statement signed by the bank's key; a receiver that fails or stalls gets the same delivery
again, with backoff, until it answers 2xx; the delivery log says what happened; and there is
exactly one delivery per payment, however many tries it took."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import psycopg
import pytest

from bank.merchants import WEBHOOK_TIMEOUT_S
from rail_protocol.envelope import verify_statement
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey
from rail_protocol.money import yuan
from rail_service.client import RemoteError
from tests.support.polling import eventually, lock_waiters
from tests.support.rail import (  # noqa: F401
    Rail,
    Wallet,
    module_rail,
    psycopg_url,
    rail_factory,
)

pytestmark = pytest.mark.integration

BANK = "yangtze"
OK, FAIL, STALL = "ok", "fail", "stall"
STALL_S = WEBHOOK_TIMEOUT_S + 1.5     # longer than the bank waits, plus a retry's poll
QUIET_S = 1.0                         # three webhook-worker rounds: time enough for a double


# --- the receiver ---------------------------------------------------------------------------

@dataclass
class Hit:
    path: str
    body: dict
    headers: dict[str, str]
    answer: str
    at: float            # time.monotonic() when the request arrived


class WebhookReceiver:
    """A merchant's webhook endpoint on 127.0.0.1: records every POST; answers each path
    from its plan (FAIL: HTTP 500, STALL: nothing until after the bank gave up), then OK."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: list[Hit] = []
        self._plans: dict[str, list[str]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                answer = receiver._record(self.path, raw, dict(self.headers))
                if answer == STALL:
                    time.sleep(STALL_S)
                try:
                    status = 500 if answer == FAIL else 200
                    self.send_response(status)
                    self.send_header("content-type", "text/plain")
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok" if status == 200 else b"no")
                except OSError:  # the bank stopped waiting and hung up
                    pass

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="webhook-receiver", daemon=True)

    def _record(self, path: str, raw: bytes, headers: dict[str, str]) -> str:
        with self._lock:
            plan = self._plans.get(path) or []
            answer = plan.pop(0) if plan else OK
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = {"_not_json": raw.decode(errors="replace")}
            self._hits.append(Hit(path, body, {k.lower(): v for k, v in headers.items()},
                                  answer, time.monotonic()))
            return answer

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def new_path(self, *plan: str) -> str:
        path = f"/hooks/{uuid.uuid4().hex[:12]}"
        with self._lock:
            self._plans[path] = list(plan)
        return path

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def hits(self, path: str, payment_id: str | None = None) -> list[Hit]:
        with self._lock:
            return [h for h in self._hits if h.path == path
                    and (payment_id is None or h.body.get("payment_id") == payment_id)]


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- helpers --------------------------------------------------------------------------------

@dataclass
class Shop:
    wallet: Wallet
    path: str
    url: str


async def open_shop(rail: Rail, receiver: WebhookReceiver, *plan: str) -> Shop:
    """A class 1 merchant whose webhook points at a fresh path of the receiver."""
    merchant = await rail.open_wallet(BANK, kind="merchant", kyc_class=1, merchant={
        "name": "Hook Noodle Bar", "mcc": "5812", "city": "Wuhan"})
    path = receiver.new_path(*plan)
    url = receiver.url(path)
    answer = await rail.client(BANK).merchant_settings(merchant.key, merchant.wallet_id, url)
    assert answer == {"merchant_wallet": merchant.wallet_id, "webhook_url": url}
    return Shop(merchant, path, url)


async def delivery_log(rail: Rail, shop: Shop) -> list[dict]:
    """The merchant's delivery log (a read signed by the merchant's key), newest first."""
    log = await rail.client(BANK).webhook_deliveries(shop.wallet.key, shop.wallet.wallet_id)
    return log["deliveries"]


async def deliveries_of(rail: Rail, shop: Shop, payment_id: str) -> list[dict]:
    return [d for d in await delivery_log(rail, shop) if d["event"]["payment_id"] == payment_id]


async def wait_delivered(rail: Rail, shop: Shop, payment_id: str, timeout_s: float) -> dict:
    async def delivered():
        found = await deliveries_of(rail, shop, payment_id)
        return found[0] if found and found[0]["status"] == "delivered" else None
    return await eventually(delivered, timeout_s=timeout_s,
                            what=f"the delivery of {payment_id} to be logged delivered")


async def bank_public_key(rail: Rail) -> PublicKey:
    return PublicKey.from_text((await rail.client(BANK).identity())["public_key"])


def signed_fields(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "sig"}


async def assert_no_more_posts(receiver: WebhookReceiver, shop: Shop, count: int) -> None:
    """Nothing more arrives once the receiver has acknowledged: the worker had time for
    several rounds."""
    await asyncio.sleep(QUIET_S)
    assert len(receiver.hits(shop.path)) == count, [h.body for h in receiver.hits(shop.path)]


# --- the tests ------------------------------------------------------------------------------

async def test_a_payment_is_posted_to_the_merchant_signed_by_the_bank(module_rail, receiver):
    rail = module_rail
    shop = await open_shop(rail, receiver)
    payer = await rail.funded_wallet(BANK, yuan(100))
    paid = await rail.pay(payer, shop.wallet, 1_234, memo="two bowls")
    assert paid["status"] == "settled"
    payment_id = paid["payment_id"]

    [hit] = await eventually(lambda: receiver.hits(shop.path, payment_id), timeout_s=5,
                             what="the webhook POST")
    assert hit.headers["content-type"] == "application/json"
    body = hit.body
    key = await bank_public_key(rail)
    verify_statement(key, body)               # signed by this bank's own key
    assert body["issuer"] == key.key_id
    assert signed_fields(body) == {
        "type": "bank.webhook", "delivery_id": body["delivery_id"], "bank_id": BANK,
        "merchant_wallet": shop.wallet.wallet_id, "event": "payment.received",
        "payment_id": payment_id, "amount_fen": 1_234, "status": "settled",
        "order_id": None, "at_ms": body["at_ms"], "issuer": key.key_id}
    # Anyone altering the event in transit breaks the signature.
    forged = {**copy.deepcopy(body), "amount_fen": 123_400}
    with pytest.raises(RailError) as caught:
        verify_statement(key, forged)
    assert caught.value.code == "bad_signature"

    entry = await wait_delivered(rail, shop, payment_id, timeout_s=5)
    assert entry["delivery_id"] == body["delivery_id"] and entry["url"] == shop.url
    assert (entry["attempts"], entry["last_error"]) == (1, None)
    assert entry["delivered_ms"] >= entry["created_ms"]
    assert entry["event"] == {k: body[k] for k in (
        "event", "payment_id", "amount_fen", "status", "order_id", "at_ms")}
    await assert_no_more_posts(receiver, shop, 1)
    assert len(await delivery_log(rail, shop)) == 1


async def test_the_delivery_log_is_a_signed_read_of_the_merchant_only(module_rail, receiver):
    rail = module_rail
    shop = await open_shop(rail, receiver)
    stranger = await rail.open_wallet(BANK)
    with pytest.raises(RemoteError) as caught:
        await rail.client(BANK).signed_get(
            stranger.key, f"/v1/wallets/{shop.wallet.wallet_id}/webhook-deliveries")
    assert caught.value.code == "wrong_key"
    response = await rail.client(BANK).http.get(
        f"/v1/wallets/{shop.wallet.wallet_id}/webhook-deliveries")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unsigned"


async def test_a_failing_receiver_gets_the_same_delivery_until_it_answers_2xx(
        module_rail, receiver):
    rail = module_rail
    shop = await open_shop(rail, receiver, FAIL, FAIL)
    payer = await rail.funded_wallet(BANK, yuan(100))
    payment_id = (await rail.pay(payer, shop.wallet, 5_000))["payment_id"]

    # While it fails, the log says so.
    failing = await eventually(
        lambda: _pending_with_error(rail, shop, payment_id, "HTTP 500"), timeout_s=5,
        what="the log to show the receiver's HTTP 500")
    assert failing["attempts"] in (1, 2)

    entry = await wait_delivered(rail, shop, payment_id, timeout_s=10)
    assert entry["attempts"] >= 3
    assert entry["attempts"] == 3 and entry["last_error"] is None
    hits = receiver.hits(shop.path)
    assert [h.answer for h in hits] == [FAIL, FAIL, OK]
    # The same delivery each time, each a valid statement of the same event.
    key = await bank_public_key(rail)
    for hit in hits:
        verify_statement(key, hit.body)
    assert {h.body["delivery_id"] for h in hits} == {entry["delivery_id"]}
    assert len({orjson.dumps({k: v for k, v in signed_fields(h.body).items()})
                for h in hits}) == 1
    # Backed off: 0.5 s after the first failure, 1 s after the second (0.3 s worker rounds).
    assert hits[1].at - hits[0].at >= 0.45
    assert hits[2].at - hits[1].at >= 0.95
    await assert_no_more_posts(receiver, shop, 3)
    assert [d["event"]["payment_id"] for d in await delivery_log(rail, shop)] == [payment_id]


async def _pending_with_error(rail: Rail, shop: Shop, payment_id: str, error: str):
    for entry in await deliveries_of(rail, shop, payment_id):
        if entry["status"] == "pending" and error in (entry["last_error"] or ""):
            return entry
    return None


async def test_a_receiver_that_times_out_is_retried_and_the_log_shows_the_timeout(
        module_rail, receiver):
    rail = module_rail
    shop = await open_shop(rail, receiver, STALL)
    payer = await rail.funded_wallet(BANK, yuan(100))
    payment_id = (await rail.pay(payer, shop.wallet, 777))["payment_id"]

    stalled = await eventually(
        lambda: _pending_with_error(rail, shop, payment_id, "Timeout"),
        timeout_s=WEBHOOK_TIMEOUT_S + 5, what="the log to show the timeout")
    assert stalled["attempts"] == 1 and stalled["last_error"].startswith("ReadTimeout")

    entry = await wait_delivered(rail, shop, payment_id, timeout_s=8)
    assert (entry["attempts"], entry["last_error"]) == (2, None)
    hits = receiver.hits(shop.path)
    assert [h.answer for h in hits] == [STALL, OK]
    assert {h.body["delivery_id"] for h in hits} == {entry["delivery_id"]}
    # The bank gave up on the stalled try after its timeout, not after the receiver's stall.
    assert WEBHOOK_TIMEOUT_S - 0.1 <= hits[1].at - hits[0].at < STALL_S
    await assert_no_more_posts(receiver, shop, 2)
    assert len(await deliveries_of(rail, shop, payment_id)) == 1


async def test_exactly_one_delivery_per_payment_even_after_retries(module_rail, receiver):
    rail = module_rail
    shop = await open_shop(rail, receiver, FAIL, FAIL, FAIL)
    payer = await rail.funded_wallet(BANK, yuan(100))
    payment_ids = [(await rail.pay(payer, shop.wallet, 100 + n))["payment_id"]
                   for n in range(4)]
    for payment_id in payment_ids:
        await wait_delivered(rail, shop, payment_id, timeout_s=10)
    await asyncio.sleep(QUIET_S)

    log = await delivery_log(rail, shop)
    assert sorted(d["event"]["payment_id"] for d in log) == sorted(payment_ids)
    assert all(d["status"] == "delivered" for d in log)
    assert len({d["delivery_id"] for d in log}) == len(payment_ids)
    assert {d["event"]["payment_id"]: d["event"]["amount_fen"] for d in log} == {
        pid: 100 + n for n, pid in enumerate(payment_ids)}
    acknowledged = [h.body["payment_id"] for h in receiver.hits(shop.path) if h.answer == OK]
    assert sorted(acknowledged) == sorted(payment_ids)   # each acknowledged exactly once
    for payment_id in payment_ids:                       # retries reuse the delivery
        [entry] = [d for d in log if d["event"]["payment_id"] == payment_id]
        assert {h.body["delivery_id"] for h in receiver.hits(shop.path, payment_id)} == {
            entry["delivery_id"]}


async def test_a_refund_produces_a_refund_event(module_rail, receiver):
    rail = module_rail
    shop = await open_shop(rail, receiver)
    client = rail.client(BANK)
    payer = await rail.funded_wallet(BANK, yuan(100))
    order = await client.create_order(shop.wallet.key, shop.wallet.wallet_id, 5_000,
                                      f"ref-{uuid.uuid4().hex[:8]}")
    paid = await client.pay(payer.key, payer.wallet_id, shop.wallet.wallet_id, 5_000,
                            order_id=order["order_id"])
    payment_id = paid["payment_id"]
    await wait_delivered(rail, shop, payment_id, timeout_s=5)
    [received] = receiver.hits(shop.path, payment_id)
    assert (received.body["event"], received.body["order_id"]) == (
        "payment.received", order["order_id"])

    refund = await client.refund(shop.wallet.key, shop.wallet.wallet_id, payment_id, 2_000)
    assert refund["status"] == "settled" and refund["refund_of"] == payment_id
    refund_id = refund["payment_id"]
    entry = await wait_delivered(rail, shop, refund_id, timeout_s=5)
    assert entry["attempts"] == 1
    [hit] = receiver.hits(shop.path, refund_id)
    verify_statement(await bank_public_key(rail), hit.body)
    assert {k: hit.body[k] for k in ("type", "event", "payment_id", "amount_fen", "status",
                                     "order_id", "merchant_wallet", "bank_id")} == {
        "type": "bank.webhook", "event": "refund.settled", "payment_id": refund_id,
        "amount_fen": 2_000, "status": "settled", "order_id": order["order_id"],
        "merchant_wallet": shop.wallet.wallet_id, "bank_id": BANK}
    assert (await client.order(order["order_id"]))["status"] == "partly_refunded"
    await assert_no_more_posts(receiver, shop, 2)
    assert sorted(d["event"]["event"] for d in await delivery_log(rail, shop)) == [
        "payment.received", "refund.settled"]


# --- defects shown (strict xfail: these pass once the bank is fixed) ------------------------

class DefectShown(AssertionError):
    """Raised only by the final check of a defect test, so that any other failure on the
    way there is reported as a failure, not taken for the known defect."""

async def test_a_refused_payment_is_never_announced_as_received(module_rail, receiver):
    rail = module_rail
    shop = await open_shop(rail, receiver)
    payer = await rail.funded_wallet(BANK, 100)
    with pytest.raises(RemoteError) as caught:
        await rail.pay(payer, shop.wallet, 500)
    assert caught.value.code == "insufficient_funds"
    # A later settled payment fences the log: the journal feeds it in order.
    fence = (await rail.pay(payer, shop.wallet, 50))["payment_id"]
    await wait_delivered(rail, shop, fence, timeout_s=5)

    announced = [entry["event"] for entry in await delivery_log(rail, shop)]
    announced += [hit.body for hit in receiver.hits(shop.path)]
    refusals = [e for e in announced
                if e["event"] == "payment.received" and e["status"] != "settled"]
    if refusals:
        raise DefectShown(f"a refused payment announced as received: {refusals}")


async def test_a_payment_committed_after_a_later_numbered_one_still_gets_its_webhook(
        rail_factory, receiver, monkeypatch):
    """Two payment batches in flight at once (`YUANRAIL_BANK_FAST_PATH_BATCHES=2`): A's
    takes its txn id and waits; B's, a later id, commits first. A's webhook still goes."""
    monkeypatch.setenv("YUANRAIL_BANK_FAST_PATH_BATCHES", "2")
    async with rail_factory() as rail:
        await committed_out_of_order(rail, receiver)


async def committed_out_of_order(rail: Rail, receiver: WebhookReceiver) -> None:
    shop = await open_shop(rail, receiver)
    node = rail.banks[BANK]
    # Payer A pays from its deposit account (top-up on use, empty wallet), so its batch
    # moves the vault's e-CNY AFTER taking its txn id; B pays from its wallet.
    payer_a = await rail.funded_wallet(BANK, 0, kyc_class=2, linked_deposit_fen=yuan(500),
                                       topup_on_use=True)
    payer_b = await rail.funded_wallet(BANK, yuan(50))
    await node.node.vault.refill(yuan(20))   # the vault covers A's pull: no refill retry

    database = psycopg_url(node.database_url)
    locker = await psycopg.AsyncConnection.connect(database)
    watcher = await psycopg.AsyncConnection.connect(database, autocommit=True)
    pay_a: asyncio.Task | None = None
    try:
        # Hold the vault: A's payment takes its txn id, then waits, uncommitted.
        await locker.execute("SELECT 1 FROM system_balances WHERE account = 'vault' FOR UPDATE")
        pay_a = asyncio.create_task(rail.pay(payer_a, shop.wallet, yuan(20)))

        await eventually(lambda: lock_waiters(watcher, "%UPDATE system_balances%"),
                         timeout_s=5, what="A's payment to block")

        paid_b = await rail.pay(payer_b, shop.wallet, yuan(1))   # commits first, higher id
        await wait_delivered(rail, shop, paid_b["payment_id"], timeout_s=5)
        await locker.rollback()                                  # A commits now
        paid_a = await asyncio.wait_for(pay_a, 10)
        assert paid_a["status"] == "settled" and paid_a["pulled_from_deposit_fen"] == yuan(20)
        assert int(paid_a["payment_id"][1:]) < int(paid_b["payment_id"][1:])

        try:
            await wait_delivered(rail, shop, paid_a["payment_id"], timeout_s=3)
        except AssertionError:
            raise DefectShown(f"no webhook for {paid_a['payment_id']}, committed after "
                              f"{paid_b['payment_id']}: {await delivery_log(rail, shop)}"
                              ) from None
    finally:
        await locker.close()
        await watcher.close()
        if pay_a is not None and not pay_a.done():
            await asyncio.wait_for(pay_a, 10)
