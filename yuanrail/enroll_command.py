"""Enrolling a bank node at central, with no secret shared between the two.

The bank signs a registration request with its own key (`yuanrail bank-registration`);
central's operator submits it with central's operator credential (`yuanrail enroll-bank`),
and central certifies the key. The bank node never holds central's credential: at start it
only checks that central certified its key (bank/services.py `connect_central`)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from central.client import registration_envelope
from rail_protocol.canonical import parse_json
from rail_service.keyfile import load_or_create_key


@dataclass(frozen=True)
class Enrolment:
    bank_id: str
    name: str
    url: str
    key_file: Path

    def request(self) -> dict:
        """The bank's side: its registration, signed by its key (made on first use)."""
        key = load_or_create_key(self.key_file)
        return registration_envelope(key, self.bank_id, self.name, self.url).to_dict()


def submit(central_url: str, operator_token: str, request: dict) -> dict:
    """Central's operator's side: submit a bank's signed registration; the certificate."""
    response = httpx.post(f"{central_url}/v1/banks", content=orjson.dumps(request), timeout=15,
                          headers={"authorization": f"Bearer {operator_token}",
                                   "content-type": "application/json"})
    if response.status_code != 201:
        raise RuntimeError(f"central refused the enrolment of {request['body'].get('bank_id')}:"
                           f" HTTP {response.status_code} {response.text[:300]}")
    return response.json()


def enroll_banks(central_url: str, operator_token: str, banks: list[Enrolment]) -> None:
    """What a launcher that plays both parties does (the demo, the load test, the tests):
    each bank's request, then central's operator submits it, before the bank starts."""
    for bank in banks:
        submit(central_url, operator_token, bank.request())


def _registration(args: argparse.Namespace) -> int:
    request = Enrolment(args.bank_id, args.name, args.url, Path(args.key_file)).request()
    sys.stdout.write(orjson.dumps(request, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _enroll(args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read() if args.request == "-" else Path(args.request).read_bytes()
    certificate = submit(args.central, args.token, parse_json(raw))
    print(f"enrolled {certificate['bank_id']}: key {certificate['key_id']} certified")
    return 0


def add_command(commands) -> None:
    registration = commands.add_parser(
        "bank-registration", help="print this bank node's enrolment request, signed by its key")
    registration.add_argument("--bank-id", required=True)
    registration.add_argument("--name", required=True, help="the bank's name for people")
    registration.add_argument("--url", required=True, help="where central reaches the node")
    registration.add_argument("--key-file", required=True,
                              help="the node's signing key (made here if missing)")
    registration.set_defaults(run=_registration)

    enroll = commands.add_parser(
        "enroll-bank", help="central's operator: enrol a bank from its signed request")
    enroll.add_argument("--request", required=True, help="the request file, or - for stdin")
    enroll.add_argument("--central", default=os.environ.get("YUANRAIL_CENTRAL_URL",
                                                            "http://127.0.0.1:8700"))
    enroll.add_argument("--token", default=os.environ.get("YUANRAIL_CENTRAL_OPERATOR_TOKEN"),
                        help="central's operator credential (YUANRAIL_CENTRAL_OPERATOR_TOKEN)")
    enroll.set_defaults(run=_enroll)
