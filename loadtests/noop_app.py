"""The baseline endpoint: a FastAPI app whose POST /v1/noop reads the body and answers a
small JSON object, doing nothing else. Served by uvicorn exactly as the bank nodes are
(same worker count, same flags), its requests/s under the same Locust settings is the
ceiling the rail's HTTP plumbing sits under on this machine.

    uvicorn --factory loadtests.noop_app:create_app   (or by path: see yuanrail loadtest)"""

from __future__ import annotations

from fastapi import FastAPI, Request

from rail_service.http import JSON


def create_app() -> FastAPI:
    app = FastAPI(title="no-op baseline", default_response_class=JSON)

    @app.get("/v1/health")
    async def health() -> dict:
        """Liveness."""
        return {"status": "ok"}

    @app.post("/v1/noop")
    async def noop(request: Request) -> dict:
        """Read the body; do nothing with it."""
        await request.body()
        return {"status": "ok"}

    return app
