"""The Kivy wallet driven through its widgets, with no person and no X server.

Central and the bank nodes "yangtze" and "pearl" run as real uvicorn processes on
127.0.0.1 (fresh PostgreSQL databases, the real Redis under a prefix of this module's own);
the app talks to them over HTTP exactly as on a desktop. Kivy renders offscreen (SDL2 with
Mesa when DISPLAY is unset), its home under the test's temporary folder. The test types into
text fields and presses buttons, pumping Kivy's event loop until the screen shows what it
should; each screen is saved as test-artifacts/wallet_*.png, and the QR codes shown on
screen are decoded back from those screenshots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bank.client import BankClient
from rail_protocol import qr
from rail_protocol.keys import SigningKey
from rail_protocol.money import yuan
from central.client import CentralClient
from tests.support.processes_rail import BANK_TOKENS, CENTRAL_TOKEN, start_process_rail
from tests.support.rail import new_id_number, new_phone
from wallet_app.core import present

pytestmark = pytest.mark.e2e

PIN = "246802"
OPERATOR_TOKENS: dict[str, str] = {}   # each bank's own operator token, by its URL
WAIT_S = 20.0


# --- the rail and Kivy ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def ui_rail(pg_databases, tmp_path_factory):
    """Central and both banks as processes, each bank with reserves to issue e-CNY from."""
    rail = start_process_rail(pg_databases, tmp_path_factory.mktemp("wallet-ui-rail"))
    OPERATOR_TOKENS.update({url: BANK_TOKENS[b] for b, url in rail.bank_urls.items()})
    try:
        async def reserves():
            async with CentralClient(rail.central_url, operator_token=CENTRAL_TOKEN) as central:
                for bank_id in rail.bank_urls:
                    await central.deposit_reserves(bank_id, f"ui-reserve-{bank_id}",
                                                   yuan(10_000_000))

        run(reserves())
        yield rail
    finally:
        rail.stop_all()


@pytest.fixture(scope="module")
def kivy(tmp_path_factory):
    """Kivy configured before its first import: no argv, its home in a temporary folder."""
    import importlib.util

    pytest.importorskip("zxingcpp")
    if importlib.util.find_spec("kivy") is None:  # not importorskip: Kivy's first import
        pytest.skip("Kivy is missing: pip install -e '.[wallet]' (scripts/test does it)")
    from wallet_app.ui.setup import configure

    configure(tmp_path_factory.mktemp("kivy-home"))  # before Kivy's first import
    from kivy.base import EventLoop

    return EventLoop


def run(coro):
    return asyncio.run(coro)


def banks(rail) -> list[str]:
    return [rail.bank_urls["yangtze"], rail.bank_urls["pearl"]]


class Driver:
    """Runs one WalletApp in this thread: start, pump the event loop, press, screenshot."""

    def __init__(self, app, artifacts: Path) -> None:
        from kivy.base import EventLoop
        from kivy.core.window import Window

        self.app, self.artifacts = app, artifacts
        self._loop, self._window = EventLoop, Window

    def __enter__(self) -> Driver:
        self.app._run_prepare()
        self.pump(0.2)
        return self

    def __exit__(self, *exc) -> None:
        self.app.stop()
        self.pump(0.1)

    @property
    def screen(self):
        return self.app.root.current_screen

    def pump(self, seconds: float = 0.05) -> None:
        end = time.monotonic() + seconds
        while True:
            self._loop.idle()
            if time.monotonic() >= end:
                return
            time.sleep(0.01)

    def until(self, predicate: Callable[[], object], what: str, timeout_s: float = WAIT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pump(0.03)
            value = predicate()
            if value:
                return value
        raise AssertionError(f"timed out waiting for {what}; on screen {self.screen.name!r}: "
                             f"error={self.screen.error!r} info={self.screen.info!r}; "
                             f"unexpected={self.app.unexpected!r}")

    def on(self, name: str):
        self.until(lambda: self.screen.name == name and not self.screen.busy,
                   f"screen {name}")
        return self.screen

    def call(self, coro, timeout_s: float = WAIT_S):
        """Run the test's own coroutine (a merchant's POS, another wallet) while the app
        runs: on the app's runner loop, pumping Kivy meanwhile. (Not asyncio.run: the
        runner's loop lives in this process, and if anything gevent-patched threading, as
        importing locust does, that loop counts as running in this very thread.)"""
        future = self.app.runner.submit(coro)
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                future.cancel()
                raise AssertionError("timed out waiting for the test's own request")
            self.pump(0.02)
        return future.result()

    def press(self, widget) -> None:
        assert not widget.disabled, f"{widget} is disabled"
        widget.dispatch("on_press")
        widget.dispatch("on_release")
        self.pump(0.05)

    def shot(self, name: str) -> Path:
        """Save the window as test-artifacts/wallet_<name>.png."""
        self.pump(0.15)
        target = self.artifacts / f"wallet_{name}.png"
        saved = Path(self._window.screenshot(name=str(self.artifacts / f"wallet_{name}.png")))
        saved.replace(target)
        assert target.stat().st_size > 2000
        return target


def make_app(kivy, home: Path, urls: list[str], language: str = "en", **wallet_args):
    from wallet_app.core.wallet import Wallet
    from wallet_app.ui.app import WalletApp

    return WalletApp(Wallet(home, urls, **wallet_args), language=language)


def decode_screenshot(path: Path) -> str:
    from wallet_app.core import qrimage

    return qrimage.single_code(qrimage.decode_image_file(path))


async def open_merchant(url: str, name: str = "Noodle House"):
    key = SigningKey.generate()
    async with BankClient(url, operator_token=OPERATOR_TOKENS[url]) as bank:
        opened = await bank.open_wallet(key, new_phone(), kind="merchant", merchant={
            "name": name, "mcc": "5812", "city": "Shanghai"})
        await bank.set_class(opened["wallet_id"], 1)
    return key, opened["wallet_id"]


async def funded_core_wallet(home: Path, urls: list[str], topup_fen: int):
    """A wallet made through the core (as onboarding would), linked and topped up."""
    from wallet_app.core.wallet import Wallet

    wallet = Wallet(home, urls)
    phone = new_phone()
    await wallet.open_wallet(urls[0], phone, PIN, PIN)
    async with BankClient(urls[0], operator_token=OPERATOR_TOKENS[urls[0]]) as bank:
        account = (await bank.open_deposit_account(phone, "Test Holder", yuan(5_000)))
    await wallet.link_account(account["account_id"], new_id_number())
    await wallet.top_up(topup_fen)
    await wallet.aclose()
    return wallet


# --- the tests -------------------------------------------------------------------------------

def test_new_user_opens_tops_up_and_pays_a_merchant_qr_image(kivy, ui_rail, tmp_path,
                                                             artifacts_dir):
    yangtze = ui_rail.bank_urls["yangtze"]
    merchant_key, merchant_id = run(open_merchant(yangtze))
    phone = new_phone()

    async def bank_side():
        async with BankClient(yangtze, operator_token=OPERATOR_TOKENS[yangtze]) as bank:
            order = await bank.create_order(merchant_key, merchant_id, 3850, "table-7")
        async with httpx.AsyncClient() as http:  # the QR image the bank node draws
            png = (await http.get(f"{yangtze}/v1/orders/{order['order_id']}/qr.png")).content
        return order, png

    order, png = run(bank_side())
    qr_image = tmp_path / "noodle_house_order.png"
    qr_image.write_bytes(png)

    # as `yuanrail wallet` runs against the demo: with the demo's bank counter
    app = make_app(kivy, tmp_path / "wallet", banks(ui_rail), operator_tokens=dict(OPERATOR_TOKENS))
    with Driver(app, artifacts_dir) as ui:
        onboarding = ui.on("onboarding")
        ui.until(lambda: len(onboarding.bank_labels) == 2, "the banks")
        onboarding.ids.bank.text = next(b for b in onboarding.bank_labels if "yangtze" in b)
        onboarding.ids.phone.text = phone
        onboarding.ids.pin.text = PIN
        onboarding.ids.pin_again.text = PIN
        ui.shot("onboarding")
        ui.press(onboarding.ids.open_button)

        link = ui.on("link")
        ui.until(lambda: link.class_text, "the class")
        assert link.class_text.startswith("Class 4")
        assert link.limits_text == ("Holds up to ¥10,000.00, pays up to ¥2,000.00 at a time "
                                    "and ¥5,000.00 a day.")
        ui.shot("opened_class4")
        ui.press(link.ids.demo_button)  # the bank opens a deposit account in the user's name
        ui.until(lambda: link.ids.account.text, "the new deposit account")
        assert link.info.startswith(f"The bank opened account {link.ids.account.text}")
        ui.press(link.ids.link_button)
        ui.until(lambda: link.linked, "the linked account")
        assert link.class_text.startswith("Class 2")
        ui.shot("linked_class2")
        ui.press(link.ids.continue_button)

        home = ui.on("home")
        ui.until(lambda: home.balance == "¥0.00", "the balance")
        ui.press(home.ids.topup_button)
        topup = ui.on("topup")
        ui.until(lambda: topup.linked, "the top-up screen")
        topup.ids.amount.text = "500"
        ui.press(topup.ids.topup_button)
        ui.until(lambda: topup.balance == "¥500.00", "the top-up")
        assert "Topped up ¥500.00" in topup.info
        ui.shot("topup")

        ui.app.go("home")
        ui.until(lambda: ui.screen.balance == "¥500.00" and not ui.screen.busy, "home")
        assert ui.screen.today_left.startswith("Left today:")
        ui.shot("home")
        ui.press(ui.screen.ids.scan_button)
        scan = ui.on("scan")
        scan.ids.scanner.ids.path.text = str(qr_image)
        ui.shot("scan")
        ui.press(scan.ids.scanner.ids.open_button)

        confirm = ui.on("confirm")
        assert (confirm.payee_name, confirm.amount_text) == ("Noodle House", "¥38.50")
        assert order["order_id"] in confirm.payee_detail
        ui.shot("confirm")
        ui.press(confirm.ids.pay_button)
        ui.until(lambda: confirm.done, "the payment")
        assert confirm.info.startswith("Paid ¥38.50 to Noodle House")
        ui.shot("paid")

        async def order_status():
            async with BankClient(yangtze) as bank:
                return (await bank.order(order["order_id"]))["status"]

        assert ui.call(order_status()) == "paid"

        ui.press(confirm.ids.finish_button)
        home = ui.on("home")
        ui.until(lambda: home.balance == "¥461.50", "the new balance")
        ui.press(home.ids.history_button)
        history = ui.on("history")
        texts = ui.until(lambda: [w.text for w in history.ids.rows.children], "history rows")
        paid_row = next(t for t in texts if "Noodle House" in t)   # by name, not wallet id
        assert "-¥38.50" in paid_row and "Done" in paid_row
        assert any("Top-up" in t and "+¥500.00" in t for t in texts)
        ui.shot("history")

        # the same image again: the order is paid, said on screen
        ui.app.go("scan")
        scan = ui.on("scan")
        ui.press(scan.ids.scanner.ids.open_button)
        ui.until(lambda: scan.error, "the refusal")
        assert scan.error == "This order has already been paid."
        assert ui.app.unexpected == []


def test_payment_code_receive_and_sub_wallets(kivy, ui_rail, tmp_path, artifacts_dir):
    urls = banks(ui_rail)
    wallet = run(funded_core_wallet(tmp_path / "wallet", urls, yuan(300)))
    merchant_key, merchant_id = run(open_merchant(urls[0], "Tea Corner"))

    async def authorise():  # a merchant app's deep link, accepted in the wallet's core
        from wallet_app.core.wallet import Wallet

        core = Wallet(tmp_path / "wallet", urls)
        await core.unlock(PIN)
        made = await core.authorise(merchant_id, merchant_key.public_key.to_text(),
                                    per_payment_cap_fen=yuan(50), period_cap_fen=yuan(200),
                                    merchant_name="Tea Delivery")
        await core.aclose()
        return made

    mandate = run(authorise())

    with Driver(make_app(kivy, tmp_path / "wallet", urls), artifacts_dir) as ui:
        unlock = ui.on("unlock")
        unlock.ids.pin.text = "000000"
        ui.press(unlock.ids.unlock_button)
        ui.until(lambda: unlock.error, "the wrong PIN")
        assert unlock.error.startswith("The PIN is wrong")
        unlock.ids.pin.text = PIN
        ui.press(unlock.ids.unlock_button)
        home = ui.on("home")
        ui.until(lambda: home.balance == "¥300.00", "the balance")

        # the payment code: the short one (its secret registered with the bank on first
        # use), shown as digits, a barcode and a small QR; the QR read back from the
        # screenshot and charged by the POS
        ui.press(home.ids.code_button)
        code_screen = ui.on("paycode")
        ui.until(lambda: len(code_screen.code_text) == 19, "a short payment code")
        assert code_screen.short and code_screen.code_text.isdigit()
        assert code_screen.digits_text.replace(" ", "") == code_screen.code_text
        assert code_screen.ids.barcode.texture is not None
        # a wrong PIN's message stays while the screen polls for the charge
        code_screen.ids.pin.text = "000000"
        ui.press(code_screen.ids.pin_button)
        ui.until(lambda: code_screen.error, "the wrong PIN")
        wrong = code_screen.error
        ui.pump(3.0)
        assert code_screen.error == wrong and wrong.startswith("The PIN is wrong")
        from kivy.core.window import Window
        assert Window.softinput_mode == "below_target"   # the keyboard never hides a field
        shot = ui.shot("payment_code")
        scanned = decode_screenshot(shot)
        assert scanned == code_screen.code_text

        async def charge():
            async with BankClient(urls[0]) as bank:
                return await bank.charge_code(merchant_key, merchant_id, scanned, 2350)

        charged = ui.call(charge())
        assert charged["status"] == "settled"
        ui.until(lambda: code_screen.result, "the charge on screen")
        assert code_screen.result == (f"Paid ¥23.50 to {merchant_id}. "
                                      f"Payment {charged['payment_id']}.")
        ui.shot("payment_code_charged")

        # receive: the wallet's own QR, with an amount, read back from the screenshot
        ui.app.go("receive")
        receive = ui.on("receive")
        receive.ids.amount.text = "12.5"
        ui.press(receive.ids.amount_button)
        assert receive.amount_label == "Asks for ¥12.50"
        assert decode_screenshot(ui.shot("receive")) == (
            f"yuanrail:pay?wallet={wallet.wallet_id}&amount_fen=1250")

        # sub-wallets: the mandate with its caps, then revoked
        ui.app.go("subwallets")
        subwallets = ui.on("subwallets")
        row = ui.until(lambda: subwallets.ids.rows.children, "the mandates")[0]
        assert row.mandate_id == mandate.mandate_id and "Tea Delivery (active)" in row.text
        assert "¥50.00 a payment, ¥200.00 a month" in row.text
        ui.shot("subwallets")
        revoke = next(w for w in row.walk() if getattr(w, "text", "") == "Revoke")
        ui.press(revoke)
        ui.until(lambda: "Revoked" in subwallets.info, "the revocation")
        assert subwallets.ids.rows.children[0].status == "revoked"

        # history: the code's payment, labelled as such
        ui.app.go("history")
        history = ui.on("history")
        texts = ui.until(lambda: [w.text for w in history.ids.rows.children], "history rows")
        # the merchant by its name, not its wallet id; the row opens its receipt
        assert any("Payment code: to Tea Corner" in t and "-¥23.50" in t for t in texts)
        row = next(w for w in history.ids.rows.children if "-¥23.50" in w.text)
        touch = type("Touch", (), {"pos": row.center, "grab_current": None})()
        row.on_touch_up(touch)
        receipt = ui.on("receipt")
        assert "To: Tea Corner" in receipt.text and "Amount: ¥23.50" in receipt.text
        assert f"Payment: {charged['payment_id']}" in receipt.text
        ui.shot("receipt")
        assert ui.app.unexpected == []


def test_merchant_mode_collects_charges_and_counts_today(kivy, ui_rail, tmp_path,
                                                         artifacts_dir):
    urls = banks(ui_rail)
    payer = run(funded_core_wallet(tmp_path / "payer", urls, yuan(200)))

    with Driver(make_app(kivy, tmp_path / "shop", urls), artifacts_dir) as ui:
        onboarding = ui.on("onboarding")
        ui.until(lambda: len(onboarding.bank_labels) == 2, "the banks")
        onboarding.ids.bank.text = next(b for b in onboarding.bank_labels if "yangtze" in b)
        onboarding.ids.phone.text = new_phone()
        onboarding.ids.merchant_box.active = True
        onboarding.ids.merchant_name.text = "Dumpling Bar"
        onboarding.ids.merchant_city.text = "Wuhan"
        onboarding.ids.merchant_mcc.text = "5812"
        onboarding.ids.pin.text = onboarding.ids.pin_again.text = PIN
        ui.shot("onboarding_merchant")
        ui.press(onboarding.ids.open_button)
        link = ui.on("link")
        ui.press(link.ids.continue_button)
        home = ui.on("home")
        ui.until(lambda: home.is_merchant, "the merchant's home")
        assert home.merchant_name == "Dumpling Bar, Wuhan"
        ui.press(home.ids.merchant_button)

        merchant = ui.on("merchant")
        merchant.ids.collect_amount.text = "12.50"
        ui.press(merchant.ids.collect_button)
        ui.until(lambda: merchant.order_qr, "the collect QR")
        payload = decode_screenshot(ui.shot("merchant_collect"))
        code = qr.decode(payload)
        assert (code.merchant_name, code.amount_fen) == ("Dumpling Bar", 1250)

        async def customer_pays():  # the customer's wallet scans the code from the screen
            from wallet_app.core.wallet import Wallet

            core = Wallet(tmp_path / "payer", urls)
            await core.unlock(PIN)
            paid = await core.pay(await core.prepare(payload))
            ticket = core.payment_code()
            await core.aclose()
            return paid, ticket

        paid, ticket = ui.call(customer_pays())
        ui.until(lambda: merchant.order_status.startswith("Paid"), "the order paid")
        assert paid.payment_id in merchant.order_status
        ui.shot("merchant_paid")

        # the customer's payment code, pasted into the charge tab
        ui.press(merchant.ids.charge_tab)
        merchant.ids.code_scanner.ids.paste.text = ticket.text
        ui.press(merchant.ids.code_scanner.ids.paste_button)
        assert merchant.code_status.startswith(f"Code of {payer.wallet_id}")
        # refused (above the no-PIN amount): the scanned code stays for the next try
        merchant.ids.charge_amount.text = "1500"
        ui.press(merchant.ids.charge_button)
        ui.until(lambda: merchant.error, "the refusal")
        assert "PIN" in merchant.error and merchant.customer_code == ticket.text
        merchant.ids.charge_amount.text = "5"
        ui.press(merchant.ids.charge_button)
        ui.until(lambda: merchant.code_status.startswith("Charged"), "the charge")
        assert merchant.code_status.startswith("Charged ¥5.00")
        ui.shot("merchant_charge")

        merchant.show_mode("today")
        ui.until(lambda: merchant.totals.startswith("Today: 2 payment(s)"), "today's receipts")
        assert "¥17.50 received" in merchant.totals
        assert len(merchant.ids.receipt_rows.children) == 2
        ui.shot("merchant_today")
        assert ui.app.unexpected == []


class Switchable(httpx.AsyncBaseTransport):
    """Real HTTP, or none at all (the bank unreachable)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("network is unreachable", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_failures_are_messages_on_screen(kivy, ui_rail, tmp_path, artifacts_dir):
    urls = banks(ui_rail)
    run(funded_core_wallet(tmp_path / "wallet", urls, yuan(20)))
    merchant_key, merchant_id = run(open_merchant(urls[0], "Fruit Stall"))

    async def orders():
        async with BankClient(urls[0]) as bank:
            short = await bank.create_order(merchant_key, merchant_id, 100, "short-lived",
                                            ttl_ms=1_000)
            static = await bank.static_qr(merchant_id)
        return short, static

    short, static = run(orders())
    expired_png = tmp_path / "expired.png"
    expired_png.write_bytes(qr.to_png(short["qr_payload"]))
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (200, 200), "white").save(blank)
    usd = static[:-4].replace("5303156", "5303840")
    usd += f"{qr.crc16_ccitt_false(usd.encode()):04X}"
    time.sleep(1.1)  # the order expires

    net = Switchable()
    with Driver(make_app(kivy, tmp_path / "wallet", urls, transport=net), artifacts_dir) as ui:
        home = unlocked_home(ui)
        ui.until(lambda: home.balance == "¥20.00", "the balance")
        ui.app.go("scan")
        scan = ui.on("scan")
        scanner = scan.ids.scanner

        def scan_error(action) -> str:
            scan.error = ""
            action()
            return ui.until(lambda: scan.error, "a message")

        def paste(text: str):
            return lambda: (setattr(scanner.ids.paste, "text", text),
                            ui.press(scanner.ids.paste_button))

        def open_image(path: Path):
            return lambda: (setattr(scanner.ids.path, "text", str(path)),
                            ui.press(scanner.ids.open_button))

        assert scan_error(open_image(expired_png)) == ("This order has expired. Ask the "
                                                       "merchant for a new code.")
        assert scan_error(open_image(blank)).startswith("The code could not be read")
        assert scan_error(paste("hello, world")).startswith("The code could not be read")
        assert scan_error(paste(usd)).startswith("This code asks for another currency")
        ui.shot("error_wrong_currency")

        # a static code: the payer types more than the wallet holds
        scanner.ids.paste.text = static
        ui.press(scanner.ids.paste_button)
        confirm = ui.on("confirm")
        assert not confirm.amount_fixed and confirm.payee_name == "Fruit Stall"
        confirm.ids.amount.text = "50"
        ui.press(confirm.ids.pay_button)
        ui.until(lambda: confirm.error, "insufficient funds")
        assert confirm.error.startswith("Not enough money in your wallet")
        confirm.ids.amount.text = "60000"  # above the no-PIN threshold and class 2's cap
        ui.press(confirm.ids.pay_button)
        ui.until(lambda: confirm.error == "Enter your PIN to pay this amount.", "PIN needed")
        confirm.ids.pin.text = PIN
        ui.press(confirm.ids.pay_button)
        ui.until(lambda: confirm.error.startswith("This is more than your wallet class"),
                 "the per-payment cap")
        ui.shot("error_cap")

        # the bank unreachable: the payment is kept, then sent once the bank is back
        confirm.ids.amount.text = "3"
        net.down = True
        ui.press(confirm.ids.pay_button)
        ui.until(lambda: confirm.error.startswith("Your bank did not answer"), "pending")
        ui.shot("error_unreachable")
        ui.app.go("home")
        home = ui.on("home")
        ui.until(lambda: home.error.startswith("Your bank cannot be reached"), "unreachable")
        assert home.pending.startswith("1 payment(s) wait for the bank's answer")
        net.down = False
        ui.press(home.ids.refresh_button)
        ui.until(lambda: home.balance == "¥17.00" and not home.error, "the kept payment")
        assert ui.app.unexpected == []


