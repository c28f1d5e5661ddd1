"""CPU per interbank payment at bank A, through its payment engine (bank/payment_engine.py).

Central, bank A ("yangtze") and bank B ("pearl") run as real uvicorn processes (one worker
each, tests/support/processes_rail.py) on fresh PostgreSQL databases and the real Redis.
Payers at A pay a merchant at B; the user + system CPU of each process is read from /proc
over the payments, serially and with `--concurrency` payments in flight at once (each
lane one payer, one payment after the other). The idle CPU of the background loops over
the same time is measured first and reported apart (`idle`).

    .venv/bin/python loadtests/interbank_cpu.py --payments 200 --concurrency 1,16

Not a load test (`yuanrail loadtest` is): a small, rerunnable measurement of one figure."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script

from bank.client import BankClient  # noqa: E402
from central.client import CentralClient  # noqa: E402
from rail_protocol.keys import SigningKey  # noqa: E402
from tests.conftest import PG_ADMIN_URL  # noqa: E402
from tests.support.processes_rail import (  # noqa: E402
    BANK_NAMES, BANK_TOKENS, CENTRAL, CENTRAL_TOKEN, make_process_rail)
from yuanrail.loadtest_command import ThrowawayDatabases  # noqa: E402

A, B = "yangtze", "pearl"
AMOUNT_FEN = 100


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def payer(bank: BankClient, lane: int, amount_fen: int) -> tuple[SigningKey, str]:
    """A class-1 wallet at A (no caps) topped up from its own deposit account."""
    key, phone = SigningKey.generate(), f"139{secrets.randbelow(10**8):08d}"
    wallet = (await bank.open_wallet(key, phone))["wallet_id"]
    account = (await bank.open_deposit_account(phone, f"Payer {lane}", amount_fen))["account_id"]
    await bank.upgrade(key, wallet, id_number=f"{secrets.randbelow(10**17):017d}X",
                       deposit_account=account)
    await bank.set_class(wallet, 1)
    await bank.top_up(key, wallet, amount_fen)
    return key, wallet


async def measure(rail, bank: BankClient, payers, payee: str, payments: int,
                  concurrency: int) -> dict:
    pids = {name: rail.services[name].process.pid for name in (A, CENTRAL, B)}
    statuses: dict[str, int] = {}

    async def lane(key: SigningKey, wallet: str, count: int) -> None:
        for _ in range(count):
            answer = await bank.pay(key, wallet, payee, AMOUNT_FEN)
            statuses[answer["status"]] = statuses.get(answer["status"], 0) + 1

    per_lane = payments // concurrency
    before = {name: cpu_s(pid) for name, pid in pids.items()}
    started = time.monotonic()
    await asyncio.gather(*(lane(key, wallet, per_lane) for key, wallet in payers[:concurrency]))
    wall = time.monotonic() - started
    done = per_lane * concurrency
    used = {name: cpu_s(pid) - before[name] for name, pid in pids.items()}
    return {"payments": done, "wall_s": wall, "per_s": done / wall, "statuses": statuses,
            "cpu_ms": {name: 1000 * used[name] / done for name in pids}}


async def run(payments: int, lanes: list[int]) -> list[dict]:
    databases = ThrowawayDatabases(PG_ADMIN_URL, "yr_cpu")
    directory = Path(tempfile.mkdtemp(prefix="interbank-cpu-"))
    rail = make_process_rail(databases, directory)
    try:
        rail.start(CENTRAL)
        rail.wait_healthy(CENTRAL)
        rail.enroll_banks()
        for name in BANK_NAMES:
            rail.start(name)
        rail.wait_healthy(*BANK_NAMES)
        central = CentralClient(rail.central_url, operator_token=CENTRAL_TOKEN)
        bank_a = BankClient(rail.bank_urls[A], operator_token=BANK_TOKENS[A], timeout_s=60)
        bank_b = BankClient(rail.bank_urls[B], operator_token=BANK_TOKENS[B], timeout_s=60)
        try:
            for bank_id in BANK_NAMES:
                await central.deposit_reserves(bank_id, f"reserve-{bank_id}", 10**13)
            shop_key = SigningKey.generate()
            payee = (await bank_b.open_wallet(shop_key, f"139{secrets.randbelow(10**8):08d}",
                                              kind="merchant", merchant={
                                                  "name": "Pearl Shop", "mcc": "5812",
                                                  "city": "Guangzhou"}))["wallet_id"]
            await bank_b.set_class(payee, 1)
            most = max(lanes)
            payers = await asyncio.gather(*(payer(bank_a, n, 10**9) for n in range(most)))
            await measure(rail, bank_a, payers, payee, 2 * most, most)   # warm up
            pid = rail.services[A].process.pid
            idle_from = cpu_s(pid)
            await asyncio.sleep(3)
            idle_ms_per_s = 1000 * (cpu_s(pid) - idle_from) / 3
            results = []
            for concurrency in lanes:
                result = await measure(rail, bank_a, payers, payee, payments, concurrency)
                result.update(concurrency=concurrency, idle_a_ms_per_s=idle_ms_per_s)
                results.append(result)
            return results
        finally:
            for client in (central, bank_a, bank_b):
                await client.aclose()
    finally:
        rail.stop_all()
        databases.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=200, help="per measurement")
    parser.add_argument("--concurrency", default="1,16", help="payments in flight, e.g. 1,16")
    args = parser.parse_args()
    lanes = [int(n) for n in args.concurrency.split(",")]
    print("in flight  payments  payments/s  CPU ms per payment: bank A / central"
          " / bank B   bank A less its idle loops  statuses")
    for r in asyncio.run(run(args.payments, lanes)):
        cpu = r["cpu_ms"]
        net = cpu[A] - r["idle_a_ms_per_s"] * r["wall_s"] / r["payments"]
        print(f"{r['concurrency']:9} {r['payments']:9} {r['per_s']:11.1f}"
              f"  {cpu[A]:6.2f} / {cpu[CENTRAL]:6.2f} / {cpu[B]:6.2f}"
              f"   {net:6.2f}  {r['statuses']}", flush=True)


if __name__ == "__main__":
    main()
