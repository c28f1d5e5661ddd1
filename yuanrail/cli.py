"""The `yuanrail` console script: one command for the whole rail."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path


def _central(args: argparse.Namespace) -> int:
    import uvicorn

    if args.database_url:
        os.environ["YUANRAIL_CENTRAL_DATABASE_URL"] = args.database_url
    uvicorn.run("central.app:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="info")
    return 0


def _bank(args: argparse.Namespace) -> int:
    import uvicorn

    settings = {"BANK_ID": args.name, "NAME": args.display_name or args.name.title() + " Bank",
                "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url,
                "CENTRAL_URL": args.central, "PUBLIC_URL": args.public_url
                or f"http://{args.host}:{args.port}", "KEY_FILE": args.key_file}
    for name, value in settings.items():
        if value:
            os.environ[f"YUANRAIL_BANK_{name}"] = value
    os.environ.setdefault("YUANRAIL_BANK_DATABASE_URL", f"sqlite+aiosqlite:///var/bank-{args.name}.sqlite")
    os.environ.setdefault("YUANRAIL_BANK_KEY_FILE", f"var/bank-{args.name}.key")
    uvicorn.run("bank.app:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="info")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from yuanrail.demo import main

    return main(Path(args.dir), args.scenario, args.port)


def _audit(args: argparse.Namespace) -> int:
    if args.verify_chain or args.export_chain:
        from yuanrail.chain_command import run

        return run(args)
    from yuanrail.audit import audit_rail

    banks, tokens = {}, {}
    for flag, specs, found in (("--bank", args.bank, banks), ("--bank-token", args.bank_token,
                                                                tokens)):
        for spec in specs or []:
            bank_id, _, value = spec.partition("=")
            if not value:
                print(f"{flag} takes ID=VALUE, not {spec!r}", file=sys.stderr)
                return 2
            found[bank_id] = value
    missing = sorted(set(banks) - set(tokens))
    if missing:
        print(f"no --bank-token for {', '.join(missing)}: each bank has its own operator "
              "credential", file=sys.stderr)
        return 2
    banks = {bank_id: (url, tokens[bank_id]) for bank_id, url in banks.items()}
    balanced, lines = asyncio.run(audit_rail(args.central, args.token, banks))
    print("\n".join(lines))
    return 0 if balanced else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yuanrail", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    central = commands.add_parser("central", help="run the central issuer")
    central.add_argument("--host", default="127.0.0.1")
    central.add_argument("--port", type=int, default=8700)
    central.add_argument("--workers", type=int, default=1)
    central.add_argument("--database-url", help="SQLAlchemy URL (default: from environment)")
    central.set_defaults(run=_central)

    bank = commands.add_parser("bank", help="run one commercial bank node")
    bank.add_argument("--name", required=True, help="the bank id, e.g. yangtze")
    bank.add_argument("--display-name", help="the bank's name for people")
    bank.add_argument("--host", default="127.0.0.1")
    bank.add_argument("--port", type=int, default=8701)
    bank.add_argument("--workers", type=int, default=1)
    bank.add_argument("--database-url", help="SQLAlchemy URL (default var/bank-NAME.sqlite)")
    bank.add_argument("--redis-url", help="Redis URL (default redis://127.0.0.1:6379/0)")
    bank.add_argument("--central", help="central's URL (default http://127.0.0.1:8700)")
    bank.add_argument("--public-url", help="where central reaches this node")
    bank.add_argument("--key-file", help="this node's signing key (made on first start)")
    bank.set_defaults(run=_bank)

    demo = commands.add_parser("demo", help="run central and the banks on embedded defaults")
    demo.add_argument("--scenario", action="store_true",
                      help="run the scripted tour of every feature, then exit")
    demo.add_argument("--dir", default="var/demo", help="where the demo keeps its data")
    demo.add_argument("--port", type=int, default=8700, help="central's port")
    demo.set_defaults(run=_demo)

    audit = commands.add_parser("audit", help="prove conservation of money across the rail")
    audit.add_argument("--central", default=os.environ.get("YUANRAIL_CENTRAL_URL",
                                                           "http://127.0.0.1:8700"))
    audit.add_argument("--token", default=os.environ.get("YUANRAIL_CENTRAL_OPERATOR_TOKEN",
                                                         "demo-central-operator-token"))
    audit.add_argument("--bank", action="append", metavar="ID=URL",
                       help="a bank node to include (repeat for each bank)")
    audit.add_argument("--bank-token", action="append", metavar="ID=TOKEN",
                       help="that bank's operator credential (repeat for each bank)")
    audit.add_argument("--verify-chain", action="store_true",
                       help="verify central's hash-chained journal offline and exit")
    audit.add_argument("--database-url", help="central's database (SQLAlchemy URL)")
    audit.add_argument("--chain-file", help="verify this chain export instead of a database")
    audit.add_argument("--export-chain", metavar="FILE",
                       help="write the chain from --database-url to FILE (JSON) and exit")
    audit.add_argument("--central-key",
                       help="central's public key (GET /v1/central): check checkpoint signatures")
    audit.set_defaults(run=_audit)

    # Commands that live with their feature: each module adds its own subcommand.
    for module in ("yuanrail.wallet_command", "yuanrail.loadtest_command",
                   "yuanrail.enroll_command"):
        try:
            feature = __import__(module, fromlist=["add_command"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        feature.add_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
