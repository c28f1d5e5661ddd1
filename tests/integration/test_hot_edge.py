"""The hot edge (rail_service/hot_edge.py) in front of a bank node and central, over real ASGI
calls on a running rail: the batched POSTs are served without the app's middleware and
answer exactly as the full app answers the same request (status, body, headers), refusals
and failures included; everything else reaches the full app unchanged."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest
import sqlalchemy.exc

from rail_protocol.batches import MAX_BODY_BYTES as MAX_BATCH_BODY_BYTES
from rail_protocol.canonical import MAX_BODY_BYTES
from rail_protocol.envelope import seal
from rail_protocol.instruction_types import CREATE_ORDER
from rail_protocol.money import yuan
from rail_service.hot_edge import HotRoutes
from tests.support import rail as support
from tests.support.rail import Rail, assert_refused

module_rail = support.module_rail   # the fixture: one rail for the module

pytestmark = pytest.mark.integration
BANK = "yangtze"
HOST = f"{BANK}.test"


def edge_of(rail: Rail, host: str = HOST) -> HotRoutes:
    """The app as served (what uvicorn would call): the edge, the FastAPI app behind it."""
    edge = rail.net.apps[host].app
    assert isinstance(edge, HotRoutes)
    return edge


async def post(app, path: str, content: bytes = b"", headers: dict | None = None,
               *, host: str = HOST) -> httpx.Response:
    """POST exactly these bytes to this ASGI app."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url=f"http://{host}") as http:
        return await http.post(path, content=content, headers=headers or {})


async def both_ways(rail: Rail, path: str, content: bytes = b"", headers: dict | None = None,
                    *, host: str = HOST) -> httpx.Response:
    """The same request through the edge and through the full app behind it: the answers are
    the same in every byte that matters (status, body, headers). The edge's, for more."""
    edge = edge_of(rail, host)
    served = await post(edge, path, content, headers, host=host)
    full = await post(edge.app, path, content, headers, host=host)
    assert (served.status_code, served.json()) == (full.status_code, full.json())
    assert dict(served.headers) == dict(full.headers)
    return served


class Recording:
    """An ASGI app that notes each request (method, path, query) that reaches it, then passes
    it to `app`; it has `app`'s state, as the edge's handlers need."""

    def __init__(self, app) -> None:
        self.app, self.state, self.seen = app, app.state, []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"], scope["query_string"]))
        await self.app(scope, receive, send)


# --- answers as the full app's ---------------------------------------------------------------

async def test_a_payment_is_answered_as_the_full_app_answers_it(module_rail):
    payer = await module_rail.funded_wallet(BANK, yuan(10))
    payee = await module_rail.open_wallet(BANK)
    env = module_rail.pay_envelope(payer, payee, yuan(3))
    first = await post(edge_of(module_rail), "/v1/payments", orjson.dumps(env.to_dict()))
    assert first.status_code == 200 and first.json()["status"] == "settled"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["content-length"] == str(len(first.content))
    # the same envelope again, through the edge and through the full app: a repeat, answered
    # with the first outcome
    again = await both_ways(module_rail, "/v1/payments", orjson.dumps(env.to_dict()))
    assert again.json() == {**first.json(), "repeated": True}
    assert await module_rail.balance(payee) == yuan(3)


async def test_an_order_is_created_with_a_201_either_way(module_rail):
    shop = await module_rail.open_wallet(BANK, kind="merchant", kyc_class=1)
    answers = []
    for app, reference in ((edge_of(module_rail), "edge-1"), (edge_of(module_rail).app, "app-1")):
        env = seal(shop.key, CREATE_ORDER, {"merchant_wallet": shop.wallet_id,
                                             "amount_fen": 1234, "reference": reference})
        answers.append(await post(app, "/v1/merchant/orders", orjson.dumps(env.to_dict())))
    served, full = answers
    assert served.status_code == full.status_code == 201
    assert served.json().keys() == full.json().keys()
    assert served.headers["content-type"] == full.headers["content-type"] == "application/json"
    assert (await module_rail.client(BANK).order(served.json()["order_id"]))["reference"] \
        == "edge-1"


