"""The wallet: the one object every screen calls. GUI-free and async.

It owns the wallet's home folder:

    key.json      the private key, sealed under the PIN and the bank's share (keystore.py)
    profile.json  which bank, which wallet id, which phone, personal or merchant
    outbox.json   signed instructions not yet answered (outbox.py)

and the typed client of the wallet's bank node. Its methods are the app's use cases, each
the same shape: check on the device what can be checked (PIN, amount, code), sign, send
(money through the outbox, so a lost answer is retried with the same id and never paid
twice), and return a typed result. Refusals are `RailError` (from the bank) or
`WalletError` (from the device); `messages.explain` says them to a person."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from urllib.parse import parse_qsl, urlsplit
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from rail_protocol.envelope import now_ms, seal
from rail_protocol.errors import CODES, RailError
from rail_protocol.keys import PublicKey, SigningKey
from rail_protocol import offline, pin_guard, short_code
from rail_protocol.payment_code import DEFAULT_CODE_TTL_MS, make_code, read_code
from wallet_app.core.client import (
    DEFAULT_NO_PIN_THRESHOLD_FEN,
    BankInfo,
    Hold,
    HistoryPage,
    Mandate,
    Order,
    Payment,
    PaymentResult,
    WalletClient,
    WalletView,
    payment_result,
)
from wallet_app.core import backup
from wallet_app.core.errors import PaymentPending, WalletError
from wallet_app.core.files import read_json, write_json
from wallet_app.core.i18n import N_, _
from wallet_app.core.keystore import SCRYPT_N, Guard, KeyStore, check_pin
from wallet_app.core.outbox import UNANSWERED, Outbox, Outcome
from wallet_app.core.scan import (
    CustomerCode,
    PayMerchant,
    PayWallet,
    Scanned,
    read_scanned,
    receive_payload,
)

PROFILE_VERSION = 1
CHINA_UTC_OFFSET_MS = 8 * 3600 * 1000   # daily caps and "today" count in Beijing time
DAY_MS = 86_400_000
FINAL = ("settled", "rejected")
SETTLE_WAIT_S = 10.0          # how long a screen waits for an interbank payment to settle
CODE_REFRESH_MARGIN_MS = 10_000   # refresh a shown payment code this long before it expires
CLOCK_MARGIN_MS = 300_000         # the device's clock and the bank's may differ this much
HISTORY_SEARCH_PAGES = 5
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
_ID_NUMBER = re.compile(r"^[0-9]{17}[0-9X]$")


def today_start_ms(at_ms: int) -> int:
    """Midnight, Beijing time, of the day `at_ms` falls in."""
    return (at_ms + CHINA_UTC_OFFSET_MS) // DAY_MS * DAY_MS - CHINA_UTC_OFFSET_MS


@dataclass
class Profile:
    """What the wallet remembers besides its key. `wallet_id` is None while the bank has
    not yet answered the opening (the key is kept, and the opening is sent again)."""

    bank_url: str
    bank_id: str
    bank_name: str
    phone: str
    kind: str = "personal"
    wallet_id: str | None = None
    merchant: dict | None = None
    short_code: dict | None = None    # {"issuer", "slot"} once registered with the bank
    version: int = PROFILE_VERSION


@dataclass(frozen=True)
class BankChoice:
    """A bank the user may open a wallet at; `info` None when it did not answer."""

    url: str
    info: BankInfo | None
    error: str | None = None

    @property
    def label(self) -> str:
        if self.info is None:
            return _("{url} (offline)").format(url=self.url)
        return f"{self.info.name} ({self.info.bank_id})"


@dataclass(frozen=True)
class PaymentRequest:
    """A scanned code made ready to confirm: who is paid, and how much when the code says."""

    kind: str                  # "order" (dynamic merchant code), "merchant" (static), "person"
    payee: str
    name: str
    city: str | None = None
    amount_fen: int | None = None   # fixed by the code; None: the payer types it
    order_id: str | None = None
    expires_ms: int | None = None

    @property
    def amount_fixed(self) -> bool:
        return self.amount_fen is not None


@dataclass(frozen=True)
class CodeTicket:
    """A payment code made on the device: the QR text and the id that keys its charge."""

    text: str
    instruction_id: str
    created_ms: int
    expires_ms: int
    pin_verified: bool
    refresh_ms: int | None = None     # a short code: when its minute ends

    @property
    def short(self) -> bool:
        """A short numeric code (shown as digits, a barcode and a small QR)."""
        return short_code.is_short_code(self.text)

    def refresh_at_ms(self) -> int:
        if self.refresh_ms is not None:
            return self.refresh_ms
        return self.expires_ms - CODE_REFRESH_MARGIN_MS


@dataclass(frozen=True)
class Receipts:
    """A merchant's takings today: payments in, refunds out, and the net."""

    items: list[Payment]
    received_fen: int
    refunded_fen: int
    count: int

    @property
    def net_fen(self) -> int:
        return self.received_fen - self.refunded_fen


