"""The wallet's private key, made on the device and kept there encrypted.

The key is a P-256 `SigningKey` made with `ecdsa` (pure Python, so it runs on a phone). It
never leaves the device: the bank only ever sees its public key and its signatures. On disk
it is sealed like this (file `key.json`, version 2):

    {"version": 2, "key_id": "k...", "public_key": "<base64url point>",
     "kdf": {"name": "scrypt", "n": 65536, "r": 8, "p": 1, "salt": "<16 bytes>"},
     "cipher": {"name": "aes-256-gcm", "nonce": "<12 bytes>"},
     "ciphertext": "<32-byte private scalar + 16-byte tag>",
     "guard": {"bank_url": "...", "guard_id": "<16 bytes, hex>"} | null,
     "failed_attempts": 0, "locked_until_ms": 0}

- The PIN is stretched with scrypt (64 MiB, about a fifth of a second). That alone would not
  do: a copied file falls to a search of the million 6-digit PINs in about 61 core-hours.
- So once the bank has opened the wallet, the file is **guarded** (rail_protocol/pin_guard.py):
  the AES key is HKDF(stretched PIN || the bank's share), and the bank gives its share only
  for the right PIN's verifier, counting wrong ones (five, then one a day). Nothing on the
  phone can tell a right PIN from a wrong one, so the file cannot be searched off it.
- Until then (the seconds of opening a wallet, or a version-1 file) the file is sealed under
  the stretched PIN alone and wrong PINs are counted in the file: after `FREE_ATTEMPTS` the
  next try must wait, doubling each time up to an hour. The wallet guards it at the next
  unlock the bank answers (wallet.py).
- AES-GCM authenticates as well as encrypts; the public key is the associated data, so a
  ciphertext cannot be moved under another file's public key.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rail_protocol.keys import SigningKey, b64decode, b64encode
from wallet_app.core.errors import WalletError
from wallet_app.core.i18n import N_
from wallet_app.core.files import read_json, write_json

VERSION = 2
READS = (1, 2)            # version 1: no guard field, always sealed under the PIN alone
SCRYPT_N = 2**16          # CPU/memory cost: 128 * r * n bytes = 64 MiB
SCRYPT_R = 8
SCRYPT_P = 1
MIN_SCRYPT_N = 2**12      # what a test may lower it to; a file asking for less is refused
SALT_BYTES = 16
NONCE_BYTES = 12
FREE_ATTEMPTS = 5         # wrong PINs before the wallet starts making the user wait
FIRST_LOCK_MS = 30_000    # then 30 s, 60 s, 120 s ... up to MAX_LOCK_MS
MAX_LOCK_MS = 3_600_000
_PIN = re.compile(r"^[0-9]{6}$")


def check_pin(pin: object) -> str:
    """A PIN is exactly 6 digits, like a bank card's payment password."""
    if not isinstance(pin, str) or not _PIN.match(pin):
        raise WalletError("pin_format", N_("the PIN must be 6 digits"))
    return pin


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Guard:
    """Where the file's PIN is checked: the bank node, and the guard id it knows it by."""

    bank_url: str
    guard_id: str


def _file_key(stretched: bytes, share: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"yuanrail key file v2").derive(stretched + share)


