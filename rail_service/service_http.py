"""Calls between the rail's own services: bank A's message 1s to central, central's message 2s
to bank B, and the JSON clients' requests.

Over real sockets this is aiohttp (its HTTP parser is C): a POST of a batch costs the caller
about 0.17 ms of CPU against 0.86 ms through httpx's client and connection pool on the
development machine (`python loadtests/bench_service_http.py`), and every interbank batch
makes two such calls. Given an httpx transport it is httpx: tests put the services in
one process with `httpx.ASGITransport`, and a few callers want httpx's own options. Either
way the caller sees the same `Reply`, or `Unreachable` when no answer came."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from rail_service.metrics import CallTimes

# Idle connections are dropped before the peer's own keep-alive (uvicorn's is 5 s) can close
# them under a request: a POST sent on a connection the server has just closed gets no answer.
KEEPALIVE_S = 4.0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content: bytes


class Unreachable(Exception):
    """No answer: the connection failed or was cut, or the time limit passed. The request
    may or may not have reached the other side; the rail's messages are safe to repeat."""


class ServiceHTTP:
    """One client (its own pool of connections) for calls to other services. `base_url` is
    prefixed to relative paths; `headers` go with every request."""

    def __init__(self, base_url: str = "", *, timeout_s: float,
                 headers: dict[str, str] | None = None, max_connections: int = 100,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self.max_connections = max_connections
        self._transport = transport
        self._httpx: httpx.AsyncClient | None = None
        self._session: aiohttp.ClientSession | None = None   # made in the running loop
        self.times = CallTimes()   # for the dashboards' stages

    def stats(self) -> dict[str, int]:
        """Calls made, those without an answer, and their time (`CallTimes.stats`)."""
        return self.times.stats()

    async def request(self, method: str, url: str, *, content: bytes | None = None,
                      params: dict[str, Any] | None = None,
                      headers: dict[str, str] | None = None) -> Reply:
        """Send one request and read the whole answer, within `timeout_s` in all."""
        if not url.startswith(("http://", "https://")):
            url = self.base_url + url
        if headers:
            headers = {**self.headers, **headers}
        else:
            headers = self.headers
        with self.times.timing():
            try:
                if self._transport is not None:
                    return await self._via_httpx(method, url, content, params, headers)
                return await self._via_aiohttp(method, url, content, params, headers)
            except Unreachable:
                self.times.unreachable += 1
                raise

    async def _via_aiohttp(self, method: str, url: str, content: bytes | None,
                           params: dict[str, Any] | None, headers: dict[str, str]) -> Reply:
        session = self._session
        if session is None:
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections,
                                               keepalive_timeout=KEEPALIVE_S),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        try:
            async with session.request(method, url, data=content, params=params,
                                       headers=headers) as response:
                return Reply(response.status, await response.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise Unreachable(f"{method} {url}: {exc!r}") from None

    async def _via_httpx(self, method: str, url: str, content: bytes | None,
                         params: dict[str, Any] | None, headers: dict[str, str]) -> Reply:
        if self._httpx is None:
            self._httpx = httpx.AsyncClient(transport=self._transport, timeout=self.timeout_s)
        try:
            # A total deadline, as aiohttp's: httpx's own timeouts are per phase.
            async with asyncio.timeout(self.timeout_s):
                response = await self._httpx.request(method, url, content=content,
                                                     params=params, headers=headers)
        except (httpx.TransportError, asyncio.TimeoutError, OSError) as exc:
            raise Unreachable(f"{method} {url}: {exc!r}") from None
        return Reply(response.status_code, response.content)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._httpx is not None:
            await self._httpx.aclose()
            self._httpx = None
