"""The load test's setup step: reserves at central, then wallets and merchants opened through
the banks' own APIs exactly as phones and branches open them, and a JSON file the Locust
users read (wallet ids, bank URLs and the keys made "on the device").

Payers are class-2 wallets (phone, ID number and a linked deposit account at their bank),
topped up from that account: the everyday heavy user, with caps (balance, per payment, per
day) that a one-minute run at full speed does not reach. Merchants are class 1 (verified at
a branch), so they take no balance cap and receive on the appended-credit path, the way a
popular merchant receives from thousands of payers at once.

    python loadtests/provision.py --central URL --bank yangtze=URL --bank pearl=URL --out f.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from bank.client import BankClient
from central.client import CentralClient
from rail_protocol.keys import SigningKey

RESERVES_FEN = 10**13           # each bank's reserves at central: 100 bn yuan
PAYER_FUND_FEN = 8_000_000      # ¥80,000 topped up into each payer's wallet
DEPOSIT_FEN = 10_000_000        # ¥100,000 opening balance of each payer's deposit account
MERCHANT_CITIES = ("Shanghai", "Shenzhen", "Hangzhou", "Chengdu", "Wuhan", "Xi'an")


@dataclass(frozen=True)
class Operators:
    """Operator credentials of the rail being loaded."""

    central_url: str
    central_token: str
    bank_urls: dict[str, str]
    bank_tokens: dict[str, str]     # each bank's own operator credential


def _phone() -> str:
    return f"13{secrets.randbelow(10**9):09d}"


def _id_number() -> str:
    return f"{secrets.randbelow(10**17):017d}X"


async def _payer(bank: BankClient, bank_id: str) -> dict:
    """Open, identify and fund one class-2 payer: four calls, as a new user makes them."""
    key = SigningKey.generate(engine="openssl")
    for _attempt in range(5):
        phone = _phone()
        try:
            wallet = await bank.open_wallet(key, phone)
            break
        except Exception as exc:  # a phone number drawn twice: draw another
            if "wallet_exists" not in str(exc):
                raise
    else:  # pragma: no cover - five collisions in 10**9 numbers
        raise RuntimeError("could not draw a free phone number")
    wallet_id = wallet["wallet_id"]
    account = await bank.open_deposit_account(phone, "Load Tester", DEPOSIT_FEN)
    await bank.upgrade(key, wallet_id, id_number=_id_number(),
                       deposit_account=account["account_id"])
    await bank.top_up(key, wallet_id, PAYER_FUND_FEN)
    return {"role": "payer", "wallet_id": wallet_id, "bank_id": bank_id,
            "key": key.secret_text()}


async def _merchant(bank: BankClient, bank_id: str, n: int) -> dict:
    key = SigningKey.generate(engine="openssl")
    name = f"Load Shop {bank_id[:6]} {n}"[:25]
    opened = await bank.open_wallet(key, f"0{secrets.randbelow(10**10):010d}", kind="merchant",
                                    merchant={"name": name, "mcc": "5812",
                                              "city": MERCHANT_CITIES[n % len(MERCHANT_CITIES)]})
    await bank.set_class(opened["wallet_id"], 1)  # verified in person: no balance cap
    return {"role": "merchant", "wallet_id": opened["wallet_id"], "bank_id": bank_id,
            "key": key.secret_text()}


async def provision(ops: Operators, *, payers_per_bank: int, merchants_per_bank: int,
                    concurrency: int = 16) -> dict:
    """Reserves, payers and merchants at every bank; returns what the Locust users read."""
    started = time.monotonic()
    async with CentralClient(ops.central_url, operator_token=ops.central_token) as central:
        for bank_id in ops.bank_urls:
            await central.deposit_reserves(bank_id, f"load-{bank_id}-{secrets.token_hex(4)}",
                                           RESERVES_FEN)
    gate = asyncio.Semaphore(concurrency)
    clients = {b: BankClient(url, operator_token=ops.bank_tokens[b], timeout_s=60)
               for b, url in ops.bank_urls.items()}

    async def gated(make):
        async with gate:
            return await make()

    try:
        jobs = []
        for bank_id, client in clients.items():
            jobs += [gated(lambda c=client, b=bank_id: _payer(c, b))
                     for _ in range(payers_per_bank)]
            jobs += [gated(lambda c=client, b=bank_id, n=n: _merchant(c, b, n))
                     for n in range(merchants_per_bank)]
        made = await asyncio.gather(*jobs)
    finally:
        for client in clients.values():
            await client.aclose()
    payers = [w for w in made if w["role"] == "payer"]
    merchants = [w for w in made if w["role"] == "merchant"]
    return {"bank_urls": ops.bank_urls, "payers": payers, "merchants": merchants,
            "payer_fund_fen": PAYER_FUND_FEN,
            "provision_s": round(time.monotonic() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--central", required=True)
    parser.add_argument("--central-token", required=True)
    parser.add_argument("--bank", action="append", required=True, metavar="ID=URL")
    parser.add_argument("--bank-token", action="append", required=True, metavar="ID=TOKEN",
                        help="each bank's operator credential")
    parser.add_argument("--payers", type=int, default=100, help="payers per bank")
    parser.add_argument("--merchants", type=int, default=10, help="merchants per bank")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    banks = dict(spec.split("=", 1) for spec in args.bank)
    tokens = dict(spec.split("=", 1) for spec in args.bank_token)
    ops = Operators(args.central, args.central_token, banks, tokens)
    made = asyncio.run(provision(ops, payers_per_bank=args.payers,
                                 merchants_per_bank=args.merchants))
    args.out.write_text(json.dumps(made, indent=1))
    print(f"{len(made['payers'])} payers and {len(made['merchants'])} merchants in "
          f"{made['provision_s']} s -> {args.out}")


if __name__ == "__main__":
    main()
