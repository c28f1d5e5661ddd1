"""What the OpenAPI documents say about each route, in one place: its request body, its
answer, and every refusal it can give.

Bodies are read as bytes by the rail's strict parser (rail_service/http.py), not by a model,
so FastAPI cannot see them: each route declares them here with `signed(kind)` (a signed
instruction envelope, its body's fields taken from rail_protocol.instruction_types, the same
table `Envelope.parse` enforces) or `plain(schema)`, and its answer with `answers(schema)`.
`describe_errors` adds the typed error answer under every status the route can refuse with,
each listing the codes of that status (rail_protocol.errors). The documents are checked
against the running services by schemathesis (tests/e2e/test_openapi_fuzz.py) and, for every
route's allowed answer, by the roles walk (tests/integration/test_roles.py)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from rail_protocol.canonical import INT_MAX, INT_MIN, MAX_STRING_CHARS
from rail_protocol.errors import CODES
from rail_protocol.instruction_types import BODY_FIELDS, FIELD_TYPES, NESTED_FIELDS
from rail_protocol.money import MAX_FEN

Schema = dict[str, Any]
INSTRUCTION = "x-signed-instruction"     # the operation's envelope type, for clients and tests

# --- schema builders ------------------------------------------------------------------------

TEXT: Schema = {"type": "string", "maxLength": MAX_STRING_CHARS}
INT: Schema = {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX}
MS: Schema = {"type": "integer", "minimum": 0, "maximum": INT_MAX, "description": "Unix ms"}
FEN: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_FEN, "description": "fen"}
SIGNED_FEN: Schema = {"type": "integer", "minimum": -MAX_FEN, "maximum": MAX_FEN}
BOOL: Schema = {"type": "boolean"}
ANY_OBJECT: Schema = {"type": "object"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None, *,
        closed: bool = False) -> Schema:
    """An object with these fields; an answer may grow fields later (open), a request's
    object may not (closed)."""
    schema: Schema = {"type": "object", "properties": {**required, **(optional or {})},
                      "required": sorted(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def one_of(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


# --- request bodies -------------------------------------------------------------------------

_FIELD_SCHEMAS = {int: INT, bool: BOOL, str: TEXT}


def _field_schema(name: str) -> Schema:
    kind = FIELD_TYPES.get(name, str)
    if name.endswith("_fen"):
        return nullable({**FEN, "minimum": 1})
    if name in NESTED_FIELDS:
        return nullable(obj({}, {inner: nullable(TEXT) for inner in sorted(NESTED_FIELDS[name])},
                            closed=True))
    if kind is dict:
        return nullable(ANY_OBJECT)
    return nullable(_FIELD_SCHEMAS[kind])


def instruction_body(kind: str) -> Schema:
    """The body of a `kind` instruction: exactly the fields the rail knows for it; null
    stands for an absent field. Which are required is each use case's rule."""
    return obj({}, {name: _field_schema(name) for name in sorted(BODY_FIELDS[kind])},
               closed=True)


def envelope(kind: str, *, signed: bool = True) -> Schema:
    """The signed instruction envelope (rail_protocol/envelope.py) carrying a `kind` body;
    without `sig` as an item of a sealed batch (`signed=False`)."""
    schema = obj({
        "id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{8,64}$",
               "description": "made by the signer, unique per signer; a retry reuses it"},
        "type": one_of(kind),
        "signer": {**TEXT, "description": "the signing key's id"},
        "created_ms": MS, "expires_ms": MS,
        "body": instruction_body(kind),
        "sig": {**TEXT, "description": "base64url ECDSA P-256 r||s over the canonical "
                                        "JSON (RFC 8785) of every other field"},
    }, closed=True)
    if not signed:
        del schema["properties"]["sig"]
        schema["required"].remove("sig")
    return schema


def _request(schema: Schema, description: str) -> dict:
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/json": {"schema": schema}}}}


def signed(kind: str) -> dict:
    """`openapi_extra` of a route whose body is one signed `kind` instruction."""
    return {INSTRUCTION: kind, **_request(envelope(kind), f"A `{kind}` instruction, signed.")}


