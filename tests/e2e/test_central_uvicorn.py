"""Central as it is deployed: `uvicorn --factory central.app:create_app` in its own process,
configured only by environment variables, spoken to over real HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from central.client import CentralClient
from rail_protocol.instruction_types import CENTRAL_ISSUE as ISSUE
from rail_protocol.envelope import seal, verify_statement
from rail_protocol.keys import PublicKey, SigningKey
from rail_service.client import RemoteError
from tests.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.e2e

STARTUP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def uvicorn_central(database_url: str, key_file: Path, log_dir: Path):
    """Start central under uvicorn, wait until it answers, and always stop it afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "YUANRAIL_CENTRAL_DATABASE_URL": database_url,
        "YUANRAIL_CENTRAL_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "YUANRAIL_CENTRAL_KEY_FILE": str(key_file),
        "YUANRAIL_CENTRAL_DB_POOL_SIZE": "4",
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"uvicorn-{port}.log"
    command = [sys.executable, "-m", "uvicorn", "--factory", "central.app:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=log_dir)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"uvicorn exited with {process.returncode}:\n"
                            f"{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base_url}/v1/health", timeout=1).json() == {"status": "ok"}:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"central did not answer within {STARTUP_TIMEOUT_S} s:\n"
                            f"{log_path.read_text()[-4000:]}")
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def test_central_under_uvicorn_registers_issues_redeems_and_audits_balanced(
    pg_url, tmp_path
):
    key_file = tmp_path / "keys" / "central.key"
    bank_key = SigningKey.generate()
    with uvicorn_central(pg_url, key_file, tmp_path / "run") as base_url:
        async with CentralClient(base_url, operator_token=OPERATOR_TOKEN) as client:
            identity = await client.identity()
            central_key = PublicKey.from_text(identity["public_key"])

            certificate = await client.register_bank(bank_key, "bank-a", "Bank A")
            verify_statement(central_key, certificate)
            assert certificate["key_id"] == bank_key.key_id

            deposit = await client.deposit_reserves("bank-a", "deposit-0001", 100_000)
            assert deposit["reserves_fen"] == 100_000
            issued = await client.issue(bank_key, "bank-a", 60_000)
            verify_statement(central_key, issued["receipt"])
            assert issued["receipt"]["holding_fen"] == 60_000
            redeemed = await client.redeem(bank_key, "bank-a", 15_000)
            verify_statement(central_key, redeemed["receipt"])
            assert redeemed["receipt"]["holding_fen"] == 45_000
            assert redeemed["receipt"]["reserves_fen"] == 55_000

            with pytest.raises(RemoteError) as caught:
                await client.issue(bank_key, "bank-a", 55_001)
            assert caught.value.code == "insufficient_reserves"

            report = await client.audit()
            assert report["balanced"], report["problems"]
            assert report["total_issued_fen"] == report["backing_fen"] == 45_000
            assert report["entries"] == 3

            raw = orjson.dumps(seal(bank_key, ISSUE, {"bank_id": "bank-a",
                                                      "amount_fen": 5}).to_dict())
            assert b'"amount_fen":5}' in raw
            response = await client.http.post("/v1/issuance",
                                              content=raw.replace(b'"amount_fen":5}',
                                                                  b'"amount_fen":5.0}'))
            assert response.status_code == 422
            assert response.json()["error"]["code"] == "float_not_allowed"

            response = await client.http.post("/v1/issuance", content=b"x" * 70_000)
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "payload_too_large"

            anonymous = await httpx.AsyncClient(base_url=base_url).__aenter__()
            try:
                assert (await anonymous.get("/v1/audit")).status_code == 401
            finally:
                await anonymous.aclose()

            assert (await client.audit())["entries"] == 3

    # Central made its own key, readable by its operator only.
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = SigningKey.from_text(key_file.read_text().strip())
    assert stored.key_id == identity["key_id"]


async def test_central_keeps_its_key_and_its_books_across_a_restart(pg_url, tmp_path):
    key_file = tmp_path / "central.key"
    bank_key = SigningKey.generate(engine="openssl")
    with uvicorn_central(pg_url, key_file, tmp_path / "run") as base_url:
        async with CentralClient(base_url, operator_token=OPERATOR_TOKEN) as client:
            before = await client.identity()
            certificate = await client.register_bank(bank_key, "bank-a", "Bank A")
            await client.deposit_reserves("bank-a", "deposit-0001", 1_000)
            first = await client.issue(bank_key, "bank-a", 400, instruction_id="issue-000001")
            envelope = seal(bank_key, ISSUE, {"bank_id": "bank-a", "amount_fen": 100})
            await client.http.post("/v1/issuance", content=orjson.dumps(envelope.to_dict()))
    with uvicorn_central(pg_url, key_file, tmp_path / "run") as base_url:
        async with CentralClient(base_url, operator_token=OPERATOR_TOKEN) as client:
            assert await client.identity() == before
            assert await client.certificate("bank-a") == certificate
            again = await client.http.post("/v1/issuance",
                                           content=orjson.dumps(envelope.to_dict()))
            assert again.status_code == 200 and again.json()["repeated"] is True
            view = await client.bank("bank-a")
            assert (view["reserves_fen"], view["holding_fen"]) == (500, 500)
            assert first["receipt"]["holding_fen"] == 400
            report = await client.audit()
            assert report["balanced"] and report["entries"] == 3
