"""`yuanrail audit --verify-chain`: check central's whole hash-chained journal offline, from
central's database or from an export of it, and exit non-zero if the chain is broken
(docs/registry.md). `--export-chain FILE` writes such an export from the database."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from central import chain
from central.registry import export_chain, verify_database
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey
from rail_service.db import make_engine


async def _from_database(url: str, key: PublicKey | None) -> chain.ChainReport:
    engine = make_engine(url, pool_size=1)
    try:
        return await verify_database(engine, key)
    finally:
        await engine.dispose()


async def _export(url: str, path: Path) -> int:
    engine = make_engine(url, pool_size=1)
    try:
        data = await export_chain(engine)
    finally:
        await engine.dispose()
    path.write_bytes(orjson.dumps(data))
    print(f"exported {len(data['links'])} links and {len(data['checkpoints'])} checkpoints "
          f"to {path}")
    return 0


def lines(report: chain.ChainReport) -> list[str]:
    signatures = ("signatures checked" if report.signatures_checked
                  else "signatures NOT checked: give --central-key")
    out = [(f"chain: {report.links} links, head seq {report.head_seq} "
            f"{report.head_hash[:16]}..., {report.unsealed} entries not yet chained, "
            f"{report.checkpoints} checkpoints ({signatures})")]
    out += [f"  PROBLEM: {p}" for p in report.problems]
    out.append("chain: INTACT" if report.intact else "chain: BROKEN")
    return out


def run(args) -> int:
    """Exit status: 0 intact, 1 broken, 2 bad usage or unreadable input."""
    try:
        key = PublicKey.from_text(args.central_key) if args.central_key else None
        if args.export_chain:
            if not args.database_url:
                print("--export-chain needs --database-url", file=sys.stderr)
                return 2
            return asyncio.run(_export(args.database_url, Path(args.export_chain)))
        if args.chain_file:
            report = chain.verify_export(orjson.loads(Path(args.chain_file).read_bytes()), key)
        elif args.database_url:
            report = asyncio.run(_from_database(args.database_url, key))
        else:
            print("--verify-chain needs --database-url or --chain-file", file=sys.stderr)
            return 2
    except (RailError, OSError, orjson.JSONDecodeError) as exc:
        print(f"cannot verify the chain: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines(report)))
    return 0 if report.intact else 1
