"""Bootstrap: the one place central is wired together from its settings."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from central.api import hot_routes, router
from central.config import CentralSettings
from central.dashboard import CentralDashboard
from central.registry import Registry
from central.services import Central
from rail_service import dashboard as dashboard_web
from rail_service.background import Background, Loop
from rail_service.db import make_engine
from rail_service.hot_edge import HotRoutes
from rail_service.http import JSON, install_error_handlers
from rail_service.keyfile import load_or_create_key


def create_app(settings: CentralSettings | None = None, *,
               bank_transport: httpx.AsyncBaseTransport | None = None) -> HotRoutes:
    """Central's FastAPI app behind its hot edge (rail_service/hot_edge.py: the transfers
    served without the middleware stack; it stands in for the app otherwise, `.state`...).
    `bank_transport` replaces the network for central's calls to bank nodes (tests put
    stand-in banks in-process with httpx.ASGITransport); by default it is real HTTP."""
    settings = settings or CentralSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        central = Central(engine, load_or_create_key(settings.key_file), settings.operator_token,
                          bank_transport=bank_transport, bank_timeout_ms=settings.bank_timeout_ms,
                          worker_interval_ms=settings.transfer_worker_interval_ms,
                          worker_batch_size=settings.transfer_worker_batch_size)
        await central.start()
        app.state.central = central
        app.state.dashboard = CentralDashboard(central)
        app.state.registry = registry = Registry(
            engine, central.store, central.key,
            checkpoint_interval_ms=settings.checkpoint_interval_ms,
            seal_batch_size=settings.seal_batch_size)
        worker = (asyncio.create_task(central.transfers.run_worker(), name="transfer-worker")
                  if settings.transfer_worker else None)
        # The sealer and checkpoints run in one process of central (an advisory lock leads).
        background = Background(engine, "yuanrail:central:registry", [
            Loop("registry", registry.work, busy_s=0.2,
                 idle_s=min(1.0, settings.checkpoint_interval_ms / 1000))])
        if settings.registry_worker:
            background.start()
        try:
            yield
        finally:
            await background.aclose()
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await central.close()
            await engine.dispose()

    app = FastAPI(title="yuanrail central", version="0.1.0", lifespan=lifespan,
                  default_response_class=JSON)
    install_error_handlers(app, wrong_tries_per_address=settings.wrong_tries_per_address)
    app.include_router(router)
    dashboard_web.install(app, "central", settings.operator_token)
    return HotRoutes(app, hot_routes())
