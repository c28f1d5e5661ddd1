"""ECDSA P-256 keys and signatures.

Keys are made with the pure-Python `ecdsa` package, which runs anywhere the mobile wallet
does. Signatures are 64 raw bytes (r || s, big-endian) over SHA-256 of the message, carried
as unpadded base64url. Verification on the services' hot path goes through OpenSSL (the
`cryptography` package), about 15x faster than `ecdsa`; both implement the same P-256, so
either side can sign and either can verify."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

import ecdsa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from rail_protocol.errors import RailError

_CURVE = ecdsa.NIST256p
_ORDER = _CURVE.order
_SIGNATURE_BYTES = 64
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def b64encode(raw: bytes) -> str:
    """Unpadded base64url, the rail's text form of bytes."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64decode(text: str, *, field: str = "value") -> bytes:
    """Inverse of `b64encode`; refuses anything that is not base64url."""
    if not isinstance(text, str) or len(text) > 4096:
        raise RailError("invalid_field", f"{field} must be a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise RailError("invalid_field", f"{field} is not base64url") from None


class PublicKey:
    """A P-256 public key: what a bank stores for a wallet and central for a bank."""

    __slots__ = ("point", "key_id", "_openssl")

    def __init__(self, point: bytes) -> None:
        """`point` is the SEC1 uncompressed (65 bytes) or compressed (33 bytes) encoding."""
        try:
            self._openssl = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except (ValueError, TypeError):
            raise RailError("invalid_field", "not a P-256 public key") from None
        from cryptography.hazmat.primitives import serialization

        self.point = self._openssl.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        # A key id names a key without carrying it: 128 bits of SHA-256 of the point.
        self.key_id = "k" + hashlib.sha256(self.point).hexdigest()[:32]

    @classmethod
    def from_text(cls, text: object) -> PublicKey:
        if not isinstance(text, str):
            raise RailError("invalid_field", "public_key must be a base64url string")
        return _public_key_from_text(text)

    def to_text(self) -> str:
        return b64encode(self.point)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when `signature` (64 raw bytes) signs `message` under this key."""
        if len(signature) != _SIGNATURE_BYTES:
            return False
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        if not (0 < r < _ORDER and 0 < s < _ORDER):
            return False
        try:
            self._openssl.verify(encode_dss_signature(r, s), message, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.point == self.point

    def __hash__(self) -> int:
        return hash(self.point)

    def __repr__(self) -> str:
        return f"PublicKey({self.key_id})"


@lru_cache(maxsize=65536)
def _public_key_from_text(text: str) -> PublicKey:
    # Parsing a point costs more than a verify; the hot path sees the same keys again.
    return PublicKey(b64decode(text, field="public_key"))


class SigningKey:
    """A P-256 private key. `engine="ecdsa"` signs in pure Python (the wallet);
    `engine="openssl"` signs through `cryptography` (the services' own keys)."""

    __slots__ = ("_secret", "_ecdsa", "_openssl", "engine", "public_key")

    def __init__(self, secret: bytes, *, engine: str = "ecdsa") -> None:
        if engine not in ("ecdsa", "openssl"):
            raise ValueError("engine is 'ecdsa' or 'openssl'")
        self._secret = secret
        self._ecdsa = ecdsa.SigningKey.from_string(secret, curve=_CURVE)
        self._openssl = (
            ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())
            if engine == "openssl"
            else None
        )
        self.engine = engine
        self.public_key = PublicKey(self._ecdsa.get_verifying_key().to_string("uncompressed"))

    @classmethod
    def generate(cls, *, engine: str = "ecdsa") -> SigningKey:
        """Make a fresh key with `ecdsa` (from the OS's randomness)."""
        return cls(ecdsa.SigningKey.generate(curve=_CURVE).to_string(), engine=engine)

    @classmethod
    def from_text(cls, text: str, *, engine: str = "ecdsa") -> SigningKey:
        return cls(b64decode(text, field="private_key"), engine=engine)

    def secret_text(self) -> str:
        """The private scalar as base64url: only for storing it where it belongs."""
        return b64encode(self._secret)

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def sign(self, message: bytes) -> bytes:
        """64 raw bytes r || s over SHA-256(message)."""
        if self._openssl is not None:
            r, s = decode_dss_signature(self._openssl.sign(message, _ECDSA_SHA256))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self._ecdsa.sign_deterministic(message, hashfunc=hashlib.sha256)

    def __repr__(self) -> str:
        return f"SigningKey({self.key_id}, engine={self.engine})"
