"""Start the rail's services as real processes on loopback, wait for them, stop them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_uvicorn(name: str, factory: str, port: int, env: dict[str, str], log_dir: Path,
                  *, workers: int = 1, host: str = "127.0.0.1") -> Service:
    """Run `factory` (module:function) under uvicorn in its own process."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    command = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", host,
               "--port", str(port), "--workers", str(workers), "--no-access-log",
               "--log-level", "warning"]
    process = subprocess.Popen(command, env={**os.environ, **env},
                               stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    return Service(name, f"http://{host}:{port}", process, log_path)


def wait_healthy(service: Service, timeout_s: float = 30) -> None:
    """Block until the service answers /v1/health, or raise with the tail of its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            break
        try:
            if httpx.get(f"{service.url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    tail = service.log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{service.name} did not become healthy at {service.url}:\n{tail}")


@dataclass
class ServiceGroup:
    services: list[Service] = field(default_factory=list)

    def add(self, service: Service) -> Service:
        self.services.append(service)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()
