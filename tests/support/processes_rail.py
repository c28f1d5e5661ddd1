"""The rail as REAL processes for kill tests: central and the bank nodes "yangtze" and
"pearl", each a uvicorn process on a free 127.0.0.1 port with a fresh PostgreSQL database of
its own, the banks on the real Redis under a prefix unique to the test.

Any process can be started with a crash point armed (`YUANRAIL_CRASH_AT`, see
`rail_service/crash.py`), killed from outside, and restarted on the same database, key file
and port, without the crash point:

    rail = start_process_rail(pg_databases, tmp_path, crash={"pearl": "bank.interbank_in..."})
    try:
        ...
        await rail.wait_dead("pearl", timeout_s=15)
        rail.restart("pearl")
    finally:
        rail.stop_all()

Use the `process_rail` fixture: it stops every process (and drops the Redis keys) when the
test ends, whatever happened. Logs go to `<tmp_path>/logs/<name>.log` (appended across
restarts, each start marked)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from rail_service.crash import CRASH_ENV
from tests.conftest import REDIS_URL
from yuanrail.enroll_command import Enrolment, enroll_banks
from yuanrail.processes import Service, free_port, wait_healthy

CENTRAL = "central"
BANK_NAMES = {"yangtze": "Yangtze Test Bank", "pearl": "Pearl River Test Bank"}
CENTRAL_TOKEN = "kill-test-central-operator-0001"
BANK_TOKENS = {bank_id: f"kill-test-{bank_id}-operator-0001" for bank_id in BANK_NAMES}
FACTORIES = {CENTRAL: "central.app:create_app", "yangtze": "bank.app:create_app",
             "pearl": "bank.app:create_app"}


@dataclass
class ProcessSpec:
    name: str
    factory: str
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class ProcessRail:
    directory: Path
    redis_prefix: str
    database_urls: dict[str, str]
    specs: dict[str, ProcessSpec] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    _all: list[Service] = field(default_factory=list)   # every process ever started

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def central_url(self) -> str:
        return self.specs[CENTRAL].url

    @property
    def bank_urls(self) -> dict[str, str]:
        return {b: self.specs[b].url for b in BANK_NAMES}

    def audit_banks(self) -> dict[str, tuple[str, str]]:
        """The `banks` argument of `yuanrail.audit.audit_rail`."""
        return {b: (url, BANK_TOKENS[b]) for b, url in self.bank_urls.items()}

    def enroll_banks(self) -> None:
        """Central's operator enrols both banks (their requests signed by their keys):
        once, after central first answers; the enrolment lives in central's database."""
        enroll_banks(self.central_url, CENTRAL_TOKEN, [
            Enrolment(bank_id, name, self.specs[bank_id].url,
                      Path(self.specs[bank_id].env["YUANRAIL_BANK_KEY_FILE"]))
            for bank_id, name in BANK_NAMES.items()])

    # --- processes -------------------------------------------------------------------

    def start(self, name: str, *, crash_at: str | None = None) -> Service:
        """Start `name` (not waiting for it); `crash_at` arms that crash point in it only."""
        current = self.services.get(name)
        if current is not None and current.process.poll() is None:
            raise RuntimeError(f"{name} is still running (pid {current.process.pid})")
        spec = self.specs[name]
        # The environment is built from scratch for the YUANRAIL_ part, so nothing armed in
        # the test runner's own environment leaks into a process that should not crash.
        env = {k: v for k, v in os.environ.items() if not k.startswith("YUANRAIL_")}
        env.update(spec.env)
        if crash_at is not None:
            env[CRASH_ENV] = crash_at
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            log.write(f"\n=== start {name} at {time.strftime('%H:%M:%S')} "
                      f"crash_at={crash_at} ===\n".encode())
        command = [sys.executable, "-m", "uvicorn", "--factory", spec.factory,
                   "--host", "127.0.0.1", "--port", str(spec.port), "--workers", "1",
                   "--no-access-log", "--log-level", "warning"]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        service = Service(name, spec.url, process, log_path)
        self.services[name] = service
        self._all.append(service)
        return service

    def wait_healthy(self, *names: str, timeout_s: float = 30) -> None:
        for name in names:
            wait_healthy(self.services[name], timeout_s=timeout_s)

    def alive(self, name: str) -> bool:
        service = self.services.get(name)
        return service is not None and service.process.poll() is None

    def returncode(self, name: str) -> int | None:
        return self.services[name].process.poll()

    def kill(self, name: str) -> None:
        """SIGKILL `name` from outside (a power cut) and reap it."""
        service = self.services[name]
        if service.process.poll() is None:
            service.process.kill()
        service.process.wait(10)

    async def wait_dead(self, name: str, timeout_s: float = 15) -> int | None:
        """Poll (bounded) until `name` has exited; its return code, or None if still up."""
        process = self.services[name].process
        deadline = time.monotonic() + timeout_s
        for _ in range(int(timeout_s / 0.05) + 1):
            code = process.poll()
            if code is not None or time.monotonic() > deadline:
                return code
            await asyncio.sleep(0.05)
        return process.poll()

    def restart(self, name: str, *, crash_at: str | None = None,
                timeout_s: float = 30) -> Service:
        """Start `name` again on the same database, key file and port, and wait for it."""
        if self.alive(name):
            self.kill(name)
        service = self.start(name, crash_at=crash_at)
        wait_healthy(service, timeout_s=timeout_s)
        return service

    def stop_all(self) -> None:
        """Stop every process this rail ever started (TERM, then KILL); never raises."""
        for service in reversed(self._all):
            try:
                service.stop(signal.SIGTERM, timeout_s=3)
            except Exception:  # noqa: BLE001 - a finalizer must go on to the next one
                try:
                    service.process.kill()
                    service.process.wait(5)
                except Exception:  # noqa: BLE001
                    pass
        try:
            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
            try:
                keys = list(client.scan_iter(match=f"{self.redis_prefix}:*", count=1000))
                if keys:
                    client.delete(*keys)
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - Redis cleanup is best effort
            pass

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"----- {n} -----\n{self.log_tail(n)}" for n in self.specs)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def server_port() -> int:
    """A free port below the kernel's ephemeral range. A killed process is restarted on
    the same port; in the meantime any outgoing connection on the host could be given a
    port from the ephemeral range as its local port, and the restart could not bind. Below
    that range only another server choosing the same number can take it."""
    low, _high = _ephemeral_range()
    if low > 12_000:
        for _ in range(50):
            port = random.randrange(10_000, low - 1_000)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    return free_port()


