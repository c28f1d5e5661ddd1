"""The cashier page in a real browser: central and the bank node "yangtze" run as uvicorn
processes on 127.0.0.1 (fresh PostgreSQL databases, the real Redis under a prefix of this
test's own), headless Chromium opens /cashier/<order_id>, a wallet pays the order through
the API, and the page turns "Paid" by itself, pushed over server-sent events, no reload.

Screenshots go to test-artifacts/cashier_waiting.png and test-artifacts/cashier_paid.png."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from bank.client import BankClient
from central.client import CentralClient
from rail_protocol import qr
from rail_protocol.keys import SigningKey
from rail_protocol.money import format_fen, yuan
from tests.conftest import REDIS_URL
from tests.support.browser import chromium_page, decode_qr_png  # noqa: F401
from yuanrail.enroll_command import Enrolment, enroll_banks
from yuanrail.processes import ServiceGroup, free_port, start_uvicorn, wait_healthy

pytestmark = pytest.mark.e2e

CENTRAL_TOKEN = "cashier-test-central-operator-0001"
BANK_TOKEN = "cashier-test-bank-operator-0001"
BANK_ID = "yangtze"
ORDER_FEN = 8_800
LIVE_UPDATE_TIMEOUT_MS = 10_000


@dataclass
class ProcessRail:
    central_url: str
    bank_url: str
    redis_prefix: str
    group: ServiceGroup

    def logs(self) -> str:
        return "\n".join(f"----- {s.name} -----\n"
                         f"{s.log_path.read_text(errors='replace')[-3000:]}"
                         for s in self.group.services if s.log_path.exists())


def _drop_redis_prefix(prefix: str) -> None:
    with contextlib.suppress(Exception):  # best effort: never hide the test's own outcome
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture
def process_rail(pg_databases, tmp_path: Path) -> Iterator[ProcessRail]:
    """Central, then the bank node (enrolled there by central's operator first), each
    a uvicorn process on a free 127.0.0.1 port; all stopped when the test ends."""
    group = ServiceGroup()
    logs = tmp_path / "logs"
    central_port, bank_port = free_port(), free_port()
    central_url = f"http://127.0.0.1:{central_port}"
    bank_url = f"http://127.0.0.1:{bank_port}"
    prefix = f"yrcashier:{uuid.uuid4().hex[:10]}:{BANK_ID}"
    rail = ProcessRail(central_url, bank_url, prefix, group)
    try:
        central = group.add(start_uvicorn("central", "central.app:create_app", central_port, {
            "YUANRAIL_CENTRAL_DATABASE_URL": pg_databases(),
            "YUANRAIL_CENTRAL_OPERATOR_TOKEN": CENTRAL_TOKEN,
            "YUANRAIL_CENTRAL_KEY_FILE": str(tmp_path / "central.key"),
            "YUANRAIL_CENTRAL_DB_POOL_SIZE": "4"}, logs))
        wait_healthy(central, timeout_s=30)
        enroll_banks(central_url, CENTRAL_TOKEN, [Enrolment(
            BANK_ID, "Yangtze Test Bank", bank_url, tmp_path / f"{BANK_ID}.key")])
        bank = group.add(start_uvicorn(BANK_ID, "bank.app:create_app", bank_port, {
            "YUANRAIL_BANK_BANK_ID": BANK_ID, "YUANRAIL_BANK_NAME": "Yangtze Test Bank",
            "YUANRAIL_BANK_DATABASE_URL": pg_databases(),
            "YUANRAIL_BANK_REDIS_URL": REDIS_URL, "YUANRAIL_BANK_REDIS_PREFIX": prefix,
            "YUANRAIL_BANK_OPERATOR_TOKEN": BANK_TOKEN,
            "YUANRAIL_BANK_KEY_FILE": str(tmp_path / f"{BANK_ID}.key"),
            "YUANRAIL_BANK_PUBLIC_URL": bank_url, "YUANRAIL_BANK_CENTRAL_URL": central_url,
            # An empty vault refilled by exactly what a top-up is short.
            "YUANRAIL_BANK_VAULT_LOW_FEN": "0", "YUANRAIL_BANK_VAULT_TARGET_FEN": "0",
            "YUANRAIL_BANK_VAULT_HIGH_FEN": str(10**15),
            "YUANRAIL_BANK_RATE_LIMIT_PER_S": "0", "YUANRAIL_BANK_DB_POOL_SIZE": "4"}, logs))
        wait_healthy(bank, timeout_s=30)
        yield rail
    finally:
        group.stop_all()
        _drop_redis_prefix(prefix)


@dataclass
class Seeded:
    payer_key: SigningKey
    payer: str
    merchant_key: SigningKey
    merchant: str
    order: dict


async def seed(rail: ProcessRail) -> Seeded:
    """Reserves at central; a payer with a deposit account and a topped-up wallet; a class 1
    merchant; and the merchant's order for ¥88.00."""
    async with CentralClient(rail.central_url, operator_token=CENTRAL_TOKEN) as central:
        assert (await central.bank(BANK_ID))["bank_id"] == BANK_ID  # registered at start-up
        await central.deposit_reserves(BANK_ID, "cashier-reserves-0001", yuan(1_000_000))
    async with BankClient(rail.bank_url, operator_token=BANK_TOKEN) as bank:
        payer_key, payer_phone = SigningKey.generate(), "13800138088"
        payer = (await bank.open_wallet(payer_key, payer_phone))["wallet_id"]
        account = await bank.open_deposit_account(payer_phone, "Li Lei", yuan(1_000))
        upgraded = await bank.upgrade(payer_key, payer, id_number="11010519491231002X",
                                      deposit_account=account["account_id"])
        assert upgraded["kyc_class"] == 2
        await bank.top_up(payer_key, payer, yuan(200))

        merchant_key = SigningKey.generate()
        merchant = (await bank.open_wallet(merchant_key, "02161230088", kind="merchant",
                                           merchant={"name": "Noodle House", "mcc": "5812",
                                                     "city": "Shanghai"}))["wallet_id"]
        await bank.set_class(merchant, 1)
        order = await bank.create_order(merchant_key, merchant, ORDER_FEN, "table-7-0001",
                                        description="beef noodles x2")
    assert order["status"] == "created" and order["amount_fen"] == ORDER_FEN
    return Seeded(payer_key, payer, merchant_key, merchant, order)


async def sse_events(page) -> list[dict]:
    return await page.evaluate("window.__sse")


async def test_the_cashier_page_shows_the_order_and_turns_paid_live_without_a_reload(
        process_rail, chromium_page, artifacts_dir):
    from playwright.async_api import expect

    page = chromium_page
    rail = process_rail
    try:
        seeded = await seed(rail)
    except Exception:
        print(rail.logs())
        raise
    order_id = seeded.order["order_id"]
    amount_text = format_fen(ORDER_FEN)
    assert amount_text == "¥88.00"

    # --- the page before payment ----------------------------------------------------------
    response = await page.goto(f"{rail.bank_url}/cashier/{order_id}", wait_until="load")
    assert response is not None and response.status == 200
    await expect(page.locator("#merchant")).to_have_text("Noodle House")
    await expect(page.locator(".city")).to_have_text("Shanghai")
    await expect(page.locator("#amount")).to_have_text(amount_text)
    status = page.locator("#status")
    await expect(status).to_have_text("Waiting for payment")
    await expect(status).to_have_attribute("data-status", "created")
    assert await page.title() == "Pay Noodle House"
    # The page is listening: its event stream is open and told it "created".
    await page.wait_for_function(
        "window.__sse.some(e => e.type === 'order' && JSON.parse(e.data).status === 'created')",
        timeout=LIVE_UPDATE_TIMEOUT_MS)

    # The QR the page draws (SVG) scans to the order's payload, as does the PNG the API serves.
    qr_image = page.locator("#qr")
    await expect(qr_image).to_be_visible()
    assert await qr_image.evaluate("img => img.complete && img.naturalWidth > 0")
    assert decode_qr_png(await qr_image.screenshot()) == [seeded.order["qr_payload"]]
    async with httpx.AsyncClient(base_url=rail.bank_url, timeout=10) as http:
        png = await http.get(f"/v1/orders/{order_id}/qr.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert decode_qr_png(png.content) == [seeded.order["qr_payload"]]
    code = qr.decode(seeded.order["qr_payload"])
    assert (code.dynamic, code.order_id, code.amount_fen, code.merchant_id, code.bank_id) == (
        True, order_id, ORDER_FEN, seeded.merchant, BANK_ID)
    await page.screenshot(path=str(artifacts_dir / "cashier_waiting.png"), full_page=True)

    # --- a wallet pays the order through the API; the page turns by itself ------------------
    await page.evaluate("window.__marker = 1")
    loads_before = await page.evaluate("window.__loads")
    async with BankClient(rail.bank_url, operator_token=BANK_TOKEN) as bank:
        paid = await bank.pay(seeded.payer_key, seeded.payer, seeded.merchant, ORDER_FEN,
                              order_id=order_id)
        assert paid["status"] == "settled" and paid["order_id"] == order_id
        await expect(status).to_have_text("Paid", timeout=LIVE_UPDATE_TIMEOUT_MS)
        await expect(status).to_have_attribute("data-status", "paid")
        await expect(status).to_have_class("paid")
        view = await bank.order(order_id)
    assert view["status"] == "paid" and view["payment_id"] == paid["payment_id"]

    # Not reloaded: the marker set before paying is still there, the tab loaded once, and
    # both statuses came over the page's one event stream.
    assert await page.evaluate("window.__marker") == 1
    assert await page.evaluate("window.__loads") == loads_before == 1
    events = await sse_events(page)
    statuses = [json.loads(e["data"])["status"] for e in events if e["type"] == "order"]
    assert statuses == ["created", "paid"], events
    assert [e["type"] for e in events].count("open") == 1, events
    pushed = json.loads([e for e in events if e["type"] == "order"][-1]["data"])
    assert pushed["payment_id"] == paid["payment_id"]
    # Paid, the QR is faded out so nobody scans it again.
    assert await qr_image.evaluate("img => getComputedStyle(img).opacity") == "0.25"
    await page.screenshot(path=str(artifacts_dir / "cashier_paid.png"), full_page=True)

