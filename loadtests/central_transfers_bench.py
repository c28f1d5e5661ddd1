"""Central's CPU per interbank transfer under concurrent load (message 1 and 2 only).

Central runs as a real uvicorn process on a fresh PostgreSQL database; bank B is a stand-in
uvicorn process (this module's `bank_b_app`) that answers message 2, single or batched, with
signed results and no database; bank A is this driver, which seals every message 1 before
the clock starts and then sends them `--concurrency` at a time. The figure that matters is
central's own CPU (user + system, from /proc) divided by the transfers:

    .venv/bin/python loadtests/central_transfers_bench.py --transfers 2000 --concurrency 64

Bank B does not check central's signature here (it is not what is measured); the real bank
does. The driver speaks bare HTTP/1.1 (httpx cost it more CPU per request than central
spends). Run it on a quiet machine: the figures are CPU time, wall time is only indicative."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
from fastapi import FastAPI, Request

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from central.client import CentralClient, transfer_envelope  # noqa: E402
from rail_protocol.canonical import parse_json  # noqa: E402
from rail_protocol.envelope import sign_statement  # noqa: E402
from rail_protocol.instruction_types import CREDIT_RESULT  # noqa: E402
from rail_protocol.keys import SigningKey  # noqa: E402
from rail_service.keyfile import load_or_create_key  # noqa: E402
from yuanrail.loadtest_command import ThrowawayDatabases  # noqa: E402
from yuanrail.processes import ServiceGroup, free_port, start_uvicorn, wait_healthy  # noqa: E402

PG_ADMIN_URL = os.environ.get("YUANRAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN = "bench-central-operator-0001"
A, B = "alpha", "beta"


def bank_b_app():
    """The stand-in bank B: accepts every credit, signed with the key in YUANRAIL_BENCH_B_KEY."""
    key = load_or_create_key(Path(os.environ["YUANRAIL_BENCH_B_KEY"]))
    app = FastAPI()

    def result(env: dict) -> dict:
        return {"result": sign_statement(key, {"type": CREDIT_RESULT,
                                               "transfer_id": env["id"], "accepted": True})}

    @app.post("/v1/interbank/credits")
    async def credit(request: Request) -> dict:
        return result(parse_json(await request.body()))

    @app.post("/v1/interbank/credits/batch")
    async def credits(request: Request) -> dict:
        return {"results": [result(env) for env in parse_json(await request.body())["credits"]]}

    @app.get("/v1/health")
    async def health() -> dict:
        return {"status": "ok"}

    return app


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(args, central_url: str, b_url: str, b_key: SigningKey, central_pid: int,
                b_pid: int) -> None:
    a_key = SigningKey.generate()
    async with CentralClient(central_url, operator_token=TOKEN) as central:
        await central.register_bank(a_key, A, "Alpha Bank")
        await central.register_bank(b_key, B, "Beta Bank", url=b_url)
        await central.deposit_reserves(A, "bench-seed-alpha", 10 ** 12)
        await central.issue(a_key, A, 10 ** 12)
        await central.deposit_reserves(B, "bench-seed-beta", 1_000)
        await central.issue(b_key, B, 1_000)
        warm = [transfer_envelope(a_key, A, B, 100, "beta.w-bench") for _ in range(20)]
        for env in warm:
            await central.transfer(env)
        envs = [transfer_envelope(a_key, A, B, 100 + i % 900, "beta.w-bench")
                for i in range(args.transfers)]
        queue = list(reversed(envs))
        statuses: Counter = Counter()
        errors: list = []
        host, port = central_url.removeprefix("http://").split(":")

        async def user() -> None:
            # A bare HTTP/1.1 client on one kept-alive connection: httpx costs the driver
            # more CPU per request than central spends, and would be what is measured.
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                while queue:
                    body = orjson.dumps(queue.pop().to_dict())
                    writer.write(b"POST /v1/transfers HTTP/1.1\r\nhost: central\r\n"
                                 b"content-type: application/json\r\ncontent-length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    answer = orjson.loads(await reader.readexactly(length))
                    if head.startswith(b"HTTP/1.1 200"):
                        statuses[answer["status"]] += 1
                    else:
                        errors.append((round(time.monotonic() - wall0, 2), answer))
            finally:
                writer.close()

        cpu0, wall0 = cpu_s(central_pid), time.monotonic()
        others0 = cpu_s(b_pid), time.process_time()
        await asyncio.gather(*(user() for _ in range(args.concurrency)))
        cpu1, wall1 = cpu_s(central_pid), time.monotonic()
        b_cpu, driver_cpu = (after - before for after, before in
                             zip((cpu_s(b_pid), time.process_time()), others0))
        for _ in range(100):  # anything left prepared is settled by the worker
            if (await central.audit())["in_flight_fen"] == 0:
                break
            await asyncio.sleep(0.1)
        audit = await central.audit()
    n = args.transfers
    print(f"{n} transfers, {args.concurrency} at a time: {n / (wall1 - wall0):.0f}/s wall, "
          f"central CPU {1000 * (cpu1 - cpu0) / n:.2f} ms per transfer "
          f"({cpu1 - cpu0:.1f} s in all); answers {dict(statuses)}; "
          f"errors (s, error): {errors[:5]}{'...' if len(errors) > 5 else ''}; "
          f"audit balanced: {audit['balanced']}, in flight {audit['in_flight_fen']}; "
          f"CPU per transfer of bank B {1000 * b_cpu / n:.2f} ms, "
          f"of the driver {1000 * driver_cpu / n:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    databases = ThrowawayDatabases(PG_ADMIN_URL, "yr_bench")
    services = ServiceGroup()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            b_key = load_or_create_key(tmp / "b.key")
            bank_b = services.add(start_uvicorn(
                "bank-b", "loadtests.central_transfers_bench:bank_b_app", free_port(),
                {"YUANRAIL_BENCH_B_KEY": str(tmp / "b.key"), "PYTHONPATH": str(REPO)}, tmp))
            central = services.add(start_uvicorn("central", "central.app:create_app", free_port(), {
                "YUANRAIL_CENTRAL_DATABASE_URL": databases(),
                "YUANRAIL_CENTRAL_OPERATOR_TOKEN": TOKEN,
                "YUANRAIL_CENTRAL_KEY_FILE": str(tmp / "central.key")}, tmp))
            wait_healthy(bank_b)
            wait_healthy(central)
            asyncio.run(drive(args, central.url, bank_b.url, b_key, central.process.pid,
                              bank_b.process.pid))
    finally:
        services.stop_all()
        databases.drop()

if __name__ == "__main__":
    main()
