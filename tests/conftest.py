"""Shared fixtures: throwaway PostgreSQL databases, Redis, keys, and a running central.

PostgreSQL and Redis are real servers (127.0.0.1 by default; YUANRAIL_TEST_PG and
YUANRAIL_TEST_REDIS override). Each test module gets databases of its own, made fresh and
dropped afterwards, so tests never see each other's money."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from central.app import create_app as create_central_app
from central.client import CentralClient
from central.config import CentralSettings
from rail_protocol.keys import SigningKey
from yuanrail.loadtest_command import ThrowawayDatabases

PG_ADMIN_URL = os.environ.get("YUANRAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("YUANRAIL_TEST_REDIS", "redis://127.0.0.1:6379/0")
OPERATOR_TOKEN = "test-operator-token-0001"
ARTIFACTS = Path(os.environ.get("YUANRAIL_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture(scope="session")
def pg_databases():
    """Make fresh PostgreSQL databases on demand; drop them all at the end."""
    databases = ThrowawayDatabases(PG_ADMIN_URL, "yr")
    yield databases
    databases.drop()


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
