"""The wallet's core against real bank nodes: central, "yangtze" and "pearl" in process on
fresh PostgreSQL databases and the real Redis (tests/support/rail.py), reached through the
same HTTP API a phone uses. Each test makes wallets of its own on one shared rail."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from rail_protocol import qr
from rail_protocol.envelope import now_ms
from rail_protocol.errors import RailError
from rail_protocol.money import yuan
from tests.support.rail import Rail, module_rail, new_id_number, new_phone  # noqa: F401
from wallet_app.core import keystore
from wallet_app.core.errors import PaymentPending, WalletError
from wallet_app.core.scan import read_scanned
from wallet_app.core.wallet import Wallet

pytestmark = pytest.mark.integration

PIN = "135790"
URLS = ["http://yangtze.test", "http://pearl.test"]


class Flaky(httpx.AsyncBaseTransport):
    """The rail's network, with faults: answers lost after the bank acted, or no bank."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lose_next_answer_to: str | None = None
        self.down = False
        self.posts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("no route to the bank", request=request)
        response = await self.inner.handle_async_request(request)
        if request.method == "POST":
            self.posts.append(request.url.path)
            if self.lose_next_answer_to and request.url.path.endswith(self.lose_next_answer_to):
                self.lose_next_answer_to = None
                await response.aread()
                raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


async def open_wallet(rail: Rail, home: Path, bank_id: str = "yangtze", *,
                      kind: str = "personal", merchant: dict | None = None,
                      transport: httpx.AsyncBaseTransport | None = None) -> Wallet:
    wallet = Wallet(home, URLS, transport=transport or rail.net,
                    scrypt_n=keystore.MIN_SCRYPT_N, retry_backoff_s=0.01)
    await wallet.open_wallet(f"http://{bank_id}.test", new_phone(), PIN, PIN, kind=kind,
                             merchant=merchant)
    return wallet


async def linked(rail: Rail, home: Path, bank_id: str = "yangtze", *, deposit_fen: int,
                 **kwargs) -> Wallet:
    """A wallet whose holder has a deposit account at the bank, linked from the wallet."""
    wallet = await open_wallet(rail, home, bank_id, **kwargs)
    account = await rail.client(bank_id).open_deposit_account(
        wallet.profile.phone, "Test Holder", deposit_fen)
    await wallet.link_account(account["account_id"], new_id_number())
    return wallet


async def merchant(rail: Rail, home: Path, bank_id: str = "yangtze", **kwargs) -> Wallet:
    return await open_wallet(rail, home, bank_id, kind="merchant", merchant={
        "name": "Noodle House", "mcc": "5812", "city": "Shanghai"}, **kwargs)


async def test_open_link_top_up_and_pay_a_merchant_order(module_rail, tmp_path):
    rail = module_rail
    wallet = Wallet(tmp_path / "payer", URLS, transport=rail.net,
                    scrypt_n=keystore.MIN_SCRYPT_N)
    banks = await wallet.list_banks()
    assert [b.info.bank_id for b in banks] == ["yangtze", "pearl"]
    view = await wallet.open_wallet(URLS[0], new_phone(), PIN, PIN)
    assert view.kyc_class == 4 and view.limits.per_payment_cap_fen == yuan(2_000)
    assert wallet.profile.wallet_id == view.wallet_id
    # the key on disk is sealed; the bank knows only its public key
    assert wallet.key.secret_text() not in (tmp_path / "payer" / "key.json").read_text()

    account = await rail.client("yangtze").open_deposit_account(
        wallet.profile.phone, "Wang Fang", yuan(2_000))
    view = await wallet.link_account(account["account_id"], new_id_number())
    assert view.kyc_class == 2 and view.deposit_account_linked
    topped = await wallet.top_up(yuan(500))
    assert topped.status == "settled" and topped.balance_after_fen == yuan(500)

    shop = await merchant(rail, tmp_path / "shop")
    order = await shop.collect(3850, "beef noodles x2")
    request = await wallet.prepare(read_scanned(order.qr_payload))
    assert (request.name, request.amount_fen, request.order_id) == (
        "Noodle House", 3850, order.order_id)
    paid = await wallet.pay(request)
    assert paid.status == "settled" and paid.balance_after_fen == yuan(500) - 3850
    assert (await shop.order_status(order.order_id)).status == "paid"
    with pytest.raises(RailError) as again:
        await wallet.prepare(order.qr_payload)
    assert again.value.code == "order_paid"

    page = await wallet.history()
    assert [i.kind for i in page.items[:2]] == ["payment", "top_up"]
    assert page.items[0].payment_id == paid.payment_id
    receipts = await shop.receipts_today()
    assert (receipts.received_fen, receipts.count) == (3850, 1)

    # a refund shows in the payer's history (linked to its payment when the bank says)
    await rail.client("yangtze").refund(shop.key, shop.wallet_id, paid.payment_id, 1000)
    items = (await wallet.history()).items
    assert items[0].kind == "refund" and items[0].amount_fen == 1000
    if items[0].refund_of is not None:
        assert items[0].refund_of == paid.payment_id
    await wallet.aclose()
    await shop.aclose()


