"""Bootstrap: the one place central is wired together from its settings."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from central.api import router
from central.config import CentralSettings
from central.services import Central
from rail_service.db import make_engine
from rail_service.http import JSON, install_error_handlers
from rail_service.keyfile import load_or_create_key


def create_app(settings: CentralSettings | None = None) -> FastAPI:
    settings = settings or CentralSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        central = Central(engine, load_or_create_key(settings.key_file), settings.operator_token)
        await central.start()
        app.state.central = central
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title="yuanrail central", version="0.1.0", lifespan=lifespan,
                  default_response_class=JSON)
    install_error_handlers(app)
    app.include_router(router)
    return app
