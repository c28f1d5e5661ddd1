"""An in-process network: one httpx transport that routes each host to its ASGI app, so
central and several bank nodes can call each other in a test without sockets."""

from __future__ import annotations

import httpx


class AsgiNetwork(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}
        self.down: set[str] = set()

    def add(self, host: str, app) -> str:
        self.apps[host] = httpx.ASGITransport(app=app)
        return f"http://{host}"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down or host not in self.apps:
            raise httpx.ConnectError(f"{host} is unreachable", request=request)
        return await self.apps[host].handle_async_request(request)