async def test_lost_answer_is_retried_and_paid_once(module_rail, tmp_path):
    rail = module_rail
    net = Flaky(rail.net)
    payer = await linked(rail, tmp_path / "payer", deposit_fen=yuan(100), transport=net)
    await payer.top_up(yuan(100))
    payee = await open_wallet(rail, tmp_path / "payee")
    net.lose_next_answer_to = "/v1/payments"
    request = await payer.prepare(payee.receive_code(1234))
    paid = await payer.pay(request)
    assert paid.repeated and paid.status == "settled"
    assert net.posts.count("/v1/payments") == 2
    assert (await payer.refresh()).balance_fen == yuan(100) - 1234
    assert (await payee.refresh()).balance_fen == 1234
    await rail.assert_balanced()


async def test_unreachable_bank_keeps_the_payment_and_sends_it_later(module_rail, tmp_path):
    rail = module_rail
    net = Flaky(rail.net)
    payer = await linked(rail, tmp_path / "payer", deposit_fen=yuan(100), transport=net)
    await payer.top_up(yuan(50))
    payee = await open_wallet(rail, tmp_path / "payee")
    request = await payer.prepare(payee.receive_code())
    net.down = True
    with pytest.raises(PaymentPending):
        await payer.pay(request, 700)
    assert len(payer.outbox.pending()) == 1
    with pytest.raises(PaymentPending):  # the same payment again is not signed anew
        await payer.pay(request, 700)
    assert len(payer.outbox.pending()) == 1
    with pytest.raises(RailError) as unreachable:
        await payer.refresh()
    assert unreachable.value.code == "upstream_unavailable"
    net.down = False
    # a restarted app: a new Wallet over the same home finds and finishes the payment
    again = Wallet(tmp_path / "payer", URLS, transport=net)
    await again.unlock(PIN)
    view = await again.refresh()
    assert again.outbox.pending() == [] and view.balance_fen == yuan(50) - 700
    assert (await payee.refresh()).balance_fen == 700


async def test_payment_code_charged_by_a_merchant(module_rail, tmp_path):
    rail = module_rail
    payer = await linked(rail, tmp_path / "payer", deposit_fen=yuan(3_000))
    await payer.top_up(yuan(2_000))
    shop = await merchant(rail, tmp_path / "shop")
    ticket = payer.payment_code()  # no network
    assert await payer.code_result(ticket) is None
    charged = await shop.charge(ticket.text, 2350)
    assert charged.status == "settled"
    found = await payer.code_result(ticket)
    assert found is not None and found.amount_fen == 2350 and found.payee_wallet == shop.wallet_id
    with pytest.raises(RailError) as used:
        await shop.charge(ticket.text, 100)
    assert used.value.code == "payment_code_used"
    # above the no-PIN threshold the code needs the PIN
    with pytest.raises(RailError) as no_pin:
        await shop.charge(payer.payment_code().text, yuan(1_500))
    assert no_pin.value.code == "pin_required"
    with pytest.raises(RailError) as wrong:     # the bank checks the PIN, and counts
        await payer.pin_code("000000")
    assert (wrong.value.code, wrong.value.details) == ("wrong_pin", {"left": 4})
    big = await shop.charge((await payer.pin_code(PIN)).text, yuan(1_500))
    assert big.status == "settled"
    receipts = await shop.receipts_today()
    assert receipts.received_fen == 2350 + yuan(1_500) and receipts.count == 2


