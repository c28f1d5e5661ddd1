"""Batch calls on the rail (docs/interbank.md, "Batches"): many envelopes in one request,
`{"<items>": [envelope, ...]}`, answered `{"results": [...]}` one item per envelope, in the
same order. Message 1 (`transfers`) and message 2 (`credits`) share this shape; each item
of an answer is what the single call answers for that envelope, or `{"error": {...}}`."""

from __future__ import annotations

from rail_protocol.errors import RailError

MAX_ITEMS = 256                       # envelopes in one batch call at most
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