def signed_batch(field: str, kind: str) -> dict:
    """`openapi_extra` of a route whose body lists signed `kind` instructions under `field`."""
    return {INSTRUCTION: kind, **_request(
        obj({field: {**array(envelope(kind)), "minItems": 1}}, closed=True),
        f"`{field}`: `{kind}` instructions, each signed, each answered in its place.")}


def sealed_batch(field: str, kind: str) -> dict:
    """`openapi_extra` of a route whose body lists `kind` instructions under `field`, signed
    together by one signature over their digests (rail_protocol/batches.py)."""
    return {INSTRUCTION: kind, **_request(
        obj({field: {**array(envelope(kind, signed=False)), "minItems": 1},
             "signer": {**TEXT, "description": "the signing key's id, every item's signer"},
             "sig": {**TEXT, "description": "base64url ECDSA P-256 r||s over the canonical "
                                            "JSON of {\"batch\": [each item's SHA-256, "
                                            "hex]}"}}, closed=True),
        f"`{field}`: `{kind}` instructions, signed together, each answered in its place.")}


def plain(schema: Schema, description: str = "") -> dict:
    """`openapi_extra` of a route whose body is plain JSON (an operator's request)."""
    return _request(schema, description or "JSON")


# --- answers --------------------------------------------------------------------------------

def answers(schema: Schema, status: int = 200, media: str = "application/json",
            extra: dict | None = None) -> dict:
    """`openapi_extra` naming the route's success answer (merge with `signed`/`plain`)."""
    return {**(extra or {}), "responses": {str(status): {
        "description": "Success", "content": {media: {"schema": schema}}}}}


def answers_many(*answers_: tuple[int, Schema]) -> dict:
    return {"responses": {str(status): {"description": "Success", "content": {
        "application/json": {"schema": schema}}} for status, schema in answers_}}


def both(*parts: dict) -> dict:
    """Several `openapi_extra` parts of one route, merged (responses side by side)."""
    merged: dict = {}
    for part in parts:
        for key, value in part.items():
            if key == "responses":
                merged.setdefault("responses", {}).update(value)
            else:
                merged[key] = value
    return merged


# --- refusals --------------------------------------------------------------------------------

def _codes_by_status() -> dict[int, list[str]]:
    by_status: dict[int, list[str]] = {}
    for code, (status, _meaning) in CODES.items():
        by_status.setdefault(status, []).append(code)
    return by_status


def error_schema(codes: list[str]) -> Schema:
    return obj({"error": obj({"code": one_of(*codes), "message": {"type": "string"}})})


# A read (GET) has no body: it can be refused for its credential (400 when a signed read is
# out of its time window), its query, a missing thing, the rate or an unavailable database,
# never for a body or a conflict.
_READ_STATUSES = {400, 401, 403, 404, 422, 429, 503}


def _error_responses(method: str) -> dict[str, dict]:
    responses = {}
    for status, codes in sorted(_codes_by_status().items()):
        if method == "get" and status not in _READ_STATUSES:
            continue
        described = "; ".join(f"`{c}`: {CODES[c][1]}" for c in codes)
        responses[str(status)] = {"description": described, "content": {
            "application/json": {"schema": error_schema(codes)}}}
    return responses


def _tidy(value: Any) -> Any:
    """FastAPI's models hold bounds as floats (`1.0`) and keep empty `required` lists: an
    integer's bounds go back to integers, empty lists out."""
    if isinstance(value, dict):
        return {k: (int(v) if k in ("minimum", "maximum") and isinstance(v, float)
                    and v.is_integer() else _tidy(v))
                for k, v in value.items() if not (k == "required" and v == [])}
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def describe_errors(app: FastAPI) -> None:
    """Make `app.openapi()` list the typed error answer under every status a route can
    refuse with (and drop FastAPI's own validation error shape, which the rail never
    sends: its 422 is `invalid_field`)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version,
                                   description=app.description, routes=app.routes)
            for operations in document.get("paths", {}).values():
                for method, operation in operations.items():
                    operation["responses"] = {
                        **{status: answer for status, answer in
                           operation.get("responses", {}).items() if status.startswith("2")},
                        **_error_responses(method)}
            schemas = document.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            if "components" in document and not schemas:
                document["components"].pop("schemas", None)
            app.openapi_schema = _tidy(document)
        return app.openapi_schema

    app.openapi = openapi
