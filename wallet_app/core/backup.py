"""An encrypted backup of the wallet, for a lost or replaced phone: its key and profile sealed
under a passphrase the user chooses, restored on another phone with that passphrase and a
new PIN.

A 6-digit PIN protects the key file on the phone (with a count of wrong tries); a backup
leaves the phone, where nothing counts the tries, so it takes a passphrase of at least
MIN_PASSPHRASE characters and a heavier scrypt (2^17, 128 MiB). The file (version 1):

    {"type": "yuanrail.wallet_backup", "version": 1,
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<16 bytes>"},
     "cipher": {"name": "aes-256-gcm", "nonce": "<12 bytes>"},
     "ciphertext": "<JSON of the private key and the profile, + tag>"}

AES-GCM authenticates: a wrong passphrase or an altered file is refused, never half-read."""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey, b64decode, b64encode
from wallet_app.core.errors import WalletError
from wallet_app.core.i18n import N_

TYPE = "yuanrail.wallet_backup"
VERSION = 1
MIN_PASSPHRASE = 12
SCRYPT_N = 2**17
MIN_SCRYPT_N = 2**12       # what a test may lower it to; a file asking for less is refused
MAX_BYTES = 64 * 1024


def check_passphrase(passphrase: object) -> str:
    if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE:
        raise WalletError("weak_passphrase", N_("the backup passphrase must be at least 12 "
                                                "characters"))
    return passphrase


def _kek(passphrase: str, kdf: dict) -> bytes:
    if kdf.get("name") != "scrypt" or not MIN_SCRYPT_N <= kdf.get("n", 0) <= 2**20:
        raise WalletError("backup_invalid", N_("that is not a wallet backup"))
    return Scrypt(salt=b64decode(kdf["salt"]), length=32, n=kdf["n"], r=kdf["r"],
                  p=kdf["p"]).derive(passphrase.encode("utf-8"))


def seal(key: SigningKey, profile: dict, passphrase: str, *, scrypt_n: int = SCRYPT_N) -> bytes:
    """The backup file's bytes."""
    check_passphrase(passphrase)
    kdf = {"name": "scrypt", "n": scrypt_n, "r": 8, "p": 1,
           "salt": b64encode(os.urandom(16))}
    nonce = os.urandom(12)
    plain = json.dumps({"private_key": key.secret_text(), "profile": profile}).encode()
    sealed = AESGCM(_kek(passphrase, kdf)).encrypt(nonce, plain, TYPE.encode())
    return json.dumps({"type": TYPE, "version": VERSION, "kdf": kdf,
                       "cipher": {"name": "aes-256-gcm", "nonce": b64encode(nonce)},
                       "ciphertext": b64encode(sealed)}, indent=1).encode()


def open_(data: bytes, passphrase: str) -> tuple[SigningKey, dict]:
    """The key and profile in a backup, if `passphrase` opens it and nothing was altered."""
    try:
        if len(data) > MAX_BYTES:
            raise ValueError("too large")
        sealed = json.loads(data)
        if sealed.get("type") != TYPE or sealed.get("version") != VERSION \
                or sealed.get("cipher", {}).get("name") != "aes-256-gcm":
            raise ValueError("not a backup")
        kek = _kek(passphrase, sealed["kdf"])
        plain = AESGCM(kek).decrypt(b64decode(sealed["cipher"]["nonce"]),
                                    b64decode(sealed["ciphertext"]), TYPE.encode())
    except InvalidTag:
        raise WalletError("backup_wrong_passphrase", N_("the passphrase does not open this "
                                                        "backup")) from None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, RailError):
        raise WalletError("backup_invalid", N_("that is not a wallet backup")) from None
    inside = json.loads(plain)
    return SigningKey.from_text(inside["private_key"]), inside["profile"]
