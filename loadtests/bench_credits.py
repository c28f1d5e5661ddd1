"""CPU per interbank credit at bank B (`bank/credit_engine.py`): credits sent one by one
(`POST /v1/interbank/credits`, a transaction each, as central's single deliveries) against
one batch call (`POST /v1/interbank/credits/batch`, one transaction), through the bank's
HTTP routes in process (ASGI), as central reaches them.

Starts the in-process test rail (central and two banks on fresh PostgreSQL databases, Redis
under a prefix of its own; everything dropped afterwards), opens payees at pearl (half class 4,
whose rows are locked, half class 1, credited by appended credits), then calls both with the
same kind of batch, interleaved, and reads this process's CPU time (user + system) around
each call. The rail's background loops share the process; their idle CPU is measured apart.
The message 2s are sealed with central's key but never prepared by central: the rail's audit
does not balance afterwards, which is why the databases are thrown away.

    .venv/bin/python loadtests/bench_credits.py [--batch 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rail_protocol.envelope import MAX_TTL_MS, seal  # noqa: E402
from rail_protocol.instruction_types import INTERBANK_CREDIT  # noqa: E402
from tests.conftest import PG_ADMIN_URL  # noqa: E402
from tests.support.rail import start_rail  # noqa: E402
from yuanrail.loadtest_command import ThrowawayDatabases  # noqa: E402


def batch_of(rail, payees: list[str], size: int) -> dict:
    envelopes = []
    for n in range(size):
        transfer_id = f"yangtze.{secrets.token_hex(16)}"
        envelopes.append(seal(rail.central_key, INTERBANK_CREDIT, {
            "transfer_id": transfer_id, "from_bank": "yangtze", "to_bank": "pearl",
            "amount_fen": 100 + n, "payee_wallet": payees[n % len(payees)]},
            id=transfer_id, ttl_ms=MAX_TTL_MS).to_dict())
    return {"credits": envelopes}


async def cpu_of(call, body: dict) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one call; every answer must be an acceptance."""
    cpu, wall = time.process_time(), time.perf_counter()
    answer = await call(body)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert all(r.get("result", {}).get("accepted") for r in answer["results"]), answer
    return cpu, wall


async def run(batch: int, rounds: int) -> None:
    databases = ThrowawayDatabases(PG_ADMIN_URL, "yr_bench")
    try:
        with tempfile.TemporaryDirectory() as keys:
            async with start_rail(databases, Path(keys)) as rail:
                wallets = await rail.open_many("pearl", 2 * batch)
                for wallet in wallets[::2]:
                    await rail.client("pearl").set_class(wallet.wallet_id, 1)
                payees = [w.wallet_id for w in wallets]

                async def batched(body: dict) -> dict:
                    response = await rail.post_raw("pearl", "/v1/interbank/credits/batch", body)
                    return response.json()

                async def one_by_one(body: dict) -> dict:
                    return {"results": [(await rail.post_raw(
                        "pearl", "/v1/interbank/credits", item)).json()
                        for item in body["credits"]]}

                await cpu_of(one_by_one, batch_of(rail, payees, 4))   # warm up
                await cpu_of(batched, batch_of(rail, payees, 4))
                idle = time.process_time()
                await asyncio.sleep(2)
                idle = (time.process_time() - idle) / 2
                totals = {"one by one": [0.0, 0.0], "batch": [0.0, 0.0]}
                for _round in range(rounds):
                    for name, call in (("one by one", one_by_one), ("batch", batched)):
                        cpu, wall = await cpu_of(call, batch_of(rail, payees, batch))
                        totals[name][0] += cpu
                        totals[name][1] += wall
    finally:
        databases.drop()
    credits = batch * rounds
    print(f"{rounds} rounds of a batch of {batch} credits (half to class-4 payees, half to "
          f"class 1); background idle CPU {idle * 1000:.1f} ms/s")
    print("| path | CPU per credit | wall per credit |")
    print("| --- | ---: | ---: |")
    for name, (cpu, wall) in totals.items():
        print(f"| {name} | {cpu / credits * 1000:.2f} ms | {wall / credits * 1000:.2f} ms |")
    print(f"ratio one by one / batch CPU: "
          f"{totals['one by one'][0] / totals['batch'][0]:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.batch, args.rounds))


if __name__ == "__main__":
    main()