def make_process_rail(pg_databases, directory: Path, *, bank_timeout_ms: int = 1_500,
                      env: dict[str, dict[str, str]] | None = None) -> ProcessRail:
    """Specify (not start) the three processes: ports, databases, keys, environments;
    `env` adds settings per process name."""
    run = uuid.uuid4().hex[:10]
    directory.mkdir(parents=True, exist_ok=True)
    databases = {name: pg_databases() for name in FACTORIES}
    rail = ProcessRail(directory, f"yrkill:{run}", databases)
    central_port = server_port()
    central_url = f"http://127.0.0.1:{central_port}"
    rail.specs[CENTRAL] = ProcessSpec(CENTRAL, FACTORIES[CENTRAL], central_port, {
        "YUANRAIL_CENTRAL_DATABASE_URL": databases[CENTRAL],
        "YUANRAIL_CENTRAL_OPERATOR_TOKEN": CENTRAL_TOKEN,
        "YUANRAIL_CENTRAL_KEY_FILE": str(directory / "central.key"),
        "YUANRAIL_CENTRAL_DB_POOL_SIZE": "4",
        # Short deadline for one delivery to a bank: the lease a dead central leaves on a
        # transfer it was delivering is this + 1 s, which bounds the wait after a restart.
        "YUANRAIL_CENTRAL_BANK_TIMEOUT_MS": str(bank_timeout_ms),
        # Every test request comes from loopback, and some try wrong tokens on purpose (the
        # limit per address is tested on its own: tests/integration/test_wrong_tries.py).
        "YUANRAIL_CENTRAL_WRONG_TRIES_PER_ADDRESS": "0",
    })
    for bank_id, bank_name in BANK_NAMES.items():
        port = server_port()
        rail.specs[bank_id] = ProcessSpec(bank_id, FACTORIES[bank_id], port, {
            "YUANRAIL_BANK_BANK_ID": bank_id, "YUANRAIL_BANK_NAME": bank_name,
            "YUANRAIL_BANK_DATABASE_URL": databases[bank_id],
            "YUANRAIL_BANK_REDIS_URL": REDIS_URL,
            "YUANRAIL_BANK_REDIS_PREFIX": f"{rail.redis_prefix}:{bank_id}",
            "YUANRAIL_BANK_OPERATOR_TOKEN": BANK_TOKENS[bank_id],
            "YUANRAIL_BANK_KEY_FILE": str(directory / f"{bank_id}.key"),
            "YUANRAIL_BANK_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "YUANRAIL_BANK_CENTRAL_URL": central_url,
            # An empty vault refilled by exactly what is short, never swept back: the books
            # then hold exactly what the test did, and no vault worker talks to central
            # while nothing needs it.
            "YUANRAIL_BANK_VAULT_LOW_FEN": "0", "YUANRAIL_BANK_VAULT_TARGET_FEN": "0",
            "YUANRAIL_BANK_VAULT_HIGH_FEN": str(10**15),
            "YUANRAIL_BANK_RATE_LIMIT_PER_S": "0", "YUANRAIL_BANK_WRONG_TRIES_PER_ADDRESS": "0",
            "YUANRAIL_BANK_DB_POOL_SIZE": "4",
            "YUANRAIL_BANK_CODE_ISSUERS": '{"11": "yangtze", "12": "pearl"}',
        })
    for name, extra in (env or {}).items():
        rail.specs[name].env.update(extra)
    return rail


def start_process_rail(pg_databases, directory: Path, *,
                       crash: dict[str, str] | None = None, **options) -> ProcessRail:
    """Start central, wait for it, enrol both banks there, then start both at once, and
    wait for them. `crash` maps a process name to the crash point to arm in
    it. On failure everything started is stopped before the error goes up."""
    crash = crash or {}
    unknown = set(crash) - set(FACTORIES)
    if unknown:
        raise ValueError(f"no such process: {sorted(unknown)}")
    rail = make_process_rail(pg_databases, directory, **options)
    try:
        rail.start(CENTRAL, crash_at=crash.get(CENTRAL))
        rail.wait_healthy(CENTRAL)
        rail.enroll_banks()
        for bank_id in BANK_NAMES:
            rail.start(bank_id, crash_at=crash.get(bank_id))
        rail.wait_healthy(*BANK_NAMES)
    except BaseException:
        rail.stop_all()
        raise
    return rail


@pytest.fixture
def process_rail(pg_databases, tmp_path):
    """`start = process_rail; rail = start(crash={...})`: rails of real processes, all
    stopped when the test ends, pass or fail."""
    started: list[ProcessRail] = []

    def start(**kwargs) -> ProcessRail:
        rail = start_process_rail(pg_databases, tmp_path / f"rail{len(started)}", **kwargs)
        started.append(rail)
        return rail

    yield start
    for rail in started:
        rail.stop_all()
        # Shown by pytest with a failure's report (captured in teardown).
        print(f"process logs under {rail.log_dir}:\n{rail.logs()}")
