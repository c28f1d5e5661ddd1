"""The signed-instruction envelope, the one shape of every request that moves money.

    {"id": "...", "type": "central.issue", "signer": "k...", "created_ms": 1700000000000,
     "expires_ms": 1700000060000, "body": {...}, "sig": "<base64url r||s>"}

The signature covers the canonical bytes of every field but `sig`. The id is made by the
client and is unique per signer: a retry reuses it and has one effect; the same id with other
content is refused. Expiry bounds how long a captured instruction is any use to anyone."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rail_protocol.canonical import canonical_bytes
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import body_problem
from rail_protocol.keys import PublicKey, SigningKey, b64decode, b64encode

DEFAULT_TTL_MS = 120_000
MAX_TTL_MS = 24 * 3600 * 1000  # a mandate or payment code may not outlive a day
MAX_CLOCK_SKEW_MS = 300_000
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_.]{2,63}$")
_FIELDS = ("id", "type", "signer", "created_ms", "expires_ms", "body", "sig")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A fresh instruction id: 128 random bits."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    type: str
    signer: str
    created_ms: int
    expires_ms: int
    body: dict[str, Any]
    sig: str = ""
    _signed: bytes = field(default=b"", init=False, repr=False, compare=False)

    def signed_fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "signer": self.signer,
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
            "body": self.body,
        }

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers."""
        return self._signed or canonical_bytes(self.signed_fields())

    def digest(self) -> str:
        """SHA-256 of the signed bytes: what idempotency compares between a first try and a
        retry (a new signature over the same content is the same instruction)."""
        return hashlib.sha256(self.signed_bytes()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**self.signed_fields(), "sig": self.sig}

    @classmethod
    def parse(cls, value: object, *, in_sealed_batch: bool = False) -> Envelope:
        """Check the shape of an untrusted envelope; says nothing yet about its signature.
        An item of a sealed batch (rail_protocol/batches.py) carries no `sig` of its own:
        the batch's one signature covers its digest."""
        if not isinstance(value, dict):
            raise RailError("unsigned", "expected a signed instruction envelope object")
        if in_sealed_batch:
            if "sig" in value:
                raise RailError("invalid_field", "an item of a sealed batch has no sig")
            value = {**value, "sig": ""}
        elif "sig" not in value or not value.get("sig"):
            raise RailError("unsigned", "the instruction carries no signature")
        missing = [name for name in _FIELDS if name not in value]
        if missing:
            raise RailError("invalid_field", f"envelope lacks {', '.join(missing)}")
        extra = set(value) - set(_FIELDS)
        if extra:
            raise RailError("invalid_field", f"unknown envelope fields {sorted(extra)}")
        for name in ("id", "type", "signer", "sig"):
            if not isinstance(value[name], str):
                raise RailError("invalid_field", f"envelope {name} must be a string")
        for name in ("created_ms", "expires_ms"):
            if isinstance(value[name], bool) or not isinstance(value[name], int):
                raise RailError("invalid_field", f"envelope {name} must be integer milliseconds")
        if not isinstance(value["body"], dict):
            raise RailError("invalid_field", "envelope body must be an object")
        if not _ID_RE.match(value["id"]):
            raise RailError("invalid_field", "instruction id must be 8-64 of [A-Za-z0-9_.:-]")
        if not _TYPE_RE.match(value["type"]):
            raise RailError("invalid_field", "instruction type is malformed")
        problem = body_problem(value["type"], value["body"])
        if problem:
            raise RailError(*problem)
        env = cls(**{name: value[name] for name in _FIELDS})
        object.__setattr__(env, "_signed", canonical_bytes(env.signed_fields()))
        return env


def unsigned(signer: str, type: str, body: dict[str, Any], *, id: str, ttl_ms: int,
             created_ms: int | None = None) -> Envelope:
    """An instruction to send in a sealed batch (rail_protocol/batches.py): everything
    `seal` makes but the signature, which the batch's covers."""
    created = now_ms() if created_ms is None else created_ms
    env = Envelope(id=id, type=type, signer=signer, created_ms=created,
                   expires_ms=created + ttl_ms, body=body)
    object.__setattr__(env, "_signed", canonical_bytes(env.signed_fields()))
    return env


def seal(
    key: SigningKey,
    type: str,
    body: dict[str, Any],
    *,
    id: str | None = None,
    ttl_ms: int = DEFAULT_TTL_MS,
    created_ms: int | None = None,
) -> Envelope:
    """Sign an instruction with `key`. To retry, resend the same sealed envelope (or seal
    again with the same `id` and `created_ms`): other content under one id is refused."""
    return sign(key, unsigned(key.key_id, type, body, id=id or new_id(), ttl_ms=ttl_ms,
                              created_ms=created_ms))


def sign(key: SigningKey, env: Envelope) -> Envelope:
    """`env` (from `unsigned`, or an item of a sealed batch) with `key`'s own signature:
    the same instruction (the same digest), to send alone or in a plain batch."""
    signed = env.signed_bytes()
    sealed = Envelope(**{**env.signed_fields(), "sig": b64encode(key.sign(signed))})
    object.__setattr__(sealed, "_signed", signed)
    return sealed


def verify(
    env: Envelope,
    public_key: PublicKey,
    *,
    expected_type: str | None = None,
    at_ms: int | None = None,
    check_expiry: bool = True,
) -> None:
    """Raise unless `env` is signed by `public_key`, of the expected type and, when
    `check_expiry`, live at `at_ms`. Order matters: an altered or forged envelope is refused
    as such before anything is said about its timing."""
    if env.signer != public_key.key_id:
        raise RailError("unknown_key", "the envelope's signer is not the expected key")
    if not public_key.verify(b64decode(env.sig, field="sig"), env.signed_bytes()):
        raise RailError("bad_signature")
    if expected_type is not None and env.type != expected_type:
        raise RailError("wrong_instruction_type", f"expected {expected_type}, got {env.type}")
    if env.expires_ms <= env.created_ms:
        raise RailError("invalid_field", "expires_ms must be after created_ms")
    if env.expires_ms - env.created_ms > MAX_TTL_MS:
        raise RailError("ttl_too_long")
    if check_expiry:
        check_live(env, at_ms)


def check_live(env: Envelope, at_ms: int | None = None) -> None:
    """Raise `expired` or `not_yet_valid` when `env` is outside its validity window."""
    now = now_ms() if at_ms is None else at_ms
    if env.created_ms > now + MAX_CLOCK_SKEW_MS:
        raise RailError("not_yet_valid")
    if env.expires_ms <= now:
        raise RailError("expired")


def sign_statement(key: SigningKey, statement: dict[str, Any]) -> dict[str, Any]:
    """Sign a long-lived statement (a certificate, a receipt) rather than an instruction:
    no expiry check, no id; the signature covers the canonical bytes of the other fields."""
    fields = {name: value for name, value in statement.items() if name != "sig"}
    fields["issuer"] = key.key_id
    return {**fields, "sig": b64encode(key.sign(canonical_bytes(fields)))}


def verify_statement(public_key: PublicKey, statement: dict[str, Any]) -> None:
    """Raise `bad_signature` unless `statement` was signed by `public_key`."""
    fields = {name: value for name, value in statement.items() if name != "sig"}
    if fields.get("issuer") != public_key.key_id:
        raise RailError("unknown_key", "the statement's issuer is not the expected key")
    sig = statement.get("sig")
    if not isinstance(sig, str) or not public_key.verify(
        b64decode(sig, field="sig"), canonical_bytes(fields)
    ):
        raise RailError("bad_signature", "the statement's signature does not verify")
