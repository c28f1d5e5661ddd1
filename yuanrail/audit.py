"""`yuanrail audit`: the conservation audit across central (and, as they join, every bank)."""

from __future__ import annotations

from central.client import CentralClient
from rail_protocol.money import format_fen


async def audit_rail(central_url: str, central_token: str) -> tuple[bool, list[str]]:
    """Run every party's audit; return (balanced, lines to print)."""
    lines: list[str] = []
    async with CentralClient(central_url, operator_token=central_token) as central:
        report = await central.audit()
    lines.append(
        f"central: issued {format_fen(report['total_issued_fen'])}, backing "
        f"{format_fen(report['backing_fen'])}, bank holdings {format_fen(report['holdings_fen'])}"
        f", in flight {format_fen(report['in_flight_fen'])}, {report['entries']} journal entries"
    )
    for bank in report["banks"]:
        lines.append(f"  {bank['bank_id']}: reserves {format_fen(bank['reserves_fen'])}, "
                     f"holding {format_fen(bank['holding_fen'])}")
    for problem in report["problems"]:
        lines.append(f"  PROBLEM: {problem}")
    balanced = report["balanced"]
    lines.append("audit: BALANCED to the fen" if balanced else "audit: NOT BALANCED")
    return balanced, lines
