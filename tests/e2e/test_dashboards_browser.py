"""The operator dashboards in a real browser (docs/dashboards.md): central and the banks
"yangtze" and "pearl" run as uvicorn processes on 127.0.0.1 (fresh PostgreSQL databases, the
real Redis), and headless Chromium logs in to each with that service's own operator token.

Each page shows the numbers its service's API gives, draws its charts (server-side SVG),
updates them live without a reload, and refuses anyone without a session. A bank's books
edited behind its back make its checkpoint watch alarm, and the alarm shows on that bank's
dashboard and on central's.

Screenshots go to test-artifacts/dashboard_*.png."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from bank.client import BankClient
from bank.domain.ledger import CENTRAL as CENTRAL_ACCOUNT
from central.client import CentralClient
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey
from rail_protocol.money import format_fen, yuan
from rail_service.dashboard import SESSION_S, cookie_name
from tests.conftest import ARTIFACTS
from tests.support.browser import chromium_page  # noqa: F401 - a fixture
from tests.support.processes_rail import (
    BANK_NAMES,
    BANK_TOKENS,
    CENTRAL,
    CENTRAL_TOKEN,
    ProcessRail,
    start_process_rail,
)
from tests.support.rail import new_id_number, new_phone, psycopg_url

pytestmark = pytest.mark.e2e

A, B = "yangtze", "pearl"
# Checkpoints signed and checked often, a difference confirmed quickly: the alarm test
# waits seconds, not minutes.
FAST_REGISTRY = {
    CENTRAL: {"YUANRAIL_CENTRAL_CHECKPOINT_INTERVAL_MS": "300"},
    **{bank_id: {"YUANRAIL_BANK_CHECKPOINT_CHECK_S": "0.3",
                 "YUANRAIL_BANK_CHECKPOINT_CONFIRM_S": "0.6"} for bank_id in BANK_NAMES}}
LIVE_TIMEOUT_MS = 15_000   # a few refreshes of the page (every 3 s)


@dataclass
class Rail:
    processes: ProcessRail
    central: CentralClient
    banks: dict[str, BankClient]
    payer_key: SigningKey
    payer: str
    payee: str

    def url(self, service: str) -> str:
        return self.processes.central_url if service == CENTRAL else \
            self.processes.bank_urls[service]

    async def pay_across(self, amount_fen: int) -> dict:
        return await self.banks[A].pay(self.payer_key, self.payer, self.payee, amount_fen)


@pytest.fixture(scope="module")
def processes(pg_databases, tmp_path_factory) -> Iterator[ProcessRail]:
    rail = start_process_rail(pg_databases, tmp_path_factory.mktemp("dashboards"),
                              env=FAST_REGISTRY)
    yield rail
    rail.stop_all()
    print(f"process logs under {rail.log_dir}:\n{rail.logs()}")


@pytest.fixture(scope="module")
async def rail(processes) -> AsyncIterator[Rail]:
    """Reserves for both banks; a class-2 payer at yangtze topped up from its deposit
    account; a phone-only payee at pearl, paid once across banks."""
    central = CentralClient(processes.central_url, operator_token=CENTRAL_TOKEN)
    banks = {b: BankClient(url, operator_token=BANK_TOKENS[b], timeout_s=15)
             for b, url in processes.bank_urls.items()}
    try:
        for bank_id in BANK_NAMES:
            await central.deposit_reserves(bank_id, f"dash-reserves-{bank_id}", yuan(1_000_000))
        payer_key, phone = SigningKey.generate(), new_phone()
        payer = (await banks[A].open_wallet(payer_key, phone))["wallet_id"]
        account = await banks[A].open_deposit_account(phone, "Dashboard Payer", yuan(5_000))
        await banks[A].upgrade(payer_key, payer, id_number=new_id_number(),
                               deposit_account=account["account_id"])
        await banks[A].top_up(payer_key, payer, yuan(1_000))
        payee = (await banks[B].open_wallet(SigningKey.generate(), new_phone()))["wallet_id"]
        started = Rail(processes, central, banks, payer_key, payer, payee)
        assert (await started.pay_across(yuan(12)))["status"] == "settled"
        yield started
    finally:
        await central.aclose()
        for client in banks.values():
            await client.aclose()


async def log_in(page, base_url: str, token: str) -> None:
    await page.goto(f"{base_url}/dashboard")
    assert page.url == f"{base_url}/dashboard/login"     # no session: the login form
    await page.fill("#token", token)
    await page.click("#login")
    await page.wait_for_url(f"{base_url}/dashboard")
    page.loads_after_login = await page.evaluate("window.__loads")


async def session_client(base_url: str, token: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base_url, timeout=10)
    answer = await client.post("/dashboard/login", data={"token": token})
    assert answer.status_code == 303, answer.text
    return client


def screenshot_path(name: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return str(ARTIFACTS / f"dashboard_{name}.png")


async def test_a_dashboard_needs_a_session_made_with_that_services_own_token(rail):
    for service, token in [(CENTRAL, CENTRAL_TOKEN), (A, BANK_TOKENS[A])]:
        async with httpx.AsyncClient(base_url=rail.url(service), timeout=10) as client:
            page = await client.get("/dashboard")
            assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
            form = await client.get("/dashboard/login")
            assert form.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
            for path in ("/dashboard/figures.json", "/dashboard/panel"):
                refused = await client.get(path)
                assert refused.status_code == 401, path
                assert refused.json()["error"]["code"] == "unauthorized"
            other = CENTRAL_TOKEN if service != CENTRAL else BANK_TOKENS[A]
            for wrong in (other, BANK_TOKENS[B], ""):
                assert (await client.post("/dashboard/login",
                                          data={"token": wrong})).status_code == 401
            client.cookies.set(cookie_name(service), "eyJzZXJ2aWNlIjoiY2VudHJhbCJ9.x.forged")
            assert (await client.get("/dashboard/figures.json")).status_code == 401
            client.cookies.clear()

            login = await client.post("/dashboard/login", data={"token": token})
            assert login.status_code == 303 and login.headers["location"] == "/dashboard"
            cookie = login.headers["set-cookie"]
            assert cookie.startswith(f"{cookie_name(service)}=")
            for flag in ("HttpOnly", "SameSite=strict", "Path=/dashboard",
                         f"Max-Age={SESSION_S}"):
                assert flag.lower() in cookie.lower(), cookie
            assert (await client.get("/dashboard/figures.json")).status_code == 200
            session = client.cookies.get(cookie_name(service))
            # A script may read the figures with the operator token instead; only its own.
            async with httpx.AsyncClient(base_url=rail.url(service), timeout=10) as script:
                for bearer, status in ((token, 200), (other, 401)):
                    assert (await script.get("/dashboard/figures.json", headers={
                        "authorization": f"Bearer {bearer}"})).status_code == status

            await client.post("/dashboard/logout")
            assert (await client.get("/dashboard/figures.json")).status_code == 401
    # A session of central's is worthless at a bank, even under the bank's cookie name.
    async with httpx.AsyncClient(base_url=rail.url(CENTRAL), timeout=10) as client:
        await client.post("/dashboard/login", data={"token": CENTRAL_TOKEN})
        central_session = client.cookies.get(cookie_name(CENTRAL))
    async with httpx.AsyncClient(base_url=rail.url(A), timeout=10,
                                 cookies={cookie_name(A): central_session}) as client:
        assert (await client.get("/dashboard/figures.json")).status_code == 401
    assert session != central_session


async def test_central_dashboard_shows_what_the_api_says_and_updates_live(rail, chromium_page):
    from playwright.async_api import expect

    page = chromium_page
    await page.set_viewport_size({"width": 1280, "height": 1400})
    await log_in(page, rail.url(CENTRAL), CENTRAL_TOKEN)

    supply = await rail.central.supply()
    await expect(page.locator("#total-issued")).to_have_text(
        format_fen(supply["total_issued_fen"]), timeout=LIVE_TIMEOUT_MS)
    for line in supply["banks"]:
        row = page.locator(f'#banks tr[data-bank="{line["bank_id"]}"]')
        await expect(row.locator(".reserves")).to_have_text(format_fen(line["reserves_fen"]))
        await expect(row.locator(".holding")).to_have_text(format_fen(line["holding_fen"]))
        await expect(row.locator(".registry")).to_contain_text("match")
    audit = (await rail.central.audit())
    assert audit["balanced"]
    await expect(page.locator("#audit")).to_have_text("balanced")
    # The charts are drawn: SVG with the supply line and a bar per bank.
    for chart in ("supply", "interbank", "holdings", "reserves"):
        await expect(page.locator(f"#chart-{chart} svg")).to_have_count(1)
    assert await page.locator("#chart-supply svg .series path.line").count() == 1
    assert await page.locator("#chart-holdings svg rect.rect").count() == len(supply["banks"])

    # Live: another payment across banks shows without a reload.
    settled_before = int(await page.locator("#interbank-total").inner_text())
    assert (await rail.pay_across(yuan(3)))["status"] == "settled"
    await expect(page.locator("#interbank-total")).to_have_text(
        str(settled_before + 1), timeout=LIVE_TIMEOUT_MS)
    holding_b = next(b["holding_fen"] for b in (await rail.central.supply())["banks"]
                     if b["bank_id"] == B)
    await expect(page.locator(f'#banks tr[data-bank="{B}"] .holding')).to_have_text(
        format_fen(holding_b), timeout=LIVE_TIMEOUT_MS)
    assert await page.evaluate("window.__loads") == page.loads_after_login  # no reload
    assert await page.evaluate("window.__panelUpdates") >= 1
    await page.screenshot(path=screenshot_path("central"), full_page=True)

    await page.click("#logout")
    await page.wait_for_url(f"{rail.url(CENTRAL)}/dashboard/login")
    await page.goto(f"{rail.url(CENTRAL)}/dashboard")
    assert page.url.endswith("/dashboard/login")


async def test_bank_dashboard_shows_movements_refusals_classes_and_vault(rail, chromium_page):
    from playwright.async_api import expect

    page = chromium_page
    await page.set_viewport_size({"width": 1280, "height": 1400})
    await log_in(page, rail.url(A), BANK_TOKENS[A])
    api = await session_client(rail.url(A), BANK_TOKENS[A])
    try:
        before = (await api.get("/dashboard/figures.json")).json()
        assert (await rail.pay_across(yuan(2)))["status"] == "settled"
        with pytest.raises(RailError) as refused:    # more than the payer holds
            await rail.pay_across(yuan(4_000))
        after = (await api.get("/dashboard/figures.json")).json()
        assert after["payments"]["total"] == before["payments"]["total"] + 1
        assert after["refusals"]["total"] == before["refusals"]["total"] + 1
        # the hot path's stages: the payment went through a payment batch and a settle
        # batch, its message 1 through a call to central
        stages, earlier = after["stages"], before["stages"]
        assert stages["batches"]["pay-batch"]["items"] >= \
            earlier["batches"]["pay-batch"]["items"] + 2
        assert stages["batches"]["settle-batch"]["items"] == \
            earlier["batches"]["settle-batch"]["items"] + 1
        assert stages["calls"]["central"]["calls"] > earlier["calls"]["central"]["calls"]
        assert after["refusals"]["by_code"][refused.value.code] == \
            before["refusals"]["by_code"].get(refused.value.code, 0) + 1
        codes = after["refusals"]["by_code"]

        await expect(page.locator("#payments-total")).to_have_text(
            str(after["payments"]["total"]), timeout=LIVE_TIMEOUT_MS)
        for code, count in codes.items():
            await expect(page.locator(f'#refusals tr[data-code="{code}"] td.num')).to_have_text(
                str(count))
        books = await rail.banks[A].audit()
        await expect(page.locator("#vault")).to_have_text(format_fen(books["vault_fen"]))
        assert after["vault"]["balance_fen"] == books["vault_fen"]
        assert after["wallet_classes"]["2"] >= 1          # the payer, upgraded to class 2
        await expect(page.locator("#registry")).to_have_text(
            re.compile("match|in_flight"), timeout=LIVE_TIMEOUT_MS)
        for chart in ("payments", "refusals", "classes"):
            await expect(page.locator(f"#chart-{chart} svg")).to_have_count(1)
        assert await page.locator("#chart-payments svg .series path.line").count() == 1
        assert await page.locator("#chart-refusals svg rect.rect").count() == len(codes)
        assert await page.evaluate("window.__loads") == page.loads_after_login  # no reload
        await page.screenshot(path=screenshot_path("bank"), full_page=True)
    finally:
        await api.aclose()


async def test_a_checkpoint_mismatch_shows_as_an_alarm_on_both_dashboards(rail, chromium_page):
    """Last in this module: it leaves pearl's books wrong."""
    from playwright.async_api import expect

    page = chromium_page
    await page.set_viewport_size({"width": 1280, "height": 1400})
    await log_in(page, rail.url(CENTRAL), CENTRAL_TOKEN)
    await expect(page.locator(".alarm")).to_have_count(0)
    # Someone edits pearl's books behind its back, and consistently (its own audit still
    # balances): one fen more from central, into the vault, than central ever recorded as
    # pearl's. Only the comparison with central's checkpoint can see it.
    with psycopg.connect(psycopg_url(rail.processes.database_urls[B])) as db:
        db.execute(
            "INSERT INTO postings (txn_id, account, amount_fen) "
            "SELECT txn_id, account, amount FROM (SELECT min(txn_id) AS txn_id FROM postings "
            "WHERE account = %s) AS t, (VALUES (%s, -1), ('vault', 1)) AS p(account, amount)",
            (CENTRAL_ACCOUNT, CENTRAL_ACCOUNT))
        changed = db.execute("UPDATE system_balances SET balance_fen = balance_fen + 1 "
                             "WHERE account = 'vault'").rowcount
    assert changed == 1
    assert (await rail.banks[B].audit())["balanced"]

    alarm = page.locator(f'.alarm[data-alarm="{B}"]')
    await expect(alarm).to_contain_text("mismatch", timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator(f'#banks tr[data-bank="{B}"] .registry')).to_contain_text(
        "ALARM")
    await expect(page.locator(f'.alarm[data-alarm="{A}"]')).to_have_count(0)
    assert await page.evaluate("window.__loads") == page.loads_after_login  # no reload
    await page.screenshot(path=screenshot_path("central_alarm"), full_page=True)

    bank_page = await page.context.new_page()
    await log_in(bank_page, rail.url(B), BANK_TOKENS[B])
    await expect(bank_page.locator(f'.alarm[data-alarm="{B}"]')).to_contain_text("mismatch")
    await expect(bank_page.locator("#registry")).to_have_text("mismatch")
    await bank_page.screenshot(path=screenshot_path("bank_alarm"), full_page=True)
