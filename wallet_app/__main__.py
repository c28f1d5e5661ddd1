"""`python -m wallet_app`: the wallet on this desktop, and the entry point an Android
build's main.py calls. It imports only the wallet (and, through it, rail_protocol): no
server code, no demo defaults. Banks come from `--bank` or `YUANRAIL_WALLET_BANKS`
(comma-separated URLs); an operator token (a demo's bank counter) only when one is given.

    python -m wallet_app --bank http://127.0.0.1:8701 --home ~/.yuanrail-wallet

`yuanrail wallet` does the same with the demo's banks and counter as its defaults."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

BANKS_ENV = "YUANRAIL_WALLET_BANKS"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wallet_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bank", action="append", metavar="URL",
                        help=f"a bank node to offer (repeat for several; default: ${BANKS_ENV})")
    parser.add_argument("--home", default="var/wallet",
                        help="where the wallet keeps its key (sealed under the PIN), its "
                             "profile and its outbox (default var/wallet)")
    parser.add_argument("--operator-token", action="append", metavar="URL=TOKEN",
                        help="a demo bank's operator token, for its bank counter (repeat per "
                             "bank; default: none)")
    parser.add_argument("--images", metavar="DIR", default=None,
                        help="the folder the image picker opens first")
    return parser


def bank_urls(specs: list[str] | None, environ: dict[str, str] | None = None) -> list[str]:
    """URLs from `--bank` values (`ID=URL` is accepted too), else from the environment."""
    if not specs:
        env = os.environ if environ is None else environ
        specs = [url.strip() for url in env.get(BANKS_ENV, "").split(",") if url.strip()]
    return [spec.split("=", 1)[1] if "=" in spec.split("://", 1)[0] else spec for spec in specs]


def wallet_home(home: str, environ: dict[str, str] | None = None) -> Path:
    """The home folder; a relative one lives in the app's private storage on Android."""
    env = os.environ if environ is None else environ
    path = Path(home).expanduser()
    if "ANDROID_PRIVATE" in env and not path.is_absolute():
        path = Path(env["ANDROID_PRIVATE"]) / path
    return path


def operator_tokens(specs: list[str] | None) -> dict[str, str]:
    """`URL=TOKEN` values: each demo bank's own operator token, by its URL."""
    return dict(spec.rpartition("=")[::2] for spec in specs or [])


def run(home: Path, urls: list[str], *, operator_tokens: dict[str, str] | None = None,
        images_folder: Path | None = None) -> int:
    """Start the Kivy app over a Wallet in `home`; 1 if a bug was caught on the way."""
    try:
        from wallet_app.ui.setup import configure
    except ImportError as exc:  # pragma: no cover - the extra is missing
        print(f"the wallet needs Kivy: pip install -e '.[wallet]' ({exc})", file=sys.stderr)
        return 2
    configure(home / "kivy")
    from wallet_app.core.wallet import Wallet
    from wallet_app.ui.app import WalletApp

    app = WalletApp(Wallet(home, urls, operator_tokens=operator_tokens),
                    images_folder=images_folder)
    app.run()
    return 1 if app.unexpected else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    home = wallet_home(args.home)
    urls = bank_urls(args.bank)
    print(f"yuanrail wallet: home {home}, banks {', '.join(urls) or 'none'}", flush=True)
    images = Path(args.images) if args.images else None
    return run(home, urls, operator_tokens=operator_tokens(args.operator_token),
               images_folder=images)


if __name__ == "__main__":
    sys.exit(main())
