"""A bank node's settings, from YUANRAIL_BANK_* environment variables with local defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_OPERATOR_TOKEN = "dev-bank-operator-token"


class BankSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YUANRAIL_BANK_")

    environment: str = "development"
    bank_id: str = "yangtze"
    name: str = "Yangtze Commercial Bank"
    database_url: str = "sqlite+aiosqlite:///var/bank-yangtze.sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = ""            # default: "yr:<bank_id>"
    operator_token: str = DEV_OPERATOR_TOKEN
    key_file: Path = Path("var/bank-yangtze.key")
    public_url: str = "http://127.0.0.1:8701"   # where central reaches this node
    central_url: str = "http://127.0.0.1:8700"
    # At start, check that central certified this node's key (central's operator enrols
    # the bank; the bank holds no credential of central's).
    connect_at_start: bool = True
    # The vault: refill from central below `vault_low_fen` up to `vault_target_fen`; return
    # the surplus above `vault_high_fen` down to the target.
    vault_low_fen: int = 10_000_000
    vault_target_fen: int = 50_000_000
    vault_high_fen: int = 200_000_000
    no_pin_threshold_fen: int = 100_000  # ¥1,000: a payment code above it needs the PIN
    rate_limit_per_s: int = 50         # signed requests per wallet per second; 0 = off
    # Wrong operator tokens, PINs and PIN guard ids an address may send per 5 minutes before
    # its credential-bearing requests are refused until the window ends
    # (rail_service/guesses.py); 0 = off.
    wrong_tries_per_address: int = 20
    run_workers: bool = True           # the outbox and vault workers
    db_pool_size: int = 10
    # Central's signed checkpoints (docs/registry.md): fetched and compared with the books
    # every `checkpoint_check_s`; a difference unchanged for `checkpoint_confirm_s` alarms.
    checkpoint_check_s: float = 5.0
    checkpoint_confirm_s: float = 15.0
    # Hosts a merchant's webhook may name although they are not public addresses (the
    # demo's and tests' receivers on 127.0.0.1); every other host must resolve to public
    # addresses only (bank/webhook_targets.py). JSON in the environment: '["127.0.0.1"]'.
    webhook_allowed_hosts: list[str] = []
    # The rail's issuer table for short payment codes (rail_protocol/short_code.py): each
    # bank's two-digit number, the same table on every node, like a card scheme's BIN table.
    # This bank issues short codes when it is in the table. JSON: '{"11": "yangtze"}'.
    code_issuers: dict[str, str] = {}
    # The shortest life of a hold or voucher (its deadline at least this far ahead); the
    # demo shortens it to show an expiry within its tour.
    hold_min_life_ms: int = 60_000

    @property
    def code_issuer(self) -> str | None:
        """This bank's number in the issuer table, if it issues short codes."""
        return next((n for n, bank in self.code_issuers.items() if bank == self.bank_id), None)

    @model_validator(mode="after")
    def _check(self) -> BankSettings:
        if self.environment != "development" and self.operator_token == DEV_OPERATOR_TOKEN:
            raise ValueError("set YUANRAIL_BANK_OPERATOR_TOKEN outside development")
        if not 0 <= self.vault_low_fen <= self.vault_target_fen <= self.vault_high_fen:
            raise ValueError("vault thresholds must satisfy low <= target <= high")
        if not 0.1 <= self.checkpoint_check_s <= 3600 or not 0 <= self.checkpoint_confirm_s:
            raise ValueError("checkpoint_check_s must be 0.1-3600, checkpoint_confirm_s >= 0")
        if any(len(n) != 2 or not n.isdigit() for n in self.code_issuers) \
                or len(set(self.code_issuers.values())) != len(self.code_issuers):
            raise ValueError("code_issuers maps two-digit numbers to distinct bank ids")
        if not 1_000 <= self.hold_min_life_ms <= 24 * 3600 * 1000:
            raise ValueError("hold_min_life_ms must be 1 s to 1 day")
        if not self.redis_prefix:
            self.redis_prefix = f"yr:{self.bank_id}"
        return self
