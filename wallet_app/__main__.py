"""`python -m wallet_app`: the wallet on this desktop (the same as `yuanrail wallet`), and
the entry point an Android build's main.py calls."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from yuanrail.cli import main as cli_main

    return cli_main(["wallet", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