async def test_the_short_payment_code_once_registered(module_rail, tmp_path):
    """The wallet registers its short codes' secret once; then every code is 19 digits made
    with no network, five a minute, charged once by a merchant here or at the other bank,
    found again by its id, with the PIN flag for large amounts."""
    rail = module_rail
    payer = await linked(rail, tmp_path / "payer", deposit_fen=yuan(3_000))
    await payer.top_up(yuan(2_000))
    shop, far_shop = await merchant(rail, tmp_path / "shop"), \
        await merchant(rail, tmp_path / "far", "pearl")
    assert await payer.enable_short_codes()
    slot = payer.profile.short_code
    assert await payer.enable_short_codes() and payer.profile.short_code == slot
    ticket = payer.payment_code()
    assert ticket.short and ticket.text[1:3] == slot["issuer"] == "11"
    assert read_scanned(" ".join([ticket.text[:4], ticket.text[4:]])).text == ticket.text
    charged = await shop.charge(ticket.text, 2350)
    assert charged.status == "settled"
    found = await payer.code_result(ticket)
    assert found is not None and found.payment_id == charged.payment_id
    with pytest.raises(RailError) as used:
        await shop.charge(ticket.text, 100)
    assert used.value.code == "payment_code_used"
    assert (await far_shop.charge(payer.payment_code().text, 990)).status == "settled"
    with pytest.raises(RailError) as no_pin:
        await shop.charge(payer.payment_code().text, yuan(1_500))
    assert no_pin.value.code == "pin_required"
    assert (await shop.charge((await payer.pin_code(PIN)).text, yuan(1_500))).status == \
        "settled"
    # Five short codes a minute were made (unless the minute turned): the next is signed.
    tickets = [payer.payment_code() for _ in range(6)]
    assert not tickets[-1].short and tickets[-1].text.startswith("YRPC1.")
    assert len({t.text for t in tickets}) == 6


async def test_offline_payment_between_two_phones_then_synced_and_a_double_spend_refused(
        module_rail, tmp_path):
    rail = module_rail
    payer = await linked(rail, tmp_path / "payer", deposit_fen=yuan(1_000))
    await payer.top_up(yuan(300))
    net = Flaky(rail.net)
    receiver = await open_wallet(rail, tmp_path / "receiver", transport=net)
    other = await open_wallet(rail, tmp_path / "other")
    await receiver.refresh()                     # online once: the bank's key is kept
    purse = await payer.reserve_offline(yuan(100), 3)
    assert payer.offline_left() == (yuan(100), 3)
    # No network for the receiver; the payer's phone needs none either.
    net.down = True
    note = payer.pay_offline(receiver.receive_code(), yuan(35))
    receiver.bank_info = None                     # a fresh start, offline
    accepted = receiver.accept_offline(note.text)
    assert accepted.amount_fen == yuan(35) and payer.offline_left() == (yuan(65), 2)
    with pytest.raises(WalletError) as not_mine:
        other.accept_offline(note.text)
    assert not_mine.value.code == "unreadable_code"
    with pytest.raises(RailError):
        await receiver.sync_offline()           # still offline: kept for later
    net.down = False
    [synced] = await receiver.sync_offline()
    assert synced["status"] == "credited"
    assert (await receiver.refresh()).balance_fen == yuan(35)
    # A tampered payer phone reuses note 1 for another receiver: refused at sync.
    payer._save_offline({**payer.offline_state, "next_seq": 1})
    copied = payer.pay_offline(other.receive_code(), yuan(35))
    other.accept_offline(copied.text)
    [refused] = await other.sync_offline()
    assert refused == {**refused, "status": "refused", "code": "offline_double_spend"}
    assert (await other.refresh()).balance_fen == 0
    assert purse["purse_id"] in {h.hold_id for h in await payer.holds()}
    with pytest.raises(WalletError) as short:
        payer.pay_offline(other.receive_code(), yuan(100))
    assert short.value.code == "offline_reserve_short"
    await rail.assert_balanced()