@dataclass
class KeyStore:
    """The sealed key file at `path`. `create` makes it under the PIN; `guard_with` seals it
    under the bank's share too; `open_guarded` opens it with that share (wallet.py asks the
    bank for it)."""

    path: Path

    def exists(self) -> bool:
        return self.path.exists()

    @property
    def public_key_text(self) -> str:
        return self._load()["public_key"]

    @property
    def key_id(self) -> str:
        return self._load()["key_id"]

    @classmethod
    def create(cls, path: Path, key: SigningKey, pin: str, *, scrypt_n: int = SCRYPT_N
               ) -> KeyStore:
        """Seal `key` under `pin` into a new file; refuses to overwrite a key (a wallet's
        key lost is the wallet's money lost)."""
        store = cls(path)
        store.seal_new(key, pin, scrypt_n=scrypt_n)
        return store

    def seal_new(self, key: SigningKey, pin: str, *, scrypt_n: int = SCRYPT_N,
                 replace: bool = False) -> bytes:
        """Seal `key` under `pin` (a new salt), not yet guarded; the stretched PIN, to guard
        it with. Refuses to overwrite a key unless `replace` (a wallet's key lost is the
        wallet's money lost)."""
        check_pin(pin)
        if not replace and self.path.exists():
            raise WalletError("key_exists", f"{self.path} already holds a wallet key")
        sealed, stretched = self._seal(key, pin, scrypt_n)
        write_json(self.path, sealed)
        return stretched

    @property
    def guard(self) -> Guard | None:
        guard = self._load().get("guard")
        return Guard(guard["bank_url"], guard["guard_id"]) if guard else None

    def stretch(self, pin: str) -> bytes:
        """scrypt(PIN, the file's salt): the PIN's part of the file key, and what its
        verifier is made from. Slow on purpose: call it off the UI thread."""
        check_pin(pin)
        return self._kdf(pin, self._load()["kdf"])

    def unlock(self, pin: str) -> SigningKey:
        """The private key of a file not yet guarded, if `pin` is right (wrong PINs counted
        in the file, with a wait)."""
        return self.open_unguarded(self.stretch(pin))

    def open_unguarded(self, stretched: bytes) -> SigningKey:
        sealed = self._load()
        if sealed.get("guard"):
            raise WalletError("key_file_invalid", "the key file is guarded: its bank checks "
                                                  "the PIN")
        now = _now_ms()
        if sealed.get("locked_until_ms", 0) > now:
            wait_s = -(-(sealed["locked_until_ms"] - now) // 1000)
            raise WalletError("pin_locked", f"too many wrong PINs: try again in {wait_s} s",
                              wait_s=wait_s)
        try:
            key = self._open(sealed, stretched)
        except InvalidTag:
            failed = sealed.get("failed_attempts", 0) + 1
            sealed["failed_attempts"] = failed
            if failed >= FREE_ATTEMPTS:
                sealed["locked_until_ms"] = now + min(
                    FIRST_LOCK_MS * 2 ** (failed - FREE_ATTEMPTS), MAX_LOCK_MS)
            write_json(self.path, sealed)
            left = max(FREE_ATTEMPTS - failed, 0)
            raise WalletError("wrong_pin", "the PIN is wrong" + (
                f" ({left} tries before it locks)" if left else ""), left=left) from None
        if sealed.get("failed_attempts") or sealed.get("locked_until_ms"):
            sealed["failed_attempts"], sealed["locked_until_ms"] = 0, 0
            write_json(self.path, sealed)
        return key

    def open_guarded(self, stretched: bytes, share: bytes) -> SigningKey:
        """The private key, with the share the bank gave for the right PIN."""
        try:
            return self._open(self._load(), _file_key(stretched, share))
        except InvalidTag:
            raise WalletError("key_file_invalid", "the key file does not open with its "
                                                  "bank's share") from None

    def guard_with(self, key: SigningKey, stretched: bytes, guard: Guard, share: bytes) -> None:
        """Seal the key again under the stretched PIN and the bank's share (the same salt:
        the bank knows the verifier of this stretched PIN)."""
        sealed = self._load()
        write_json(self.path, self._sealed(key, sealed["kdf"], _file_key(stretched, share),
                                           {"bank_url": guard.bank_url,
                                            "guard_id": guard.guard_id}))

    # --- sealing ------------------------------------------------------------------------

    def _load(self) -> dict:
        sealed = read_json(self.path)
        if not isinstance(sealed, dict) or sealed.get("version") not in READS:
            raise WalletError("no_wallet", f"no wallet key at {self.path}")
        return sealed

    @staticmethod
    def _kdf(pin: str, kdf: dict) -> bytes:
        if kdf.get("name") != "scrypt" or not MIN_SCRYPT_N <= kdf.get("n", 0) <= 2**20:
            raise WalletError("key_file_invalid", "the key file's KDF is not one we accept")
        return Scrypt(salt=b64decode(kdf["salt"]), length=32, n=kdf["n"], r=kdf["r"],
                      p=kdf["p"]).derive(pin.encode("ascii"))

    def _seal(self, key: SigningKey, pin: str, scrypt_n: int) -> tuple[dict, bytes]:
        kdf = {"name": "scrypt", "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P,
               "salt": b64encode(os.urandom(SALT_BYTES))}
        stretched = self._kdf(pin, kdf)
        return self._sealed(key, kdf, stretched, None), stretched

    @staticmethod
    def _sealed(key: SigningKey, kdf: dict, aes_key: bytes, guard: dict | None) -> dict:
        nonce = os.urandom(NONCE_BYTES)
        public = key.public_key.to_text()
        secret = b64decode(key.secret_text())
        ciphertext = AESGCM(aes_key).encrypt(nonce, secret, public.encode())
        return {"version": VERSION, "key_id": key.key_id, "public_key": public, "kdf": kdf,
                "cipher": {"name": "aes-256-gcm", "nonce": b64encode(nonce)},
                "ciphertext": b64encode(ciphertext), "guard": guard, "failed_attempts": 0,
                "locked_until_ms": 0}

    @staticmethod
    def _open(sealed: dict, aes_key: bytes) -> SigningKey:
        if sealed.get("cipher", {}).get("name") != "aes-256-gcm":
            raise WalletError("key_file_invalid", "the key file's cipher is not one we accept")
        secret = AESGCM(aes_key).decrypt(
            b64decode(sealed["cipher"]["nonce"]), b64decode(sealed["ciphertext"]),
            sealed["public_key"].encode())
        key = SigningKey(secret)
        if key.public_key.to_text() != sealed["public_key"]:
            raise WalletError("key_file_invalid", "the key does not match its public key")
        return key
