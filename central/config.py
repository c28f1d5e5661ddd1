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

    @model_validator(mode="after")
    def _no_default_secrets_outside_development(self) -> CentralSettings:
        if self.environment != "development" and self.operator_token == DEV_OPERATOR_TOKEN:
            raise ValueError("set YUANRAIL_CENTRAL_OPERATOR_TOKEN outside development")
        if len(self.operator_token) < 16:
            raise ValueError("the operator token must be at least 16 characters")
        return self