async def test_a_voucher_spent_at_a_scanned_merchant_and_a_hold_released_from_the_wallet(
        module_rail, tmp_path):
    rail = module_rail
    holder = await open_wallet(rail, tmp_path / "holder")
    shop = await merchant(rail, tmp_path / "shop")
    issuer = await rail.funded_wallet("yangtze", yuan(100))
    voucher = await rail.client("yangtze").open_voucher(
        issuer.key, issuer.wallet_id, holder.wallet_id, yuan(20),
        deadline_ms=now_ms() + 3_600_000, mcc="5812")
    static = await rail.client("yangtze").static_qr(shop.wallet_id)
    spent = await holder.spend_voucher(voucher["hold_id"], static, yuan(8))
    assert spent.remaining_fen == yuan(12) and spent.status == "pending"
    [listed] = await holder.holds()
    assert listed.kind == "voucher" and listed.remaining_fen == yuan(12)
    payer = await linked(rail, tmp_path / "payer", deposit_fen=yuan(500))
    await payer.top_up(yuan(100))
    escrow = await rail.client("yangtze").open_hold(
        payer.key, payer.wallet_id, shop.wallet_id, yuan(30), deadline_ms=now_ms() + 3_600_000,
        release_by="payer")
    released = await payer.release_hold(escrow["hold_id"], yuan(30))
    assert released.status == "posted"
    await rail.assert_balanced()


async def test_a_backup_restores_the_wallet_on_a_new_phone_under_a_new_pin(module_rail,
                                                                           tmp_path):
    rail = module_rail
    old = await linked(rail, tmp_path / "old-phone", deposit_fen=yuan(500))
    await old.top_up(yuan(100))
    with pytest.raises(WalletError) as weak:
        await old.export_backup(PIN, "short")
    assert weak.value.code == "weak_passphrase"
    with pytest.raises(RailError) as wrong_pin:
        await old.export_backup("000000", "a long backup passphrase")
    assert wrong_pin.value.code == "wrong_pin"
    data = await old.export_backup(PIN, "a long backup passphrase")
    assert old.key.secret_text().encode() not in data     # sealed, not in the clear
    new = Wallet(tmp_path / "new-phone", URLS, transport=rail.net,
                 scrypt_n=keystore.MIN_SCRYPT_N)
    with pytest.raises(WalletError) as wrong:
        await new.restore_backup(data, "another long passphrase", "246810", "246810")
    assert wrong.value.code == "backup_wrong_passphrase"
    altered = data.replace(b'"ciphertext": "', b'"ciphertext": "A', 1)
    with pytest.raises(WalletError) as tampered:
        await new.restore_backup(altered, "a long backup passphrase", "246810", "246810")
    assert tampered.value.code in ("backup_invalid", "backup_wrong_passphrase")
    assert not new.has_wallet()                            # nothing half-restored
    view = await new.restore_backup(data, "a long backup passphrase", "246810", "246810")
    assert view.wallet_id == old.wallet_id and view.balance_fen == yuan(100)
    new.lock()
    await new.unlock("246810")                                   # the new PIN opens it
    old.lock()
    with pytest.raises(RailError) as lost_phone:   # the restore replaced the old phone's guard
        await old.unlock(PIN)
    assert lost_phone.value.code == "unknown_pin_guard"
    shop = await merchant(rail, tmp_path / "shop")
    order = await shop.collect(1_000)
    paid = await new.pay(await new.prepare(order.qr_payload))
    assert paid.status == "settled"
    # the old phone, its key file now refused, restores the same backup under a new PIN
    restored = await old.restore_backup(data, "a long backup passphrase", "112233", "112233")
    assert restored.wallet_id == old.wallet_id
    old.lock()
    await old.unlock("112233")
    another = await open_wallet(rail, tmp_path / "another")
    other_data = await another.export_backup(PIN, "a long backup passphrase")
    with pytest.raises(WalletError) as other_wallet:   # never over another wallet's key
        await old.restore_backup(other_data, "a long backup passphrase", "246810", "246810")
    assert other_wallet.value.code == "key_exists"


async def test_a_new_wallet_adds_a_bank_from_the_link_its_qr_carries(module_rail, tmp_path):
    from wallet_app.core.wallet import bank_url_of

    link = (await module_rail.client("pearl").identity())["wallet_link"]
    assert bank_url_of(link) == "http://pearl.test"
    wallet = Wallet(tmp_path / "new", [], transport=module_rail.net,
                    scrypt_n=keystore.MIN_SCRYPT_N)
    assert await wallet.list_banks() == []
    added = await wallet.add_bank(link)
    assert added.info.bank_id == "pearl"
    assert [c.info.bank_id for c in await wallet.list_banks()] == ["pearl"]


