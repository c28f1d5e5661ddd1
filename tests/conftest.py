"""Shared fixtures: throwaway PostgreSQL databases, Redis, keys, and a running central.

PostgreSQL and Redis are real servers (127.0.0.1 by default; YUANRAIL_TEST_PG and
YUANRAIL_TEST_REDIS override). Each test module gets databases of its own, made fresh and
dropped afterwards, so tests never see each other's money."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from central.app import create_app as create_central_app
from central.client import CentralClient
from central.config import CentralSettings
from rail_protocol.keys import SigningKey

PG_ADMIN_URL = os.environ.get("YUANRAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("YUANRAIL_TEST_REDIS", "redis://127.0.0.1:6379/0")
OPERATOR_TOKEN = "test-operator-token-0001"
ARTIFACTS = Path(os.environ.get("YUANRAIL_TEST_ARTIFACTS", "test-artifacts"))


def _async_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_databases():
    """Make fresh PostgreSQL databases on demand; drop them all at the end."""
    made: list[str] = []

    def make() -> str:
        name = f"yr_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return _async_url(name)

    yield make
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_databases) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return pg_databases()


@pytest.fixture
def central_settings(pg_url, tmp_path) -> CentralSettings:
    return CentralSettings(database_url=pg_url, operator_token=OPERATOR_TOKEN,
                           key_file=tmp_path / "central.key", db_pool_size=5)


@pytest.fixture
async def central_app(central_settings):
    """Central's ASGI app, started (migrated) on a fresh database."""
    app = create_central_app(central_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def central_client(central_app):
    """An operator's client of central, in-process over ASGI."""
    client = CentralClient("http://central.test", operator_token=OPERATOR_TOKEN,
                           transport=httpx.ASGITransport(app=central_app))
    yield client
    await client.aclose()


@pytest.fixture
def bank_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
