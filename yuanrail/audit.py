"""`yuanrail audit`: the conservation audit across central and every bank node.

Each party first audits itself from its own journal. Then the tiers are reconciled: what a
bank holds by its own books must equal what central records it as holding, adjusted by the
transfers in flight between them, to the fen:

    books(bank) = holding(bank) + its outbound transfers central has already taken
                                  (prepared or settled) but the bank still counts as processing
                                + inbound transfers it has credited that central has not yet
                                  settled

See docs/interbank.md. A live rail can be caught between the two reads; the audit reads
again a few times before it calls a difference a problem."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bank.client import BankClient
from central.client import CentralClient
from rail_protocol.errors import RailError
from rail_protocol.money import format_fen


@dataclass
class RailAudit:
    central: dict
    banks: dict[str, dict] = field(default_factory=dict)
    checkpoints: dict[str, dict | None] = field(default_factory=dict)  # each bank's check
    problems: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        c = self.central
        out = [f"central: issued {format_fen(c['total_issued_fen'])}, backing "
               f"{format_fen(c['backing_fen'])}, bank holdings {format_fen(c['holdings_fen'])}, "
               f"in flight {format_fen(c['in_flight_fen'])}, {c['entries']} journal entries"]
        holdings = {b["bank_id"]: b for b in c["banks"]}
        for bank_id, holding in sorted(holdings.items()):
            line = (f"  {bank_id:8s} reserves {format_fen(holding['reserves_fen'])}, "
                    f"e-CNY held per central {format_fen(holding['holding_fen'])}")
            report = self.banks.get(bank_id)
            if report is not None:
                line += (f"; per its books {format_fen(report['books_fen'])} = vault "
                         f"{format_fen(report['vault_fen'])} + {report['wallet_count']} wallets "
                         f"{format_fen(report['wallets_fen'])} + in flight "
                         f"{format_fen(report['interbank_out_fen'] + report['redeem_out_fen'])}")
            out.append(line)
            check = self.checkpoints.get(bank_id)
            if check is not None:
                seq = (check.get("checkpoint") or {}).get("seq")
                out.append(f"           central's checkpoint seq {seq}: {check['status']}"
                           f"{' ALARM' if check['alarm'] else ''} ({check.get('detail', '')})")
        out += [f"  PROBLEM: {p}" for p in self.problems]
        out.append("audit: BALANCED to the fen" if self.balanced else "audit: NOT BALANCED")
        return out


async def _checkpoint_check(client: BankClient) -> dict | None:
    """The bank's check of central's latest signed checkpoint against its books
    (docs/registry.md); None from a bank node that does not make it."""
    try:
        return await client.checkpoint()
    except RailError as exc:
        if exc.code == "not_found":
            return None
        raise


async def _audit_once(central: CentralClient, banks: dict[str, BankClient]) -> RailAudit:
    report = RailAudit(central=await central.audit())
    report.problems += [f"central: {p}" for p in report.central["problems"]]
    holdings = {b["bank_id"]: b["holding_fen"] for b in report.central["banks"]}
    prepared = (await central.transfers(status="prepared", limit=500))["transfers"]
    for bank_id, client in banks.items():
        own = await client.audit()
        report.banks[bank_id] = own
        report.problems += [f"{bank_id}: {p}" for p in own["problems"]]
        report.checkpoints[bank_id] = check = await _checkpoint_check(client)
        if check is not None and check["alarm"]:
            report.problems.append(f"{bank_id}: registry alarm ({check['status']}): "
                                   f"{check.get('detail')}")
        if bank_id not in holdings:
            report.problems.append(f"{bank_id}: not registered at central")
            continue
        taken = 0
        for transfer in own["processing_out"]:
            try:
                status = (await central.get_transfer(transfer["transfer_id"]))["status"]
            except RailError:
                status = None
            if status in ("prepared", "settled"):
                taken += transfer["amount_fen"]
        inbound = [t for t in prepared if t["to_bank"] == bank_id]
        credited = set((await client.credited([t["transfer_id"] for t in inbound]))["credited"]) \
            if inbound else set()
        credited_fen = sum(t["amount_fen"] for t in inbound if t["transfer_id"] in credited)
        expected = holdings[bank_id] + taken + credited_fen
        if own["books_fen"] != expected:
            report.problems.append(
                f"{bank_id}: books {own['books_fen']} != central holding {holdings[bank_id]}"
                f" + outbound taken {taken} + inbound credited {credited_fen}")
        if own.get("pending_vault_ops"):
            report.problems.append(f"{bank_id}: {own['pending_vault_ops']} vault instruction(s)"
                                   " still pending with central")
    return report


async def audit_rail(central_url: str, central_token: str,
                     banks: dict[str, tuple[str, str]] | None = None,
                     *, attempts: int = 5) -> tuple[bool, list[str]]:
    """Audit central and each bank (`{bank_id: (url, operator token)}`); (balanced, lines)."""
    clients = {b: BankClient(url, operator_token=token) for b, (url, token) in (banks or {}).items()}
    try:
        async with CentralClient(central_url, operator_token=central_token) as central:
            for attempt in range(attempts):
                report = await _audit_once(central, clients)
                if report.balanced or attempt == attempts - 1:
                    break
                await asyncio.sleep(0.5)
    finally:
        for client in clients.values():
            await client.aclose()
    return report.balanced, report.lines()
