"""The caller's CPU per call between the services: `rail_service.service_http.ServiceHTTP`
(aiohttp over real sockets, what bank A and central use for message 1s and 2s) against a
plain `httpx.AsyncClient` (what they used before), each POSTing a batch-sized body to the
no-op endpoint (`loadtests/noop_app.py`) under uvicorn on a free loopback port, with a few
calls in flight at once, as the batchers make them.

Only this process's CPU (user + system, `getrusage`) around each run is counted, not the
server's. Rounds interleave the two clients; the medians are printed. Bounded: `--calls`
per client per round, everything stops by itself.

    .venv/bin/python loadtests/bench_service_http.py [--calls 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rail_service.service_http import ServiceHTTP  # noqa: E402

BODY = b'{"transfers":["' + b"x" * 3000 + b'"]}'   # about a batch of four message 1s
IN_FLIGHT = 4


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def per_call_us(post, calls: int) -> float:
    for _ in range(50):   # connections made, code warm
        await post()
    start = cpu_s()

    async def caller(n: int) -> None:
        for _ in range(n):
            await post()
    await asyncio.gather(*(caller(calls // IN_FLIGHT) for _ in range(IN_FLIGHT)))
    return (cpu_s() - start) / (calls // IN_FLIGHT * IN_FLIGHT) * 1e6


async def with_httpx(url: str, calls: int) -> float:
    async with httpx.AsyncClient(headers={"content-type": "application/json"},
                                 timeout=5) as client:
        async def post() -> None:
            response = await client.post(url, content=BODY)
            assert response.status_code == 200, response.status_code
        return await per_call_us(post, calls)


async def with_service_http(url: str, calls: int) -> float:
    client = ServiceHTTP(timeout_s=5, headers={"content-type": "application/json"})
    try:
        async def post() -> None:
            reply = await client.request("POST", url, content=BODY)
            assert reply.status == 200, reply.status
        return await per_call_us(post, calls)
    finally:
        await client.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "loadtests.noop_app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], cwd=ROOT)
    url = f"http://127.0.0.1:{port}/v1/noop"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the no-op server did not start") from None
                time.sleep(0.2)
        figures: dict[str, list[float]] = {"httpx.AsyncClient": [], "ServiceHTTP (aiohttp)": []}
        for n in range(args.rounds):
            figures["httpx.AsyncClient"].append(asyncio.run(with_httpx(url, args.calls)))
            figures["ServiceHTTP (aiohttp)"].append(
                asyncio.run(with_service_http(url, args.calls)))
            print(f"round {n + 1}: " + ", ".join(f"{name} {values[-1]:.0f} us"
                                                  for name, values in figures.items()))
        medians = {name: statistics.median(values) for name, values in figures.items()}
        print(f"caller's CPU per POST of {len(BODY):,} bytes, {IN_FLIGHT} in flight, "
              f"median of {args.rounds} rounds:")
        for name, value in medians.items():
            print(f"  {name:24s} {value:7.0f} us")
        print(f"  ratio {medians['httpx.AsyncClient'] / medians['ServiceHTTP (aiohttp)']:.1f}x")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
