"""Central's settings, from YUANRAIL_CENTRAL_* environment variables with local defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_OPERATOR_TOKEN = "dev-central-operator"


class CentralSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YUANRAIL_CENTRAL_")

    environment: str = "development"
    database_url: str = "sqlite+aiosqlite:///var/central.sqlite"
    operator_token: str = DEV_OPERATOR_TOKEN
    key_file: Path = Path("var/central.key")
    db_pool_size: int = 10
    # Interbank delivery (docs/interbank.md): the deadline of one call to a bank node, and
    # the worker that re-delivers prepared transfers (off only for special tests and tools).
    bank_timeout_ms: int = 3_000
    transfer_worker: bool = True
    transfer_worker_interval_ms: int = 200
    transfer_worker_batch_size: int = 50
    # The tamper-evident registry (docs/registry.md): the sealer chains committed journal
    # entries (at most `seal_batch_size` per transaction) and a checkpoint is signed every
    # `checkpoint_interval_ms`. `registry_worker` off only for special tests and tools.
    registry_worker: bool = True
    checkpoint_interval_ms: int = 5_000
    seal_batch_size: int = 1_000
    # Wrong operator tokens an address may send per 5 minutes before its credential-bearing
    # requests are refused until the window ends (rail_service/guesses.py); 0 = off.
    wrong_tries_per_address: int = 20

    @model_validator(mode="after")
    def _no_default_secrets_outside_development(self) -> CentralSettings:
        if self.environment != "development" and self.operator_token == DEV_OPERATOR_TOKEN:
            raise ValueError("set YUANRAIL_CENTRAL_OPERATOR_TOKEN outside development")
        if len(self.operator_token) < 16:
            raise ValueError("the operator token must be at least 16 characters")
        if not 100 <= self.bank_timeout_ms <= 60_000:
            raise ValueError("bank_timeout_ms must be 100-60000")
        if not 10 <= self.transfer_worker_interval_ms <= 60_000:
            raise ValueError("transfer_worker_interval_ms must be 10-60000")
        if not 1 <= self.transfer_worker_batch_size <= 1_000:
            raise ValueError("transfer_worker_batch_size must be 1-1000")
        if not 100 <= self.checkpoint_interval_ms <= 3_600_000:
            raise ValueError("checkpoint_interval_ms must be 100-3600000")
        if not 1 <= self.seal_batch_size <= 10_000:
            raise ValueError("seal_batch_size must be 1-10000")
        return self
