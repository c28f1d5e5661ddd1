"""A bank node's watch on central's signed checkpoints (docs/registry.md): fetch the latest,
verify central's signature, refuse a rollback, and compare the bank's own books (its audit)
with its line; an alarm when they do not agree. Served at GET /v1/operator/checkpoint, and
to central (whose dashboard shows every bank's alarm) as a statement signed by the bank at
GET /v1/registry/finding.

The watch runs in the bank's background loop (one process leads); a process whose last
check is stale checks again when asked, so every worker answers with a recent finding."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from bank.domain import registry as rules
from bank import api_schemas as S
from bank.services import Bank
from central import chain
from rail_protocol.envelope import now_ms, sign_statement
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import CHECKPOINT_FINDING
from rail_protocol.request_auth import verify_read
from rail_service.http import JSON, bearer_token
from rail_service.openapi import answers

log = logging.getLogger("yuanrail.bank.checkpoints")
# Alarms remembered for the operator (the latest last).
KEPT_ALARMS = 20


class CheckpointWatch:
    def __init__(self, bank: Bank, *, check_s: float = 5.0, confirm_s: float = 15.0) -> None:
        self.bank = bank
        self.check_ms = int(check_s * 1000)
        self.confirm_ms = int(confirm_s * 1000)
        self.accepted: dict | None = None         # the latest checkpoint that verified
        self.suspicion: rules.Suspicion | None = None
        self.alarms: list[dict] = []
        self.report: dict = {"bank_id": bank.bank_id, "status": "not_checked",
                             "alarm": False, "checked_ms": None}

    async def work(self) -> None:
        """One pass of the background loop."""
        await self.check()

    async def check(self) -> dict:
        """Fetch, verify and compare once; returns the report (also kept as `report`)."""
        now = now_ms()
        if self.bank.central_key is None:
            return self._record(rules.UNAVAILABLE, "central's key is not known yet", now)
        try:
            statement = await self.bank.central.latest_checkpoint(self.bank.key)
        except RailError as exc:
            return self._record(rules.UNAVAILABLE, f"no checkpoint from central: {exc.code}: "
                                f"{exc.message}", now)
        try:
            checkpoint = chain.read_checkpoint(statement, self.bank.central_key)
        except RailError as exc:
            return self._record(rules.REFUSED, f"checkpoint refused: {exc.code}: {exc.message}",
                                now)
        if rules.is_rollback(self.accepted, checkpoint):
            return self._record(rules.ROLLED_BACK, (
                f"checkpoint seq {checkpoint['seq']} after seq {self.accepted['seq']} was "
                "accepted: central's registry went back or forked"), now, checkpoint)
        self.accepted = checkpoint
        # The books only when central has nothing in flight for the bank (Reads.position
        # also reads the bank's own in-flight figures first): otherwise none is compared.
        line = rules.line_of(checkpoint, self.bank.bank_id)
        position = await self.bank.reads.position(
            with_books=not rules.central_in_flight(line))
        found = rules.compare_books(checkpoint, self.bank.bank_id, position)
        status, self.suspicion = rules.confirm(self.suspicion, found, now, self.confirm_ms)
        return self._record(status, found.detail, now, checkpoint,
                            books_fen=found.books_fen, holding_fen=found.holding_fen)

    def _record(self, status: str, detail: str, now: int, checkpoint: dict | None = None,
                **figures) -> dict:
        report = {"bank_id": self.bank.bank_id, "status": status,
                  "alarm": status in rules.ALARMS, "detail": detail, "checked_ms": now,
                  **figures}
        if checkpoint is not None:
            report["checkpoint"] = {"seq": checkpoint["seq"],
                                    "head_hash": checkpoint["head_hash"],
                                    "at_ms": checkpoint["at_ms"],
                                    "line": rules.line_of(checkpoint, self.bank.bank_id)}
        if status == rules.MATCH:
            report["verified"] = report["checkpoint"]
        elif "verified" in self.report:
            report["verified"] = self.report["verified"]   # the last one that verified
        if report["alarm"]:
            log.error("registry alarm (%s): %s", status, detail)
            self.alarms = [*self.alarms, {"status": status, "detail": detail, "at_ms": now}]
            self.alarms = self.alarms[-KEPT_ALARMS:]
        self.report = report
        return report

    async def status(self) -> dict:
        """The latest finding, checked again first if it is older than two check periods."""
        checked = self.report.get("checked_ms")
        if checked is None or now_ms() - checked > 2 * self.check_ms:
            await self.check()
        return {**self.report, "alarms": self.alarms}

    async def finding(self) -> dict:
        """The latest finding as a statement signed by this bank, for central's dashboard:
        central checks it with the bank's certified key, so no one between them can hide
        an alarm."""
        report = await self.status()
        checkpoint = report.get("checkpoint") or {}
        return sign_statement(self.bank.key, {
            "type": CHECKPOINT_FINDING, "bank_id": self.bank.bank_id,
            "status": report["status"],
            "alarm": report["alarm"], "detail": report.get("detail") or "",
            "checked_ms": report["checked_ms"], "checkpoint_seq": checkpoint.get("seq"),
            "alarms": len(self.alarms),
            "last_alarm": self.alarms[-1] if self.alarms else None, "at_ms": now_ms()})


# --- routes -----------------------------------------------------------------------------

def get_watch(request: Request) -> CheckpointWatch:
    return request.app.state.checkpoints


WatchDep = Annotated[CheckpointWatch, Depends(get_watch)]
OperatorToken = Annotated[str | None, Depends(bearer_token)]

router = APIRouter(prefix="/v1", default_response_class=JSON)


@router.get("/operator/checkpoint", tags=["operator"],
            openapi_extra=answers(S.CHECKPOINT_REPORT))
async def checkpoint(watch: WatchDep, token: OperatorToken) -> dict:
    """Central's latest checkpoint against this bank's books, and any alarm (operator only)."""
    watch.bank.check_operator(token)
    return await watch.status()


@router.post("/operator/checkpoint/check", tags=["operator"],
             openapi_extra=answers(S.CHECKPOINT_REPORT))
async def check_now(watch: WatchDep, token: OperatorToken) -> dict:
    """Fetch, verify and compare central's latest checkpoint now (operator only)."""
    watch.bank.check_operator(token)
    return {**await watch.check(), "alarms": watch.alarms}


@router.get("/registry/finding", tags=["registry"],
            openapi_extra=answers(S.FINDING))
async def finding(request: Request, watch: WatchDep,
                  authorization: Annotated[str | None, Header()] = None) -> dict:
    """This bank's latest checkpoint finding, signed by the bank; a read signed by central."""
    if watch.bank.central_key is None:
        raise RailError("service_unavailable", "central's key is not known yet")
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    verify_read(authorization, watch.bank.central_key, request.method, path)
    return await watch.finding()
