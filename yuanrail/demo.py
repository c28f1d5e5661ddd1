"""`yuanrail demo`: the rail on embedded defaults, and `--scenario`, its scripted tour.

The tour is the rail's living acceptance test: it drives the running services over HTTP the
way their users would, prints every step with the balances, ends with the conservation
audit, and exits non-zero if any step or the audit fails."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from central.client import CentralClient
from rail_protocol.envelope import seal
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey
from rail_protocol.money import format_fen, yuan
from yuanrail.audit import audit_rail
from yuanrail.processes import ServiceGroup, free_port, start_uvicorn, wait_healthy

DEMO_OPERATOR_TOKEN = "demo-central-operator-token"
BANKS = {"yangtze": "Yangtze Commercial Bank", "pearl": "Pearl River Bank"}


@dataclass
class Rail:
    """What the demo started: where each service is, and the keys the demo holds."""

    directory: Path
    central_url: str
    group: ServiceGroup
    bank_keys: dict[str, SigningKey] = field(default_factory=dict)


def start_rail(directory: Path, *, central_port: int | None = None) -> Rail:
    """Start central on SQLite files under `directory` (wiped first: each demo starts clean)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    group = ServiceGroup()
    port = central_port or free_port()
    central = group.add(start_uvicorn(
        "central", "central.app:create_app", port,
        {"YUANRAIL_CENTRAL_DATABASE_URL": f"sqlite+aiosqlite:///{directory}/central.sqlite",
         "YUANRAIL_CENTRAL_OPERATOR_TOKEN": DEMO_OPERATOR_TOKEN,
         "YUANRAIL_CENTRAL_KEY_FILE": str(directory / "central.key")},
        directory / "logs"))
    try:
        wait_healthy(central)
    except Exception:
        group.stop_all()
        raise
    return Rail(directory, central.url, group)


async def seed(rail: Rail) -> None:
    """Register the demo banks, credit their reserves and issue them their float."""
    async with CentralClient(rail.central_url, operator_token=DEMO_OPERATOR_TOKEN) as central:
        for bank_id, name in BANKS.items():
            key = rail.bank_keys.setdefault(bank_id, SigningKey.generate())
            await central.register_bank(key, bank_id, name)
            await central.deposit_reserves(bank_id, f"seed-reserves-{bank_id}", yuan(1_000_000))


class Tour:
    """Runs numbered steps, printing each; remembers whether any failed."""

    def __init__(self) -> None:
        self.number = 0
        self.failures: list[str] = []

    async def step(self, title: str, action: Callable[[], Awaitable[str | None]]) -> None:
        self.number += 1
        print(f"\n[{self.number:02d}] {title}")
        try:
            detail = await action()
        except Exception as exc:  # a failed step is reported, and the tour goes on
            self.failures.append(f"[{self.number:02d}] {title}: {exc!r}")
            print(f"     FAILED: {exc!r}")
            return
        if detail:
            for line in detail.splitlines():
                print(f"     {line}")
        print("     ok")


async def expect_refusal(code: str, action: Awaitable) -> str:
    try:
        await action
    except RailError as exc:
        if exc.code != code:
            raise AssertionError(f"expected refusal {code}, got {exc.code}") from None
        return f"refused as expected: {exc.code} ({exc.message})"
    raise AssertionError(f"expected refusal {code}, but it was accepted")