def test_the_wallet_command_starts_the_app(kivy, ui_rail, tmp_path, artifacts_dir):
    """`yuanrail wallet --bank URL --home DIR`, one command: it starts, lists the banks on
    the onboarding screen, and (with the hidden --screenshot) saves it and exits 0."""
    import subprocess
    import sys

    shot = artifacts_dir / "wallet_command_start.png"
    shot.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "yuanrail.cli", "wallet", "--bank", ui_rail.bank_urls["yangtze"],
         "--bank", f"pearl={ui_rail.bank_urls['pearl']}", "--home", str(tmp_path / "home"),
         "--screenshot", str(shot)], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"banks {ui_rail.bank_urls['yangtze']}, {ui_rail.bank_urls['pearl']}" in done.stdout
    assert shot.stat().st_size > 2000
    assert not (tmp_path / "home" / "key.json").exists()  # nothing made before the user acts


# --- languages ------------------------------------------------------------------------------

def renders_glyphs(text: str) -> bool:
    """Whether Kivy's default font draws `text` with real glyphs: with a font that lacks
    them every character is the same .notdef box, so two different characters would give
    the same pixels."""
    from kivy.core.text import Label as CoreLabel

    def pixels(char: str) -> bytes:
        label = CoreLabel(text=char, font_size=32)
        label.refresh()
        return bytes(label.texture.pixels)

    return len({pixels(char) for char in text}) == len(set(text))


