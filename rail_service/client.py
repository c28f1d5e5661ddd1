"""A small HTTP client base: JSON in and out, typed errors back as `RailError`."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from rail_protocol.errors import CODES, RailError
from rail_protocol.keys import SigningKey
from rail_protocol.request_auth import sign_read
from rail_service.service_http import ServiceHTTP, Unreachable


class RemoteError(RailError):
    """A typed refusal from another party, carrying its HTTP status."""


class JSONClient:
    def __init__(self, base_url: str, *, operator_token: str | None = None,
                 timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None):
        headers = {"content-type": "application/json"}
        if operator_token:
            headers["authorization"] = f"Bearer {operator_token}"
        self.calls = ServiceHTTP(base_url, timeout_s=timeout_s, headers=headers,
                                 transport=transport)
        # httpx's own client, for the few callers that want it (a QR image, tests).
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers,
                                      timeout=timeout_s, transport=transport)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.calls.aclose()
        await self.http.aclose()

    async def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        content = None if body is None else orjson.dumps(body)
        return await self.request_bytes(method, path, content, **params)

    async def request_bytes(self, method: str, path: str, content: bytes | None,
                            **params: Any) -> Any:
        """Send exactly these bytes (a retry of a stored request, or a test of the edge)."""
        return await self._call(method, path, content=content, params=params or None)

    async def signed_request(self, key: SigningKey, method: str, path: str) -> Any:
        """A request signed by `key` over its method and exact path (query included)."""
        return await self._call(method, path,
                                headers={"authorization": sign_read(key, method, path)})

    async def _call(self, method: str, path: str, **options: Any) -> Any:
        try:
            reply = await self.calls.request(method, path, **options)
        except Unreachable as exc:
            raise RailError("upstream_unavailable", str(exc)) from None
        return self._decode(reply.status, reply.content)

    def _decode(self, status: int, content: bytes) -> Any:
        try:
            data = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            raise RailError("upstream_unavailable", f"HTTP {status}: not JSON") from None
        if status >= 400:
            error = (data or {}).get("error", {}) if isinstance(data, dict) else {}
            code = error.get("code")
            if code not in CODES:
                text = content[:200].decode("utf-8", "replace")
                raise RailError("upstream_unavailable", f"HTTP {status}: {error or text}")
            raise RemoteError(code, error.get("message"))
        return data
