"""`yuanrail loadtest`: the rail in its production shape under Locust, beside this machine's
own limits measured in the same run.

    yuanrail loadtest --duration 60 --users 32 --workers 1 --out var/loadtest/run1

1. The machine's limits first, with nothing else running: pgbench's TPC-B-like TPS on the
   same PostgreSQL with as many clients as Locust has users; the hot-path verifier's
   verifies/s on one core (envelope parse + P-256 verify, as a bank checks a payment); a
   no-op FastAPI endpoint's requests/s under the same Locust settings and uvicorn workers.
2. The rail: fresh PostgreSQL databases for central and two banks, Redis under a prefix of
   this run's own, central and the banks as uvicorn processes (`--workers` each bank), the
   setup step (`loadtests/provision.py`), then one headless Locust run per scenario with a
   progress line, and after each the conservation audit across central and both banks.
   Before each scenario the rail's databases are vacuumed and analyzed, as pgbench's fresh
   tables are in each round (`--no-vacuum` leaves them, as before 2026-12-05).
3. The report: payments/s, p50/p95/p99 latency, failures (business refusals apart), the CPU
   of the generator, the rail, PostgreSQL and Redis, each payments/s as a ratio to each limit,
   the hot path's stages (each batcher's items per batch, wait and run; each client's calls
   and their time; with one process per service), and the issue's targets; Locust's CSV and
   HTML and a PNG per scenario under `--out`.

These figures are noisy on a shared machine: only ratios within one run compare. Everything
started here stops by itself (bounded durations) and the databases are dropped afterwards
(unless --keep-databases)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
LOADTESTS = REPO / "loadtests"
CENTRAL_TOKEN = "loadtest-central-operator-token"
BANKS = {"yangtze": "Yangtze Commercial Bank", "pearl": "Pearl River Bank"}
BANK_TOKENS = {bank_id: f"loadtest-{bank_id}-operator-token" for bank_id in BANKS}
SCENARIOS = {
    "mix": ["QRPayer", "CodeCharger", "P2PPayer", "InterbankPayer", "Reader"],
    "qr": ["QRPayer"],
    "qr-static": ["StaticQRPayer"],
    "code": ["CodeCharger"],
    "p2p": ["P2PPayer"],
    "interbank": ["InterbankPayer"],
    "read": ["Reader"],
}
PAYMENT_NAMES = ("qr: pay order", "qr-static: pay", "code: charge", "p2p: pay",
                 "interbank: pay")
READ_NAMES = ("read: balance", "read: history")
# payments/s as a fraction of pgbench TPS (same-bank QR: a dynamic QR takes two requests, the
# till's order and the wallet's payment; a static QR one)
TARGETS = {"qr": 0.5, "qr-static": 0.5, "interbank": 0.25}
P99_TARGET_MS = 100


def add_command(commands) -> None:
    """Add `yuanrail loadtest` to the CLI's subcommands."""
    p = commands.add_parser("loadtest", help="load the rail with Locust beside this machine's "
                            "own limits (pgbench, verifier, no-op endpoint)",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=60, help="seconds per Locust run (default 60)")
    p.add_argument("--users", type=int, default=32, help="Locust users = pgbench clients")
    p.add_argument("--workers", type=int, default=1,
                   help="uvicorn workers per bank node (default 1: on 2 cores a second one "
                        "only splits the batches; more pay where cores are idle)")
    p.add_argument("--central-workers", type=int, default=1, help="uvicorn workers of central")
    p.add_argument("--scenario", default="mix,qr,interbank",
                   help=f"comma-separated, run in turn: {', '.join(SCENARIOS)} (default "
                        "mix,qr,interbank)")
    p.add_argument("--out", type=Path, default=None,
                   help="where the report, CSV, HTML and PNG go (default var/loadtest/<time>)")
    p.add_argument("--processes", type=int, default=2,
                   help="Locust worker processes on this machine (Locust's --processes; one "
                        "gevent process alone becomes the limit past ~0.5 core)")
    p.add_argument("--spawn-rate", type=float, default=0, help="users started per second "
                   "(default: all within one second)")
    p.add_argument("--wait-s", type=float, default=0.0,
                   help="think time of each user between tasks (default 0: closed loop)")
    p.add_argument("--wallets-per-user", type=int, default=4,
                   help="payer wallets each Locust user takes turns with (its customers)")
    p.add_argument("--payers", type=int, default=0,
                   help="payer wallets per bank (default: enough for every user's own)")
    p.add_argument("--merchants", type=int, default=8, help="merchants per bank")
    p.add_argument("--pg", default=os.environ.get("YUANRAIL_TEST_PG",
                                                  "postgresql://postgres@127.0.0.1:5432/test"),
                   help="an admin URL of the PostgreSQL to make the databases on")
    p.add_argument("--redis", default=os.environ.get("YUANRAIL_TEST_REDIS",
                                                     "redis://127.0.0.1:6379/0"))
    p.add_argument("--no-baselines", action="store_true",
                   help="skip pgbench, the verifier and the no-op endpoint")
    p.add_argument("--baseline-duration", type=int, default=0,
                   help="seconds for pgbench and the no-op run (default: --duration)")
    p.add_argument("--bank-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the bank nodes, e.g. YUANRAIL_BANK_DB_POOL_SIZE=5")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat the limits and the scenarios, interleaved, and report medians "
                        "(each ratio is taken within its own round)")
    p.add_argument("--keep-databases", action="store_true", help="do not drop the databases")
    p.add_argument("--no-vacuum", action="store_true",
                   help="do not vacuum and analyze the rail's databases before each scenario "
                        "(as before 2026-12-05; for comparison)")
    p.set_defaults(run=_run)


# --- measuring CPU ---------------------------------------------------------------------