async def test_refusals_a_user_can_meet(module_rail, tmp_path):
    rail = module_rail
    payer = await open_wallet(rail, tmp_path / "payer")
    await rail.fund(rail_wallet(payer), yuan(100))
    shop = await merchant(rail, tmp_path / "shop")
    # an expired order
    order = await shop.collect(500, ttl_ms=1_000)
    await asyncio.sleep(1.1)
    with pytest.raises(RailError) as expired:
        await payer.prepare(order.qr_payload)
    assert expired.value.code == "order_expired"
    # insufficient funds, and the class-4 cap per payment (the PIN is asked above ¥1,000)
    static = await payer.prepare(await shop.client.static_qr(shop.wallet_id))
    assert static.kind == "merchant" and not static.amount_fixed
    with pytest.raises(RailError) as poor:
        await payer.pay(static, yuan(200))
    assert poor.value.code == "insufficient_funds"
    with pytest.raises(WalletError) as pin:
        await payer.pay(static, yuan(2_500))
    assert pin.value.code == "pin_needed"
    with pytest.raises(RailError) as cap:
        await payer.pay(static, yuan(2_500), pin=PIN)
    assert cap.value.code == "per_payment_cap_exceeded"
    # a code in another currency, and a customer's code shown to a payer
    usd = order.qr_payload[:-4].replace("5303156", "5303840")
    usd += f"{qr.crc16_ccitt_false(usd.encode()):04X}"
    with pytest.raises(RailError) as currency:
        await payer.prepare(usd)
    assert currency.value.code == "qr_wrong_currency"
    with pytest.raises(WalletError) as not_payable:
        await payer.prepare(payer.payment_code().text)
    assert not_payable.value.code == "not_payable_here"
    # a merchant that is not one, and a bank that is not there
    with pytest.raises(RailError) as not_merchant:
        await payer.collect(100)
    assert not_merchant.value.code == "not_a_merchant"
    offline = Wallet(tmp_path / "offline", ["http://nowhere.test"], transport=rail.net)
    assert (await offline.list_banks())[0].error == "upstream_unavailable"
    assert (await payer.refresh()).balance_fen == yuan(100)


async def test_interbank_order_and_mandates(module_rail, tmp_path):
    rail = module_rail
    payer = await linked(rail, tmp_path / "payer", "pearl", deposit_fen=yuan(1_000))
    await payer.top_up(yuan(300))
    shop = await merchant(rail, tmp_path / "shop", "yangtze")
    order = await shop.collect(6600)
    paid = await payer.pay(await payer.prepare(order.qr_payload))
    assert paid.status == "settled"
    assert (await shop.order_status(order.order_id)).status == "paid"
    # sub-wallets: authorise, list with caps and use, revoke (payer and app at one bank:
    # the in-process rail does not route a bank's forwarded charges to the other bank)
    payer = await linked(rail, tmp_path / "payer2", "yangtze", deposit_fen=yuan(1_000))
    await payer.top_up(yuan(300))
    made = await payer.authorise(shop.wallet_id, shop.key.public_key.to_text(),
                                 per_payment_cap_fen=yuan(50), period_cap_fen=yuan(80),
                                 merchant_name="Noodle Delivery")
    await rail.client("yangtze").mandate_charge(shop.key, shop.wallet_id, payer.wallet_id,
                                                made.mandate_id, 4500)
    listed = await payer.mandates()
    assert [(m.mandate_id, m.used_this_period_fen, m.status) for m in listed] == [
        (made.mandate_id, 4500, "active")]
    revoked = await payer.revoke(made.mandate_id)
    assert revoked.status == "revoked"


async def test_an_opening_whose_answer_was_lost_is_finished(module_rail, tmp_path):
    rail = module_rail
    net = Flaky(rail.net)
    wallet = Wallet(tmp_path / "w", URLS, transport=net, scrypt_n=keystore.MIN_SCRYPT_N)
    phone = new_phone()
    net.lose_next_answer_to = "/v1/wallets"
    with pytest.raises(RailError) as lost:
        await wallet.open_wallet(URLS[0], phone, PIN, PIN)
    assert lost.value.code == "upstream_unavailable" and not wallet.has_wallet()
    view = await wallet.open_wallet(URLS[0], phone, PIN, PIN)  # same key, same phone
    assert wallet.has_wallet() and view.kyc_class == 4
    with pytest.raises(WalletError) as mismatch:
        await Wallet(tmp_path / "x", URLS, transport=net).open_wallet(URLS[0], phone, PIN, "1")
    assert mismatch.value.code == "pin_mismatch"


def rail_wallet(wallet: Wallet):
    from tests.support.rail import Wallet as RailWallet

    return RailWallet(wallet.profile.bank_id, wallet.wallet_id, wallet.key, wallet.profile.phone)