async def run_scenario(rail: Rail) -> bool:
    """The scripted tour of every feature built so far."""
    tour = Tour()
    central = CentralClient(rail.central_url, operator_token=DEMO_OPERATOR_TOKEN)

    async def figures() -> str:
        supply = await central.supply()
        lines = [f"total issued {format_fen(supply['total_issued_fen'])}, "
                 f"backing {format_fen(supply['backing_fen'])}"]
        for bank in supply["banks"]:
            lines.append(f"{bank['bank_id']:8s} reserves {format_fen(bank['reserves_fen']):>18s}"
                         f"   e-CNY held {format_fen(bank['holding_fen']):>18s}")
        return "\n".join(lines)

    async def banks_registered() -> str:
        lines = []
        identity = await central.identity()
        for bank_id in BANKS:
            cert = await central.certificate(bank_id)
            from rail_protocol.envelope import verify_statement
            from rail_protocol.keys import PublicKey
            verify_statement(PublicKey.from_text(identity["public_key"]), cert)
            lines.append(f"{bank_id}: key {cert['key_id']} certified by central {cert['issuer']}")
        return "\n".join(lines) + "\n" + await figures()

    keys = rail.bank_keys

    async def issue_both() -> str:
        await central.issue(keys["yangtze"], "yangtze", yuan(600_000))
        await central.issue(keys["pearl"], "pearl", yuan(400_000))
        return await figures()

    async def retried_issue() -> str:
        env = seal(keys["yangtze"], "central.issue",
                   {"bank_id": "yangtze", "amount_fen": yuan(1_000)})
        first = await central.request("POST", "/v1/issuance", env.to_dict())
        again = await central.request("POST", "/v1/issuance", env.to_dict())
        if again.get("repeated") is not True or again["receipt"] != first["receipt"]:
            raise AssertionError("the retry did not return the first receipt")
        return "the same instruction sent twice: one entry, the same signed receipt\n" + \
            await figures()

    async def over_issue() -> str:
        before = (await central.audit())["entries"]
        text = await expect_refusal(
            "insufficient_reserves", central.issue(keys["pearl"], "pearl", yuan(600_001)))
        if (await central.audit())["entries"] != before:
            raise AssertionError("a refused issue wrote to the journal")
        return text + "\njournal unchanged"

    async def forged() -> str:
        intruder = SigningKey.generate()
        env = seal(keys["pearl"], "central.issue", {"bank_id": "pearl", "amount_fen": 100})
        forged_env = {**env.to_dict(), "sig": seal(intruder, "central.issue", env.body).sig}
        return await expect_refusal(
            "bad_signature", central.request("POST", "/v1/issuance", forged_env))

    async def redeem() -> str:
        await central.redeem(keys["pearl"], "pearl", yuan(100_000))
        return await figures()

    async def over_redeem() -> str:
        return await expect_refusal(
            "insufficient_holdings", central.redeem(keys["pearl"], "pearl", yuan(300_001)))

    async def audit() -> str:
        balanced, lines = await audit_rail(rail.central_url, DEMO_OPERATOR_TOKEN)
        if not balanced:
            raise AssertionError("\n".join(lines))
        return "\n".join(lines)

    try:
        await tour.step("Central certifies the two bank nodes' keys and credits their reserves",
                        banks_registered)
        await tour.step("Yangtze issues ¥600,000 and Pearl ¥400,000 of e-CNY against reserves",
                        issue_both)
        await tour.step("A retried issue instruction has exactly one effect", retried_issue)
        await tour.step("Issuing beyond reserves is refused (e-CNY is 100% backed)", over_issue)
        await tour.step("An issue with a forged signature is refused", forged)
        await tour.step("Pearl redeems ¥100,000 back into reserves", redeem)
        await tour.step("Redeeming more than the bank holds is refused", over_redeem)
        await tour.step("Conservation audit", audit)
    finally:
        await central.aclose()
    print()
    if tour.failures:
        print(f"TOUR FAILED: {len(tour.failures)} step(s)")
        for failure in tour.failures:
            print(f"  {failure}")
        return False
    print(f"TOUR PASSED: {tour.number} steps, audit balanced")
    return True


def main(directory: Path, scenario: bool, central_port: int) -> int:
    rail = start_rail(directory, central_port=None if scenario else central_port)
    try:
        asyncio.run(seed(rail))
        if scenario:
            return 0 if asyncio.run(run_scenario(rail)) else 1
        print(f"yuanrail demo is up (data in {directory}):")
        print(f"  central  {rail.central_url}   (API docs at {rail.central_url}/docs)")
        print(f"  operator token: {DEMO_OPERATOR_TOKEN}")
        print("  banks registered: " + ", ".join(BANKS))
        print(f"  audit:   yuanrail audit --central {rail.central_url} "
              f"--token {DEMO_OPERATOR_TOKEN}")
        print("Ctrl-C stops it.")
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        try:
            while not stop:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        rail.group.stop_all()
