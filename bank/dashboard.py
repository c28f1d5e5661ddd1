"""A bank node's operator dashboard (docs/dashboards.md): what the page shows and where each
figure comes from. Served by rail_service/dashboard.py at /dashboard.

- movements per second and refusals by code: counted in memory by the payment engine as it
  answers (rail_service/metrics.py; an addition per answer, nothing more on the hot path);
- wallets by class: the wallets table, counted by KYC class (open wallets);
- the outbox backlog: payments to other banks still `processing`, and vault instructions
  `pending`; the webhook backlog: deliveries still `pending`;
- the vault: its balance and the thresholds it is kept between (bank/vault.py);
- the registry alarm: the bank's own checkpoint watch (bank/checkpoints.py)."""

from __future__ import annotations

from pathlib import Path

from bank.adapters import books_sql
from bank.checkpoints import CheckpointWatch
from bank.common import PENDING, PROCESSING
from bank.config import BankSettings
from bank.services import Bank
from rail_protocol.envelope import now_ms
from rail_protocol.money import format_fen
from rail_service import dashboard as dashboard_web
from rail_service.dashboard import bar_chart, line_chart, template_environment
from rail_service.db import read_snapshot
from rail_service.extend import extend_app
from rail_service.metrics import Outcomes

TEMPLATES = Path(__file__).parent / "static" / "templates"
RATE_WINDOW_S = 10   # "per second now" is the mean over this many seconds


class BankDashboard:
    """Gathers one bank node's figures; the aggregation only, no HTTP of its own."""

    def __init__(self, bank: Bank, watch: CheckpointWatch, settings: BankSettings,
                 outcomes: Outcomes, *, stages=dict) -> None:
        self.bank, self.watch, self.settings, self.outcomes = bank, watch, settings, outcomes
        self.stages = stages   # the hot path's batches and calls (counts since start)
        self.service = bank.bank_id
        self.title = f"yuanrail bank {bank.bank_id}: {bank.name}"
        self.templates = template_environment(TEMPLATES)

    def check_operator(self, token: str | None) -> None:
        self.bank.check_operator(token)

    async def aclose(self) -> None:
        """Nothing to release (it is started like the app's other components)."""

    async def figures(self) -> dict:
        now = now_ms()
        async with read_snapshot(self.bank.engine) as conn:
            classes = await books_sql.open_wallets_by_class(conn)
            backlog = await books_sql.unfinished(conn, [PROCESSING, PENDING])
            hooks_waiting, hooks_oldest = await books_sql.webhooks_pending(conn)
            vault_fen = await books_sql.vault_balance(conn)
        registry = await self.watch.status()
        accepted, refused = self.outcomes.accepted, self.outcomes.refused
        recent, _amount = accepted.recent(RATE_WINDOW_S)
        last_minute, last_minute_fen = accepted.recent(60)

        def age(oldest: int | None) -> int | None:
            return None if oldest is None else now - oldest

        return {
            "service": self.bank.bank_id, "bank_id": self.bank.bank_id, "name": self.bank.name,
            "at_ms": now, "stages": self.stages(),
            "payments": {
                # tenths of a payment per second, as text: no float
                "per_second_text": f"{recent // RATE_WINDOW_S}.{recent * 10 // RATE_WINDOW_S % 10}",
                "last_60s": last_minute, "last_60s_fen": last_minute_fen,
                "last_60s_text": format_fen(last_minute_fen),
                "total": accepted.total_count,
                "per_second": [c for _s, c, _a in accepted.series(60)]},
            "refusals": {"total": refused.total_count, "last_60s": refused.recent(60)[0],
                         "by_code": dict(self.outcomes.refusal_codes.most_common())},
            "wallet_classes": {str(k): classes.get(k, 0)
                               for k in sorted(set(classes) | set(self.bank.limits))},
            "outbox": {"processing": backlog.get(PROCESSING, (0, None))[0],
                       "oldest_processing_ms": age(backlog.get(PROCESSING, (0, None))[1]),
                       "vault_pending": backlog.get(PENDING, (0, None))[0]},
            "webhooks": {"pending": hooks_waiting, "oldest_pending_ms": age(hooks_oldest)},
            "vault": {"balance_fen": vault_fen, "balance_text": format_fen(vault_fen),
                      "low_fen": self.settings.vault_low_fen,
                      "target_fen": self.settings.vault_target_fen,
                      "high_fen": self.settings.vault_high_fen,
                      "low_text": format_fen(self.settings.vault_low_fen),
                      "target_text": format_fen(self.settings.vault_target_fen),
                      "high_text": format_fen(self.settings.vault_high_fen)},
            "registry": {k: registry.get(k) for k in (
                "status", "alarm", "detail", "checked_ms", "checkpoint", "alarms")},
            "alarms": [{"bank_id": self.bank.bank_id, "status": registry["status"],
                        "detail": registry.get("detail")}] if registry.get("alarm") else [],
        }

    def charts(self, figures: dict) -> dict[str, str]:
        refusals = figures["refusals"]["by_code"]
        return {
            "payments": line_chart("Movements accepted per second (last minute)",
                                   [f"-{60 - i}s" for i in range(60)],
                                   figures["payments"]["per_second"]),
            "refusals": bar_chart("Refusals by code (since start)", refusals),
            "classes": bar_chart("Open wallets by KYC class",
                                 {f"class {k}": n for k, n in
                                  figures["wallet_classes"].items()}),
        }


def _stages(state) -> dict:
    """The payment engine's batchers and calls, and the credit batches (message 2s)."""
    stages = state.payments.stages()
    credits = state.credits.stages()
    stages["batches"].update(credits["batches"])
    stages["calls"].update(credits["calls"])
    return stages


def install(app, settings: BankSettings) -> None:
    """Serve the bank's dashboard; it starts after the payment engine, whose counts it
    shows (installed after `bank.payment_engine.install`)."""

    async def start(a) -> BankDashboard:
        a.state.dashboard = BankDashboard(a.state.bank, a.state.checkpoints, settings,
                                          a.state.payments.outcomes,
                                          stages=lambda: _stages(a.state))
        return a.state.dashboard

    extend_app(app, "dashboard_board", start)
    dashboard_web.install(app, settings.bank_id, settings.operator_token)