async def test_a_typed_refusal_is_the_full_apps(module_rail):
    payer = await module_rail.funded_wallet(BANK, yuan(1))
    payee = await module_rail.open_wallet(BANK)
    env = module_rail.pay_envelope(payer, payee, 100).to_dict()
    env["body"]["amount_fen"] = 10_000    # not what the payer signed
    served = await both_ways(module_rail, "/v1/payments", orjson.dumps(env))
    assert_refused(served, 401, "bad_signature")
    assert await module_rail.balance(payer) == yuan(1)


# --- bodies: the same limits and refusals as `read_json` -------------------------------------

async def test_a_declared_oversized_body_is_refused_before_it_is_read(module_rail):
    response = await both_ways(module_rail, "/v1/payments", b"{}",
                               {"content-length": str(MAX_BODY_BYTES + 1)})
    assert_refused(response, 413, "payload_too_large")


async def test_an_undeclared_oversized_body_is_refused_as_it_comes(module_rail):
    async def chunks():   # no content-length: sent chunked
        for _ in range(MAX_BODY_BYTES // 4096 + 1):
            yield b" " * 4096

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge_of(module_rail)),
                                 base_url=f"http://{HOST}") as http:
        response = await http.post("/v1/payments", content=chunks())
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, "payload_too_large")


async def test_each_route_has_its_own_body_limit(module_rail):
    over_one = b" " * (MAX_BODY_BYTES + 1) + b"{}"
    assert_refused(await both_ways(module_rail, "/v1/payments", over_one),
                   413, "payload_too_large")
    # a batch may be larger: this one is read, and refused for what it says
    batch = await both_ways(module_rail, "/v1/interbank/credits/batch", over_one)
    assert batch.status_code != 413
    assert_refused(await both_ways(module_rail, "/v1/interbank/credits/batch",
                                   b" " * MAX_BATCH_BODY_BYTES + b"{}"),
                   413, "payload_too_large")


@pytest.mark.parametrize("path", ["/v1/payments", "/v1/merchant/orders",
                                  "/v1/merchant/charges", "/v1/interbank/credits/batch"])
async def test_an_empty_body_is_malformed_json(module_rail, path):
    assert_refused(await both_ways(module_rail, path, b""), 400, "malformed_json")


@pytest.mark.parametrize("content, status, code", [
    (b'{"amount_fen": 5.0}', 422, "float_not_allowed"),
    (b'{"id": "a", "id": "b"}', 400, "malformed_json"),
    (b'{"id": ', 400, "malformed_json"),
])
async def test_a_body_the_strict_parser_refuses_is_refused_alike(module_rail, content, status,
                                                                 code):
    assert_refused(await both_ways(module_rail, "/v1/payments", content), status, code)


# --- what the edge passes on -----------------------------------------------------------------

async def test_only_a_hot_post_without_a_query_is_served_by_the_edge(module_rail):
    payer = await module_rail.funded_wallet(BANK, yuan(10))
    payee = await module_rail.open_wallet(BANK)
    full = edge_of(module_rail).app
    recording = Recording(full)
    edge = HotRoutes(recording, edge_of(module_rail).hot_routes)
    body = orjson.dumps(module_rail.pay_envelope(payer, payee, 100).to_dict())

    assert (await post(edge, "/v1/payments", body)).json()["status"] == "settled"
    assert recording.seen == []
    again = await post(edge, "/v1/payments?again=1", body)   # a query: the full app's
    assert again.status_code == 200 and again.json()["status"] == "settled"
    # another path, however close: the full app's (which redirects to the one without "/")
    assert (await post(edge, "/v1/payments/", body)).status_code == 307
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge),
                                 base_url=f"http://{HOST}") as http:
        assert_refused(await http.get("/v1/payments"), 405, "not_found")
        assert_refused(await http.put("/v1/payments", content=body), 405, "not_found")
    assert recording.seen == [("POST", "/v1/payments", b"again=1"),
                              ("POST", "/v1/payments/", b""),
                              ("GET", "/v1/payments", b""), ("PUT", "/v1/payments", b"")]
    assert await module_rail.balance(payee) == 100   # the repeat moved nothing


