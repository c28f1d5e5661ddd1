"""Signed reads: a wallet proves who asks for its balance or history without an envelope.

Header: `Authorization: Rail key=<key id>,ts=<ms>,sig=<base64url>`, the signature over the
canonical bytes of ["RAIL-READ", method, path with query, ts]. A signature lives
`READ_WINDOW_MS` either side of the server's clock; replaying a read within that window
reveals nothing the reader could not already see."""

from __future__ import annotations

from rail_protocol.canonical import canonical_bytes
from rail_protocol.envelope import now_ms
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey, SigningKey, b64decode, b64encode

READ_WINDOW_MS = 60_000


def _message(method: str, path: str, ts_ms: int) -> bytes:
    return canonical_bytes(["RAIL-READ", method.upper(), path, ts_ms])


def sign_read(key: SigningKey, method: str, path: str, ts_ms: int | None = None) -> str:
    ts = now_ms() if ts_ms is None else ts_ms
    sig = b64encode(key.sign(_message(method, path, ts)))
    return f"Rail key={key.key_id},ts={ts},sig={sig}"


def read_signer(header: str | None) -> tuple[str, int, str]:
    """Parse the header into (key id, ts, sig) or refuse it as unsigned."""
    if not header or not header.startswith("Rail "):
        raise RailError("unsigned", "this read needs an `Authorization: Rail ...` signature")
    try:
        parts = dict(item.split("=", 1) for item in header[5:].split(","))
        return parts["key"], int(parts["ts"]), parts["sig"]
    except (ValueError, KeyError):
        raise RailError("unsigned", "malformed Rail authorization header") from None


def verify_read(header: str | None, public_key: PublicKey, method: str, path: str,
                at_ms: int | None = None) -> None:
    key_id, ts, sig = read_signer(header)
    if key_id != public_key.key_id:
        raise RailError("wrong_key")
    if abs((now_ms() if at_ms is None else at_ms) - ts) > READ_WINDOW_MS:
        raise RailError("expired", "the read's signature is outside its time window")
    if not public_key.verify(b64decode(sig, field="sig"), _message(method, path, ts)):
        raise RailError("bad_signature")