def test_a_new_user_in_chinese_opens_a_wallet_and_switches_language(kivy, ui_rail, tmp_path,
                                                                    artifacts_dir):
    from wallet_app.core import i18n

    app = make_app(kivy, tmp_path / "wallet", banks(ui_rail), language="zh_CN",
                   operator_tokens=dict(OPERATOR_TOKENS))
    with Driver(app, artifacts_dir) as ui:
        assert renders_glyphs("钱包付款码") and renders_glyphs("Pay")
        onboarding = ui.on("onboarding")
        ui.until(lambda: len(onboarding.bank_labels) == 2, "the banks")
        texts = {w.text for w in onboarding.walk() if hasattr(w, "text")}
        assert {"开通数字人民币钱包", "开通钱包"} <= texts
        assert onboarding.ids.phone.hint_text == "手机号码"
        onboarding.ids.bank.text = next(b for b in onboarding.bank_labels if "yangtze" in b)
        onboarding.ids.phone.text = new_phone()
        onboarding.ids.pin.text = PIN
        onboarding.ids.pin_again.text = "135799"
        ui.press(onboarding.ids.open_button)
        ui.until(lambda: onboarding.error, "the refusal")
        assert onboarding.error == "两次输入的支付密码不一致。"
        ui.shot("zh_onboarding")
        onboarding.ids.pin.text = onboarding.ids.pin_again.text = PIN
        ui.press(onboarding.ids.open_button)

        link = ui.on("link")
        ui.until(lambda: link.class_text, "the class")
        assert link.class_text.startswith("四类钱包（仅手机号）")
        assert link.limits_text == "余额上限 ¥10,000.00，单笔限额 ¥2,000.00，每日限额 ¥5,000.00。"
        ui.shot("zh_opened_class4")
        ui.press(link.ids.continue_button)

        home = ui.on("home")
        ui.until(lambda: home.balance == "¥0.00" and home.today_left, "the balance")
        assert home.ids.scan_button.text == "扫码付款"
        assert home.ids.code_button.text == "付款码"
        assert home.today_left == "今日剩余额度：¥5,000.00 / ¥5,000.00"
        ui.shot("zh_home")

        ui.press(home.ids.settings_button)
        settings = ui.on("settings")
        assert settings.language == "zh_CN" and settings.ids.lang_zh.state == "down"
        ui.shot("zh_settings")
        ui.press(settings.ids.lang_en)  # every label redraws at once
        assert i18n.language() == "en" and settings.ids.back_button.text == "Back"
        assert home.ids.scan_button.text == "Scan to pay"
        assert i18n.saved_language(tmp_path / "wallet") == "en"
        ui.press(settings.ids.back_button)
        home = ui.on("home")
        ui.until(lambda: home.today_left.startswith("Left today"), "English figures")
        ui.press(home.ids.settings_button)
        settings = ui.on("settings")
        ui.press(settings.ids.lang_zh)
        assert home.ids.scan_button.text == "扫码付款"
        ui.press(settings.ids.system_button)  # back to the phone's language
        assert i18n.saved_language(tmp_path / "wallet") is None
    i18n.set_language("en")


