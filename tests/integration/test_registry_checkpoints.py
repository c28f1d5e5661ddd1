"""Banks and central's signed checkpoints, on a whole rail (docs/registry.md): a checkpoint
matching the bank's books verifies; one not signed by central is refused with an alarm; a
rewound registry and books that differ from the bank's line raise the alarm, which the rail
audit reports."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import sqlalchemy as sa

from central.registry import verify_database
from rail_protocol.envelope import sign_statement
from rail_protocol.keys import SigningKey
from rail_service.db import make_engine
from tests.support.rail import Rail, rail_factory  # noqa: F401
from yuanrail.audit import _audit_once

pytestmark = pytest.mark.integration


@pytest.fixture
async def rail(rail_factory, monkeypatch):  # noqa: F811
    """A rail whose central signs a checkpoint every 200 ms; a difference between a bank's
    books and its line is an alarm once it has stood for 0.5 s (a fresh checkpoint comes
    sooner: a difference only because the checkpoint is older than the books clears)."""
    monkeypatch.setenv("YUANRAIL_CENTRAL_CHECKPOINT_INTERVAL_MS", "200")
    async with rail_factory(checkpoint_confirm_s=0.5, checkpoint_check_s=60) as started:
        yield started


async def settled_check(rail: Rail, bank_id: str, want: str = "match") -> dict:
    """Ask the bank to check until it finds `want` (the next checkpoint must catch up with
    what the test just did); the last finding either way."""
    for _ in range(50):
        found = await rail.client(bank_id).check_checkpoint()
        if found["status"] == want:
            return found
        await asyncio.sleep(0.1)
    return found


def forge(statement: dict, key: SigningKey, **changes) -> dict:
    fields = {k: v for k, v in statement.items() if k not in ("sig", "issuer")}
    return sign_statement(key, {**fields, **changes})


def serve(rail: Rail, bank_id: str, statement: dict) -> None:
    """Make central's answer to this bank's next checkpoint reads `statement`."""
    async def latest_checkpoint(_key=None):
        return statement
    rail.banks[bank_id].node.central.latest_checkpoint = latest_checkpoint


async def test_a_checkpoint_matching_the_banks_books_verifies(rail):
    payer = await rail.funded_wallet("yangtze", 50_000)
    payee = await rail.open_wallet("pearl")
    await rail.pay(payer, payee, 12_345)
    report = await rail.assert_balanced()
    for bank_id in rail.banks:
        found = await settled_check(rail, bank_id)
        assert found["status"] == "match" and not found["alarm"], found
        line = found["checkpoint"]["line"]
        assert line["holding_fen"] == report["holding"][bank_id] == found["books_fen"]
        assert line["in_flight_out_fen"] == line["in_flight_in_fen"] == 0
        assert found["verified"] == found["checkpoint"]
        shown = await rail.client(bank_id).checkpoint()
        assert shown["status"] == "match" and shown["alarms"] == []
    checkpoint = await rail.central.latest_checkpoint()
    assert checkpoint["seq"] >= found["checkpoint"]["seq"] > 0
    audit = await _audit_once(rail.central, {b: rail.client(b) for b in rail.banks})
    assert audit.balanced, audit.problems
    assert any("checkpoint seq" in line and ": match" in line for line in audit.lines())
    # Central's whole chain, interbank entries and their in-flight totals included, holds.
    engine = make_engine(rail.central_database_url, pool_size=1)
    try:
        chained = await verify_database(engine, rail.central_key.public_key)
    finally:
        await engine.dispose()
    assert chained.intact and chained.links >= 5, chained.problems  # deposits, issue, transfer


async def test_a_checkpoint_with_a_wrong_signature_is_refused_with_an_alarm(rail):
    await rail.funded_wallet("yangtze", 1_000)
    real = (await settled_check(rail, "yangtze"))["checkpoint"]
    statement = await rail.central.latest_checkpoint()
    assert statement["seq"] >= real["seq"]
    cases = {
        "unknown_key": forge(statement, SigningKey.generate()),            # another key
        "bad_signature": {**statement, "total_supply_fen": statement["total_supply_fen"] + 1},
        "invalid_field": sign_statement(rail.central_key, {"type": "central.receipt"}),
    }
    for code, bad in cases.items():
        serve(rail, "yangtze", bad)
        found = await rail.client("yangtze").check_checkpoint()
        assert found["status"] == "refused" and found["alarm"], found
        assert code in found["detail"]
        assert found["verified"] == real or found["verified"]["seq"] >= real["seq"]
    audit = await _audit_once(rail.central, {"yangtze": rail.client("yangtze")})
    assert any("registry alarm (refused)" in p for p in audit.problems)


async def test_books_that_differ_from_the_banks_line_raise_the_alarm(rail):
    await rail.funded_wallet("pearl", 1_000)
    assert (await settled_check(rail, "pearl"))["status"] == "match"
    statement = await rail.central.latest_checkpoint()
    lines = [{**line, "holding_fen": line["holding_fen"] + 1} if line["bank_id"] == "pearl"
             else line for line in statement["banks"]]
    serve(rail, "pearl", forge(statement, rail.central_key, banks=lines))
    found = await rail.client("pearl").check_checkpoint()
    assert found["status"] == "mismatch_suspected" and not found["alarm"], found
    await asyncio.sleep(0.6)
    found = await rail.client("pearl").check_checkpoint()
    assert found["status"] == "mismatch" and found["alarm"], found
    assert found["holding_fen"] == found["books_fen"] + 1
    assert (await rail.client("pearl").checkpoint())["alarms"][-1]["status"] == "mismatch"


async def test_a_difference_while_money_is_in_flight_is_not_compared(rail):
    await rail.funded_wallet("pearl", 1_000)
    assert (await settled_check(rail, "pearl"))["status"] == "match"
    statement = await rail.central.latest_checkpoint()
    lines = [{**line, "holding_fen": line["holding_fen"] - 700, "in_flight_in_fen": 700}
             if line["bank_id"] == "pearl" else line for line in statement["banks"]]
    serve(rail, "pearl", forge(statement, rail.central_key, banks=lines))
    with statements_run(rail, "pearl") as statements:
        found = await rail.client("pearl").check_checkpoint()
    assert found["status"] == "in_flight" and not found["alarm"], found
    # Nothing was compared, so nothing of the bank's history was read: under traffic the
    # watch's pass every few seconds scans no posting.
    assert statements and not [s for s in statements if "postings" in s], statements
    assert found["books_fen"] is None


async def test_the_books_come_from_the_position_kept_at_posting_never_from_every_posting(
        rail):
    await rail.funded_wallet("pearl", 1_000)
    with statements_run(rail, "pearl") as statements:
        found = await settled_check(rail, "pearl")
    assert found["status"] == "match" and found["books_fen"] == found["holding_fen"] > 0
    assert [s for s in statements if "FROM position_deltas" in s], statements
    assert not [s for s in statements if "postings" in s], statements


@contextlib.contextmanager
def statements_run(rail: Rail, bank_id: str):
    """The SQL the bank node's engine runs meanwhile (its text, one line each)."""
    engine = rail.banks[bank_id].node.engine.sync_engine
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        seen.append(" ".join(statement.split()))
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


async def test_a_rewound_registry_raises_the_alarm(rail):
    await rail.funded_wallet("yangtze", 1_000)
    found = await settled_check(rail, "yangtze")
    statement = await rail.central.latest_checkpoint()
    assert statement["seq"] > 1
    serve(rail, "yangtze", forge(statement, rail.central_key, seq=found["checkpoint"]["seq"] - 1))
    found = await rail.client("yangtze").check_checkpoint()
    assert found["status"] == "rolled_back" and found["alarm"], found


async def test_the_banks_checkpoint_route_is_for_its_operator(rail):
    response = await rail.client("yangtze").http.get(
        "/v1/operator/checkpoint", headers={"authorization": "Bearer not-the-token-0001"})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "unauthorized")
    response = await rail.client("yangtze").http.get("/v1/operator/checkpoint")
    assert response.status_code == 200 and response.json()["bank_id"] == "yangtze"
