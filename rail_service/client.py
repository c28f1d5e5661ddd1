"""A small HTTP client base: JSON in and out, typed errors back as `RailError`."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from rail_protocol.errors import CODES, RailError


class RemoteError(RailError):
    """A typed refusal from another party, carrying its HTTP status."""


class JSONClient:
    def __init__(self, base_url: str, *, operator_token: str | None = None,
                 timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None):
        headers = {"content-type": "application/json"}
        if operator_token:
            headers["authorization"] = f"Bearer {operator_token}"
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers,
                                      timeout=timeout_s, transport=transport)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        content = None if body is None else orjson.dumps(body)
        return await self.request_bytes(method, path, content, **params)

    async def request_bytes(self, method: str, path: str, content: bytes | None,
                            **params: Any) -> Any:
        """Send exactly these bytes (a retry of a stored request, or a test of the edge)."""
        try:
            response = await self.http.request(method, path, content=content,
                                               params=params or None)
        except httpx.TransportError as exc:
            raise RailError("upstream_unavailable", f"{self.http.base_url}: {exc!r}") from None
        return self._decode(response)

    def _decode(self, response: httpx.Response) -> Any:
        try:
            data = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            raise RailError("upstream_unavailable",
                            f"HTTP {response.status_code}: not JSON") from None
        if response.status_code >= 400:
            error = (data or {}).get("error", {}) if isinstance(data, dict) else {}
            code = error.get("code")
            if code not in CODES:
                raise RailError("upstream_unavailable",
                                f"HTTP {response.status_code}: {error or response.text[:200]}")
            raise RemoteError(code, error.get("message"))
        return data