def test_the_language_follows_the_system_until_one_is_chosen(kivy, ui_rail, tmp_path,
                                                            artifacts_dir, monkeypatch):
    from wallet_app.core import i18n

    monkeypatch.setenv("LANGUAGE", "zh_CN:en")
    with Driver(make_app(kivy, tmp_path / "w", banks(ui_rail), language=None),
                artifacts_dir) as ui:
        onboarding = ui.on("onboarding")
        assert i18n.language() == "zh_CN" and onboarding.ids.open_button.text == "开通钱包"
    i18n.save_language(tmp_path / "w", "en")
    with Driver(make_app(kivy, tmp_path / "w", banks(ui_rail), language=None),
                artifacts_dir) as ui:
        onboarding = ui.on("onboarding")
        assert i18n.language() == "en" and onboarding.ids.open_button.text == "Open my wallet"


# --- interaction ----------------------------------------------------------------------------

def button_places(screen) -> dict[str, tuple[float, float]]:
    """Where each button of `screen` sits in the window."""
    from kivy.uix.button import Button

    return {f"{type(w).__name__}:{w.text}": tuple(round(v) for v in w.to_window(*w.pos))
            for w in screen.walk(restrict=True) if isinstance(w, Button) and w.opacity > 0}


def unlocked_home(ui, pin: str = PIN):
    """Type the PIN on the unlock screen and press Unlock; the home screen it leads to."""
    unlock = ui.on("unlock")
    unlock.ids.pin.text = pin
    ui.press(unlock.ids.unlock_button)
    return ui.on("home")