class CpuMeter:
    """CPU seconds used by groups of processes (a process tree, or processes by name), read
    from /proc through psutil each tick; a process that starts later counts from zero.
    Given `databases` (database name -> role), the `postgres` group is also split by the
    database each backend serves (its process title names it), so a run shows whose SQL
    the server's CPU goes to; the server's own processes are `server`."""

    def __init__(self, groups: dict, databases: dict[str, str] | None = None) -> None:
        import psutil

        self.psutil = psutil
        self.groups = groups   # name -> callable returning a list of root processes / names
        self.databases = databases or {}
        self.database_of: dict[int, str] = {}   # postgres pid -> role of its database
        self.started = time.time()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.owner: dict[int, str] = {}
        self.series: list[tuple[float, dict[str, float]]] = []
        self._machine0 = self._machine_busy()
        self.sample()

    def _machine_busy(self) -> float:
        t = self.psutil.cpu_times()
        return t.user + t.system + getattr(t, "nice", 0) + getattr(t, "irq", 0) \
            + getattr(t, "softirq", 0)

    def _processes(self):
        psutil = self.psutil
        for group, spec in self.groups.items():
            if isinstance(spec, str):   # by process name
                for proc in psutil.process_iter(["name"]):
                    if proc.info["name"] == spec:
                        yield group, proc
                continue
            try:
                roots = spec()
            except psutil.Error:
                continue
            for root in roots:
                try:
                    yield group, root
                    for child in root.children(recursive=True):
                        yield group, child
                except psutil.Error:
                    continue

    def sample(self) -> dict[str, float]:
        psutil = self.psutil
        for group, proc in self._processes():
            try:
                times = proc.cpu_times()
                total = times.user + times.system
                if proc.pid not in self.first:
                    self.first[proc.pid] = 0.0 if proc.create_time() >= self.started - 0.5 \
                        else total
                    self.owner[proc.pid] = group
                    if group == "postgres" and self.databases:
                        self.database_of[proc.pid] = self._database(proc)
                self.last[proc.pid] = total
            except psutil.Error:
                continue
        used = self.used()
        self.series.append((time.time(), used))
        return used

    def _database(self, proc) -> str:
        """The role of the database a backend serves, from its title ("postgres: 15/main:
        user dbname host state"); `autovacuum` for a vacuum worker (whatever database it
        cleans: its cost follows the rows written, not the statements of the moment),
        `server` for the server's own processes."""
        words = " ".join(proc.cmdline()).split()
        if "autovacuum" in words:
            return "autovacuum"
        return next((self.databases[w] for w in words if w in self.databases), "server")

    def used(self) -> dict[str, float]:
        """CPU seconds by group, and by process of each service (`yangtze[1]`: its processes
        in pid order, the uvicorn supervisor first, then each worker), so a bank run with
        several workers (`--workers`) reports each."""
        used = {group: 0.0 for group in self.groups}
        for pid, group in sorted(self.owner.items()):
            seconds = max(self.last[pid] - self.first[pid], 0.0)
            used[group] += seconds
            if group in ("central", *BANKS):
                index = sum(1 for key in used if key.startswith(f"{group}["))
                used[f"{group}[{index}]"] = seconds
            if pid in self.database_of:
                key = f"postgres[{self.database_of[pid]}]"
                used[key] = used.get(key, 0.0) + seconds
        used["machine"] = self._machine_busy() - self._machine0
        return used


# --- services ---------------------------------------------------------------------------

@dataclass
class Rail:
    out: Path
    pg_admin: str
    redis_url: str
    run_id: str
    databases: dict[str, str] = field(default_factory=dict)   # role -> asyncpg URL
    services: list = field(default_factory=list)
    central_url: str = ""
    bank_urls: dict[str, str] = field(default_factory=dict)

    @property
    def redis_prefix(self) -> str:
        return f"yrload:{self.run_id}"

    def stop(self, keep_databases: bool) -> None:
        for service in reversed(self.services):
            try:
                service.stop(signal.SIGTERM, timeout_s=10)
            except Exception as exc:  # noqa: BLE001 - stop the others whatever happens
                print(f"  could not stop {service.name}: {exc!r}", file=sys.stderr)
        self.services.clear()
        try:
            import redis

            client = redis.Redis.from_url(self.redis_url, socket_timeout=3)
            for key in client.scan_iter(match=f"{self.redis_prefix}:*", count=1000):
                client.delete(key)
            client.close()
        except Exception as exc:  # noqa: BLE001 - Redis keys expire anyway
            print(f"  Redis keys under {self.redis_prefix} left: {exc!r}", file=sys.stderr)
        if not keep_databases:
            drop_databases(self.pg_admin, list(self.databases.values()))


def _pg_parts(url: str) -> dict:
    parsed = urlparse(url.replace("postgresql+asyncpg://", "postgresql://"))
    return {"host": parsed.hostname or "127.0.0.1", "port": str(parsed.port or 5432),
            "user": parsed.username or "postgres", "dbname": parsed.path.lstrip("/") or "postgres"}


def _pg_url(admin: str, name: str, driver: str = "postgresql+asyncpg") -> str:
    """The URL of database `name` on the admin URL's server, credentials and all."""
    parsed = urlparse(admin.replace("postgresql+asyncpg://", "postgresql://"))
    return parsed._replace(scheme=driver, path=f"/{name}").geturl()


