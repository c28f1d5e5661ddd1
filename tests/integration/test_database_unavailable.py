"""When a service cannot get to its database (no pooled connection free in time, or the
server gone), the caller gets a typed 503 it can retry, never a 500."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from rail_service.db import make_engine
from rail_service.http import install_error_handlers

pytestmark = pytest.mark.integration


def _app(engine) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/count")
    async def count() -> dict:
        async with engine.connect() as conn:
            return {"one": (await conn.execute(sa.text("SELECT 1"))).scalar_one()}

    return app


async def _get(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc.test") as client:
        return await client.get("/count")


async def test_a_request_that_finds_the_pool_exhausted_gets_a_retryable_503(pg_url):
    engine = make_engine(pg_url, pool_size=1, pool_timeout_s=0.2)
    app = _app(engine)
    try:
        assert (await _get(app)).json() == {"one": 1}
        held = [await engine.connect(), await engine.connect()]   # the pool and its overflow
        try:
            response = await _get(app)
        finally:
            for conn in held:
                await conn.close()
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "service_unavailable"
        assert response.headers["retry-after"] == "1"
        assert (await _get(app)).status_code == 200   # capacity back: served again
    finally:
        await engine.dispose()


async def test_a_database_that_refuses_connections_gives_a_503_not_a_500():
    engine = make_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    try:
        response = await _get(_app(engine))
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
    finally:
        await engine.dispose()