def settled_places(ui, screen) -> dict[str, tuple[float, float]]:
    """`button_places` once the layout has settled (two reads alike): on a loaded machine a
    long screen may take more than one frame to lay out."""
    last = None
    for _ in range(40):
        ui.pump(0.1)
        now = button_places(screen)
        if now == last:
            return now
        last = now
    return last


def escape(ui) -> bool:
    from kivy.core.window import Window

    handled = Window.dispatch("on_keyboard", 27, 41, None, [])
    ui.pump(0.1)
    return bool(handled)


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_messages_keep_buttons_still_back_goes_back_numbers_get_a_number_pad_and_a_refused_top_up_is_refused(  # noqa: E501
        kivy, ui_rail, tmp_path, artifacts_dir, language):
    from kivy.uix.textinput import TextInput

    from rail_protocol.errors import RailError
    from wallet_app.core import i18n, messages
    from wallet_app.ui.screens.history import INCOMING, REFUSED

    urls = banks(ui_rail)
    run(funded_core_wallet(tmp_path / "wallet", urls, yuan(20)))
    with Driver(make_app(kivy, tmp_path / "wallet", urls, language=language),
                artifacts_dir) as ui:
        # a number pad for every PIN, amount and phone field, on every screen (a backup's
        # passphrase is text: it is no PIN)
        passphrases = {id(w.__self__) for screen in ui.app.root.screens   # ids are proxies
                       for name, w in screen.ids.items() if "passphrase" in name}
        fields = [w for screen in ui.app.root.screens for w in screen.walk()
                  if isinstance(w, TextInput) and (w.password or w.input_filter)
                  and id(w) not in passphrases]
        assert len(fields) >= 10  # (the merchant tabs not shown are not in the tree)
        assert all(w.input_type in ("number", "tel") for w in fields), \
            [(w.hint_text, w.input_type) for w in fields if w.input_type not in ("number", "tel")]

        unlock = ui.on("unlock")
        assert not escape(ui) and ui.screen.name == "unlock"  # nowhere to go back to
        unlock.ids.pin.text = PIN
        ui.press(unlock.ids.unlock_button)
        home = ui.on("home")
        ui.until(lambda: home.balance == "¥20.00", "the balance")

        # an error or a note appearing moves no button (each reserves two lines)
        two_lines = messages.explain(RailError("insufficient_funds"))
        for name in ("home", "scan", "topup", "receive", "history", "settings"):
            ui.app.go(name)
            screen = ui.on(name)
            before = settled_places(ui, screen)
            screen.error, screen.info = two_lines, i18n.gettext("Updating...")
            assert settled_places(ui, screen) == before, name
            if name == "home":
                ui.shot(f"{language}_home_with_error")
            screen.error = screen.info = ""
            # Escape (Android's Back) leaves every screen but home for home
            if name != "home":
                assert escape(ui)
                ui.until(lambda: ui.screen.name == "home", f"back from {name}")
            else:
                assert not escape(ui) and ui.screen.name == "home"

        # a top-up the bank refuses shows as refused in history: no "+", not green
        ui.app.go("topup")
        topup = ui.on("topup")
        ui.until(lambda: topup.linked, "the top-up screen")
        topup.ids.amount.text = "4990"  # the deposit account holds ¥4,980 after the ¥20
        ui.press(topup.ids.topup_button)
        ui.until(lambda: topup.error, "the refusal")
        assert topup.error == messages.explain(RailError("insufficient_deposit"))
        assert escape(ui)
        home = ui.on("home")
        ui.press(home.ids.history_button)
        history = ui.on("history")
        ui.until(lambda: len(history.ids.rows.children) >= 2, "the history")
        refused = next(r for r in history.rows if r.refused)
        assert refused.amount == "¥4,990.00" and not refused.incoming
        assert refused.status == i18n.gettext("Refused")
        labels = {w.text: w.color for w in history.ids.rows.children}
        assert labels[refused.text] == list(REFUSED)
        done = next(r for r in history.rows if not r.refused)
        assert done.amount == "+¥20.00" and labels[done.text] == list(INCOMING)
        ui.shot(f"{language}_history_refused_top_up")
    i18n.set_language("en")


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_offline_payment_and_a_voucher_from_the_screens(kivy, ui_rail, tmp_path, artifacts_dir,
                                                        language):
    """Reserve online, pay another phone offline (its note read back from the screenshot),
    the receiver accepts and syncs; then spend a voucher at a scanned merchant."""
    from rail_protocol.envelope import now_ms
    from wallet_app.core.wallet import Wallet

    urls = banks(ui_rail)
    wallet = run(funded_core_wallet(tmp_path / "wallet", urls, yuan(300)))
    issuer = run(funded_core_wallet(tmp_path / "issuer", urls, yuan(100)))
    merchant_key, merchant_id = run(open_merchant(urls[0], "Tea Corner"))

    async def receiver_and_voucher():
        receiver = Wallet(tmp_path / "receiver", urls)
        await receiver.open_wallet(urls[0], new_phone(), PIN, PIN)
        await receiver.refresh()
        async with BankClient(urls[0]) as bank:
            voucher = await bank.open_voucher(issuer.key, issuer.wallet_id, wallet.wallet_id,
                                              yuan(20), deadline_ms=now_ms() + 3_600_000,
                                              mcc="5812")
            static = await bank.static_qr(merchant_id)
        await receiver.aclose()
        return receiver, voucher, static

    receiver, voucher, static = run(receiver_and_voucher())
    zh = language == "zh_CN"
    with Driver(make_app(kivy, tmp_path / "wallet", urls, language=language), artifacts_dir) as ui:
        home = unlocked_home(ui)
        ui.until(lambda: home.balance.endswith("300.00"), "the balance")
        ui.press(home.ids.offline_button)
        screen = ui.on("offline")
        assert screen.reserve_text == ("没有离线额度。请联网时预留。" if zh
                                       else "No offline reserve. Reserve some while online.")
        screen.ids.reserve_amount.text = "100"
        ui.press(screen.ids.reserve_button)
        ui.until(lambda: "100.00" in screen.reserve_text, "the reserve")
        ui.press(screen.ids.scan_button)         # the receiver's code, scanned
        ui.on("scan").on_qr(receiver.receive_code())
        screen = ui.on("offline")
        assert screen.ids.receiver.text == receiver.receive_code()
        screen.ids.pay_amount.text = "35"
        ui.press(screen.ids.pay_button)
        ui.until(lambda: screen.note_text, "the offline note")
        assert "65.00" in screen.reserve_text
        note = decode_screenshot(ui.shot(f"offline_pay_{language}"))
        assert note == screen.note_text

        async def receive():
            other = Wallet(tmp_path / "receiver", urls)
            await other.unlock(PIN)
            accepted = other.accept_offline(note)
            synced = await other.sync_offline()
            view = await other.refresh()
            await other.aclose()
            return accepted, synced, view

        accepted, synced, view = ui.call(receive())
        assert accepted.amount_fen == yuan(35) and synced[0]["status"] == "credited"
        assert view.balance_fen == yuan(35)

        # The other way: someone pays this wallet offline; its note is scanned here.
        async def someone_pays():
            payer = await funded_core_wallet(tmp_path / "payer", urls, yuan(100))
            await payer.reserve_offline(yuan(50), 2)
            return payer.pay_offline(ui.app.wallet.receive_code(), yuan(7)).text

        incoming = ui.call(someone_pays())
        ui.app.go("scan")
        ui.on("scan").on_qr(incoming)
        screen = ui.on("offline")
        ui.until(lambda: "7.00" in screen.info, "the note accepted")
        assert "7.00" in screen.inbox_text
        ui.press(screen.ids.sync_button)
        ui.until(lambda: screen.info.startswith("已同步" if zh else "Synced"), "the sync")
        assert ("1 笔入账" if zh else "1 credited") in screen.info

        ui.app.go("holds")
        holds = ui.on("holds")
        row = ui.until(lambda: [r for r in holds.ids.rows.children
                                if r.hold_id == voucher["hold_id"]], "the voucher")[0]
        assert ("消费券" if zh else "Voucher") in row.text
        ui.press(next(w for w in row.walk() if hasattr(w, "on_release")))
        holds.ids.merchant.text = static
        holds.ids.amount.text = "8"
        ui.press(holds.ids.use_button)
        ui.until(lambda: holds.info.startswith("完成" if zh else "Done"), "the spend")
        assert "12.00" in holds.info
        ui.shot(f"vouchers_{language}")

        # Locked (no bank to check the PIN, say in the subway): the reserve still pays, with
        # its own key; reserving and syncing wait for the PIN.
        ui.app.lock()
        unlock = ui.on("unlock")
        assert unlock.ids.offline_button.opacity == 1
        ui.press(unlock.ids.offline_button)
        screen = ui.on("offline")
        assert screen.locked and ui.app.wallet.key is None
        assert screen.ids.reserve_button.disabled and screen.ids.sync_button.disabled
        screen.ids.receiver.text = receiver.receive_code()
        screen.ids.pay_amount.text = "5"
        ui.press(screen.ids.pay_button)
        ui.until(lambda: screen.note_text, "the note made while locked")
        assert "60.00" in screen.reserve_text
        ui.shot(f"offline_locked_{language}")
        ui.press(screen.ids.back_button)
        ui.on("unlock")
        assert ui.app.unexpected == []


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_the_wallet_locks_itself_after_a_while_without_use(kivy, ui_rail, tmp_path,
                                                           artifacts_dir, language):
    urls = banks(ui_rail)
    run(funded_core_wallet(tmp_path / "wallet", urls, yuan(10)))
    app = make_app(kivy, tmp_path / "wallet", urls, language=language)
    with Driver(app, artifacts_dir) as ui:
        home = unlocked_home(ui)
        ui.until(lambda: home.balance.endswith("10.00"), "the balance")
        ui.pump(1.5)
        assert ui.app.wallet.key is not None     # two minutes by default: still open
        ui.app.auto_lock_s = 1.0                 # then no touch for a second
        ui.until(lambda: ui.app.root.current == "unlock", "the lock", timeout_s=10)
        assert ui.app.wallet.key is None
        assert ui.on("unlock").info == ("一段时间未使用，钱包已锁定。请输入 PIN。" if
                                        language == "zh_CN" else
                                        "Locked after a while without use. Enter the PIN.")
        ui.shot(f"auto_locked_{language}")
        assert ui.app.unexpected == []


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_the_bank_checks_the_pin_which_settings_changes_and_wrong_ones_lock(
        kivy, ui_rail, tmp_path, artifacts_dir, language):
    """Settings changes the PIN (the old one checked by the bank first); the old PIN no
    longer opens the wallet; five wrong PINs lock it for a day, the right one too."""
    urls = banks(ui_rail)
    run(funded_core_wallet(tmp_path / "wallet", urls, yuan(5)))
    zh = language == "zh_CN"
    with Driver(make_app(kivy, tmp_path / "wallet", urls, language=language), artifacts_dir) as ui:
        home = unlocked_home(ui)
        ui.press(home.ids.settings_button)
        settings = ui.on("settings")
        settings.ids.old_pin.text = "000000"
        settings.ids.new_pin.text = settings.ids.new_pin_again.text = "246810"
        ui.press(settings.ids.change_pin_button)
        ui.until(lambda: settings.error, "the refusal")
        assert settings.error == ("支付密码错误（再错 4 次将被锁定）。" if zh
                                  else "The PIN is wrong (4 tries before it locks).")
        settings.ids.old_pin.text = PIN
        settings.ids.new_pin.text = settings.ids.new_pin_again.text = "246810"
        ui.press(settings.ids.change_pin_button)
        ui.until(lambda: settings.info and not settings.busy, "the new PIN")
        assert settings.info == ("密码已更改。" if zh else "The PIN is changed.")
        saved = tmp_path / "wallet.backup"        # a backup kept off the phone
        saved.write_bytes(ui.call(ui.app.wallet.export_backup("246810",
                                                              "plum blossom in the snow")))
        ui.app.lock()
        unlock = ui.on("unlock")
        for _try in range(5):                          # the old PIN, and wrong ones
            unlock.ids.pin.text = PIN
            ui.press(unlock.ids.unlock_button)
            ui.until(lambda: unlock.error and not unlock.busy, "the refusal")
        unlock.ids.pin.text = "246810"                 # locked now: the right one too
        ui.press(unlock.ids.unlock_button)
        ui.until(lambda: "24" in unlock.error and not unlock.busy, "the lock")
        assert unlock.error.startswith("密码错误次数过多" if zh else "Too many wrong PINs")
        assert ui.app.wallet.key is None
        ui.shot(f"pin_locked_{language}")
        # the backup restores the same wallet here at once, under another new PIN
        ui.press(unlock.ids.restore_button)
        restore = ui.on("restore")
        restore.ids.backup_file.text = str(saved)
        restore.ids.passphrase.text = "plum blossom in the snow"
        restore.ids.pin.text = restore.ids.pin_again.text = "975310"
        ui.press(restore.ids.restore_button)
        home = ui.on("home")
        ui.until(lambda: home.balance.endswith("5.00"), "the balance")
        assert ui.app.unexpected == []


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_a_backup_saved_in_settings_restores_the_wallet_on_a_new_phone(kivy, ui_rail, tmp_path,
                                                                       artifacts_dir, language):
    """Settings seals the key under a passphrase; a fresh phone restores it from onboarding
    under a new PIN and shows the same balance."""
    from wallet_app.core.wallet import Wallet

    urls = banks(ui_rail)
    old = run(funded_core_wallet(tmp_path / "old", urls, yuan(42)))
    zh = language == "zh_CN"
    with Driver(make_app(kivy, tmp_path / "old", urls, language=language), artifacts_dir) as ui:
        home = unlocked_home(ui)
        ui.press(home.ids.settings_button)
        settings = ui.on("settings")
        assert settings.can_back_up
        settings.ids.backup_pin.text = PIN
        settings.ids.passphrase.text = "short"
        ui.press(settings.ids.backup_button)
        ui.until(lambda: settings.error, "the refusal")
        assert settings.error == ("备份口令至少需要 12 个字符。" if zh
                                  else "The backup passphrase must be at least 12 characters.")
        settings.ids.backup_pin.text = PIN
        settings.ids.passphrase.text = "plum blossom in the snow"
        ui.press(settings.ids.backup_button)
        ui.until(lambda: settings.backup_path, "the backup")
        ui.shot(f"backup_{language}")
        assert ui.app.unexpected == []
    saved = Path(settings.backup_path)
    assert saved.exists() and old.key.secret_text().encode() not in saved.read_bytes()

    fresh = Wallet(tmp_path / "new", urls)
    with Driver(make_app(kivy, tmp_path / "new", urls, language=language), artifacts_dir) as ui:
        onboarding = ui.on("onboarding")
        ui.press(onboarding.ids.restore_button)
        restore = ui.on("restore")
        restore.ids.backup_file.text = str(saved)
        restore.ids.passphrase.text = "plum blossom in the snow"
        restore.ids.pin.text = restore.ids.pin_again.text = "246810"
        ui.press(restore.ids.restore_button)
        home = ui.on("home")
        ui.until(lambda: home.balance.endswith("42.00"), "the balance")
        ui.shot(f"restored_{language}")
        assert ui.app.unexpected == []
    assert fresh.has_wallet() and fresh.profile.wallet_id == old.wallet_id


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_home_says_when_money_arrives(kivy, ui_rail, tmp_path, artifacts_dir, language):
    urls = banks(ui_rail)
    wallet = run(funded_core_wallet(tmp_path / "wallet", urls, yuan(10)))
    payer = run(funded_core_wallet(tmp_path / "payer", urls, yuan(50)))
    with Driver(make_app(kivy, tmp_path / "wallet", urls, language=language),
                artifacts_dir) as ui:
        home = unlocked_home(ui)
        ui.until(lambda: home.balance.endswith("10.00"), "the balance")
        ui.pump(6.0)                          # the first look marks where news starts

        async def pay():
            from wallet_app.core.wallet import Wallet

            core = Wallet(tmp_path / "payer", urls)
            await core.unlock(PIN)
            paid = await core.pay(await core.prepare(wallet.receive_code(yuan(3))))
            await core.aclose()
            return paid

        assert ui.call(pay()).status == "settled"
        ui.until(lambda: "3.00" in home.info, "the notice", timeout_s=20)
        assert home.info == ("收到 {who} 付来的 ¥3.00。" if language == "zh_CN"
                             else "Received ¥3.00 from {who}.").format(
            who=present.short_id(payer.wallet_id))
        ui.until(lambda: home.balance.endswith("13.00"), "the new balance")
        ui.shot(f"money_arrived_{language}")
        assert ui.app.unexpected == []


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_a_wallet_started_with_no_bank_adds_one_by_its_address_and_opens(
        kivy, ui_rail, tmp_path, artifacts_dir, language):
    urls = banks(ui_rail)
    with Driver(make_app(kivy, tmp_path / "wallet", [], language=language),
                artifacts_dir) as ui:
        onboarding = ui.on("onboarding")
        assert onboarding.bank_labels == [] and onboarding.info
        onboarding.ids.bank_url.text = "not a bank"
        ui.press(onboarding.ids.add_bank_button)
        ui.until(lambda: onboarding.error, "the refusal")
        onboarding.ids.bank_url.text = f"yuanrail:bank?url={urls[0]}"   # as its QR says
        ui.press(onboarding.ids.add_bank_button)
        ui.until(lambda: onboarding.bank_labels, "the bank added")
        assert "yangtze" in onboarding.ids.bank.text
        onboarding.ids.phone.text = new_phone()
        onboarding.ids.pin.text = onboarding.ids.pin_again.text = PIN
        ui.press(onboarding.ids.open_button)
        ui.on("link")
        ui.shot(f"bank_added_{language}")
        assert ui.app.unexpected == []
    from wallet_app.core.wallet import Wallet
    assert Wallet(tmp_path / "wallet", []).bank_urls == [urls[0].rstrip("/")]   # kept


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_no_title_is_clipped_when_it_wraps(kivy, tmp_path, artifacts_dir, language):
    """A phone at density 1.4 gives a title less room than the desktop: every screen's
    title grows to the lines its text takes (it had a fixed height, and was cut)."""
    with Driver(make_app(kivy, tmp_path / "wallet", [], language=language),
                artifacts_dir) as ui:
        ui.on("onboarding")
        titles = [w for screen in ui.app.root.screens for w in screen.walk()
                  if type(w).__name__ == "Title"]
        assert len(titles) >= 15
        for title in titles:
            title.width = 120              # a narrow column: every title wraps
            title.texture_update()
        ui.pump(0.2)
        clipped = [(t.text, t.height, t.texture_size[1]) for t in titles
                   if t.height < t.texture_size[1]]
        assert not clipped, clipped
        assert any(t.texture_size[1] > 44 for t in titles)   # some did wrap
        assert ui.app.unexpected == []
