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


def _demo(args: argparse.Namespace) -> int:
    from yuanrail.demo import main

    return main(Path(args.dir), args.scenario, args.port)


def _audit(args: argparse.Namespace) -> int:
    from yuanrail.audit import audit_rail

    balanced, lines = asyncio.run(audit_rail(args.central, args.token))
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
    audit.set_defaults(run=_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
