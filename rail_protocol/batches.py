"""Batch calls on the rail (docs/interbank.md, "Batches"): many envelopes in one request,
`{"<items>": [envelope, ...]}`, answered `{"results": [...]}` one item per envelope, in the
same order. Message 1 (`transfers`) and message 2 (`credits`) share this shape; each item
of an answer is what the single call answers for that envelope, or `{"error": {...}}`.

A sealed batch (docs/interbank.md, "One signature per batch") carries its items without
their own signatures and ONE signature over the list of their digests:
`{"<items>": [envelope without sig, ...], "signer": key id, "sig": ...}`; its answer
likewise, `{"results": [...], "issuer": key id, "sig": ...}`, the signature over the
digests of the statements it holds (an item answered with an error is not covered). One
signature and one verify per batch instead of one per item; each item is then checked as
it would be alone."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from rail_protocol.canonical import canonical_bytes
from rail_protocol.envelope import Envelope
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey, SigningKey, b64decode, b64encode

MAX_ITEMS = 256                       # envelopes in one batch call at most
SEALED_RECHECK_S = 600.0              # a peer without the sealed route is asked again after
# A batch body may hold MAX_ITEMS envelopes of ~0.5 KiB, each with up to 2 KiB of details.
MAX_BODY_BYTES = 1024 * 1024


def parse_batch(raw: object, items: str, max_items: int = MAX_ITEMS) -> list:
    """The envelopes of a batch request: a list of 1 to `max_items` under the key `items`
    and nothing else; otherwise `invalid_field` for the whole request."""
    if not isinstance(raw, dict) or set(raw) != {items}:
        raise RailError("invalid_field", f"a batch is {{\"{items}\": [envelope, ...]}}")
    envelopes = raw[items]
    if not isinstance(envelopes, list) or not 1 <= len(envelopes) <= max_items:
        raise RailError("invalid_field",
                        f"{items} must be a list of 1 to {max_items} envelopes")
    return envelopes


def batch_results(answer: object, count: int) -> list | None:
    """The items of a batch answer, one per envelope sent; None when the answer is not
    `{"results": [...]}` with exactly `count` of them (then nothing in it is an answer)."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or len(results) != count:
        return None
    return results


def _batch_bytes(digests: list[str]) -> bytes:
    """What a sealed batch's signature covers: the list of its items' digests, in order."""
    return canonical_bytes({"batch": digests})


def seal_batch(key: SigningKey, items: str, envelopes: list[Envelope]) -> dict:
    """A sealed batch request of `envelopes` (made with `envelope.unsigned` for `key`)."""
    return {items: [env.signed_fields() for env in envelopes], "signer": key.key_id,
            "sig": b64encode(key.sign(_batch_bytes([env.digest() for env in envelopes])))}


def open_batch(raw: object, items: str, public_key: PublicKey,
               max_items: int = MAX_ITEMS) -> list[Envelope]:
    """The envelopes of a sealed batch request signed by `public_key`, each signed by it
    too as far as the signature goes; anything else refuses the whole batch (the sender
    sends it again, or one by one)."""
    if not isinstance(raw, dict) or set(raw) != {items, "signer", "sig"}:
        raise RailError("invalid_field",
                        f"a sealed batch is {{\"{items}\": [...], \"signer\": ..., \"sig\": ...}}")
    listed, signer, sig = raw[items], raw["signer"], raw["sig"]
    if not isinstance(listed, list) or not 1 <= len(listed) <= max_items:
        raise RailError("invalid_field", f"{items} must be a list of 1 to {max_items} envelopes")
    if not isinstance(signer, str) or not isinstance(sig, str):
        raise RailError("invalid_field", "signer and sig are strings")
    if signer != public_key.key_id:
        raise RailError("unknown_key", "the batch's signer is not the expected key")
    envelopes = [Envelope.parse(item, in_sealed_batch=True) for item in listed]
    if any(env.signer != signer for env in envelopes):
        raise RailError("invalid_field", "every item of a sealed batch is its signer's")
    if not public_key.verify(b64decode(sig, field="sig"),
                             _batch_bytes([env.digest() for env in envelopes])):
        raise RailError("bad_signature", "the batch's signature does not verify")
    return envelopes


def _statement_digest(statement: object) -> str:
    return hashlib.sha256(canonical_bytes(statement)).hexdigest()


def seal_results(key: SigningKey, results: list[dict], field: str = "result") -> dict:
    """A sealed batch answer: each item `{field: statement}` (the statement's fields without
    a `sig`, `issuer` added here) or an error, and one signature over the statements'
    digests ("" for an error)."""
    sealed, digests = [], []
    for item in results:
        statement = item.get(field) if isinstance(item, dict) else None
        if isinstance(statement, dict):
            statement = {**statement, "issuer": key.key_id}
            sealed.append({**item, field: statement})
            digests.append(_statement_digest(statement))
        else:
            sealed.append(item)
            digests.append("")
    return {"results": sealed, "issuer": key.key_id,
            "sig": b64encode(key.sign(_batch_bytes(digests)))}


def open_results(answer: object, public_key: PublicKey, count: int,
                 field: str = "result") -> list[dict | None] | None:
    """The statements of a sealed batch answer from `public_key`, one per item sent (None
    for an item answered with an error); None for the whole answer when it is not one
    signed by that key with `count` items (then nothing in it is an answer)."""
    results = batch_results(answer, count)
    if results is None or answer.get("issuer") != public_key.key_id \
            or not isinstance(answer.get("sig"), str):
        return None
    statements: list[dict | None] = []
    digests = []
    for item in results:
        statement = item.get(field) if isinstance(item, dict) else None
        if isinstance(statement, dict) and statement.get("issuer") == public_key.key_id \
                and "sig" not in statement:
            statements.append(statement)
            digests.append(_statement_digest(statement))
        else:
            statements.append(None)
            digests.append("")
    try:
        signature = b64decode(answer["sig"], field="sig")
    except RailError:
        return None
    if not public_key.verify(signature, _batch_bytes(digests)):
        return None
    return statements


class MissingRoutes:
    """The peers that answered 404 to a sealed batch route: the plain batch route is used
    for them, and after `recheck_s` the sealed one is tried again, so a peer upgraded since
    gets sealed batches without a restart here."""

    def __init__(self, recheck_s: float = SEALED_RECHECK_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._recheck_s, self._clock = recheck_s, clock
        self._until: dict[str, float] = {}

    def mark(self, peer: str) -> None:
        self._until[peer] = self._clock() + self._recheck_s

    def missing(self, peer: str) -> bool:
        until = self._until.get(peer)
        if until is None:
            return False
        if self._clock() >= until:
            del self._until[peer]
            return False
        return True

    def peers(self) -> set[str]:
        """The peers marked and not yet due to be asked again."""
        return {peer for peer in list(self._until) if self.missing(peer)}
