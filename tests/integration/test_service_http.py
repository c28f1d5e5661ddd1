"""The client between the services (rail_service.service_http): over a real HTTP server on
loopback (aiohttp) it answers exactly as in-process (httpx's ASGI transport) does, and no
answer is always `Unreachable`, never a hang or a library's own exception."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn

from rail_protocol.errors import RailError
from rail_service.client import JSONClient, RemoteError
from rail_service.service_http import ServiceHTTP, Unreachable

ROOT = Path(__file__).resolve().parents[2]


async def echo_app(scope, receive, send) -> None:
    """Answers what it was sent; `/slow` first waits a second; `/refuse` is a typed 4xx;
    `/garbled` is a 502 that is not JSON."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/slow":
        await asyncio.sleep(1.0)
    status, content = 200, orjson.dumps({
        "method": scope["method"], "path": path,
        "query": scope["query_string"].decode(),
        "auth": dict(scope["headers"]).get(b"authorization", b"").decode(),
        "type": dict(scope["headers"]).get(b"content-type", b"").decode(),
        "body": body.decode()})
    if path == "/refuse":
        status, content = 409, orjson.dumps(
            {"error": {"code": "insufficient_funds", "message": "not enough"}})
    if path == "/garbled":
        status, content = 502, b"<html>bad gateway</html>"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": content})


@pytest.fixture
async def server_url():
    """The echo app served by uvicorn on a free loopback port, for this test only."""
    server = uvicorn.Server(uvicorn.Config(echo_app, host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


def both(url: str, **options) -> dict[str, ServiceHTTP]:
    return {"real sockets": ServiceHTTP(url, **options),
            "in-process": ServiceHTTP("http://stand-in", transport=httpx.ASGITransport(echo_app),
                                      **options)}


async def test_a_request_is_answered_alike_over_sockets_and_in_process(server_url):
    clients = both(server_url, timeout_s=3, headers={"content-type": "application/json"})
    replies = {}
    for name, client in clients.items():
        replies[name] = await client.request("POST", "/v1/echo", content=b'{"a":1}',
                                             params={"limit": 5},
                                             headers={"authorization": "Sig x"})
        await client.aclose()
    assert replies["real sockets"] == replies["in-process"]
    assert replies["real sockets"].status == 200
    assert orjson.loads(replies["real sockets"].content) == {
        "method": "POST", "path": "/v1/echo", "query": "limit=5", "auth": "Sig x",
        "type": "application/json", "body": '{"a":1}'}


async def test_connections_are_kept_and_reused_for_many_calls(server_url):
    client = ServiceHTTP(server_url, timeout_s=3)
    replies = await asyncio.gather(*(client.request("POST", f"/n{i}", content=b"x")
                                     for i in range(50)))
    assert [orjson.loads(r.content)["path"] for r in replies] == [f"/n{i}" for i in range(50)]
    await client.aclose()


async def test_an_answer_later_than_the_time_limit_is_unreachable(server_url):
    for client in both(server_url, timeout_s=0.2).values():
        with pytest.raises(Unreachable):
            await client.request("POST", "/slow", content=b"{}")
        await client.aclose()


async def test_nobody_listening_is_unreachable():
    with socket.socket() as s:   # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ServiceHTTP(f"http://127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(Unreachable):
        await client.request("POST", "/v1/transfers/batch", content=b"{}")
    await client.aclose()


async def test_the_json_client_reads_typed_refusals_and_garbage_over_sockets(server_url):
    async with JSONClient(server_url) as client:
        assert (await client.request("POST", "/ok", {"b": 2}))["body"] == '{"b":2}'
        with pytest.raises(RemoteError) as refused:
            await client.request("POST", "/refuse", {})
        assert refused.value.code == "insufficient_funds"
        with pytest.raises(RailError) as garbled:
            await client.request("POST", "/garbled", {})
        assert garbled.value.code == "upstream_unavailable"
    async with JSONClient("http://127.0.0.1:9") as nobody:   # the discard port: closed
        with pytest.raises(RailError) as unreachable:
            await nobody.request("GET", "/v1/health")
        assert unreachable.value.code == "upstream_unavailable"


def test_the_client_benchmark_runs_and_prints_both_figures():
    """A smoke run of `loadtests/bench_service_http.py` (its real run is longer)."""
    done = subprocess.run([sys.executable, "loadtests/bench_service_http.py", "--calls", "80",
                           "--rounds", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    figures = dict(re.findall(r"^  (httpx\.AsyncClient|ServiceHTTP \(aiohttp\))\s+(\d+) us$",
                              done.stdout, re.MULTILINE))
    assert set(figures) == {"httpx.AsyncClient", "ServiceHTTP (aiohttp)"}, done.stdout
    assert all(int(us) > 0 for us in figures.values())
