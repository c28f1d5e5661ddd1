"""Guessing credentials is slowed per address (rail_service/guesses.py), at central and at a
bank node, over their real apps: past the limit of wrong operator tokens, PINs or PIN guard
ids, an address is refused every credential-bearing request (the right token too) until its
window ends, while its wallets' signed requests go on and other addresses are not slowed.

The rail's own tests all come from one address and try wrong tokens on purpose, so the
shared rail runs with the limit off; each test here turns it on for the app it tries and
talks to it from addresses of its own."""

from __future__ import annotations

import contextlib
import secrets

import httpx
import pytest

from bank.client import BankClient
from tests.support.rail import BANK_TOKENS, CENTRAL_TOKEN, module_rail  # noqa: F401

pytestmark = pytest.mark.integration

LIMIT = 3


class Clock:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def limit_on(app, limit: int = LIMIT):
    """The app's brake on, at `limit`, on a clock the test moves; off again afterwards."""
    guesses = app.state.wrong_guesses
    saved = guesses.limit, guesses.clock
    guesses.limit, guesses.clock = limit, Clock()
    try:
        yield guesses.clock
    finally:
        guesses.limit, guesses.clock = saved
        guesses._windows.clear()


def client_from(app, address: str, base_url: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50_000))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


async def test_wrong_operator_tokens_lock_the_address_out_until_its_window_ends(module_rail):
    rail = module_rail
    central = rail.net.apps["central.test"].app
    with limit_on(central) as clock:
        async with client_from(central, "203.0.113.7", "http://central.test") as guesser, \
                client_from(central, "198.51.100.1", "http://central.test") as operator:
            for _ in range(LIMIT):
                wrong = await guesser.get("/v1/supply", headers=bearer(secrets.token_hex(16)))
                assert wrong.status_code == 401
            # the right token is refused too: a guesser learns nothing more
            refused = await guesser.get("/v1/supply", headers=bearer(CENTRAL_TOKEN))
            assert refused.status_code == 429
            error = refused.json()["error"]
            assert error["code"] == "too_many_tries" and error["details"]["wait_s"] == 300
            # a request without a credential is not refused
            assert (await guesser.get("/v1/central")).status_code == 200
            # another address is not slowed
            assert (await operator.get("/v1/supply", headers=bearer(CENTRAL_TOKEN))
                    ).status_code == 200
            clock.now += 300
            assert (await guesser.get("/v1/supply", headers=bearer(CENTRAL_TOKEN))
                    ).status_code == 200


async def test_the_right_token_is_never_counted(module_rail):
    central = module_rail.net.apps["central.test"].app
    with limit_on(central):
        async with client_from(central, "203.0.113.8", "http://central.test") as operator:
            for _ in range(LIMIT * 3):
                answer = await operator.get("/v1/supply", headers=bearer(CENTRAL_TOKEN))
                assert answer.status_code == 200


async def test_wrong_dashboard_logins_and_pin_guards_count_at_a_bank_and_wallets_go_on(
        module_rail):
    rail = module_rail
    bank = rail.net.apps["yangtze.test"].app
    payer = await rail.funded_wallet("yangtze", 10_000)
    with limit_on(bank):
        async with client_from(bank, "203.0.113.9", "http://yangtze.test") as guesser:
            login = await guesser.post("/dashboard/login", data={"token": "not-the-token"})
            assert login.status_code == 401
            for _ in range(LIMIT - 1):
                unknown = await guesser.post("/v1/pin-guard/open", json={
                    "guard_id": secrets.token_hex(16), "verifier": secrets.token_hex(32)})
                assert unknown.json()["error"]["code"] == "unknown_pin_guard"
            refused = await guesser.post("/dashboard/login",
                                         data={"token": BANK_TOKENS["yangtze"]})
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many_tries"
            opened = await guesser.post("/v1/pin-guard/open", json={
                "guard_id": secrets.token_hex(16), "verifier": secrets.token_hex(32)})
            assert opened.json()["error"]["code"] == "too_many_tries"
        # the same address's wallet reads and pays on: signed requests are not guesses
        wallet_client = BankClient("http://yangtze.test", transport=httpx.ASGITransport(
            app=bank, client=("203.0.113.9", 50_001)))
        try:
            view = await wallet_client.wallet(payer.key, payer.wallet_id)
            assert view["balance_fen"] == 10_000
        finally:
            await wallet_client.aclose()
