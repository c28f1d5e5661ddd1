"""Central's client of bank nodes: delivers message 2 of docs/interbank.md, many credits to
one call (`POST /v1/interbank/credits/sealed-batch`, one signature for all; or
`/v1/interbank/credits/batch`, each signed, to a node without the sealed route).

It says only what came back; whether that is an answer is the domain's to decide. Anything
but an HTTP 200 carrying one item per credit within the time limit (a transport error, a
timeout, a 5xx, a 4xx, a body that is not strict JSON) comes back as None for the whole
call, and an item that is not a `result` object as None for its credit: not an answer, so
that transfer stays prepared and is delivered again later."""

from __future__ import annotations

import logging

import httpx
import orjson

from rail_protocol.batches import (
    MAX_BODY_BYTES,
    MissingRoutes,
    batch_results,
    open_results,
    seal_batch,
)
from rail_protocol.canonical import parse_json
from rail_protocol.envelope import Envelope, sign
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey, SigningKey
from rail_protocol.request_auth import sign_read
from rail_service.service_http import ServiceHTTP, Unreachable

log = logging.getLogger("yuanrail.central.banks")
BATCH_PATH = "/v1/interbank/credits/batch"
SEALED_PATH = "/v1/interbank/credits/sealed-batch"
FINDING_PATH = "/v1/registry/finding"
FINDING_TIMEOUT_S = 1.0   # the dashboard waits no longer for a bank's finding


class BankNodes:
    """One HTTP client for all bank nodes, kept for the app's life. `transport` lets tests
    put stand-in banks in-process (httpx.ASGITransport)."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout_ms: int = 3_000) -> None:
        self.timeout_s = timeout_ms / 1000
        # The message 2s (the hot path, counted in the dashboard's `stages`), and apart from
        # them the dashboard's reads of the banks' findings.
        self.calls = ServiceHTTP(timeout_s=self.timeout_s, transport=transport,
                                 headers={"content-type": "application/json"})
        self.reads = ServiceHTTP(timeout_s=FINDING_TIMEOUT_S, transport=transport)
        self.without_sealed_route = MissingRoutes()   # bank URLs: the sealed route was a 404

    async def aclose(self) -> None:
        await self.calls.aclose()
        await self.reads.aclose()

    async def credits(self, base_url: str, envs: list[Envelope], key: SigningKey,
                      bank_key: PublicKey) -> tuple[list[dict | None] | None, bool]:
        """POST a batch of credits (at most MAX_ITEMS, made with `envelope.unsigned` for
        central's `key`) to the bank: for each, in order, its `result` statement, or None
        where the bank answered that one with an error; None for the whole call when
        nothing readable came back. Sent as a sealed batch (one signature,
        rail_protocol/batches.py), whose answer's one signature by `bank_key` is checked
        here; to a node without the sealed route (a 404: remembered for SEALED_RECHECK_S,
        then asked again) or that refuses the sealed batch whole (another 4xx), each credit
        is signed and the batch route used. The second value says whether the statements came
        sealed, their signature checked already."""
        url = base_url.rstrip("/")
        label = f"{len(envs)} credit(s) ({envs[0].id}...) to {url}"
        if not self.without_sealed_route.missing(url):
            body = orjson.dumps(seal_batch(key, "credits", envs))
            reply = await self._post(url + SEALED_PATH, body, label)
            if reply is None:
                return None, True
            if reply.status == 200:
                data = self._read(reply, label)
                results = None if data is None else open_results(data, bank_key, len(envs))
                if data is not None and results is None:
                    log.warning("%s: the sealed answer is not the bank's, or not one per "
                                "credit", label)
                return results, True
            if reply.status == 404:
                self.without_sealed_route.mark(url)
            elif reply.status >= 500:
                log.info("%s: HTTP %s", label, reply.status)
                return None, True
            else:
                log.warning("%s: the sealed batch was refused (HTTP %s); each signed instead",
                            label, reply.status)
        reply = await self._post(url + BATCH_PATH, orjson.dumps(
            {"credits": [sign(key, env).to_dict() for env in envs]}), label)
        if reply is None:
            return None, False
        if reply.status != 200:
            log.info("%s: HTTP %s", label, reply.status)
            return None, False
        data = self._read(reply, label)
        results = None if data is None else batch_results(data, len(envs))
        if data is not None and results is None:
            log.warning("%s: answer without one result per credit", label)
        return (None if results is None else [_result_of(item) for item in results]), False

    async def _post(self, url: str, body: bytes, label: str):
        """The reply, or None when none came (logged)."""
        try:
            return await self.calls.request("POST", url, content=body)
        except Unreachable as exc:
            log.info("%s: no answer (%s)", label, exc)
        except Exception:  # e.g. an in-process stand-in's own crash: still no answer
            log.warning("%s: the call failed", label, exc_info=True)
        return None

    @staticmethod
    def _read(reply, label: str) -> object | None:
        try:
            return parse_json(reply.content, max_bytes=MAX_BODY_BYTES)
        except RailError as exc:
            log.warning("%s: unreadable answer (%s)", label, exc.code)
            return None


    async def finding(self, base_url: str, key: SigningKey) -> dict | None:
        """The bank's latest checkpoint finding (a statement the bank signed), read with a
        read signed by central's `key`; None if the bank did not give one in time."""
        try:
            reply = await self.reads.request("GET", base_url.rstrip("/") + FINDING_PATH,
                                             headers={"authorization": sign_read(
                                                 key, "GET", FINDING_PATH)})
            if reply.status != 200:
                log.info("finding from %s: HTTP %s", base_url, reply.status)
                return None
            return parse_json(reply.content)
        except (Unreachable, RailError) as exc:
            log.info("finding from %s: no answer (%r)", base_url, exc)
            return None


def _result_of(item: object) -> dict | None:
    """One item of a batch answer: `{"result": {...}}` is B's statement; `{"error": ...}`
    (or anything else) is not an answer."""
    result = item.get("result") if isinstance(item, dict) else None
    return result if isinstance(result, dict) else None