async def test_a_query_with_a_control_character_is_refused_by_the_full_app(module_rail):
    payer = await module_rail.funded_wallet(BANK, yuan(10))
    payee = await module_rail.open_wallet(BANK)
    body = orjson.dumps(module_rail.pay_envelope(payer, payee, 100).to_dict())
    assert_refused(await post(edge_of(module_rail), "/v1/payments?memo=%00", body),
                   422, "invalid_field")
    assert await module_rail.balance(payer) == yuan(10)


async def test_the_edge_stands_in_for_the_app(module_rail):
    edge = edge_of(module_rail)
    assert edge.state is edge.app.state and edge.router is edge.app.router
    assert edge.openapi() == edge.app.openapi()
    documented = edge.openapi()["paths"]
    for path in edge.hot_routes:
        assert "post" in documented[path], path
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge),
                                 base_url=f"http://{HOST}") as http:
        assert (await http.get("/v1/health")).json() == {"status": "ok"}


async def test_central_serves_its_transfers_at_its_edge(module_rail):
    host = "central.test"
    edge = edge_of(module_rail, host)
    assert set(edge.hot_routes) == {"/v1/transfers", "/v1/transfers/batch",
                                    "/v1/transfers/sealed-batch"}
    assert_refused(await both_ways(module_rail, "/v1/transfers", b"", host=host),
                   400, "malformed_json")
    big = b" " * (MAX_BODY_BYTES + 1) + b"{}"
    assert_refused(await both_ways(module_rail, "/v1/transfers", big, host=host),
                   413, "payload_too_large")
    refused = await both_ways(module_rail, "/v1/transfers/batch", big, host=host)
    assert refused.status_code not in (413, 500)
    # and the interbank payments of the rail go through it
    payer = await module_rail.funded_wallet(BANK, yuan(10))
    payee = await module_rail.open_wallet("pearl")
    assert (await module_rail.pay(payer, payee, yuan(2)))["status"] == "settled"
    assert await module_rail.balance(payee) == yuan(2)


# --- failures: the app's own mapping ---------------------------------------------------------

async def test_an_unexpected_error_is_a_typed_500_and_logged(module_rail, monkeypatch, caplog):
    async def broken(_body):
        raise RuntimeError("secret detail of a bug")

    monkeypatch.setattr(edge_of(module_rail).state.payments, "pay", broken)
    with caplog.at_level(logging.ERROR, logger="yuanrail.http"):
        response = await post(edge_of(module_rail), "/v1/payments", b"{}")
    assert_refused(response, 500, "internal")
    assert response.json() == {"error": {"code": "internal", "message":
                                         "internal error; nothing was acknowledged"}}
    assert response.headers["content-type"] == "application/json"
    assert "secret" not in response.text and "Traceback" not in response.text
    [record] = [r for r in caplog.records if r.name == "yuanrail.http"]
    assert record.getMessage() == "unexpected error on POST /v1/payments"
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_a_database_out_of_reach_is_a_retryable_503(module_rail, monkeypatch):
    async def no_connection(_body):
        raise sqlalchemy.exc.TimeoutError("QueuePool limit reached")

    monkeypatch.setattr(edge_of(module_rail).state.charges, "charge_code", no_connection)
    response = await post(edge_of(module_rail), "/v1/merchant/charges", b"{}")
    assert_refused(response, 503, "service_unavailable")
    assert response.headers["retry-after"] == "1"
