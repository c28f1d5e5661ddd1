"""A smoke run of `yuanrail loadtest`: central and two banks as real processes on PostgreSQL
and Redis, a few Locust users of every kind for a few seconds, then the checks that matter
at any load: no failure that is not a business refusal, and the conservation audit across
central and both banks balanced afterwards. Also that the run leaves its figures, Locust's
CSV and HTML and the PNG. The machine's limits (pgbench, the no-op endpoint) are skipped
here: they are for real runs (docs/performance.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import PG_ADMIN_URL, REDIS_URL

pytestmark = pytest.mark.e2e

if importlib.util.find_spec("locust") is None:  # never import locust here: it patches the process
    pytest.skip("the load extra is not installed (pip install -e .[load])", allow_module_level=True)
if importlib.util.find_spec("matplotlib") is None:
    pytest.skip("the load extra is not installed", allow_module_level=True)

DURATION_S = 6      # of load; with start-up, setup, audit and shutdown about 20 s
BUDGET_S = 30       # what the run should take; a loaded CI machine gets half as much again


@pytest.mark.timeout(BUDGET_S * 2 + 30)
def test_a_short_mixed_load_has_no_unexpected_failure_and_the_rail_balances(tmp_path):
    out = tmp_path / "loadtest"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "yuanrail.cli", "loadtest", "--duration", str(DURATION_S),
         "--users", "6", "--workers", "1", "--processes", "1", "--scenario", "mix",
         "--no-baselines",
         "--payers", "4", "--merchants", "2", "--pg", PG_ADMIN_URL, "--redis", REDIS_URL,
         "--out", str(out)],
        capture_output=True, text=True, timeout=BUDGET_S * 2,
        env={k: v for k, v in os.environ.items() if not k.startswith("YUANRAIL_BANK_")})
    elapsed = time.monotonic() - started
    report = f"exit {done.returncode} after {elapsed:.1f} s\n{done.stdout[-4000:]}\n" \
             f"{done.stderr[-4000:]}"
    assert done.returncode == 0, report
    results = json.loads((out / "results.json").read_text())
    mix = results["scenarios"]["mix"]
    assert mix["unexpected_count"] == 0, (mix["unexpected_failures"], report)
    assert mix["audit_balanced"], "\n".join(mix["audit"])
    assert mix["succeeded"] > 0, report
    # The rail's databases were vacuumed before the scenario, as pgbench's tables are.
    assert results["machine"]["vacuum_before_scenarios"] is True
    assert "vacuumed and analyzed the rail's databases" in done.stdout, report
    assert results["machine"]["autovacuum"] in ("on", "off")
    for name in ("mix_stats.csv", "mix_stats_history.csv", "mix_failures.csv", "mix.html",
                 "mix.png", "results.md"):
        assert (out / name).stat().st_size > 0, name
    assert elapsed < BUDGET_S * 1.5, f"the smoke run took {elapsed:.1f} s (budget {BUDGET_S} s)"
