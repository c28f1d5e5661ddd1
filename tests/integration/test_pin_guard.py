"""The PIN checked by the bank (rail_protocol/pin_guard.py, bank/pin_guards.py), on BOTH
databases, through the wallet's core and the bank's HTTP API: the key file a wallet keeps
cannot be opened with the PIN alone, so a copied file cannot be searched for its PIN; the
bank counts wrong PINs (tries sent at once included) and locks the PIN for a day; a new PIN
or a restored backup replaces the guard, and a file made before guards is guarded at its
next unlock."""

from __future__ import annotations

import asyncio
import json
import secrets

import httpx
import pytest

from rail_protocol import pin_guard
from rail_protocol.envelope import now_ms, seal
from rail_protocol.instruction_types import PIN_GUARD
from rail_protocol.errors import RailError
from tests.support.rail import new_phone
from tests.support.rail import rail_on_both_databases as rail  # noqa: F401
from wallet_app.core import keystore
from wallet_app.core.errors import WalletError
from wallet_app.core.keystore import KeyStore
from wallet_app.core.wallet import Wallet

pytestmark = pytest.mark.integration

PIN = "135790"
BANK_URL = "http://yangtze.test"
DAY_MS = 24 * 3600 * 1000


class Switch(httpx.AsyncBaseTransport):
    """The rail's network, which the test can take down (a phone with no signal)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.down = inner, False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("no network", request=request)
        return await self.inner.handle_async_request(request)


async def new_wallet(rail, home, transport=None) -> Wallet:
    wallet = Wallet(home, [BANK_URL], transport=transport or rail.net,
                    scrypt_n=keystore.MIN_SCRYPT_N)
    await wallet.open_wallet(BANK_URL, new_phone(), PIN, PIN)
    return wallet


def guards_of(rail):
    return rail.net.apps["yangtze.test"].app.state.pin_guards


async def try_open(rail, guard_id: str, verifier: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=rail.net, base_url=BANK_URL) as http:
        return await http.post("/v1/pin-guard/open",
                               json={"guard_id": guard_id, "verifier": verifier})


async def test_the_key_file_does_not_open_with_the_pin_alone(rail, tmp_path):
    wallet = await new_wallet(rail, tmp_path / "phone")
    assert wallet.key_guarded
    sealed = json.loads((tmp_path / "phone" / "key.json").read_text())
    assert sealed["version"] == 2 and sealed["guard"]["bank_url"] == BANK_URL
    store = KeyStore(tmp_path / "phone" / "key.json")
    stretched = store.stretch(PIN)            # what a thief searching the file would find
    with pytest.raises(Exception):            # noqa: B017 - the GCM tag fails: no PIN check
        KeyStore._open(sealed, stretched)
    with pytest.raises(WalletError):
        store.open_unguarded(stretched)
    # the bank stores neither the guard id nor the verifier, only their hashes
    async with rail.net.apps["yangtze.test"].app.state.bank.engine.connect() as conn:
        from bank.adapters import tables as t
        import sqlalchemy as sa
        row = (await conn.execute(sa.select(t.pin_guards).where(
            t.pin_guards.c.wallet_id == wallet.wallet_id))).one()
    guard_id = sealed["guard"]["guard_id"]
    assert row.guard_hash == pin_guard.digest(guard_id) != guard_id
    assert row.verifier_hash == pin_guard.digest(pin_guard.verifier(stretched))
    wallet.lock()
    await wallet.unlock(PIN)                  # the right PIN, checked by the bank, opens it
    assert wallet.key is not None
    await wallet.aclose()


async def test_wrong_pins_are_counted_by_the_bank_and_lock_the_pin_for_a_day(rail, tmp_path):
    wallet = await new_wallet(rail, tmp_path / "phone")
    wallet.lock()
    for left in (4, 3, 2, 1, 0):
        with pytest.raises(RailError) as wrong:
            await wallet.unlock("000000")
        assert (wrong.value.code, wrong.value.details) == ("wrong_pin", {"left": left})
    with pytest.raises(RailError) as locked:
        await wallet.unlock(PIN)              # the right PIN too, while locked
    assert locked.value.code == "pin_locked" and locked.value.details["wait_s"] > 86_000
    guards = guards_of(rail)
    try:
        guards.clock = lambda: now_ms() + DAY_MS + 1_000        # a day later
        with pytest.raises(RailError) as again:                # one more wrong: a day again
            await wallet.unlock("000000")
        assert again.value.details == {"left": 0}
        guards.clock = lambda: now_ms() + 2 * DAY_MS + 2_000
        await wallet.unlock(PIN)
        assert wallet.key is not None
        wallet.lock()
        with pytest.raises(RailError) as counted_afresh:       # the right PIN cleared it
            await wallet.unlock("000000")
        assert counted_afresh.value.details == {"left": 4}
    finally:
        guards.clock = now_ms
    await wallet.aclose()


async def test_wrong_pins_sent_at_once_are_each_counted_and_none_passes_the_limit(
        rail, tmp_path):
    """A thief with the file sends many guesses at the same moment: the guard's row is read
    locked, so exactly FREE_FAILURES are judged and the rest meet the lock."""
    wallet = await new_wallet(rail, tmp_path / "phone")
    guard = wallet.keystore.guard
    assert guard is not None
    stretched = wallet.keystore.stretch(PIN)
    wrong = [pin_guard.verifier(wallet.keystore.stretch(f"{n:06d}")) for n in range(20)]
    answers = await asyncio.gather(*(try_open(rail, guard.guard_id, v) for v in wrong))
    codes = sorted(a.json()["error"]["code"] for a in answers)
    assert codes == ["pin_locked"] * 15 + ["wrong_pin"] * 5, codes
    right = await try_open(rail, guard.guard_id, pin_guard.verifier(stretched))
    assert right.status_code == 429 and right.json()["error"]["code"] == "pin_locked"
    await wallet.aclose()


async def test_the_open_route_refuses_what_is_not_a_guard_clearly(rail):
    unknown = await try_open(rail, secrets.token_hex(16), secrets.token_hex(32))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_pin_guard"
    async with httpx.AsyncClient(transport=rail.net, base_url=BANK_URL) as http:
        for body in ({"guard_id": "zz", "verifier": "00"}, {"guard_id": secrets.token_hex(16)},
                     [1, 2], {"guard_id": secrets.token_hex(16),
                              "verifier": secrets.token_hex(32), "pin": "123456"}):
            bad = await http.post("/v1/pin-guard/open", json=body)
            assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_field"


async def test_a_malformed_registration_is_refused_and_the_guard_in_place_kept(rail, tmp_path):
    wallet = await new_wallet(rail, tmp_path / "phone")
    guard = wallet.keystore.guard
    path = f"/v1/wallets/{wallet.wallet_id}/pin-guard"
    for body in ({"guard_hash": "ab" * 31, "verifier_hash": "cd" * 32},
                 {"guard_hash": "AB" * 32, "verifier_hash": "cd" * 32},
                 {"guard_hash": "ab" * 32, "verifier_hash": 7},
                 {"guard_hash": "ab" * 32}):
        env = seal(wallet.key, PIN_GUARD, {"wallet_id": wallet.wallet_id, **body})
        refused = await rail.post_raw("yangtze", path, env)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_field"
    other = await new_wallet(rail, tmp_path / "other")         # another wallet's key
    env = seal(other.key, PIN_GUARD, {"wallet_id": wallet.wallet_id, "guard_hash": "ab" * 32,
                                      "verifier_hash": "cd" * 32})
    assert (await rail.post_raw("yangtze", path, env)).json()["error"]["code"] == "wrong_key"
    wallet.lock()
    await wallet.unlock(PIN)                 # nothing was written: the same guard opens it
    assert wallet.keystore.guard == guard
    await wallet.aclose()
    await other.aclose()


async def test_a_new_pin_replaces_the_guard(rail, tmp_path):
    wallet = await new_wallet(rail, tmp_path / "phone")
    old_guard = wallet.keystore.guard
    with pytest.raises(RailError) as wrong:
        await wallet.change_pin("000000", "246810", "246810")
    assert wrong.value.code == "wrong_pin"
    await wallet.change_pin(PIN, "246810", "246810")
    new_guard = wallet.keystore.guard
    assert new_guard is not None and new_guard.guard_id != old_guard.guard_id
    wallet.lock()
    with pytest.raises(RailError) as old_pin:
        await wallet.unlock(PIN)
    assert old_pin.value.code == "wrong_pin"
    await wallet.unlock("246810")
    gone = await try_open(rail, old_guard.guard_id, secrets.token_hex(32))
    assert gone.json()["error"]["code"] == "unknown_pin_guard"
    await wallet.aclose()


async def test_a_file_sealed_while_the_bank_was_unreachable_is_guarded_at_the_next_unlock(
        rail, tmp_path):
    net = Switch(rail.net)
    wallet = Wallet(tmp_path / "phone", [BANK_URL], transport=net,
                    scrypt_n=keystore.MIN_SCRYPT_N)
    await wallet.open_wallet(BANK_URL, new_phone(), PIN, PIN)
    # as a file of version 1, or an opening whose guard the bank never got: under the PIN alone
    store = wallet.keystore
    key = wallet.key
    store.path.unlink()
    KeyStore.create(store.path, key, PIN, scrypt_n=keystore.MIN_SCRYPT_N)
    assert not wallet.key_guarded
    wallet.lock()
    net.down = True
    await wallet.unlock(PIN)          # opens under the PIN alone; the guard waits for the bank
    assert not wallet.key_guarded
    wallet.lock()
    net.down = False
    await wallet.unlock(PIN)
    assert wallet.key_guarded
    wallet.lock()
    net.down = True
    with pytest.raises(RailError) as offline:     # now only the bank can check the PIN
        await wallet.unlock(PIN)
    assert offline.value.code == "upstream_unavailable"
    await wallet.aclose()
