"""The PIN guard: a wallet's 6-digit PIN checked by its bank, which counts the tries.

A 6-digit PIN has a million values. Any key file that the PIN alone opens falls to a
search of them all once the file is copied off the phone (scrypt 2^16 makes that about 61
core-hours, a few minutes on GPUs). So the key file is sealed under two secrets:

    file key = HKDF-SHA256(scrypt(PIN, salt) || share)

- `scrypt(PIN, salt)` (the *stretched PIN*) is made on the phone; the salt stays in the
  key file, so the bank can never search PINs itself.
- `share` is 32 random bytes the bank keeps for the wallet and gives out only to a caller
  who shows both the wallet's guard id (a random secret in the key file: nobody without the
  file can spend the wallet's tries) and the PIN's verifier, HMAC(stretched PIN, label).
  After `FREE_FAILURES` wrong verifiers in a row the bank locks the guard for `LOCK_MS`,
  and every wrong try after that locks it again: a copied file yields about one guess a
  day, on average more than a thousand years for a 6-digit PIN.

The wallet registers a guard with an instruction signed by its key (the key proves it is the
wallet's own); registering again (a new PIN, a restored backup on a new phone) replaces the
old guard, so a lost phone's file can no longer be opened. The bank stores only SHA-256 of
the guard id and the verifier.
"""

from __future__ import annotations

import hashlib
import hmac
import re

GUARD_ID_BYTES = 16
SHARE_BYTES = 32
FREE_FAILURES = 5                 # wrong PINs in a row before the guard locks
LOCK_MS = 24 * 3600 * 1000        # then a day; each later wrong PIN locks it a day again
_VERIFIER_LABEL = b"yuanrail pin verifier v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")


def verifier(stretched_pin: bytes) -> str:
    """What the wallet shows its bank for the PIN (hex): useless without the guard id."""
    return hmac.new(stretched_pin, _VERIFIER_LABEL, hashlib.sha256).hexdigest()


def digest(secret_hex: str) -> str:
    """What the bank stores of a guard id or a verifier (hex SHA-256)."""
    return hashlib.sha256(bytes.fromhex(secret_hex)).hexdigest()


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def is_guard_id(value: object) -> bool:
    return isinstance(value, str) and _HEX32.fullmatch(value) is not None


def is_verifier(value: object) -> bool:
    return is_digest(value)     # the same shape: 32 bytes in lowercase hex