class Wallet:
    def __init__(self, home: Path, bank_urls: list[str], *,
                 transport: httpx.AsyncBaseTransport | None = None, timeout_s: float = 10.0,
                 scrypt_n: int = SCRYPT_N, operator_tokens: dict[str, str] | None = None,
                 retry_backoff_s: float = 0.25) -> None:
        self.home = Path(home)
        self.bank_urls = [u.rstrip("/") for u in bank_urls]
        added = read_json(self.home / "banks.json")     # banks the user added at onboarding
        for url in added if isinstance(added, list) else []:
            if isinstance(url, str) and url not in self.bank_urls:
                self.bank_urls.append(url)
        self._transport = transport
        self._timeout_s = timeout_s
        self._scrypt_n = scrypt_n
        # Tests lower the key file's scrypt; a backup's scales with it (16x heavier).
        self._backup_scrypt_n = min(scrypt_n * 2, backup.SCRYPT_N)
        # The demo's bank counter only: each bank's own operator credential, by bank URL.
        self._operator_tokens = {u.rstrip("/"): t for u, t in (operator_tokens or {}).items()}
        self.keystore = KeyStore(self.home / "key.json")
        self.key: SigningKey | None = None
        self.view: WalletView | None = None
        self.bank_info: BankInfo | None = None
        self._clients: dict[str, WalletClient] = {}
        self._infos: dict[str, BankInfo] = {}
        self.outbox = Outbox(self.home / "outbox.json", self._send, backoff_s=retry_backoff_s)

    # --- plumbing -------------------------------------------------------------------------

    def _client(self, url: str) -> WalletClient:
        url = url.rstrip("/")
        if url not in self._clients:
            self._clients[url] = WalletClient(url, transport=self._transport,
                                              timeout_s=self._timeout_s)
        return self._clients[url]

    @property
    def client(self) -> WalletClient:
        profile = self.profile
        if profile is None:
            raise WalletError("no_wallet")
        return self._client(profile.bank_url)

    async def _send(self, path: str, envelope: dict) -> dict:
        return await self.client.send(path, envelope)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    @property
    def profile(self) -> Profile | None:
        data = read_json(self.home / "profile.json")
        return Profile(**data) if isinstance(data, dict) else None

    def _save_profile(self, profile: Profile) -> None:
        write_json(self.home / "profile.json", asdict(profile))

    def has_wallet(self) -> bool:
        """A wallet the bank has opened lives on this device (unlock it with the PIN)."""
        profile = self.profile
        return profile is not None and profile.wallet_id is not None and self.keystore.exists()

    @property
    def wallet_id(self) -> str:
        profile = self.profile
        if profile is None or profile.wallet_id is None:
            raise WalletError("no_wallet")
        return profile.wallet_id

    def _key(self) -> SigningKey:
        if self.key is None:
            raise WalletError("locked")
        return self.key

    @property
    def no_pin_threshold_fen(self) -> int:
        return self.bank_info.no_pin_threshold_fen if self.bank_info \
            else DEFAULT_NO_PIN_THRESHOLD_FEN

    @property
    def demo_counter(self) -> bool:
        """Whether the demo's bank counter (opening a deposit account) is offered."""
        return bool(self._operator_tokens)

    # --- banks and opening a wallet -------------------------------------------------------

    async def bank(self, url: str) -> BankInfo:
        url = url.rstrip("/")
        if url not in self._infos:
            self._infos[url] = await self._client(url).identity()
        return self._infos[url]

    async def add_bank(self, text: str) -> BankChoice:
        """A bank the user typed (its URL) or scanned (its QR, `yuanrail:bank?url=<URL>`),
        kept once it answers as a bank node of the rail."""
        url = bank_url_of(text)
        try:
            info = await self.bank(url)    # refused (upstream_unavailable) when none answers
        except (KeyError, TypeError, ValueError, AttributeError):
            raise WalletError("bad_bank_url", N_("no bank of the rail answers there")) from None
        if url not in self.bank_urls:
            self.bank_urls.append(url)
            added = read_json(self.home / "banks.json")
            write_json(self.home / "banks.json",
                       [*(added if isinstance(added, list) else []), url])
        return BankChoice(url, info)

    async def list_banks(self) -> list[BankChoice]:
        """The configured banks, each with its name and class limits, or why it is offline;
        none at all until the user adds one (`add_bank`)."""

        async def one(url: str) -> BankChoice:
            try:
                return BankChoice(url, await self.bank(url))
            except RailError as exc:
                return BankChoice(url, None, exc.code)

        return list(await asyncio.gather(*(one(u) for u in self.bank_urls)))

    async def open_wallet(self, bank_url: str, phone: str, pin: str, pin_again: str, *,
                          kind: str = "personal", merchant: dict | None = None) -> WalletView:
        """Make the key on the device, seal it under the PIN, and open a class-4 wallet.

        The key is on disk before the bank hears of it: if the answer is lost, opening again
        resends the same key and phone, and the bank answers with the wallet it opened."""
        if pin != pin_again:
            raise WalletError("pin_mismatch")
        check_pin(pin)
        pending = self.profile
        if pending is not None and pending.wallet_id is not None:
            raise WalletError("key_exists")
        stretched = None
        if pending is not None and self.keystore.exists():
            key = await self._open_key(pin)  # finish the opening that lost its answer
            bank_url, phone, kind, merchant = (pending.bank_url, pending.phone, pending.kind,
                                               pending.merchant)
        else:
            if not isinstance(phone, str) or not _PHONE.match(phone.strip()):
                raise WalletError("invalid_field", N_("the phone number must be 6-15 digits"))
            phone = phone.strip()
            info = await self.bank(bank_url)
            key = SigningKey.generate()  # made here, with `ecdsa`; it never leaves
            stretched = self.keystore.seal_new(   # over a key the bank never registered
                key, pin, scrypt_n=self._scrypt_n, replace=True)
            self._save_profile(Profile(info.url, info.bank_id, info.name, phone, kind,
                                       None, merchant))
        profile = self.profile
        assert profile is not None
        try:
            view = await self._client(bank_url).open_wallet(key, phone, kind=kind,
                                                            merchant=merchant)
        except RailError as exc:
            if exc.code not in UNANSWERED:   # refused: the key was never registered
                self.keystore.path.unlink(missing_ok=True)
                (self.home / "profile.json").unlink(missing_ok=True)
            raise
        profile.wallet_id = view.wallet_id
        self._save_profile(profile)
        self.key, self.view = key, view
        await self._guard_key(key, pin, stretched)
        self.bank_info = await self.bank(profile.bank_url)
        self._remember_bank_key()
        return view

    async def export_backup(self, pin: str, passphrase: str) -> bytes:
        """The wallet's key and profile, sealed under `passphrase` (the PIN checked first):
        to keep somewhere other than this phone."""
        await self.verify_pin(pin)
        profile = self.profile
        if profile is None or profile.wallet_id is None:
            raise WalletError("no_wallet")
        return backup.seal(self._key(), asdict(profile), passphrase,
                           scrypt_n=self._backup_scrypt_n)

    async def restore_backup(self, data: bytes, passphrase: str, pin: str,
                             pin_again: str) -> WalletView:
        """A wallet from a backup on this (new) phone, under a new PIN; the bank confirms it
        knows the key before the wallet is kept. On a phone holding a wallet, only that
        same wallet (its PIN locked, or its key registered again elsewhere)."""
        check_pin(pin)
        if pin != pin_again:
            raise WalletError("pin_mismatch")
        key, saved = backup.open_(data, passphrase)
        if self.has_wallet() and self.keystore.public_key_text != key.public_key.to_text():
            raise WalletError("key_exists", N_("this phone already holds a wallet"))
        profile = Profile(**{k: v for k, v in saved.items()
                             if k in Profile.__dataclass_fields__})
        view = await self._client(profile.bank_url).wallet(key, profile.wallet_id)
        stretched = self.keystore.seal_new(   # on this phone, only this same wallet's key
            key, pin, scrypt_n=self._scrypt_n, replace=True)
        self._save_profile(profile)
        self.key, self.view = key, view
        await self._guard_key(key, pin, stretched)   # the lost phone's file no longer opens
        self.bank_info = await self.bank(profile.bank_url)
        self._remember_bank_key()
        return view

    async def unlock(self, pin: str) -> None:
        """Open the key with the PIN for this session (the bank checks the PIN)."""
        if not self.has_wallet():
            raise WalletError("no_wallet")
        self.key = await self._open_key(pin)

    def lock(self) -> None:
        self.key = None

    async def verify_pin(self, pin: str | None) -> None:
        """The PIN check before a large payment: the bank must find the PIN right (a wrong
        one counts towards its lock)."""
        if not pin:
            raise WalletError("pin_needed")
        await self._open_key(pin)

    async def change_pin(self, old_pin: str, new_pin: str, new_pin_again: str) -> None:
        """A new PIN: the key sealed under it and a new guard registered, which the old PIN
        no longer opens."""
        if new_pin != new_pin_again:
            raise WalletError("pin_mismatch")
        check_pin(new_pin)
        key = await self._open_key(old_pin)
        stretched = self.keystore.seal_new(key, new_pin, scrypt_n=self._scrypt_n,
                                           replace=True)
        if not await self._guard_key(key, new_pin, stretched, strict=True):
            raise RailError("upstream_unavailable", "the bank did not answer: the new PIN "
                            "works, and is checked by the bank once it answers")

    @property
    def key_guarded(self) -> bool:
        """Whether the bank checks this device's PIN (else the file is under the PIN alone:
        for the seconds of opening, or until the bank next answers)."""
        return self.keystore.exists() and self.keystore.guard is not None

    async def _open_key(self, pin: str) -> SigningKey:
        """The private key, if the PIN is right. A guarded file asks its bank, which counts
        wrong PINs; a file not yet guarded is opened here and guarded at once if the bank
        answers."""
        check_pin(pin)
        stretched = await asyncio.to_thread(self.keystore.stretch, pin)
        guard = self.keystore.guard
        if guard is None:
            key = self.keystore.open_unguarded(stretched)
            await self._guard_key(key, pin, stretched)
            return key
        share = await self._client(guard.bank_url).open_pin_guard(
            guard.guard_id, pin_guard.verifier(stretched))
        return self.keystore.open_guarded(stretched, share)

    async def _guard_key(self, key: SigningKey, pin: str, stretched: bytes | None = None, *,
                         strict: bool = False) -> bool:
        """Register a new guard with the wallet's bank and seal the key under its share.
        False if the bank did not answer (or, unless `strict`, refused): the file stays
        under the PIN alone until the next unlock that reaches it; opening, restoring or
        unlocking the wallet goes on."""
        profile = self.profile
        if profile is None or profile.wallet_id is None:
            return False
        if stretched is None:
            stretched = await asyncio.to_thread(self.keystore.stretch, pin)
        guard_id = secrets.token_hex(pin_guard.GUARD_ID_BYTES)
        try:
            share = await self._client(profile.bank_url).register_pin_guard(
                key, profile.wallet_id, pin_guard.digest(guard_id),
                pin_guard.digest(pin_guard.verifier(stretched)))
        except RailError as exc:
            if exc.code in UNANSWERED or not strict:
                return False
            raise
        self.keystore.guard_with(key, stretched, Guard(profile.bank_url, guard_id), share)
        return True

    def needs_pin(self, amount_fen: int) -> bool:
        return amount_fen > self.no_pin_threshold_fen

    # --- the wallet's state ---------------------------------------------------------------

    async def refresh(self) -> WalletView:
        """Balance, class, limits, today's spending; first resends pending instructions."""
        key = self._key()
        profile = self.profile
        assert profile is not None and profile.wallet_id is not None
        if self.bank_info is None:
            self.bank_info = await self.bank(profile.bank_url)
            self._remember_bank_key()
        if self.outbox.pending():
            await self.outbox.flush()
        self.view = await self.client.wallet(key, profile.wallet_id)
        return self.view

    async def link_account(self, deposit_account: str, id_number: str) -> WalletView:
        """Upgrade with an ID number and the holder's deposit account at this bank."""
        id_number = id_number.strip().upper()
        if not _ID_NUMBER.match(id_number):
            raise WalletError("invalid_field", N_("the ID number must be 18 characters"))
        deposit_account = deposit_account.strip()
        if not 6 <= len(deposit_account) <= 40:
            raise WalletError("invalid_field", N_("the account number must be 6-40 characters"))
        self.view = await self.client.upgrade(self._key(), self.wallet_id, id_number=id_number,
                                              deposit_account=deposit_account)
        return self.view

    async def demo_open_deposit_account(self, holder_name: str, opening_fen: int) -> str:
        """The demo's bank counter: open a deposit account in this phone's name, as a
        branch would. Only with the demo's operator token of that bank; a real bank does this
        in person."""
        profile = self.profile
        if profile is None:
            raise WalletError("no_wallet")
        token = self._operator_tokens.get(profile.bank_url.rstrip("/"))
        if token is None:
            raise RailError("unauthorized")
        counter = WalletClient(profile.bank_url, transport=self._transport,
                               timeout_s=self._timeout_s, operator_token=token)
        try:
            return await counter.open_deposit_account(profile.phone, holder_name, opening_fen)
        finally:
            await counter.aclose()

    async def set_topup_on_use(self, on: bool) -> WalletView:
        self.view = await self.client.settings(self._key(), self.wallet_id, topup_on_use=on)
        return self.view

    # --- paying ---------------------------------------------------------------------------

    async def prepare(self, scanned: Scanned | str) -> PaymentRequest:
        """What a scanned code asks this wallet to pay. A dynamic code's order is looked up
        at the merchant's bank, when that bank is one we know, so an expired or paid order
        is said before the user confirms (the payment itself checks again)."""
        if isinstance(scanned, str):
            scanned = read_scanned(scanned)
        if isinstance(scanned, CustomerCode):
            raise WalletError("not_payable_here",
                              N_("that is a customer's payment code; only a merchant charges it"))
        if isinstance(scanned, PayWallet):
            return PaymentRequest("person", scanned.wallet_id, scanned.name or scanned.wallet_id,
                                  amount_fen=scanned.amount_fen)
        assert isinstance(scanned, PayMerchant)
        code = scanned.code
        if not code.dynamic:
            return PaymentRequest("merchant", code.merchant_id, code.merchant_name,
                                  code.merchant_city)
        expires = None
        order = await self._find_order(code.bank_id, code.order_id)
        if order is not None:
            if order.status == "expired":
                raise RailError("order_expired")
            if order.status == "cancelled":
                raise RailError("order_cancelled")
            if order.status != "created":
                raise RailError("order_paid")
            if order.amount_fen != code.amount_fen or order.merchant_wallet != code.merchant_id:
                raise RailError("qr_malformed", "the code does not match the merchant's order")
            expires = order.expires_ms
        return PaymentRequest("order", code.merchant_id, code.merchant_name, code.merchant_city,
                              code.amount_fen, code.order_id, expires)

    async def _find_order(self, bank_id: str, order_id: str | None) -> Order | None:
        if order_id is None:
            return None
        for url in self.bank_urls:
            try:
                if (await self.bank(url)).bank_id == bank_id:
                    return await self._client(url).order(order_id)
            except RailError as exc:
                if exc.code == "unknown_order":
                    raise
                continue  # unknown or offline: the payment's own checks still apply
        return None

    async def pay(self, request: PaymentRequest, amount_fen: int | None = None, *,
                  pin: str | None = None, memo: str | None = None) -> PaymentResult:
        """Pay what `request` asks. Above the no-PIN threshold the PIN must open the key.
        The instruction goes through the outbox: a lost answer is retried with the same id."""
        key = self._key()
        amount = request.amount_fen if request.amount_fixed else amount_fen
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise WalletError("invalid_amount", N_("type the amount to pay"))
        if self.needs_pin(amount):
            await self.verify_pin(pin)
        for entry in self.outbox.pending():
            if entry.kind == "pay" and entry.summary.get("payee") == request.payee \
                    and entry.summary.get("amount_fen") == amount:
                # the same payment already waits for an answer: signing it again under a new
                # id could pay twice, so the user waits for the first one instead
                raise PaymentPending(entry.instruction_id)
        env = self.client.pay_envelope(key, self.wallet_id, request.payee, amount,
                                            memo=memo, order_id=request.order_id)
        outcome = await self.outbox.submit("pay", "/v1/payments", env, {
            "payee": request.payee, "name": request.name, "amount_fen": amount})
        result = await self._result(outcome)
        if result.status not in FINAL:
            result = await self._settle(result)
        if result.status == "rejected":
            raise _rejection(result.code)
        return result

    async def _result(self, outcome: Outcome) -> PaymentResult:
        if outcome.refusal is not None:
            raise outcome.refusal
        if outcome.answer is not None:
            return payment_result(outcome.answer, outcome.entry.instruction_id)
        found = await self.find_by_instruction(outcome.entry.instruction_id)
        if found is None:  # executed, but no longer in reach of the history search
            return PaymentResult("", "settled", outcome.entry.summary.get("amount_fen", 0),
                                 outcome.entry.instruction_id, repeated=True)
        return PaymentResult(found.payment_id, found.status, found.amount_fen,
                             outcome.entry.instruction_id, payer_wallet=found.payer_wallet,
                             payee_wallet=found.payee_wallet, repeated=True, code=found.code)

    async def _settle(self, result: PaymentResult) -> PaymentResult:
        """Wait (bounded) for a payment across banks to settle or be rejected."""
        deadline = asyncio.get_running_loop().time() + SETTLE_WAIT_S
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
            try:
                view = await self.client.payment(self._key(), self.wallet_id, result.payment_id)
            except RailError as exc:
                if exc.code in UNANSWERED:
                    continue
                raise
            if view.status in FINAL:
                if view.status == "rejected":
                    raise _rejection(view.code)
                return PaymentResult(result.payment_id, view.status, result.amount_fen,
                                     result.instruction_id, result.balance_after_fen,
                                     result.payer_wallet, result.payee_wallet,
                                     result.order_id, repeated=result.repeated)
        return result  # still processing: the bank's outbox will finish it

    async def incoming_news(self) -> tuple[list[Payment], dict[str, str]]:
        """Payments received since the last look, newest first, with the merchants' names
        (the first look only marks where the news starts). The mark is kept on disk."""
        page = await self.client.history(self._key(), self.wallet_id, limit=20)
        ids = [int(p.payment_id[1:]) for p in page.items if p.payment_id[1:].isdigit()]
        seen = read_json(self.home / "seen.json")
        last = seen.get("last_payment") if isinstance(seen, dict) else None
        if ids and (last is None or max(ids) > last):
            write_json(self.home / "seen.json", {"last_payment": max(ids)})
        if last is None:
            return [], page.names
        news = [p for p in page.items if p.payee_wallet == self.wallet_id
                and p.status == "settled" and p.payment_id[1:].isdigit()
                and int(p.payment_id[1:]) > last]
        return news, page.names

    async def resolve_pending(self) -> list[Outcome]:
        """Resend what waits in the outbox (at start-up, on refresh)."""
        return await self.outbox.flush()

    async def top_up(self, amount_fen: int) -> PaymentResult:
        """Deposit money to e-CNY from the linked account (through the outbox)."""
        return await self._exchange("top_up", "top-up", amount_fen)

    async def redeem(self, amount_fen: int) -> PaymentResult:
        """e-CNY back to the linked account (through the outbox)."""
        return await self._exchange("redeem", "redeem", amount_fen)

    async def _exchange(self, kind: str, path_part: str, amount_fen: int) -> PaymentResult:
        key = self._key()
        _check_amount(amount_fen)
        env = seal(key, f"bank.{kind}", {"wallet_id": self.wallet_id, "amount_fen": amount_fen})
        outcome = await self.outbox.submit(kind, f"/v1/wallets/{self.wallet_id}/{path_part}",
                                           env, {"amount_fen": amount_fen})
        return await self._result(outcome)

    # --- the payment code (customer-presented) --------------------------------------------

    async def enable_short_codes(self) -> bool:
        """Register the short codes' secret (derived from the key) with the bank, once;
        False when the bank issues none (the wallet then shows the signed code)."""
        profile = self.profile
        if profile is None:
            raise WalletError("no_wallet")
        if profile.short_code is None:
            key = self._key()
            try:
                slot = await self.client.register_short_code(
                    key, self.wallet_id, short_code.derive_secret(key))
            except RailError as exc:
                if exc.code == "invalid_field":     # this bank issues no short codes
                    return False
                raise
            profile = Profile(**{**asdict(profile), "short_code": {
                "issuer": slot["issuer"], "slot": slot["slot"]}})
            self._save_profile(profile)
        return True

    def payment_code(self, ttl_ms: int = DEFAULT_CODE_TTL_MS, *,
                     pin_verified: bool = False) -> CodeTicket:
        """A fresh single-use code made here with no network: the short numeric code once
        registered (`enable_short_codes`, up to five a minute), else a signed code. Only
        `pin_code` makes one that may be charged above the no-PIN threshold."""
        key = self._key()
        profile = self.profile
        if profile is not None and profile.short_code is not None:
            ticket = self._short_code(key, profile.short_code, pin_verified)
            if ticket is not None:
                return ticket
        text = make_code(key, self.wallet_id, pin_verified=pin_verified, ttl_ms=ttl_ms)
        env = read_code(text)
        return CodeTicket(text, env.id, env.created_ms, env.expires_ms, pin_verified)

    async def pin_code(self, pin: str | None) -> CodeTicket:
        """A payment code that may be charged above the no-PIN threshold: the bank checks
        the PIN first."""
        await self.verify_pin(pin)
        return self.payment_code(pin_verified=True)

    def _short_code(self, key: SigningKey, slot: dict, pin_verified: bool) -> CodeTicket | None:
        """The next short code of this minute, or None when five were made already. The
        count is kept on disk: a code must never be made twice (the second would be refused
        as used)."""
        now = now_ms()
        minute = short_code.minute_of(now)
        made = read_json(self.home / "short_codes.json")
        count = made.get("count", 0) if isinstance(made, dict) and made.get("minute") == minute \
            else 0
        if count >= short_code.CODES_PER_MINUTE:
            return None
        write_json(self.home / "short_codes.json", {"minute": minute, "count": count + 1})
        code = short_code.make_short_code(short_code.derive_secret(key), slot["issuer"],
                                          slot["slot"], at_ms=now, sequence=count,
                                          pin_verified=pin_verified)
        start = minute * short_code.MINUTE_MS
        return CodeTicket(code.text, short_code.instruction_id(minute, code.digit), start,
                          start + 2 * short_code.MINUTE_MS, pin_verified,
                          refresh_ms=start + short_code.MINUTE_MS)

    async def code_result(self, ticket: CodeTicket) -> Payment | None:
        """The payment a merchant made by charging `ticket`, once there is one: the payer's
        bank books a code's charge under the code's own id."""
        return (await self.code_charges([ticket])).get(ticket.instruction_id)

    async def code_charges(self, tickets: list[CodeTicket]) -> dict[str, Payment]:
        """Charges of any of `tickets` (codes shown lately), by code id, in one read of the
        newest history: a code lives a minute, so its charge is among the newest rows."""
        if not tickets:
            return {}
        ids = {t.instruction_id for t in tickets}
        since = min(t.created_ms for t in tickets) - CLOCK_MARGIN_MS
        page = await self.client.history(self._key(), self.wallet_id, limit=50, since_ms=since)
        return {i.instruction_id: i for i in page.items if i.instruction_id in ids}

    async def find_by_instruction(self, instruction_id: str, *,
                                  since_ms: int | None = None) -> Payment | None:
        before = None
        for _ in range(HISTORY_SEARCH_PAGES):
            page = await self.client.history(self._key(), self.wallet_id, before=before,
                                             limit=50, since_ms=since_ms)
            for item in page.items:
                if item.instruction_id == instruction_id:
                    return item
            if page.next_before is None:
                return None
            before = page.next_before
        return None

    def receive_code(self, amount_fen: int | None = None, name: str | None = None) -> str:
        """This wallet's receive code (`scan.receive_payload`), for a person to pay."""
        return receive_payload(self.wallet_id, amount_fen, name)

    # --- history and sub-wallets ----------------------------------------------------------

    async def history(self, before: int | None = None, limit: int = 20) -> HistoryPage:
        return await self.client.history(self._key(), self.wallet_id, before=before,
                                         limit=limit)

    async def mandates(self) -> list[Mandate]:
        return await self.client.mandates(self._key(), self.wallet_id)

    async def revoke(self, mandate_id: str) -> Mandate:
        return await self.client.revoke_mandate(self._key(), self.wallet_id, mandate_id)

    async def authorise(self, merchant_wallet: str, merchant_public_key: str, *,
                        per_payment_cap_fen: int, period_cap_fen: int, period: str = "month",
                        merchant_name: str | None = None) -> Mandate:
        """A sub-wallet for a merchant app (the app's deep link supplies its key)."""
        return await self.client.create_mandate(
            self._key(), self.wallet_id, merchant_wallet, merchant_public_key,
            per_payment_cap_fen=per_payment_cap_fen, period_cap_fen=period_cap_fen,
            period=period, merchant_name=merchant_name)

    # --- holds, vouchers and offline payments (docs/programmable.md) ----------------------

    async def holds(self) -> list[Hold]:
        """Holds this wallet funds or is paid by, vouchers it gave or holds, its reserves."""
        return await self.client.holds(self._key(), self.wallet_id)

    async def release_hold(self, hold_id: str, amount_fen: int) -> Hold:
        """Release a hold this wallet named itself releaser of (an escrow), all or part."""
        _check_amount(amount_fen)
        return await self.client.release_hold(self._key(), self.wallet_id, hold_id, amount_fen)

    async def spend_voucher(self, hold_id: str, merchant_code: str, amount_fen: int) -> Hold:
        """Pay the merchant of a scanned code with part of a voucher this wallet holds."""
        _check_amount(amount_fen)
        scanned = read_scanned(merchant_code)
        if not isinstance(scanned, PayMerchant):
            raise WalletError("unreadable_code", N_("scan the merchant's code"))
        return await self.client.spend_voucher(self._key(), self.wallet_id, hold_id,
                                               scanned.payee, amount_fen)

    @property
    def offline_state(self) -> dict:
        """This device's offline reserve and the notes it made and received
        (<home>/offline.json): the purse, the next note number, what the notes spent, and
        the received notes with their sync outcome."""
        state = read_json(self.home / "offline.json")
        return state if isinstance(state, dict) else {"purse": None, "next_seq": 1,
                                                      "spent_fen": 0, "received": []}

    def _save_offline(self, state: dict) -> None:
        write_json(self.home / "offline.json", state)

    def _remember_bank_key(self) -> None:
        """Keep the bank's public key for checking offline payments when next offline."""
        key = self.bank_info.public_key if self.bank_info else None
        if key and self.offline_state.get("bank_key") != key:
            self._save_offline({**self.offline_state, "bank_key": key})

    async def reserve_offline(self, amount_fen: int, max_payments: int = 10) -> dict:
        """Set money aside for offline payments (online); the purse the bank signed.

        The purse has a key of its own, made here and kept unencrypted beside it: the
        wallet's key opens only with the bank's word on the PIN, and a phone with no network
        must still pay offline. So the reserve is like cash in a pocket: whoever holds the
        unlocked-or-not phone may spend it, never more (the bank signs the purse over to
        this key alone, for at most ¥500 and 10 payments)."""
        _check_amount(amount_fen)
        purse_key = SigningKey.generate()
        answer = await self.client.offline_reserve(self._key(), self.wallet_id, amount_fen,
                                                   max_payments,
                                                   purse_key.public_key.to_text())
        self._save_offline({**self.offline_state, "purse": answer["purse"], "next_seq": 1,
                            "spent_fen": 0, "purse_key": purse_key.secret_text()})
        return answer["purse"]

    def _purse_key(self, purse: dict) -> SigningKey:
        """The key the purse's notes are signed with: its own, or (a purse reserved before
        purses had keys) the wallet's."""
        secret = self.offline_state.get("purse_key")
        if secret:
            key = SigningKey.from_text(secret)
            if key.public_key.to_text() == purse.get("public_key"):
                return key
        return self._key()

    def offline_left(self) -> tuple[int, int]:
        """(fen, payments) the device may still pay offline from its reserve."""
        state = self.offline_state
        purse = state.get("purse")
        if not purse:
            return 0, 0
        return (purse["amount_fen"] - state["spent_fen"],
                purse["max_payments"] - state["next_seq"] + 1)

    def pay_offline(self, receive_code: str, amount_fen: int) -> offline.OfflinePayment:
        """A payment note for the person whose receive code was scanned, with no network.
        The note's number is saved before the note is shown: a number is never used twice
        by this device (a second use would be refused at sync as a double spend)."""
        _check_amount(amount_fen)
        scanned = read_scanned(receive_code)
        if not isinstance(scanned, PayWallet | PayMerchant):
            raise WalletError("unreadable_code", N_("scan the receiver's code"))
        state = self.offline_state
        purse = state.get("purse")
        fen_left, payments_left = self.offline_left()
        if purse is None or payments_left <= 0 or amount_fen > fen_left:
            raise WalletError("offline_reserve_short",
                              N_("the offline reserve is too small; reserve more online"))
        if now_ms() > purse["pay_until_ms"]:
            raise WalletError("offline_reserve_short", N_("the offline reserve has expired"))
        seq = state["next_seq"]
        signer = self._purse_key(purse)     # before the number is spent: locked, no note
        self._save_offline({**state, "next_seq": seq + 1,
                            "spent_fen": state["spent_fen"] + amount_fen})
        return offline.make_note(signer, purse, seq, scanned.payee, amount_fen)

    def accept_offline(self, text: str) -> offline.OfflinePayment:
        """Check a payer's offline payment with no network (the bank's key as last seen
        online) and keep it to sync later."""
        bank_key = (self.bank_info.public_key if self.bank_info else None) \
            or self.offline_state.get("bank_key")
        if not bank_key:
            raise WalletError("no_bank_key", N_("go online once before accepting offline "
                                                "payments"))
        payment = offline.read(text, PublicKey.from_text(bank_key))
        if payment.payee_wallet != self.wallet_id:
            raise WalletError("unreadable_code", N_("that offline payment is for someone "
                                                    "else"))
        state = self.offline_state
        if all(r["text"] != payment.text for r in state["received"]):
            state["received"].append({"text": payment.text, "amount_fen": payment.amount_fen,
                                      "from": payment.purse["wallet_id"], "status": "to_sync"})
            self._save_offline(state)
        return payment

    async def sync_offline(self) -> list[dict]:
        """Hand every received, unsynced note to the bank; each ends credited or refused."""
        state = self.offline_state
        for item in state["received"]:
            if item["status"] != "to_sync":
                continue
            try:
                await self.client.offline_claim(self._key(), self.wallet_id, item["text"])
                item["status"] = "credited"
            except RailError as exc:
                if exc.code in ("upstream_unavailable", "service_unavailable"):
                    raise
                item["status"], item["code"] = "refused", exc.code
            self._save_offline(state)
        return state["received"]

    # --- merchant mode --------------------------------------------------------------------

    def _merchant(self) -> str:
        profile = self.profile
        if profile is None or profile.kind != "merchant":
            raise RailError("not_a_merchant")
        return self.wallet_id

    async def collect(self, amount_fen: int, description: str | None = None,
                      ttl_ms: int | None = None) -> Order:
        """An order for `amount_fen` and its dynamic QR, for the customer to scan."""
        merchant = self._merchant()
        if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
            raise WalletError("invalid_amount", N_("type the amount to collect"))
        reference = f"pos-{uuid.uuid4().hex[:20]}"
        return await self.client.create_order(self._key(), merchant, amount_fen, reference,
                                              description, ttl_ms)

    async def order_status(self, order_id: str) -> Order:
        return await self.client.order(order_id)

    async def charge(self, code_text: str, amount_fen: int) -> PaymentResult:
        """Charge a customer's payment code (scanned at the counter) `amount_fen`."""
        merchant = self._merchant()
        scanned = read_scanned(code_text)
        if not isinstance(scanned, CustomerCode):
            raise WalletError("not_a_payment_code")
        if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
            raise WalletError("invalid_amount", N_("type the amount to charge"))
        if scanned.expires_ms is not None and scanned.expires_ms <= now_ms():
            raise RailError("expired", "the payment code has expired")
        answer = await self.client.charge_code(self._key(), merchant, scanned.text, amount_fen)
        return payment_result(answer, scanned.instruction_id or answer.get("payment_id", ""))

    async def receipts_today(self) -> Receipts:
        """Today's settled payments in and refunds out (Beijing time), newest first."""
        merchant = self._merchant()
        since = today_start_ms(now_ms())
        items: list[Payment] = []
        before = None
        for _ in range(HISTORY_SEARCH_PAGES):
            page = await self.client.history(self._key(), merchant, before=before, limit=100,
                                             since_ms=since)
            items += page.items
            if page.next_before is None:
                break
            before = page.next_before
        settled = [i for i in items if i.status == "settled"]
        received = sum(i.amount_fen for i in settled if i.payee_wallet == merchant)
        refunded = sum(i.amount_fen for i in settled if i.payer_wallet == merchant)
        return Receipts(settled, received, refunded,
                        sum(1 for i in settled if i.payee_wallet == merchant))


def bank_url_of(text: object) -> str:
    """The bank node's URL in what was typed or scanned: `https://...` (or `http://` for a
    test rail), or a bank's QR `yuanrail:bank?url=<URL>`."""
    if not isinstance(text, str) or not text.strip() or len(text) > 300:
        raise WalletError("bad_bank_url", N_("type the bank's address or scan its code"))
    text = text.strip()
    parts = urlsplit(text)
    if parts.scheme.lower() == "yuanrail" and parts.path == "bank":
        text = dict(parse_qsl(parts.query)).get("url", "")
        parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username \
            or parts.query or parts.fragment:
        raise WalletError("bad_bank_url", N_("type the bank's address or scan its code"))
    return text.rstrip("/")


def _check_amount(amount_fen: object) -> None:
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise WalletError("invalid_amount", N_("type an amount"))


def _rejection(code: str | None) -> RailError:
    """A payment the other bank refused after ours accepted it (the money came back)."""
    return RailError(code if code in CODES else "unknown_wallet",
                     "the payee's bank refused the payment; the money is back in the wallet")
