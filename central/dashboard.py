"""Central's operator dashboard (docs/dashboards.md): what the page shows and where each
figure comes from. Served by rail_service/dashboard.py at /dashboard.

- supply and each bank's reserves and e-CNY: `Central.supply()`, the same as GET /v1/supply;
- supply over time: the checkpoints central already signs (one a change of the chain's
  head), read back from its database: durable, and each point is a signed statement;
- interbank volume and latency, settled and rejected: counted in memory by this process as
  it finishes transfers (rail_service/metrics.py); waiting transfers from the database;
- the conservation audit: `Central.audit()`, recomputed from the whole journal, so at most
  once every AUDIT_EVERY_MS whatever the number of viewers;
- each bank's checkpoint alarm: the bank's own finding (bank/checkpoints.py), a statement
  the bank signs, read with a read central signs, checked with the bank's certified key."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from central.adapters import chain_sql
from central.adapters import registry_sql
from central.adapters import transfers_sql as tsql
from central.services import Central
from rail_protocol.envelope import now_ms, verify_statement
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import CHECKPOINT_FINDING
from rail_protocol.keys import PublicKey
from rail_protocol.money import format_fen
from rail_service.dashboard import bar_chart, line_chart, template_environment, yuan_axis

TEMPLATES = Path(__file__).parent / "static" / "templates"
SUPPLY_POINTS = 60          # checkpoints on the supply chart
AUDIT_EVERY_MS = 15_000     # the audit reads the whole journal: not at every refresh
FINDINGS_EVERY_MS = 2_000   # banks are asked for their finding at most this often
FINDING_MAX_AGE_MS = 60_000  # an older signed finding is stale, not believed


def clock_text(at_ms: int | None) -> str:
    if at_ms is None:
        return "-"
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%H:%M:%S")


def read_finding(statement: object, bank_id: str, bank_key: PublicKey, at_ms: int) -> dict:
    """A bank's finding, believed only if that bank signed it, it is about that bank, and
    it is recent; otherwise a finding whose status says why not (shown as an alarm)."""
    if not isinstance(statement, dict):
        return {"status": "unreachable", "alarm": False, "detail": "the bank did not answer"}
    try:
        verify_statement(bank_key, statement)
    except RailError as exc:
        return {"status": "unverified", "alarm": True,
                "detail": f"the finding is not signed by the bank's key: {exc.code}"}
    if (statement.get("type") != CHECKPOINT_FINDING
            or statement.get("bank_id") != bank_id
            or type(statement.get("at_ms")) is not int
            or abs(at_ms - statement["at_ms"]) > FINDING_MAX_AGE_MS):
        return {"status": "unverified", "alarm": True,
                "detail": "the finding is not this bank's, or not recent"}
    return {"status": str(statement.get("status")), "alarm": statement.get("alarm") is True,
            "detail": str(statement.get("detail") or ""),
            "checkpoint_seq": statement.get("checkpoint_seq"),
            "alarms": statement.get("alarms") if type(statement.get("alarms")) is int else 0,
            "last_alarm": statement.get("last_alarm"),
            "checked_ms": statement.get("checked_ms")}


class CentralDashboard:
    """Gathers central's figures; the aggregation only, no HTTP of its own."""

    service = "central"
    title = "yuanrail central"

    def __init__(self, central: Central) -> None:
        self.central = central
        self.templates = template_environment(TEMPLATES)
        self._audit: dict | None = None
        self._findings: dict[str, dict] = {}
        self._findings_ms = 0
        self._refreshing = asyncio.Lock()   # many viewers: one audit, one round of asking

    def check_operator(self, token: str | None) -> None:
        self.central.check_operator(token)

    async def figures(self) -> dict:
        now = now_ms()
        supply = await self.central.supply()
        async with self.central.engine.connect() as conn:
            checkpoints = await chain_sql.recent_checkpoints(conn, SUPPLY_POINTS)
            waiting, oldest_ms = await tsql.prepared_count(conn)
            banks = await registry_sql.all_banks(conn)
        findings = await self._bank_findings(banks, now)
        for line in supply["banks"]:
            bank = banks.get(line["bank_id"])
            line["name"] = bank.name if bank else line["bank_id"]
            line["reserves_text"] = format_fen(line["reserves_fen"])
            line["holding_text"] = format_fen(line["holding_fen"])
            line["registry"] = findings.get(line["bank_id"]) or {
                "status": "unknown", "alarm": False, "detail": "no URL registered"}
        latest = checkpoints[-1][1] if checkpoints else None
        return {
            "service": "central", "at_ms": now, "stages": self.central.transfers.stages(),
            "supply": {**supply, "total_issued_text": format_fen(supply["total_issued_fen"]),
                       "backing_text": format_fen(supply["backing_fen"]),
                       "in_flight_text": format_fen(supply["in_flight_fen"])},
            "supply_history": [{"at_ms": at, "seq": s["seq"],
                                "total_supply_fen": s["total_supply_fen"]}
                               for at, s in checkpoints],
            "checkpoint": None if latest is None else {
                "seq": latest["seq"], "head_hash": latest["head_hash"],
                "at_ms": latest["at_ms"]},
            "interbank": self._interbank(),
            "settlement": {"waiting": waiting,
                           "oldest_waiting_ms": None if oldest_ms is None else now - oldest_ms},
            "audit": await self._audit_result(now),
            "alarms": [{"bank_id": b, **f} for b, f in sorted(findings.items()) if f["alarm"]],
        }

    def _interbank(self) -> dict:
        """This process's interbank settlements since it started (rail_service/metrics)."""
        tally = self.central.transfers.interbank
        outcomes = tally.outcomes
        count, amount = outcomes.accepted.recent(60)
        return {"settled_last_60s": count, "settled_last_60s_fen": amount,
                "settled_last_60s_text": format_fen(amount),
                "settled_total": outcomes.accepted.total_count,
                "settled_total_fen": outcomes.accepted.total_sum,
                "settled_total_text": format_fen(outcomes.accepted.total_sum),
                "rejected_total": outcomes.refused.total_count,
                "rejected_by_code": dict(outcomes.refusal_codes.most_common()),
                "latency_p50_ms": tally.latency_ms.percentile(50),
                "latency_p95_ms": tally.latency_ms.percentile(95),
                "per_second": [c for _s, c, _a in outcomes.accepted.series(60)]}

    async def _audit_result(self, now: int) -> dict:
        async with self._refreshing:
            if self._audit is None or now - self._audit["checked_ms"] >= AUDIT_EVERY_MS:
                report = (await self.central.audit()).to_dict()
                self._audit = {"balanced": report["balanced"],
                               "problems": report.get("problems", []), "checked_ms": now,
                               "checked_text": clock_text(now)}
            return self._audit

    async def _bank_findings(self, banks: dict, now: int) -> dict[str, dict]:
        async with self._refreshing:
            if now - self._findings_ms < FINDINGS_EVERY_MS:
                return self._findings
            asked = [b for b in banks.values() if b.url]
            answers = await asyncio.gather(*(
                self.central.bank_nodes.finding(b.url, self.central.key) for b in asked))
            self._findings = {b.bank_id: read_finding(a, b.bank_id,
                                                      PublicKey.from_text(b.public_key), now)
                              for b, a in zip(asked, answers, strict=True)}
            self._findings_ms = now
            return self._findings

    def charts(self, figures: dict) -> dict[str, str]:
        history = figures["supply_history"]
        banks = figures["supply"]["banks"]
        interbank = figures["interbank"]
        return {
            "supply": line_chart("e-CNY supply at each signed checkpoint",
                                 [clock_text(p["at_ms"]) for p in history],
                                 [p["total_supply_fen"] for p in history],
                                 formatter=yuan_axis),
            "holdings": bar_chart("e-CNY held per bank",
                                  {b["bank_id"]: b["holding_fen"] for b in banks},
                                  formatter=yuan_axis),
            "reserves": bar_chart("Reserves per bank",
                                  {b["bank_id"]: b["reserves_fen"] for b in banks},
                                  formatter=yuan_axis),
            "interbank": line_chart("Interbank transfers settled per second (last minute)",
                                    [f"-{60 - i}s" for i in range(60)],
                                    interbank["per_second"]),
        }
