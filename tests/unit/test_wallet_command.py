"""`yuanrail wallet`: its arguments, and the demo's banks as the default."""

from __future__ import annotations

import json

import pytest

from yuanrail.cli import build_parser
from yuanrail.wallet_command import DEMO_BANKS, bank_urls, demo_banks

pytestmark = pytest.mark.unit


def test_the_wallet_subcommand_is_registered():
    args = build_parser().parse_args(["wallet", "--bank", "http://127.0.0.1:9001",
                                      "--home", "/tmp/w"])
    assert args.command == "wallet" and args.bank == ["http://127.0.0.1:9001"]
    assert args.home == "/tmp/w" and callable(args.run)
    defaults = build_parser().parse_args(["wallet"])
    assert defaults.bank is None and defaults.home == "var/wallet"


def test_bank_urls_take_plain_urls_and_id_equals_url():
    assert bank_urls(["http://a:1", "pearl=http://b:2"]) == ["http://a:1", "http://b:2"]


def test_demo_banks_come_from_the_demos_wallets_file(tmp_path):
    assert demo_banks(tmp_path) == DEMO_BANKS
    (tmp_path / "wallets.json").write_text(json.dumps({
        "Li Lei": {"bank_id": "yangtze", "bank_url": "http://127.0.0.1:9101"},
        "Han Meimei": {"bank_id": "pearl", "bank_url": "http://127.0.0.1:9102"},
        "Noodle House": {"bank_id": "yangtze", "bank_url": "http://127.0.0.1:9101"}}))
    assert demo_banks(tmp_path) == {"pearl": "http://127.0.0.1:9102",
                                    "yangtze": "http://127.0.0.1:9101"}
