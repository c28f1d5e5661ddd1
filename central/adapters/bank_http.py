"""Central's client of bank nodes: delivers message 2 of docs/interbank.md.

It says only what came back; whether that is an answer is the domain's to decide. Anything
but an HTTP 200 carrying a `result` object within the time limit (a transport error, a
timeout, a 5xx, a 4xx, a body that is not strict JSON) comes back as None: not an answer,
so the transfer stays prepared and is delivered again later."""

from __future__ import annotations

import asyncio
import logging

import httpx
import orjson

from rail_protocol.canonical import parse_json
from rail_protocol.envelope import Envelope
from rail_protocol.errors import RailError

log = logging.getLogger("yuanrail.central.banks")
CREDITS_PATH = "/v1/interbank/credits"


class BankNodes:
    """One HTTP client for all bank nodes, kept for the app's life. `transport` lets tests
    put stand-in banks in-process (httpx.ASGITransport)."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout_ms: int = 3_000) -> None:
        self.timeout_s = timeout_ms / 1000
        self.http = httpx.AsyncClient(
            transport=transport, timeout=self.timeout_s,
            headers={"content-type": "application/json"},
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def credit(self, base_url: str, env: Envelope) -> dict | None:
        """POST the credit envelope to the bank; its `result` statement, or None."""
        url = base_url.rstrip("/") + CREDITS_PATH
        try:
            # A total deadline: httpx's own timeouts are per phase (and absent in-process).
            async with asyncio.timeout(self.timeout_s):
                response = await self.http.post(url, content=orjson.dumps(env.to_dict()))
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            log.info("credit %s to %s: no answer (%r)", env.id, url, exc)
            return None
        except Exception:  # e.g. an in-process stand-in's own crash: still no answer
            log.warning("credit %s to %s: the call failed", env.id, url, exc_info=True)
            return None
        if response.status_code != 200:
            log.info("credit %s to %s: HTTP %s", env.id, url, response.status_code)
            return None
        try:
            data = parse_json(response.content)
        except RailError as exc:
            log.warning("credit %s to %s: unreadable answer (%s)", env.id, url, exc.code)
            return None
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, dict):
            log.warning("credit %s to %s: answer without a result object", env.id, url)
            return None
        return result
