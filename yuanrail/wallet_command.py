"""`yuanrail wallet`: the Kivy mobile wallet, run on this desktop.

    yuanrail demo                       # in one terminal: central and two banks
    yuanrail wallet                     # in another: the wallet, against the demo's banks
    yuanrail wallet --bank http://127.0.0.1:8701 --home ~/.yuanrail-wallet

With no `--bank`, the wallet offers the demo's banks (read from the demo's wallets.json,
or its default ports), and the demo's "bank counter" (a button that opens a deposit account
in the new user's name, as a branch would) so a new user can link an account and top up."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# `yuanrail demo`'s banks on its default ports
DEMO_BANKS = {"yangtze": "http://127.0.0.1:8701", "pearl": "http://127.0.0.1:8702"}


def add_command(commands: argparse._SubParsersAction) -> None:
    wallet = commands.add_parser("wallet", help="run the Kivy mobile wallet on this desktop",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    wallet.add_argument("--bank", action="append", metavar="URL",
                        help="a bank node to offer (repeat for several); default: the demo's")
    wallet.add_argument("--home", default="var/wallet",
                        help="where the wallet keeps its key (sealed under the PIN), its "
                             "profile and its outbox (default var/wallet)")
    wallet.add_argument("--demo-dir", default="var/demo",
                        help="the demo's folder, for its bank URLs and QR images")
    wallet.add_argument("--operator-token", action="append", metavar="URL=TOKEN",
                        help="a bank's operator token, for the demo's bank counter (repeat "
                             "per bank; default: the demo's tokens when the banks are the "
                             "demo's)")
    wallet.add_argument("--screenshot", metavar="PNG", help=argparse.SUPPRESS)
    wallet.set_defaults(run=run_wallet)


def demo_banks(demo_dir: Path) -> dict[str, str]:
    """The demo's banks (id -> URL), from its wallets.json, else its default ports."""
    try:
        seeded = json.loads((demo_dir / "wallets.json").read_text())
        banks = dict(sorted({(w["bank_id"], w["bank_url"]) for w in seeded.values()}))
        if banks:
            return banks
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return dict(DEMO_BANKS)


def bank_urls(specs: list[str]) -> list[str]:
    """URLs from `--bank` values; `ID=URL` (as `yuanrail audit` takes) is accepted too."""
    return [spec.split("=", 1)[1] if "=" in spec.split("://", 1)[0] else spec for spec in specs]


def run_wallet(args: argparse.Namespace) -> int:
    home = Path(args.home).expanduser()
    if "ANDROID_PRIVATE" in os.environ and not home.is_absolute():
        home = Path(os.environ["ANDROID_PRIVATE"]) / home  # the app's private storage
    demo_dir = Path(args.demo_dir)
    from wallet_app.__main__ import operator_tokens

    tokens = operator_tokens(args.operator_token)
    if args.bank:
        urls = bank_urls(args.bank)
    else:
        banks = demo_banks(demo_dir)
        urls = list(banks.values())
        if not tokens:
            from yuanrail.demo import BANK_TOKENS

            tokens = {url: BANK_TOKENS[bank_id] for bank_id, url in banks.items()
                      if bank_id in BANK_TOKENS}
    try:
        from wallet_app.ui.setup import configure
    except ImportError as exc:  # pragma: no cover - the extra is missing
        print(f"the wallet needs Kivy: pip install -e '.[wallet]' ({exc})", file=sys.stderr)
        return 2
    configure(home / "kivy")
    from wallet_app.core.wallet import Wallet
    from wallet_app.ui.app import WalletApp

    print(f"yuanrail wallet: home {home}, banks {', '.join(urls)}", flush=True)
    app = WalletApp(Wallet(home, urls, operator_tokens=tokens),
                    images_folder=demo_dir if demo_dir.is_dir() else None)
    if args.screenshot:
        _screenshot_then_stop(app, Path(args.screenshot))
    app.run()
    return 1 if app.unexpected else 0


def _screenshot_then_stop(app, path: Path) -> None:
    """For a smoke test of the command: once the first screen has drawn, save a screenshot
    and stop."""
    from kivy.clock import Clock
    from kivy.core.window import Window

    def shoot(_dt: float) -> None:
        screen = app.root.current_screen if app.root else None
        if screen is not None and (screen.busy or not screen.__class__.__name__):
            Clock.schedule_once(shoot, 0.2)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        saved = Path(Window.screenshot(name=str(path.with_suffix("")) + ".png"))
        saved.replace(path)
        app.stop()

    Clock.schedule_once(shoot, 1.0)
