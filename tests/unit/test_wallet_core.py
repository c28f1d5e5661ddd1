"""The wallet's core without a network: the key under the PIN, scanned codes, typed
amounts, messages, view logic, and the outbox's retry rules against a fake bank."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from rail_protocol import qr
from rail_protocol.envelope import seal
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey
from rail_protocol.payment_code import make_code
from wallet_app.core import keystore, messages, present, scan
from wallet_app.core.amounts import parse_yuan, yuan_text
from wallet_app.core.client import ClassLimits, Payment, WalletView
from wallet_app.core.errors import PaymentPending, WalletError
from wallet_app.core.keystore import KeyStore
from wallet_app.core.outbox import Outbox
from wallet_app.core.qrimage import decode_image_bytes, single_code, to_png

pytestmark = pytest.mark.unit

FAST_N = keystore.MIN_SCRYPT_N
MERCHANT = qr.MerchantQR(dynamic=True, bank_id="yangtze", merchant_id="yangtze.00aa11bb22cc33dd",
                         mcc="5812", merchant_name="Noodle House", merchant_city="Shanghai",
                         amount_fen=3850, order_id="O0123456789abcdef")


# --- the core imports no GUI ------------------------------------------------------------

def test_core_imports_no_kivy():
    code = ("import sys, wallet_app.core.wallet, wallet_app.core.present, "
            "wallet_app.core.runner, wallet_app.core.qrimage, wallet_app.core.messages; "
            "sys.exit(1 if any(m == 'kivy' or m.startswith('kivy.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- the key under the PIN ----------------------------------------------------------------

def test_key_round_trips_under_the_pin_and_the_file_holds_neither(tmp_path):
    key = SigningKey.generate()
    store = KeyStore.create(tmp_path / "key.json", key, "246810", scrypt_n=FAST_N)
    text = (tmp_path / "key.json").read_text()
    assert key.secret_text() not in text and "246810" not in text
    sealed = json.loads(text)
    assert sealed["kdf"]["name"] == "scrypt" and sealed["cipher"]["name"] == "aes-256-gcm"
    assert store.unlock("246810").secret_text() == key.secret_text()
    assert (tmp_path / "key.json").stat().st_mode & 0o077 == 0


def test_wrong_pin_is_refused_counted_then_waits(tmp_path):
    store = KeyStore.create(tmp_path / "key.json", SigningKey.generate(), "111111",
                            scrypt_n=FAST_N)
    for attempt in range(keystore.FREE_ATTEMPTS):
        with pytest.raises(WalletError) as refused:
            store.unlock("222222")
        assert refused.value.code == "wrong_pin"
    with pytest.raises(WalletError) as locked:
        store.unlock("111111")  # even the right PIN waits now
    assert locked.value.code == "pin_locked"


def test_right_pin_resets_the_count(tmp_path):
    store = KeyStore.create(tmp_path / "key.json", SigningKey.generate(), "111111",
                            scrypt_n=FAST_N)
    with pytest.raises(WalletError):
        store.unlock("999999")
    store.unlock("111111")
    assert json.loads((tmp_path / "key.json").read_text())["failed_attempts"] == 0


def test_pin_format_and_no_overwrite(tmp_path):
    with pytest.raises(WalletError) as bad:
        KeyStore.create(tmp_path / "key.json", SigningKey.generate(), "12ab56")
    assert bad.value.code == "pin_format"
    KeyStore.create(tmp_path / "key.json", SigningKey.generate(), "123456", scrypt_n=FAST_N)
    with pytest.raises(WalletError) as exists:
        KeyStore.create(tmp_path / "key.json", SigningKey.generate(), "123456",
                        scrypt_n=FAST_N)
    assert exists.value.code == "key_exists"


def test_swapped_ciphertext_is_refused(tmp_path):
    a = KeyStore.create(tmp_path / "a.json", SigningKey.generate(), "123456", scrypt_n=FAST_N)
    KeyStore.create(tmp_path / "b.json", SigningKey.generate(), "123456", scrypt_n=FAST_N)
    sealed_a = json.loads((tmp_path / "a.json").read_text())
    sealed_b = json.loads((tmp_path / "b.json").read_text())
    sealed_a.update(ciphertext=sealed_b["ciphertext"], cipher=sealed_b["cipher"],
                    kdf=sealed_b["kdf"])
    (tmp_path / "a.json").write_text(json.dumps(sealed_a))
    with pytest.raises(WalletError) as refused:
        a.unlock("123456")  # b's ciphertext under a's public key fails the GCM tag
    assert refused.value.code == "wrong_pin"


def test_a_version_1_file_still_opens_under_the_pin_alone(tmp_path):
    """Files made before guards (version 1, no `guard`) open as before; the wallet guards
    them at the next unlock its bank answers (tests/integration/test_pin_guard.py)."""
    key = SigningKey.generate()
    store = KeyStore.create(tmp_path / "key.json", key, "123456", scrypt_n=FAST_N)
    sealed = json.loads((tmp_path / "key.json").read_text())
    del sealed["guard"]
    sealed["version"] = 1
    (tmp_path / "key.json").write_text(json.dumps(sealed))
    assert store.guard is None and store.unlock("123456").key_id == key.key_id


def test_a_guarded_file_opens_only_with_the_pin_and_the_banks_share(tmp_path):
    key = SigningKey.generate()
    store = KeyStore.create(tmp_path / "key.json", key, "123456", scrypt_n=FAST_N)
    stretched = store.stretch("123456")
    share = bytes(range(32))
    store.guard_with(key, stretched, keystore.Guard("http://bank.test", "ab" * 16), share)
    assert store.guard == keystore.Guard("http://bank.test", "ab" * 16)
    assert store.open_guarded(stretched, share).key_id == key.key_id
    with pytest.raises(WalletError) as wrong_share:
        store.open_guarded(stretched, bytes(32))
    assert wrong_share.value.code == "key_file_invalid"
    with pytest.raises(WalletError) as pin_alone:   # nothing here tells a right PIN
        store.unlock("123456")
    assert pin_alone.value.code == "key_file_invalid"
    store.seal_new(key, "654321", scrypt_n=FAST_N, replace=True)  # a new PIN: not guarded
    assert store.guard is None and store.unlock("654321").key_id == key.key_id


# --- scanned codes --------------------------------------------------------------------------

def test_merchant_code_is_read():
    scanned = scan.read_scanned(qr.encode(MERCHANT))
    assert isinstance(scanned, scan.PayMerchant)
    assert (scanned.payee, scanned.amount_fen) == (MERCHANT.merchant_id, 3850)


def test_receive_code_round_trips():
    text = scan.receive_payload("pearl.0123456789abcdef", 1250, "Han Meimei")
    assert text == "yuanrail:pay?wallet=pearl.0123456789abcdef&amount_fen=1250&name=Han%20Meimei"
    scanned = scan.read_scanned(text)
    assert scanned == scan.PayWallet("pearl.0123456789abcdef", 1250, "Han Meimei")
    assert scan.read_scanned("yuanrail:pay?wallet=pearl.0123456789abcdef").amount_fen is None


@pytest.mark.parametrize("text", [
    "yuanrail:pay?wallet=nobank", "yuanrail:pay?wallet=pearl.0123456789abcdef&amount_fen=1.5",
    "yuanrail:pay?wallet=pearl.0123456789abcdef&amount_fen=-3",
    "yuanrail:pay?wallet=pearl.0123456789abcdef&evil=1", "yuanrail:send?wallet=a.bcdef",
    "https://example.com/pay", "", "hello"])
def test_unreadable_codes_are_refused(text):
    with pytest.raises(WalletError) as refused:
        scan.read_scanned(text)
    assert refused.value.code == "unreadable_code"


def test_wrong_currency_and_bad_crc_keep_their_codes():
    payload = qr.encode(MERCHANT)
    usd = payload[:-4].replace("5303156", "5303840")
    usd += f"{qr.crc16_ccitt_false(usd.encode()):04X}"
    with pytest.raises(RailError) as wrong:
        scan.read_scanned(usd)
    assert wrong.value.code == "qr_wrong_currency"
    with pytest.raises(RailError) as crc:
        scan.read_scanned(payload[:-1] + ("0" if payload[-1] != "0" else "1"))
    assert crc.value.code == "qr_bad_crc"


def test_payment_code_is_read_as_a_customer_code():
    key = SigningKey.generate()
    code = make_code(key, "yangtze.0123456789abcdef")
    scanned = scan.read_scanned(code)
    assert isinstance(scanned, scan.CustomerCode)
    assert scanned.payer_wallet == "yangtze.0123456789abcdef"


# --- images ---------------------------------------------------------------------------------

def test_qr_png_decodes_back():
    text = scan.receive_payload("pearl.0123456789abcdef", 100)
    assert single_code(decode_image_bytes(to_png(text))) == text
    merchant = qr.encode(MERCHANT)
    assert single_code(decode_image_bytes(qr.to_png(merchant))) == merchant


def test_not_an_image_and_no_code():
    with pytest.raises(WalletError) as bad:
        decode_image_bytes(b"not a picture")
    assert bad.value.code == "unreadable_code"
    from PIL import Image
    import io
    blank = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(blank, "PNG")
    with pytest.raises(WalletError):
        single_code(decode_image_bytes(blank.getvalue()))


# --- amounts and messages -------------------------------------------------------------------

@pytest.mark.parametrize("text,fen", [("12.5", 1250), ("¥1,200", 120000), ("3", 300),
                                      ("0.01", 1), (" 38.50 ", 3850)])
def test_typed_amounts(text, fen):
    assert parse_yuan(text) == fen


@pytest.mark.parametrize("text", ["", "-1", "1.234", "1e3", "0", "0.00", "abc", "12..5"])
def test_bad_typed_amounts(text):
    with pytest.raises(WalletError) as refused:
        parse_yuan(text)
    assert refused.value.code == "invalid_amount"


def test_yuan_text():
    assert yuan_text(1250) == "12.50" and yuan_text(300) == "3.00"


def test_every_rail_code_has_a_message():
    assert messages.missing_codes() == set()
    for code in ("order_expired", "insufficient_funds", "per_payment_cap_exceeded",
                 "daily_cap_exceeded", "qr_wrong_currency", "upstream_unavailable"):
        assert messages.explain(RailError(code)) == messages.MESSAGES[code]
    assert "could not be read" in messages.explain(WalletError("unreadable_code"))
    assert messages.explain(ValueError("boom")) == messages.UNEXPECTED


# --- view logic -----------------------------------------------------------------------------

def _view(**over) -> WalletView:
    base = dict(wallet_id="yangtze.0123456789abcdef", bank_id="yangtze", kind="personal",
                kyc_class=4, status="open", balance_fen=123456,
                limits=ClassLimits(4, 1_000_000, 200_000, 500_000), spent_today_fen=1000,
                daily_left_fen=499_000, topup_on_use=False, deposit_account_linked=False)
    return WalletView(**{**base, **over})


def test_home_view_says_balance_class_and_limits():
    home = present.home_view(_view())
    assert home.balance == "¥1,234.56"
    assert home.kyc_class.startswith("Class 4")
    assert home.limits == ("Holds up to ¥10,000.00, pays up to ¥2,000.00 at a time and "
                           "¥5,000.00 a day.")
    assert home.today_left == "Left today: ¥4,990.00 of ¥5,000.00"
    uncapped = present.home_view(_view(kyc_class=1, limits=ClassLimits(1, None, None, None),
                                       daily_left_fen=None))
    assert uncapped.today_left == "No daily limit"


def test_history_shows_refunds_against_their_payment():
    me, shop = "yangtze.aaaa", "yangtze.bbbb"
    items = [
        Payment("P9", "refund", "settled", 3000, shop, me, 3_000, refund_of="P7"),
        Payment("P7", "payment", "settled", 8800, me, shop, 2_000),
        Payment("P5", "top_up", "settled", 50000, None, me, 1_000),
    ]
    rows = present.history_rows(items, me, {shop: "Noodle House"})
    assert rows[0].title == "Refund from Noodle House (of P7)" and rows[0].amount == "+¥30.00"
    assert rows[1].title == "To Noodle House" and rows[1].amount == "-¥88.00"
    assert rows[1].refund_lines == ("refunded ¥30.00 (P9, Done)",)
    assert rows[2].title == "Top-up" and rows[2].amount == "+¥500.00"


def test_a_refused_top_up_or_payment_is_not_money_in_or_out():
    me, shop = "yangtze.aaaa", "yangtze.bbbb"
    items = [Payment("P4", "top_up", "rejected", 50000, None, me, 1_000),
             Payment("P3", "payment", "rejected", 8800, me, shop, 900),
             Payment("P2", "payment", "rejected", 100, shop, me, 800),
             Payment("P1", "top_up", "settled", 100, None, me, 700)]
    rows = present.history_rows(items, me)
    assert [(r.amount, r.status, r.refused, r.incoming) for r in rows] == [
        ("¥500.00", "Refused", True, False), ("¥88.00", "Refused", True, False),
        ("¥1.00", "Refused", True, False), ("+¥1.00", "Done", False, True)]


# --- the outbox -----------------------------------------------------------------------------

class FakeBank:
    """Executes each instruction id once; can lose answers or be down."""

    def __init__(self) -> None:
        self.executed: dict[str, dict] = {}
        self.lose_answers = 0
        self.down = False
        self.refuse: str | None = None
        self.calls = 0

    async def send(self, path: str, env: dict) -> dict:
        self.calls += 1
        if self.down:
            raise RailError("upstream_unavailable")
        if self.refuse:
            raise RailError(self.refuse)
        first = env["id"] not in self.executed
        if first:
            self.executed[env["id"]] = {"status": "settled", "payment_id": f"P{len(self.executed) + 1}",
                                        "amount_fen": env["body"]["amount_fen"]}
        if self.lose_answers:
            self.lose_answers -= 1
            raise RailError("upstream_unavailable", "the answer was lost")
        return {**self.executed[env["id"]], **({} if first else {"repeated": True})}


async def _no_sleep(_s: float) -> None:
    return None


def _pay(key: SigningKey):
    return seal(key, "bank.pay", {"payer_wallet": "yangtze.a", "payee_wallet": "yangtze.b",
                                  "amount_fen": 500})


async def test_lost_answer_is_retried_with_the_same_id_and_paid_once(tmp_path):
    bank = FakeBank()
    bank.lose_answers = 1
    box = Outbox(tmp_path / "outbox.json", bank.send, sleep=_no_sleep)
    outcome = await box.submit("pay", "/v1/payments", _pay(SigningKey.generate()))
    assert outcome.answer["repeated"] is True
    assert len(bank.executed) == 1 and bank.calls == 2
    assert box.pending() == []


async def test_silent_bank_keeps_the_instruction_then_flush_finishes_it(tmp_path):
    bank = FakeBank()
    bank.down = True
    box = Outbox(tmp_path / "outbox.json", bank.send, sleep=_no_sleep)
    env = _pay(SigningKey.generate())
    with pytest.raises(PaymentPending) as pending:
        await box.submit("pay", "/v1/payments", env)
    assert pending.value.instruction_id == env.id
    # a restart: a new outbox over the same file still knows it
    box = Outbox(tmp_path / "outbox.json", bank.send, sleep=_no_sleep)
    assert [e.instruction_id for e in box.pending()] == [env.id]
    bank.down = False
    ended = await box.flush()
    assert ended[0].answer["payment_id"] == "P1" and box.pending() == []
    assert len(bank.executed) == 1


async def test_refusal_and_replayed_end_the_entry(tmp_path):
    bank = FakeBank()
    box = Outbox(tmp_path / "outbox.json", bank.send, sleep=_no_sleep)
    bank.refuse = "insufficient_funds"
    refused = await box.submit("pay", "/v1/payments", _pay(SigningKey.generate()))
    assert refused.refusal.code == "insufficient_funds" and box.pending() == []
    bank.refuse = "replayed"
    done = await box.submit("pay", "/v1/payments", _pay(SigningKey.generate()))
    assert done.executed_earlier and box.pending() == []


def test_runner_returns_through_dispatch():
    from wallet_app.core.runner import AsyncRunner

    seen: list = []
    runner = AsyncRunner(dispatch=lambda callback: seen.append(callback))
    try:
        async def answer():
            await asyncio.sleep(0)
            return 42

        runner.run(answer(), on_ok=lambda value: seen.append(("ok", value))).result(5)
        deadline = 50
        while not seen and deadline:
            deadline -= 1
            import time
            time.sleep(0.01)
        seen.pop(0)()  # the UI thread runs the callback
        assert seen == [("ok", 42)]
    finally:
        runner.stop()


@pytest.mark.parametrize("text, url", [
    ("https://bank.example/", "https://bank.example"),
    (" http://127.0.0.1:8701 ", "http://127.0.0.1:8701"),
    ("yuanrail:bank?url=https%3A%2F%2Fyangtze.example%2Fnode", "https://yangtze.example/node"),
])
def test_a_bank_is_added_by_its_address_or_its_qr(text, url):
    from wallet_app.core.wallet import bank_url_of

    assert bank_url_of(text) == url


@pytest.mark.parametrize("text", ["", "bank.example", "ftp://bank.example", "https://",
                                  "https://u:p@bank.example", "https://bank.example/?x=1",
                                  "yuanrail:bank?url=javascript:alert(1)", "x" * 400, None])
def test_anything_else_is_not_a_bank_address(text):
    from wallet_app.core.wallet import bank_url_of

    with pytest.raises(WalletError) as refused:
        bank_url_of(text)
    assert refused.value.code == "bad_bank_url"
