"""What `yuanrail loadtest` says of CPU (each service's cores, and each of its busy
processes when it runs several uvicorn workers, `--workers`) and of the hot path's stages
(each batcher's batches, waits and runs; each client's calls)."""

from __future__ import annotations

from yuanrail.loadtest_command import CpuMeter, _postgres_split, _rail_split


def test_a_bank_with_several_busy_workers_shows_each_and_one_process_shows_none():
    cpu = {"central": 0.4, "central[0]": 0.4,
           "yangtze": 0.37, "yangtze[0]": 0.0, "yangtze[1]": 0.18, "yangtze[2]": 0.19,
           "pearl": 0.3, "pearl[0]": 0.3}
    assert _rail_split(cpu) == "C 0.4 + Y 0.37 [0.18 + 0.19] + P 0.3"


def test_workers_are_shown_in_their_order_past_nine():
    cpu = {"yangtze": 1.1, **{f"yangtze[{n}]": 0.1 * n for n in range(1, 12)}}
    shown = _rail_split(cpu).split("Y 1.1 [", 1)[1].split("]")[0].split(" + ")
    assert [float(c) for c in shown] == [0.1 * n for n in range(1, 12)]


class Backend:
    """A process as psutil shows it: PostgreSQL sets its title to say whom it serves."""

    def __init__(self, title: str) -> None:
        self.title = title

    def cmdline(self) -> list[str]:
        return [self.title]


def test_postgres_cpu_is_split_by_the_database_each_backend_serves():
    meter = CpuMeter({"postgres": "postgres"},
                     databases={"yrload_ab12_central": "central", "yrload_ab12_yangtze": "yangtze"})
    titles = {1: "postgres: 15/main: postgres yrload_ab12_central 127.0.0.1(5102) idle",
              2: "postgres: 15/main: postgres yrload_ab12_central 127.0.0.1(5103) COMMIT",
              3: "postgres: 15/main: postgres yrload_ab12_yangtze 127.0.0.1(5104) idle",
              4: "postgres: 15/main: walwriter",
              5: "postgres: 15/main: autovacuum worker yrload_ab12_central"}
    meter.database_of = {pid: meter._database(Backend(t)) for pid, t in titles.items()}
    meter.owner = {pid: "postgres" for pid in titles}
    meter.first = {1: 0.0, 2: 1.0, 3: 0.0, 4: 0.0, 5: 0.0}
    meter.last = {1: 2.0, 2: 2.5, 3: 1.0, 4: 0.25, 5: 0.5}
    used = meter.used()
    assert used["postgres"] == 5.25
    assert (used["postgres[central]"], used["postgres[yangtze]"], used["postgres[server]"],
            used["postgres[autovacuum]"]) == (3.5, 1.0, 0.25, 0.5)
    cores = {"postgres": 0.56, "postgres[central]": 0.42, "postgres[yangtze]": 0.13,
             "postgres[pearl]": 0.0, "postgres[server]": 0.01}
    assert _postgres_split(cores) == " (C 0.42 + Y 0.13 + P 0.0 + server 0.01)"
    assert _postgres_split({**cores, "postgres[autovacuum]": 0.05}) == \
        " (C 0.42 + Y 0.13 + P 0.0 + server 0.01 + autovacuum 0.05)"
    assert _postgres_split({"postgres": 0.5}) == ""


def test_the_meter_counts_each_process_of_a_service_and_their_sum():
    meter = CpuMeter({"central": lambda: [], "yangtze": lambda: [], "generator": lambda: []})
    meter.owner = {30: "yangtze", 10: "yangtze", 20: "yangtze", 40: "generator"}
    meter.first = {10: 0.0, 20: 1.0, 30: 2.0, 40: 0.0}
    meter.last = {10: 0.5, 20: 4.0, 30: 3.5, 40: 2.0}
    used = meter.used()
    assert used["yangtze"] == 5.0
    assert (used["yangtze[0]"], used["yangtze[1]"], used["yangtze[2]"]) == (0.5, 3.0, 1.5)
    assert used["generator"] == 2.0 and "generator[0]" not in used


def test_stage_deltas_are_what_each_stage_did_between_two_readings():
    from yuanrail.loadtest_command import stage_deltas

    before = {"yangtze": {"batches": {"pay-batch": {"batches": 10, "items": 30,
                                                    "wait_us": 60_000, "run_us": 50_000},
                                      "credit-batch": {"batches": 5, "items": 5}},
                          "calls": {"central": {"calls": 4, "unreachable": 0,
                                                "call_us": 40_000}}}}
    after = {"yangtze": {"batches": {"pay-batch": {"batches": 30, "items": 110,
                                                   "wait_us": 220_000, "run_us": 210_000},
                                     "credit-batch": {"batches": 9, "items": 25},
                                     "order-batch": {"batches": 0, "items": 0,
                                                     "wait_us": 0, "run_us": 0}},
                         "calls": {"central": {"calls": 24, "unreachable": 1,
                                               "call_us": 440_000}}},
             "central": {}}
    assert stage_deltas(before, after) == {
        "yangtze": {
            # 80 items in 20 batches, waiting 160 ms in all and running 160 ms in all
            "pay-batch": {"batches": 20, "items_per_batch": 4.0, "wait_ms": 2.0,
                          "run_ms": 8.0},
            "credit-batch": {"batches": 4, "items_per_batch": 5.0},
            "calls to central": {"calls": 20, "unreachable": 1, "call_ms": 20.0}},
        "central": {}}


def test_the_report_has_a_stage_table_only_where_stages_were_read():
    from yuanrail.loadtest_command import _stage_lines

    scenarios = {"interbank": {"stages": {"central": {
        "transfer-batcher": {"batches": 900, "items_per_batch": 4.7, "wait_ms": 3.5,
                             "run_ms": 8.2},
        "calls to banks": {"calls": 683, "unreachable": 0, "call_ms": 18.2}}}},
        "qr": {}}
    lines = _stage_lines(scenarios)
    assert "| interbank | central | transfer-batcher | 900 | 4.7 | 3.5 | 8.2 |" in lines
    assert "| interbank | central | calls to banks | 683 | | | 18.2 |" in lines
    assert not any("| qr |" in line for line in lines)
    assert _stage_lines({"qr": {}}) == []


def test_a_payments_cpu_is_weighed_in_pgbench_transactions_of_the_same_round():
    from yuanrail.loadtest_command import _cost_line, cpu_cost

    pgbench = {"pgbench": {"tps": 4000.0, "cpu_cores": {"machine": 1.8}}}   # 0.45 ms a txn
    cost = cpu_cost({"per_s": 900.0, "cpu_cores": {"machine": 1.62}}, pgbench)   # 1.8 ms
    assert cost == {"payment_ms": 1.8, "pgbench_txn_ms": 0.45, "pgbench_txns": 4.0}
    assert _cost_line(cost, 0.25) == ("; CPU per payment 1.80 ms = 4.00 pgbench transactions "
                                      "(budget 4.00: within; ceiling at pgbench's CPU 0.25 x)")
    dearer = cpu_cost({"per_s": 800.0, "cpu_cores": {"machine": 1.8}}, pgbench)
    assert dearer["pgbench_txns"] == 5.0 and "OVER" in _cost_line(dearer, 0.25)
    assert cpu_cost({"per_s": 900.0, "cpu_cores": {"machine": 1.6}}, {}) == {}
    assert _cost_line({}, 0.25) == ""