def create_database(admin: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _pg_url(admin, name)


def drop_databases(admin: str, urls: list[str]) -> None:
    import psycopg

    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            for url in urls:
                conn.execute(f'DROP DATABASE IF EXISTS "{_pg_parts(url)["dbname"]}" WITH (FORCE)')
    except Exception as exc:  # noqa: BLE001
        print(f"  could not drop databases {urls}: {exc!r}", file=sys.stderr)


class ThrowawayDatabases:
    """Fresh, empty PostgreSQL databases made on demand, all dropped by `drop()`: what the
    tests and the benchmarks run on. Calling it makes one and returns its asyncpg URL."""

    def __init__(self, admin: str, prefix: str) -> None:
        self.admin, self.prefix = admin, prefix
        self.made: list[str] = []

    def __call__(self) -> str:
        url = create_database(self.admin, f"{self.prefix}_{secrets.token_hex(6)}")
        self.made.append(url)
        return url

    def drop(self) -> None:
        drop_databases(self.admin, self.made)
        self.made.clear()


def vacuum_databases(urls: list[str]) -> float:
    """VACUUM (ANALYZE) each database; the seconds it took. What autovacuum does between two
    runs on a server that has it on, and what pgbench's `-i` gives its own fresh tables in
    each round: without it, on a server with autovacuum off (as this machine's may be: the
    report says), every round inherits the dead row versions and index entries, and the
    planner's figures, of all the rounds before it."""
    import psycopg

    started = time.monotonic()
    for url in urls:
        with psycopg.connect(_pg_url(url, _pg_parts(url)["dbname"], driver="postgresql"),
                             autocommit=True, connect_timeout=10) as conn:
            conn.execute("VACUUM (ANALYZE)")
    return time.monotonic() - started


def pg_setting(admin: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        return conn.execute(f"SHOW {name}").fetchone()[0]


async def _migrate(urls: dict[str, str]) -> None:
    """Migrate every database once before the workers start (they would race otherwise)."""
    import bank
    from central.services import MIGRATIONS
    from rail_service.db import make_engine, migrate

    for role, url in urls.items():
        engine = make_engine(url, pool_size=1)
        try:
            if role == "central":
                await migrate(engine, MIGRATIONS, "central_alembic_version")
            else:
                await migrate(engine, Path(bank.__file__).parent / "migrations",
                              "bank_alembic_version")
        finally:
            await engine.dispose()


def start_rail(args, out: Path, run_id: str, pool_size: int) -> Rail:
    from yuanrail.enroll_command import Enrolment, enroll_banks
    from yuanrail.processes import free_port, start_uvicorn, wait_healthy

    rail = Rail(out, args.pg, args.redis, run_id)
    logs = out / "logs"
    try:
        for role in ("central", *BANKS):
            rail.databases[role] = create_database(args.pg, f"yrload_{run_id}_{role}")
        asyncio.run(_migrate(rail.databases))
        port = free_port()
        rail.central_url = f"http://127.0.0.1:{port}"
        central = start_uvicorn("central", "central.app:create_app", port, {
            "YUANRAIL_CENTRAL_DATABASE_URL": rail.databases["central"],
            "YUANRAIL_CENTRAL_OPERATOR_TOKEN": CENTRAL_TOKEN,
            "YUANRAIL_CENTRAL_KEY_FILE": str(out / "keys" / "central.key"),
            "YUANRAIL_CENTRAL_DB_POOL_SIZE": str(pool_size),
        }, logs, workers=args.central_workers)
        rail.services.append(central)
        wait_healthy(central, timeout_s=60)
        extra = dict(spec.split("=", 1) for spec in args.bank_env)
        factory = "bank.app:create_app"
        ports = {bank_id: free_port() for bank_id in BANKS}
        enroll_banks(rail.central_url, CENTRAL_TOKEN, [
            Enrolment(bank_id, name, f"http://127.0.0.1:{ports[bank_id]}",
                      out / "keys" / f"{bank_id}.key") for bank_id, name in BANKS.items()])
        for bank_id, name in BANKS.items():
            port = ports[bank_id]
            url = f"http://127.0.0.1:{port}"
            rail.services.append(start_uvicorn(bank_id, factory, port, {
                "YUANRAIL_BANK_BANK_ID": bank_id, "YUANRAIL_BANK_NAME": name,
                "YUANRAIL_BANK_DATABASE_URL": rail.databases[bank_id],
                "YUANRAIL_BANK_REDIS_URL": args.redis,
                "YUANRAIL_BANK_REDIS_PREFIX": f"{rail.redis_prefix}:{bank_id}",
                "YUANRAIL_BANK_OPERATOR_TOKEN": BANK_TOKENS[bank_id],
                "YUANRAIL_BANK_KEY_FILE": str(out / "keys" / f"{bank_id}.key"),
                "YUANRAIL_BANK_PUBLIC_URL": url, "YUANRAIL_BANK_CENTRAL_URL": rail.central_url,
                # The vault: drawn once to a level no run spends, never handed back mid-run.
                "YUANRAIL_BANK_VAULT_LOW_FEN": str(10**11),
                "YUANRAIL_BANK_VAULT_TARGET_FEN": str(2 * 10**11),
                "YUANRAIL_BANK_VAULT_HIGH_FEN": str(10**13),
                "YUANRAIL_BANK_RATE_LIMIT_PER_S": "0",   # the load is many users, not one
                "YUANRAIL_BANK_DB_POOL_SIZE": str(pool_size),
                **extra,
            }, logs, workers=args.workers))
            rail.bank_urls[bank_id] = url
        for service in rail.services[1:]:
            wait_healthy(service, timeout_s=60)
    except BaseException:
        rail.stop(args.keep_databases)
        raise
    return rail


async def audit_until_balanced(rail: Rail, timeout_s: float = 45) -> tuple[bool, list[str]]:
    """The rail audit, repeated while interbank transfers or vault draws finish."""
    from yuanrail.audit import audit_rail

    deadline = time.monotonic() + timeout_s
    banks = {b: (url, BANK_TOKENS[b]) for b, url in rail.bank_urls.items()}
    while True:
        balanced, lines = await audit_rail(rail.central_url, CENTRAL_TOKEN, banks, attempts=2)
        if balanced or time.monotonic() > deadline:
            return balanced, lines
        await asyncio.sleep(1)


def read_stages(rail: Rail) -> dict[str, dict]:
    """Each service's hot-path counts since it started (its dashboard's `stages`: batches,
    items, time waited and run; calls and their time), read with its operator token."""
    import httpx

    tokens = {"central": (rail.central_url, CENTRAL_TOKEN),
              **{b: (url, BANK_TOKENS[b]) for b, url in rail.bank_urls.items()}}
    stages = {}
    for service, (url, token) in tokens.items():
        try:
            figures = httpx.get(f"{url}/dashboard/figures.json", timeout=10,
                                headers={"authorization": f"Bearer {token}"}).json()
            stages[service] = figures["stages"]
        except (httpx.HTTPError, ValueError, KeyError):
            stages[service] = {}
    return stages


def stage_deltas(before: dict, after: dict) -> dict:
    """What each stage did between two readings of `read_stages`: per batcher its batches,
    items per batch, milliseconds an item waited for its batch and a batch ran; per client
    its calls, milliseconds a call took, and calls without an answer."""
    out: dict = {}
    for service, now in after.items():
        then = before.get(service, {})
        mine: dict = {}
        for name, b in now.get("batches", {}).items():
            a = then.get("batches", {}).get(name, {})
            batches = b["batches"] - a.get("batches", 0)
            items = b["items"] - a.get("items", 0)
            if batches <= 0:
                continue
            row = {"batches": batches, "items_per_batch": round(items / batches, 2)}
            if "wait_us" in b:
                row["wait_ms"] = round((b["wait_us"] - a.get("wait_us", 0)) / items / 1000, 2)
                row["run_ms"] = round((b["run_us"] - a.get("run_us", 0)) / batches / 1000, 2)
            mine[name] = row
        for name, c in now.get("calls", {}).items():
            a = then.get("calls", {}).get(name, {})
            calls = c["calls"] - a.get("calls", 0)
            if calls > 0:   # calls made ("to central"), or answered ("from central")
                label = f"calls {name}" if name.startswith("from ") else f"calls to {name}"
                mine[label] = {
                    "calls": calls, "unreachable": c["unreachable"] - a.get("unreachable", 0),
                    "call_ms": round((c["call_us"] - a.get("call_us", 0)) / calls / 1000, 2)}
        out[service] = mine
    return out


# --- baselines -------------------------------------------------------------------------

def verifier_bench(seconds: float = 3.0) -> dict:
    """Verifies/s on one core: what a bank does for each payment (parse the envelope, its
    canonical bytes, the P-256 verify through OpenSSL), and the bare verify alone."""
    from rail_protocol.instruction_types import PAY
    from rail_protocol import envelope
    from rail_protocol.envelope import Envelope, seal
    from rail_protocol.keys import SigningKey, b64decode

    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    key = SigningKey.generate(engine="openssl")
    env = seal(key, PAY, {"payer_wallet": "yangtze.0123456789abcdef", "amount_fen": 1234,
                          "payee_wallet": "yangtze.fedcba9876543210",
                          "order_id": "O0123456789abcdef"})
    raw, public = env.to_dict(), key.public_key
    sig, message = b64decode(env.sig), env.signed_bytes()

    def rate(work) -> float:
        done, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 2:
            for _ in range(200):
                work()
            done += 200
        return done / elapsed

    full = rate(lambda: envelope.verify(Envelope.parse(raw), public, expected_type=PAY,
                                        check_expiry=False))
    bare = rate(lambda: public.verify(sig, message))
    return {"verifies_per_s": round(full), "bare_verifies_per_s": round(bare),
            "cpu": cpus[-1]}


def run_verifier(seconds: float) -> dict:
    code = ("import json, sys; from yuanrail.loadtest_command import verifier_bench; "
            f"print(json.dumps(verifier_bench({seconds})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"verifier benchmark failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _pgbench_binary() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    return str(candidates[-1]) if candidates else None


def run_pgbench(admin: str, clients: int, duration_s: int, run_id: str, log: Path) -> dict:
    """pgbench's built-in TPC-B-like script on a fresh database, scale = clients (10..100),
    so that the branch rows are not the bottleneck; the database is dropped afterwards."""
    binary = _pgbench_binary()
    if binary is None:
        return {"error": "pgbench not found (apt-get install postgresql-client)"}
    name = f"yrload_{run_id}_pgbench"
    url = create_database(admin, name)
    parts = _pg_parts(admin)
    base = [binary, "-h", parts["host"], "-p", parts["port"], "-U", parts["user"]]
    scale = min(max(clients, 10), 100)
    threads = max(min(clients, os.cpu_count() or 1), 1)
    meter = CpuMeter({"pgbench": "pgbench", "postgres": "postgres"})
    try:
        with open(log, "w") as handle:
            subprocess.run([*base, "-i", "-q", "-s", str(scale), name], check=True,
                           stdout=handle, stderr=subprocess.STDOUT, timeout=600)
            meter = CpuMeter({"pgbench": "pgbench", "postgres": "postgres"})
            started = time.monotonic()
            bench = subprocess.Popen([*base, "-c", str(clients), "-j", str(threads), "-T",
                                      str(duration_s), "-P", "5", name], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
            output, _ = _sampling_wait(bench, meter, duration_s + 120)
            elapsed = time.monotonic() - started
            cpu = meter.used()
            handle.write(output)
    finally:
        drop_databases(admin, [url])
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    latency = re.search(r"latency average = ([\d.]+) ms", output)
    if bench.returncode != 0 or tps is None:
        return {"error": f"pgbench failed: {output[-500:]}"}
    return {"tps": float(tps.group(1)), "latency_ms": float(latency.group(1)) if latency else None,
            "clients": clients, "scale": scale, "threads": threads,
            "cpu_cores": {k: round(v / elapsed, 2) for k, v in cpu.items()}}


def _sampling_wait(process: subprocess.Popen, meter: CpuMeter, timeout_s: float):
    """Wait for `process`, sampling CPU each second (a process that exits between two
    samples loses at most its last second); return its output."""
    import threading

    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            break
        meter.sample()
        time.sleep(1)
    process.wait()
    reader.join(10)
    return "".join(output), process.returncode


# --- Locust ----------------------------------------------------------------------------

@dataclass
class LocustRun:
    name: str
    prefix: Path
    returncode: int
    elapsed_s: float
    cpu: dict[str, float]
    cpu_series: list


def run_locust(name: str, locustfile: Path, classes: list[str], args, out: Path, env: dict,
               cpu_groups: dict, progress_names: tuple[str, ...],
               databases: dict[str, str] | None = None) -> LocustRun:
    """One headless Locust run with a progress line; its CSV, HTML and JSON under `out`;
    PostgreSQL's CPU split by `databases` (name -> role, `CpuMeter`)."""
    prefix = out / name
    spawn = args.spawn_rate or max(args.users, 1)
    command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
               "-u", str(args.users), "-r", str(spawn), "-t", f"{args.duration}s",
               "--csv", str(prefix), "--csv-full-history", "--html", f"{prefix}.html",
               "--json-file", str(prefix), "--only-summary", "--stop-timeout", "5",
               "--exit-code-on-error", "0", "--loglevel", "WARNING", *classes]
    if args.processes > 1:
        command[5:5] = ["--processes", str(args.processes)]
    run_env = {**os.environ, **env, "YUANRAIL_LOAD_PROCESSES": str(args.processes),
               "YUANRAIL_LOAD_WALLETS_PER_USER": str(getattr(args, "wallets_per_user", 4)),
               "YUANRAIL_LOAD_WAIT_S": str(args.wait_s),
               "PYTHONPATH": os.pathsep.join([str(LOADTESTS), os.environ.get("PYTHONPATH", "")])}
    import psutil

    with open(f"{prefix}.log", "w") as log:
        process = subprocess.Popen(command, env=run_env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=str(out), start_new_session=True)
        root = psutil.Process(process.pid)
        meter = CpuMeter({"generator": lambda: [root], **cpu_groups},
                         databases=databases)
        started = time.monotonic()
        deadline = started + args.duration + 90
        tty = sys.stdout.isatty()
        last_print = 0.0
        while process.poll() is None:
            time.sleep(1)
            cpu = meter.sample()
            elapsed = time.monotonic() - started
            if time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise RuntimeError(f"Locust run {name} overran its deadline; killed")
            if tty or elapsed - last_print >= 10:
                last_print = elapsed
                line = _progress(name, prefix, progress_names, elapsed, args.duration, cpu)
                print(("\r" + line.ljust(110)) if tty else line, end="" if tty else "\n",
                      flush=True)
        cpu = meter.sample()
        if tty:
            print()
    elapsed = time.monotonic() - started
    return LocustRun(name, prefix, process.returncode, elapsed, cpu, meter.series)


def _progress(name: str, prefix: Path, names: tuple[str, ...], elapsed: float,
              duration: int, cpu: dict) -> str:
    rows = _history_tail(Path(f"{prefix}_stats_history.csv"))
    agg = rows.get("Aggregated")
    wanted = [rows[n] for n in names if n in rows]
    rate = sum(float(r["Requests/s"]) - float(r["Failures/s"]) for r in wanted)
    p95 = max((float(r["95%"]) for r in wanted if r["95%"] not in ("N/A", "")), default=0)
    users = agg["User Count"] if agg else "0"
    fails = agg["Total Failure Count"] if agg else "0"
    gen = cpu.get("generator", 0) / max(elapsed, 1e-9) * 100
    return (f"  [{name} {min(elapsed, duration):4.0f}/{duration}s] users {users:>4}  "
            f"payments/s {rate:7.1f}  p95 {p95:5.0f} ms  failures {fails}  "
            f"generator CPU {gen:4.0f}%")


def _history_tail(path: Path) -> dict[str, dict]:
    """The latest row of each name in Locust's stats history CSV."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error):
        return {}
    latest: dict[str, dict] = {}
    for row in rows:
        latest[row.get("Name", "")] = row
    return latest


def _percentile(histogram: dict[int, int], q: float) -> float:
    total = sum(histogram.values())
    if not total:
        return 0.0
    rank, seen = math.ceil(q * total), 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen >= rank:
            return float(ms)
    return float(max(histogram))


def summarize(run: LocustRun, names: tuple[str, ...]) -> dict:
    """Payments (or the named requests): count, per second, latency percentiles, failures
    split into business refusals and real failures; the CPU of each group in cores."""
    stats = Path(f"{run.prefix}.json")
    if not stats.exists():
        tail = Path(f"{run.prefix}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"Locust run {run.name} left no statistics (exit "
                           f"{run.returncode}):\n{tail}")
    entries = json.loads(stats.read_text())
    picked = [e for e in entries if e["name"] in names]
    histogram: dict[int, int] = {}
    per_second: dict[int, int] = {}
    fails_per_second: dict[int, int] = {}
    requests = failures = 0
    start = min((e["start_time"] for e in entries), default=0)
    end = max((e["last_request_timestamp"] or 0 for e in entries), default=0)
    for e in picked:
        requests += e["num_requests"]
        failures += e["num_failures"]
        for ms, n in e["response_times"].items():
            histogram[int(float(ms))] = histogram.get(int(float(ms)), 0) + n
        for ts, n in e["num_reqs_per_sec"].items():
            per_second[int(ts)] = per_second.get(int(ts), 0) + n
        for ts, n in e["num_fail_per_sec"].items():
            fails_per_second[int(ts)] = fails_per_second.get(int(ts), 0) + n
    refusals: dict[str, int] = {}
    unexpected: dict[str, int] = {}
    failures_csv = Path(f"{run.prefix}_failures.csv")
    if failures_csv.exists():
        with open(failures_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                error, count = row["Error"], int(row["Occurrences"])
                match = re.search(r"refusal: (\w+)", error)
                if match:
                    refusals[match.group(1)] = refusals.get(match.group(1), 0) + count
                else:
                    key = f"{row['Name']}: {error}"[:160]
                    unexpected[key] = unexpected.get(key, 0) + count
    exceptions_csv = Path(f"{run.prefix}_exceptions.csv")
    if exceptions_csv.exists():   # a user's task that raised: the generator's own failure
        with open(exceptions_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                key = f"locustfile: {row.get('Message', '')}"[:160]
                unexpected[key] = unexpected.get(key, 0) + int(row.get("Count") or 1)
    all_requests = sum(e["num_requests"] for e in entries if e["method"] != "NOTE")
    notes = {e["name"]: e["num_requests"] for e in entries if e["method"] == "NOTE"}
    window = max(end - start, 1e-9)
    succeeded = requests - failures
    return {
        "requests": requests, "succeeded": succeeded, "window_s": round(window, 2),
        "per_s": round(succeeded / window, 1),
        "p50_ms": _percentile(histogram, 0.50), "p95_ms": _percentile(histogram, 0.95),
        "p99_ms": _percentile(histogram, 0.99), "max_ms": float(max(histogram, default=0)),
        "all_requests_per_s": round(all_requests / window, 1),
        "refusals": refusals, "unexpected_failures": unexpected,
        "unexpected_count": sum(unexpected.values()), "notes": notes,
        "per_second": {ts: per_second[ts] - fails_per_second.get(ts, 0)
                       for ts in sorted(per_second)},
        "cpu_cores": _cpu_in_window(run, start, end),
        "locust_exit": run.returncode,
    }


def _cpu_in_window(run: LocustRun, start: float, end: float) -> dict[str, float]:
    """CPU cores each group used while requests were being made (not while Locust started
    or the run wound down): the difference of the two samples nearest the window's ends."""
    inside = [(at, used) for at, used in run.cpu_series if start - 0.5 <= at <= end + 1.5]
    if len(inside) < 2:
        return {k: round(v / max(run.elapsed_s, 1e-9), 2) for k, v in run.cpu.items()}
    (t0, first), (t1, last) = inside[0], inside[-1]
    cores = {k: round((last[k] - first.get(k, 0.0)) / max(t1 - t0, 1e-9), 2) for k in last}
    services = [k for k in cores if k in ("central", *BANKS)]
    if services:
        cores["rail"] = round(sum(cores[k] for k in services), 2)
    return cores


def draw_png(run: LocustRun, summary: dict, names: tuple[str, ...], path: Path) -> None:
    """Throughput, latency and CPU over the run, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    series = summary["per_second"]
    t0 = min(series, default=0)
    # Drop the last, partial second.
    xs = [ts - t0 for ts in series][:-1]
    top.plot(xs, [series[ts] for ts in series][:-1], color="tab:blue")
    top.set_ylabel("payments/s (succeeded)")
    top.set_title(f"{run.name}: {summary['per_s']} payments/s, p50/p95/p99 "
                  f"{summary['p50_ms']:.0f}/{summary['p95_ms']:.0f}/{summary['p99_ms']:.0f} ms")
    top.grid(alpha=0.3)
    history: dict[str, list] = {}
    path_csv = Path(f"{run.prefix}_stats_history.csv")
    if path_csv.exists():
        with open(path_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                if row["Name"] in names and row["99%"] not in ("N/A", ""):
                    history.setdefault(row["Name"], []).append(
                        (int(row["Timestamp"]) - t0, float(row["50%"]), float(row["95%"]),
                         float(row["99%"])))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for (label, rows), color in zip(history.items(), colors):
        ts = [r[0] for r in rows]
        middle.plot(ts, [r[1] for r in rows], color=color, linestyle=":", label=f"{label} p50")
        middle.plot(ts, [r[2] for r in rows], color=color, linestyle="--", label=f"{label} p95")
        middle.plot(ts, [r[3] for r in rows], color=color, label=f"{label} p99")
    middle.axhline(P99_TARGET_MS, color="grey", linewidth=0.8)
    middle.set_ylabel("latency ms (Locust's 10 s window)")
    middle.legend(fontsize=7, ncol=2)
    middle.grid(alpha=0.3)
    prev = None
    cpu_rows: dict[str, list] = {}
    for at, used in run.cpu_series:
        if prev is not None and at > prev[0]:
            for group in (g for g in used if "[" not in g):   # groups; processes apart
                cpu_rows.setdefault(group, []).append(
                    (at - t0, (used[group] - prev[1].get(group, 0)) / (at - prev[0])))
        prev = (at, used)
    for group, rows in cpu_rows.items():
        bottom.plot([r[0] for r in rows], [r[1] for r in rows], label=group)
    bottom.set_ylabel("CPU cores")
    bottom.set_xlabel("seconds")
    bottom.legend(fontsize=7, ncol=5)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- the command -----------------------------------------------------------------------

def _run(args: argparse.Namespace) -> int:
    import psutil

    scenarios = [s.strip() for s in args.scenario.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or not scenarios:
        print(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}",
              file=sys.stderr)
        return 2
    rounds = max(args.rounds, 1)
    run_id = secrets.token_hex(4)
    out = (args.out or REPO / "var" / "loadtest" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    baseline_s = args.baseline_duration or args.duration
    max_conn = int(pg_setting(args.pg, "max_connections"))
    clients = 0 if args.no_baselines else min(args.users, max_conn - 30)
    # Each process keeps a pool of pool_size (+ as many overflow) connections; with pgbench's
    # clients beside them they must fit PostgreSQL's max_connections, with room to spare.
    processes = 2 * args.workers + args.central_workers
    fast_path_conns = 2 * args.workers * 5   # the payment engine's and credits' own pools
    pool_size = max(2, min(10, (max_conn - 15 - fast_path_conns - clients) // (2 * processes)))
    machine = {"cpus": os.cpu_count(), "cpu_model": _cpu_model(),
               "postgres": pg_setting(args.pg, "server_version"),
               "pg_max_connections": max_conn,
               "synchronous_commit": pg_setting(args.pg, "synchronous_commit"),
               "autovacuum": pg_setting(args.pg, "autovacuum"),
               "vacuum_before_scenarios": not args.no_vacuum,
               "python": sys.version.split()[0]}
    results: dict = {"command": "yuanrail loadtest " + " ".join(sys.argv[2:]),
                     "args": {k: str(v) for k, v in vars(args).items() if k != "run"},
                     "machine": machine, "rounds": [], "baselines": {}, "scenarios": {}}
    print(f"yuanrail loadtest: {machine['cpus']} CPUs ({machine['cpu_model']}), PostgreSQL "
          f"{machine['postgres']}, {args.users} users, {args.duration} s per run, "
          f"{args.workers} worker(s) per bank, "
          f"{rounds} round(s); output in {out}", flush=True)
    rail = None
    try:
        print("starting central and two banks on PostgreSQL and Redis ...", flush=True)
        rail = start_rail(args, out, run_id, pool_size)
        sys.path.insert(0, str(LOADTESTS))
        from provision import Operators, provision

        payers = args.payers or max(math.ceil(args.users * args.wallets_per_user / 2) + 4, 8)
        made = asyncio.run(provision(Operators(rail.central_url, CENTRAL_TOKEN, rail.bank_urls,
                                               BANK_TOKENS),
                                     payers_per_bank=payers, merchants_per_bank=args.merchants))
        (out / "provision.json").write_text(json.dumps(made))
        print(f"  provisioned {len(made['payers'])} payers and {len(made['merchants'])} "
              f"merchants in {made['provision_s']} s", flush=True)
        balanced, lines = asyncio.run(audit_until_balanced(rail))
        if not balanced:
            print("\n".join(lines))
            raise RuntimeError("the rail does not balance after the setup step")
        groups: dict = {s.name: (lambda root=psutil.Process(s.process.pid): [root])
                        for s in rail.services}
        groups.update({"postgres": "postgres", "redis": "redis-server"})
        databases = {url.rsplit("/", 1)[-1].split("?")[0]: role
                     for role, url in rail.databases.items()}
        env = {"YUANRAIL_LOAD_PROVISION": str(out / "provision.json")}
        for number in range(rounds):
            tag = "" if rounds == 1 else f"-r{number + 1}"
            this: dict = {"baselines": {}, "scenarios": {}}
            results["rounds"].append(this)
            if not args.no_baselines:
                print(f"machine limits{f' (round {number + 1})' if rounds > 1 else ''}, the "
                      "rail idle:", flush=True)
                this["baselines"] = _baselines(args, out, tag, clients, baseline_s, run_id,
                                               psutil)
            for scenario in scenarios:
                name = f"{scenario}{tag}"
                if not args.no_vacuum:
                    took = vacuum_databases(list(rail.databases.values()))
                    print(f"  vacuumed and analyzed the rail's databases in {took:.1f} s",
                          flush=True)
                # A service with several workers answers from one of them: no stages then.
                one_process = args.workers == 1 and args.central_workers == 1
                stages_before = read_stages(rail) if one_process else None
                run = run_locust(name, LOADTESTS / "locustfile.py", SCENARIOS[scenario], args,
                                 out, env, groups, PAYMENT_NAMES, databases)
                summary = summarize(run, PAYMENT_NAMES)
                summary["reads"] = _reads(run)
                if stages_before is not None:
                    summary["stages"] = stage_deltas(stages_before, read_stages(rail))
                balanced, lines = asyncio.run(audit_until_balanced(rail))
                summary["audit_balanced"] = balanced
                summary["audit"] = lines
                summary["ratios"] = _ratios(summary["per_s"], this["baselines"])
                summary["cpu_cost"] = cpu_cost(summary, this["baselines"])
                draw_png(run, summary, PAYMENT_NAMES, out / f"{name}.png")
                this["scenarios"][scenario] = summary
                print(f"  {name}: {summary['per_s']} payments/s, p50/p95/p99 "
                      f"{summary['p50_ms']:.0f}/{summary['p95_ms']:.0f}/"
                      f"{summary['p99_ms']:.0f} ms, {summary['unexpected_count']} failures, "
                      f"{sum(summary['refusals'].values())} refusals, audit "
                      f"{'BALANCED' if balanced else 'NOT BALANCED'}", flush=True)
                if not balanced:
                    print("\n".join("    " + line for line in lines))
        results["baselines"], results["scenarios"] = _medians(results["rounds"])
    finally:
        if rail is not None:
            rail.stop(args.keep_databases)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    report = render_report(results)
    (out / "results.md").write_text(report)
    print()
    print(report)
    ok = all(s["audit_balanced"] and s["unexpected_count"] == 0
             for s in results["scenarios"].values())
    return 0 if ok else 1


def _baselines(args, out: Path, tag: str, clients: int, duration_s: int, run_id: str,
               psutil) -> dict:
    found: dict = {}
    found["pgbench"] = run_pgbench(args.pg, clients, duration_s, run_id,
                                   out / f"pgbench{tag}.log")
    print(f"  pgbench TPC-B-like: {_fmt_baseline(found['pgbench'], 'tps')}", flush=True)
    found["verifier"] = run_verifier(4.0)
    print(f"  verifier: {found['verifier']['verifies_per_s']:,} verifies/s on one core "
          f"(bare P-256 verify {found['verifier']['bare_verifies_per_s']:,}/s)", flush=True)
    found["noop"] = _run_noop(args, out, duration_s, psutil, f"noop{tag}")
    print(f"  no-op FastAPI: {found['noop']['per_s']:,} requests/s, p99 "
          f"{found['noop']['p99_ms']:.0f} ms", flush=True)
    return found


def _ratios(per_s: float, baselines: dict) -> dict:
    """payments/s over each machine limit measured in the same round."""
    limits = {"pgbench": baselines.get("pgbench", {}).get("tps"),
              "verifier": baselines.get("verifier", {}).get("verifies_per_s"),
              "noop": baselines.get("noop", {}).get("per_s")}
    return {name: round(per_s / value, 3) for name, value in limits.items() if value}


def cpu_cost(summary: dict, baselines: dict) -> dict:
    """What a payment costs of the whole machine's CPU (every process on it, the generator
    and PostgreSQL included), in ms and in pgbench transactions of the same round (pgbench's
    machine CPU over its TPS). A scenario that kept the machine as busy as pgbench did would
    reach 1 / `pgbench_txns` x pgbench: the ratio's ceiling at that cost, whatever the
    latency. Empty without the figures."""
    machine = (summary.get("cpu_cores") or {}).get("machine")
    bench = baselines.get("pgbench") or {}
    bench_machine = (bench.get("cpu_cores") or {}).get("machine")
    if not machine or not summary.get("per_s") or not bench.get("tps") or not bench_machine:
        return {}
    payment_ms = 1000 * machine / summary["per_s"]
    txn_ms = 1000 * bench_machine / bench["tps"]
    return {"payment_ms": round(payment_ms, 3), "pgbench_txn_ms": round(txn_ms, 3),
            "pgbench_txns": round(payment_ms / txn_ms, 2)}


def _median(values: list):
    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    value = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return int(round(value)) if all(isinstance(v, int) for v in values) else round(value, 3)


def _median_dict(items: list[dict]) -> dict:
    """Key by key: the median of numbers, merged counts of refusals and failures, all of
    the audits, the first of anything else."""
    merged: dict = {}
    for key in items[0]:
        values = [item.get(key) for item in items]
        first = values[0]
        if key in ("refusals", "unexpected_failures", "notes"):
            total: dict = {}
            for value in values:
                for k, v in (value or {}).items():
                    total[k] = total.get(k, 0) + v
            merged[key] = total
        elif key == "unexpected_count":
            merged[key] = sum(values)
        elif key == "audit_balanced":
            merged[key] = all(values)
        elif key == "audit":
            merged[key] = next((v for v, ok in zip(values, (i.get("audit_balanced", True)
                                                            for i in items)) if not ok), first)
        elif isinstance(first, bool) or not isinstance(first, (int, float, dict)):
            merged[key] = first
        elif isinstance(first, dict):
            merged[key] = _median_dict([v or {} for v in values]) if key != "per_second" \
                else first
        else:
            merged[key] = _median(values)
    return merged


def _medians(rounds: list[dict]) -> tuple[dict, dict]:
    """The figures of several rounds as medians (the ratios too: each round's own)."""
    if len(rounds) == 1:
        return rounds[0]["baselines"], rounds[0]["scenarios"]
    baselines = {name: _median_dict([r["baselines"][name] for r in rounds
                                     if name in r["baselines"]])
                 for name in rounds[0]["baselines"]}
    scenarios = {name: _median_dict([r["scenarios"][name] for r in rounds])
                 for name in rounds[0]["scenarios"]}
    for name, summary in scenarios.items():
        summary["rounds"] = [r["scenarios"][name]["per_s"] for r in rounds]
    return baselines, scenarios


def _reads(run: LocustRun) -> dict:
    summary = summarize(run, READ_NAMES)
    return {k: summary[k] for k in ("requests", "per_s", "p50_ms", "p95_ms", "p99_ms")}


def _run_noop(args, out: Path, duration_s: int, psutil, name: str = "noop") -> dict:
    from yuanrail.processes import free_port, start_uvicorn, wait_healthy

    port = free_port()
    service = start_uvicorn("noop", "noop_app:create_app", port,
                            {"PYTHONPATH": str(LOADTESTS)}, out / "logs", workers=args.workers)
    try:
        wait_healthy(service, timeout_s=60)
        noop_args = argparse.Namespace(**{**vars(args), "duration": duration_s})
        run = run_locust(name, LOADTESTS / "noop_locustfile.py", ["NoopUser"], noop_args, out,
                         {"YUANRAIL_LOAD_NOOP_URL": service.url},
                         {"server": lambda: [psutil.Process(service.process.pid)]}, ("noop",))
    finally:
        service.stop()
    summary = summarize(run, ("noop",))
    return {k: summary[k] for k in ("per_s", "p50_ms", "p95_ms", "p99_ms", "unexpected_count",
                                    "cpu_cores")}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _fmt_baseline(value: dict, key: str) -> str:
    if "error" in value:
        return value["error"]
    return (f"{value[key]:,.0f} {key} ({value['clients']} clients, scale {value['scale']}, "
            f"latency {value['latency_ms']} ms)")


def render_report(results: dict) -> str:
    """The results table (Markdown), the ratios to the machine's limits, the targets."""
    b = results["baselines"]
    pg = b.get("pgbench", {}).get("tps")
    ver = b.get("verifier", {}).get("verifies_per_s")
    noop = b.get("noop", {}).get("per_s")
    m = results["machine"]
    rounds = len(results.get("rounds", [])) or 1
    lines = [f"Command: `{results['command']}`", "",
             f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), PostgreSQL {m['postgres']} "
             f"(synchronous_commit={m['synchronous_commit']}, autovacuum="
             f"{m.get('autovacuum', '?')}), Python {m['python']}; the generator on the same "
             "machine. The rail's databases "
             + ("vacuumed and analyzed before each scenario."
                if m.get("vacuum_before_scenarios") else "not vacuumed between scenarios.")
             + (f" Medians of {rounds} interleaved rounds; each ratio is the median of the "
                "rounds' own ratios." if rounds > 1 else ""), ""]
    if b:
        lines += ["| machine limit (same run) | figure |", "| --- | --- |"]
        if "pgbench" in b:
            lines.append(f"| pgbench TPC-B-like | {_fmt_baseline(b['pgbench'], 'tps')} |")
        if "verifier" in b:
            lines.append(f"| hot-path verifier, one core | {ver:,} verifies/s (bare P-256 "
                         f"{b['verifier']['bare_verifies_per_s']:,}/s) |")
        if "noop" in b:
            lines.append(f"| no-op FastAPI, same Locust settings | {noop:,} requests/s, p99 "
                         f"{b['noop']['p99_ms']:.0f} ms |")
        lines.append("")
    lines += ["| scenario | payments/s | p50 ms | p95 ms | p99 ms | failures | refusals | "
              "x pgbench | x verifier | x no-op | CPU cores: generator / rail (Central + Yangtze + "
              "Pearl) / postgres (by database) / redis | audit |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for name, s in results["scenarios"].items():
        cpu = s["cpu_cores"]
        ratios = s.get("ratios") or {}
        lines.append(
            f"| {name} | {s['per_s']:,} | {s['p50_ms']:.0f} | {s['p95_ms']:.0f} | "
            f"{s['p99_ms']:.0f} | {s['unexpected_count']} | {sum(s['refusals'].values())} | "
            f"{_fmt_ratio(ratios.get('pgbench'))} | {_fmt_ratio(ratios.get('verifier'))} | "
            f"{_fmt_ratio(ratios.get('noop'))} "
            f"| {cpu.get('generator', 0)} / {cpu.get('rail', 0)} ({_rail_split(cpu)}) / "
            f"{cpu.get('postgres', 0)}{_postgres_split(cpu)} / {cpu.get('redis', 0)} "
            f"(machine {cpu.get('machine', 0)}) | "
            f"{'balanced' if s['audit_balanced'] else 'NOT BALANCED'} |")
    lines.append("")
    for name, s in results["scenarios"].items():
        extra = []
        if s["reads"]["requests"]:
            extra.append(f"reads {s['reads']['per_s']}/s p99 {s['reads']['p99_ms']:.0f} ms")
        if s["refusals"]:
            extra.append("refusals " + ", ".join(f"{k} {v}" for k, v in s["refusals"].items()))
        if s["unexpected_failures"]:
            extra.append("FAILURES " + "; ".join(f"{k} x{v}"
                                                 for k, v in s["unexpected_failures"].items()))
        if s["notes"]:
            extra.append(", ".join(f"{k} {v}" for k, v in s["notes"].items()))
        if s.get("rounds"):
            extra.append("payments/s by round " + ", ".join(f"{v:,}" for v in s["rounds"]))
        if extra:
            lines.append(f"- {name}: " + "; ".join(extra))
    lines += _stage_lines(results["scenarios"])
    if pg:
        lines += ["", "Targets (2 cores, generator on the same machine):"]
        for name, fraction in TARGETS.items():
            s = results["scenarios"].get(name)
            if s is None:
                continue
            ratio = (s.get("ratios") or {}).get("pgbench", s["per_s"] / pg)
            verdict = "MET" if ratio >= fraction else \
                f"MISSED by {100 * (1 - ratio / fraction):.0f}%"
            line = (f"- {name}: {s['per_s']:,} payments/s = {ratio:.2f} x pgbench; "
                    f"target >= {fraction} x (~{fraction * pg:,.0f}/s): {verdict}")
            if name in ("qr", "qr-static"):
                line += (f"; p99 {s['p99_ms']:.0f} ms, target < {P99_TARGET_MS} ms: "
                         f"{'MET' if s['p99_ms'] < P99_TARGET_MS else 'MISSED'}")
            lines.append(line + _cost_line(s.get("cpu_cost") or {}, fraction))
        failures = sum(s["unexpected_count"] for s in results["scenarios"].values())
        lines.append(f"- failures that are not business refusals: {failures} "
                     f"({'MET' if failures == 0 else 'MISSED'})")
    return "\n".join(lines) + "\n"


def _cost_line(cost: dict, fraction: float) -> str:
    """A payment's CPU beside the target's budget: at `fraction` x pgbench on pgbench's share
    of the machine, a payment may cost at most 1 / `fraction` pgbench transactions."""
    if not cost:
        return ""
    txns = cost["pgbench_txns"]
    return (f"; CPU per payment {cost['payment_ms']:.2f} ms = {txns:.2f} pgbench "
            f"transactions (budget {1 / fraction:.2f}: "
            f"{'within' if txns <= 1 / fraction else 'OVER'}; ceiling at pgbench's CPU "
            f"{1 / txns:.2f} x)")


def _stage_lines(scenarios: dict) -> list[str]:
    """The hot path's stages, per scenario: where a payment waits and what each batch
    costs (from `stage_deltas`; only with one process per service)."""
    lines: list[str] = []
    for name, s in scenarios.items():
        stages = s.get("stages")
        if not stages:
            continue
        if not lines:
            lines = ["", "Stages (each service's batches and calls during the scenario; wait: "
                     "an item queued for its batch; run: a batch from start to its answers):",
                     "", "| scenario | service | stage | batches or calls | items per batch | "
                     "wait ms | run or call ms |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
        for service, rows in stages.items():
            for stage, r in rows.items():
                if "calls" in r:
                    lines.append(f"| {name} | {service} | {stage} | {r['calls']:,} | | | "
                                 f"{r['call_ms']} |")
                else:
                    lines.append(f"| {name} | {service} | {stage} | {r['batches']:,} | "
                                 f"{r['items_per_batch']} | {r.get('wait_ms', '')} | "
                                 f"{r.get('run_ms', '')} |")
    return lines


def _rail_split(cpu: dict) -> str:
    """`C 0.4 + Y 0.35 + P 0.34`; a service with several busy processes (uvicorn workers)
    shows each: `Y 0.36 [0.18 + 0.18]`."""
    parts = []
    for name in ("central", *BANKS):
        processes = sorted((int(key[len(name) + 1:-1]), cores) for key, cores in cpu.items()
                           if key.startswith(f"{name}["))
        busy = [cores for _index, cores in processes if cores >= 0.01]
        each = f" [{' + '.join(str(c) for c in busy)}]" if len(busy) > 1 else ""
        parts.append(f"{name[0].upper()} {cpu.get(name, 0)}{each}")
    return " + ".join(parts)


def _postgres_split(cpu: dict) -> str:
    """` (C 0.42 + Y 0.13 + P 0.13 + server 0.01)`: PostgreSQL's cores by the database its
    backends served (`CpuMeter`), and its vacuum workers' when they ran; empty when the
    run did not split them."""
    parts = [f"{name[0].upper()} {cpu[f'postgres[{name}]']}" for name in ("central", *BANKS)
             if f"postgres[{name}]" in cpu]
    if not parts:
        return ""
    vacuum = cpu.get("postgres[autovacuum]", 0)
    return (f" ({' + '.join(parts)} + server {cpu.get('postgres[server]', 0)}"
            f"{f' + autovacuum {vacuum}' if vacuum else ''})")


def _fmt_ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "n/a"
