"""The HTTP edge every service shares: strict JSON bodies, typed errors, operator auth.

Bodies are read as bytes and parsed by the rail's own strict parser (no floats, bounded
size), not coerced by a model: `5.0` must be refused as an amount, never read as 5."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

import asyncpg
import orjson
import sqlalchemy.exc
from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from rail_protocol.canonical import MAX_BODY_BYTES, check_text, parse_json
from rail_protocol.errors import RailError
from rail_service.guesses import (LIMIT, GUESS_CODES, WrongGuesses, carries_credential,
                                  client_address)
from rail_service.openapi import describe_errors

log = logging.getLogger("yuanrail.http")


class JSON(Response):
    """orjson responses: fast, and integers stay integers."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, code: str, message: str) -> JSON:
    return JSON({"error": {"code": code, "message": message}}, status_code=status)


class RefuseControlCharacters:
    """An ASGI edge that refuses a path or query holding a control character (a NUL in an
    id would reach PostgreSQL, which refuses it with a server error) or a query longer than
    a read needs, before any route runs."""

    MAX_QUERY_BYTES = 2048

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"")
            problem = None
            if len(query) > self.MAX_QUERY_BYTES:
                problem = f"the query is longer than {self.MAX_QUERY_BYTES} bytes"
            else:
                try:
                    raw_path = scope.get("raw_path")
                    check_text(unquote_to_bytes(raw_path).decode("utf-8")
                               if raw_path is not None else scope["path"])
                    check_text(unquote_to_bytes(query).decode("utf-8"))
                except (RailError, UnicodeDecodeError):
                    problem = "the path or query holds a control character or is not UTF-8"
            if problem is not None:
                await error_response(422, "invalid_field", problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RefuseGuessers:
    """An ASGI edge that refuses a credential-bearing request from an address that has
    used up its wrong credentials (rail_service/guesses.py), before any route runs."""

    def __init__(self, app, guesses: WrongGuesses) -> None:
        self.app, self.guesses = app, guesses

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.guesses.watching() and carries_credential(scope):
            try:
                self.guesses.check(client_address(scope))
            except RailError as refusal:
                await JSON(refusal.to_dict(), status_code=refusal.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI, *, wrong_tries_per_address: int = LIMIT) -> None:
    """Map every failure to a typed JSON error (`error_answer`); an unexpected one is logged,
    never leaked. The OpenAPI document lists those errors under every route. A wrong
    credential is counted against its address, and an address with too many is refused
    before any route runs (rail_service/guesses.py)."""
    app.add_middleware(RefuseControlCharacters)
    app.state.wrong_guesses = guesses = WrongGuesses(wrong_tries_per_address)
    app.add_middleware(RefuseGuessers, guesses=guesses)
    describe_errors(app)

    async def answer(request: Request, exc: Exception) -> JSON:
        if isinstance(exc, RailError) and exc.code in GUESS_CODES:
            guesses.count(client_address(request.scope))
        return error_answer(exc, request.method, request.url.path)

    for kind in (RailError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, answer)


def error_answer(exc: Exception, method: str, path: str) -> JSON:
    """The typed answer to what a route raised: a refusal as itself, FastAPI's validation
    and routing errors in the rail's shape, a database out of reach a retryable 503 (logged
    as a warning), anything else a 500 that says nothing of its cause (logged with its
    traceback). The one mapping, for the app's exception handlers and the hot edge
    (rail_service/hot_edge.py)."""
    if isinstance(exc, RailError):
        return JSON(exc.to_dict(), status_code=exc.status)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_field", f"{where}: {first.get('msg', 'invalid')}")
    if isinstance(exc, StarletteHTTPException):
        code = {404: "not_found", 405: "not_found"}.get(exc.status_code, "invalid_field")
        return error_response(exc.status_code, code, str(exc.detail))
    if is_database_unavailable(exc):
        log.warning("database unavailable on %s %s: %r", method, path, exc)
        response = JSON(RailError("service_unavailable").to_dict(), status_code=503)
        response.headers["retry-after"] = "1"
        return response
    log.error("unexpected error on %s %s", method, path, exc_info=exc)
    return error_response(500, "internal", "internal error; nothing was acknowledged")


def is_database_unavailable(exc: BaseException) -> bool:
    """No connection free in the pool in time, or none to be had (the server refuses, is
    full, or dropped it): the request did nothing it acknowledged, and a retry of the same
    instruction is safe (idempotency is the database's unique key)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        # The driver's error, which SQLAlchemy's asyncpg adapter wraps once more.
        exc = getattr(exc.orig, "__cause__", None) or exc.orig
    return isinstance(exc, (sqlalchemy.exc.TimeoutError, ConnectionRefusedError,
                            asyncpg.exceptions.TooManyConnectionsError,
                            asyncpg.exceptions.CannotConnectNowError,
                            asyncpg.exceptions.ConnectionDoesNotExistError))


async def read_json(request: Request, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """Read and strictly parse the body, refusing oversized ones before reading them."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise RailError("payload_too_large", f"body over {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RailError("payload_too_large", f"body over {max_bytes} bytes")
        chunks.append(chunk)
    if size == 0:
        raise RailError("malformed_json", "the body is empty")
    return parse_json(b"".join(chunks), max_bytes=max_bytes)


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str | None:
    """The operator's credential from `Authorization: Bearer <token>`."""
    if authorization and authorization.startswith("Bearer "):
        return authorization[len("Bearer "):].strip()
    return None
