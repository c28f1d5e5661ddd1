"""Central's hash-chained journal on real PostgreSQL (docs/registry.md): the sealer chains
committed entries, a checkpoint is signed over the head, and editing, deleting or reordering
any journal row or posting directly in the database is found by the chain check (the
service function and `yuanrail audit --verify-chain`)."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
import sqlalchemy as sa

from central import chain, domain
from central.adapters import registry_sql
from central.app import create_app
from central.client import CentralClient
from central.registry import verify_database
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey
from rail_protocol.request_auth import sign_read
from rail_service.client import RemoteError
from tests.conftest import OPERATOR_TOKEN
from yuanrail.cli import main as cli

pytestmark = pytest.mark.integration


@pytest.fixture
async def central(central_settings):
    """Central with the sealer off: each test chains and signs when it says so."""
    app = create_app(central_settings.model_copy(update={"registry_worker": False}))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(central):
    client = CentralClient("http://central.test", operator_token=OPERATOR_TOKEN,
                           transport=httpx.ASGITransport(app=central))
    yield client
    await client.aclose()


@pytest.fixture
async def books(central, client, bank_key):
    """Two banks, reserves, issues and a redemption (9 entries), chained and checkpointed."""
    key_b = SigningKey.generate()
    await client.register_bank(bank_key, "bank-a", "Bank A")
    await client.register_bank(key_b, "bank-b", "Bank B")
    await client.deposit_reserves("bank-a", "deposit-a-0001", 100_000)
    await client.deposit_reserves("bank-b", "deposit-b-0001", 50_000)
    for amount in (1_000, 2_000, 3_000):
        await client.issue(bank_key, "bank-a", amount)
    await client.issue(key_b, "bank-b", 4_000)
    await client.redeem(bank_key, "bank-a", 500)
    await client.deposit_reserves("bank-b", "deposit-b-0002", 7)
    await client.issue(key_b, "bank-b", 6)
    registry = central.state.registry
    assert await registry.seal_once() == 9
    await registry.checkpoint_now()
    return central


def engine_of(app):
    return app.state.central.engine


async def report_of(app):
    return await verify_database(engine_of(app), app.state.central.key.public_key)


async def sql(app, *statements: str) -> None:
    async with engine_of(app).begin() as conn:
        for statement in statements:
            await conn.execute(sa.text(statement))


async def entry_ids(app) -> list[int]:
    async with engine_of(app).connect() as conn:
        return list((await conn.execute(sa.text(
            "SELECT entry_id FROM journal_entries ORDER BY entry_id"))).scalars())


async def posting_ids(app, entry_id: int) -> list[int]:
    async with engine_of(app).connect() as conn:
        return list((await conn.execute(sa.text(
            f"SELECT posting_id FROM postings WHERE entry_id = {entry_id} "
            "ORDER BY posting_id"))).scalars())


# --- an intact chain -----------------------------------------------------------------------

async def test_every_committed_entry_is_chained_and_the_checkpoint_matches_the_books(books,
                                                                                    client):
    report = await report_of(books)
    assert report.intact, report.problems
    assert (report.links, report.head_seq, report.unsealed, report.checkpoints) == (9, 9, 0, 1)
    assert report.signatures_checked
    checkpoint = await client.latest_checkpoint()
    chain.read_checkpoint(checkpoint, books.state.central.key.public_key)
    supply = await client.supply()
    assert checkpoint["seq"] == 9 and checkpoint["head_hash"] == report.head_hash
    assert checkpoint["total_supply_fen"] == supply["total_issued_fen"] == 9_506
    assert checkpoint["in_flight_fen"] == 0
    assert [(b["bank_id"], b["reserves_fen"], b["holding_fen"]) for b in checkpoint["banks"]] == [
        (b["bank_id"], b["reserves_fen"], b["holding_fen"]) for b in supply["banks"]]
    assert all(b["in_flight_out_fen"] == b["in_flight_in_fen"] == 0
               for b in checkpoint["banks"])


async def test_the_cli_verifies_an_intact_chain_from_the_database_and_from_an_export(
        books, central_settings, tmp_path):
    url = central_settings.database_url
    key = books.state.central.key.public_key.to_text()
    assert await asyncio.to_thread(cli, ["audit", "--verify-chain", "--database-url", url,
                                         "--central-key", key]) == 0
    export = tmp_path / "chain.json"
    assert await asyncio.to_thread(cli, ["audit", "--export-chain", str(export),
                                         "--database-url", url]) == 0
    assert await asyncio.to_thread(cli, ["audit", "--verify-chain", "--chain-file",
                                         str(export), "--central-key", key]) == 0
    data = orjson.loads(export.read_bytes())
    data["links"][3]["entry"]["postings"][0]["amount_fen"] += 1
    export.write_bytes(orjson.dumps(data))
    assert await asyncio.to_thread(cli, ["audit", "--verify-chain", "--chain-file",
                                         str(export)]) == 1


async def test_entries_committed_out_of_id_order_are_all_chained_without_locking_writers(
        books):
    """An entry whose transaction is still open when a later entry commits is not skipped:
    the later one is chained first, the earlier one when it commits. (The two entries move
    different accounts, so the later does not wait for the earlier's row locks.)"""
    engine, registry = engine_of(books), books.state.registry
    slow = await engine.connect()
    try:
        transaction = await slow.begin()
        first = await registry_sql.post_entry(slow, domain.issue("bank-a", 11),
                                              "issue:slow-0001")
        async with engine.begin() as conn:
            second = await registry_sql.post_entry(conn, domain.reserve_deposit("bank-b", 12),
                                                   "deposit:fast-0001")
        assert first < second
        assert await registry.seal_once() == 1   # the slow one is not committed yet
        await transaction.commit()
    finally:
        await slow.close()
    assert await registry.seal_once() == 1
    await registry.checkpoint_now()
    report = await report_of(books)
    assert report.intact, report.problems
    assert (report.links, report.unsealed) == (11, 0)
    async with engine.connect() as conn:
        order = list((await conn.execute(sa.text(
            "SELECT entry_id FROM journal_entries WHERE chain_seq > 9 ORDER BY chain_seq"
        ))).scalars())
    assert order == [second, first]


async def test_a_checkpoint_checked_with_another_key_is_a_problem(books):
    report = await verify_database(engine_of(books), SigningKey.generate().public_key)
    assert not report.intact
    assert any("not the expected key" in p for p in report.problems)


# --- tampering -------------------------------------------------------------------------------

async def edit_a_posting_amount(app):
    """Two postings of one issue moved by one fen each way: the entry still sums to zero."""
    entry = (await entry_ids(app))[3]
    first, last = (await posting_ids(app, entry))[0], (await posting_ids(app, entry))[-1]
    await sql(app, f"UPDATE postings SET amount_fen = amount_fen - 1 WHERE posting_id = {first}",
              f"UPDATE postings SET amount_fen = amount_fen + 1 WHERE posting_id = {last}")


async def edit_a_posting_account(app):
    entry = (await entry_ids(app))[2]
    posting = (await posting_ids(app, entry))[-1]
    await sql(app, f"UPDATE postings SET account_id = 'holding:bank-b' "
                   f"WHERE posting_id = {posting}")


async def edit_an_entry_bank(app):
    await sql(app, f"UPDATE journal_entries SET bank_id = 'bank-b' "
                   f"WHERE entry_id = {(await entry_ids(app))[4]}")


async def edit_an_entry_time(app):
    await sql(app, f"UPDATE journal_entries SET created_ms = created_ms + 1 "
                   f"WHERE entry_id = {(await entry_ids(app))[0]}")


async def edit_a_link_hash(app):
    await sql(app, f"UPDATE journal_entries SET chain_hash = '{'ab' * 32}' "
                   f"WHERE entry_id = {(await entry_ids(app))[5]}")


async def delete_an_entry(app):
    entry = (await entry_ids(app))[4]
    await sql(app, f"DELETE FROM postings WHERE entry_id = {entry}",
              f"DELETE FROM journal_entries WHERE entry_id = {entry}")


async def delete_the_last_entry(app):
    entry = (await entry_ids(app))[-1]
    await sql(app, f"DELETE FROM postings WHERE entry_id = {entry}",
              f"DELETE FROM journal_entries WHERE entry_id = {entry}")


async def delete_a_posting(app):
    entry = (await entry_ids(app))[3]
    await sql(app, f"DELETE FROM postings WHERE posting_id = {(await posting_ids(app, entry))[1]}")


async def reorder_two_entries(app):
    """Swap two entries' places in the chain (their sequence numbers 3 and 4)."""
    a, b = (await entry_ids(app))[2], (await entry_ids(app))[3]
    await sql(app, f"UPDATE journal_entries SET chain_seq = -1 WHERE entry_id = {a}",
              f"UPDATE journal_entries SET chain_seq = 3 WHERE entry_id = {b}",
              f"UPDATE journal_entries SET chain_seq = 4 WHERE entry_id = {a}")


async def reorder_two_entry_ids(app):
    """Swap which postings belong to which of two issues of bank-a (other amounts)."""
    a, b = (await entry_ids(app))[2], (await entry_ids(app))[3]
    await sql(app, f"UPDATE postings SET entry_id = CASE entry_id WHEN {a} THEN {b} ELSE {a} END "
              f"WHERE entry_id IN ({a}, {b})")


async def reorder_postings_of_an_entry(app):
    entry = (await entry_ids(app))[3]
    first, second = (await posting_ids(app, entry))[:2]
    await sql(app, f"UPDATE postings SET posting_id = -1 WHERE posting_id = {first}",
              f"UPDATE postings SET posting_id = {first} WHERE posting_id = {second}",
              f"UPDATE postings SET posting_id = {second} WHERE posting_id = -1")


async def forge_a_link_at_the_end(app):
    """An entry slipped in with a made-up place and hash at the chain's end."""
    await sql(app, "INSERT INTO journal_entries (kind, bank_id, reference, created_ms, "
                   f"chain_seq, chain_hash) VALUES ('issue', 'bank-a', 'forged-0001', 1, 10, "
                   f"'{'cd' * 32}')")


TAMPERING = [edit_a_posting_amount, edit_a_posting_account, edit_an_entry_bank,
             edit_an_entry_time, edit_a_link_hash, delete_an_entry, delete_the_last_entry,
             delete_a_posting, reorder_two_entries, reorder_two_entry_ids,
             reorder_postings_of_an_entry, forge_a_link_at_the_end]


@pytest.mark.parametrize("tamper", TAMPERING, ids=[t.__name__ for t in TAMPERING])
async def test_tampering_with_the_journal_in_the_database_breaks_the_chain(
        books, central_settings, tamper):
    assert (await report_of(books)).intact
    await tamper(books)
    report = await report_of(books)
    assert not report.intact, f"{tamper.__name__} went unnoticed"
    assert await asyncio.to_thread(cli, ["audit", "--verify-chain", "--database-url",
                                         central_settings.database_url]) == 1


# --- the checkpoint route ---------------------------------------------------------------------

async def test_the_latest_checkpoint_is_served_to_the_operator_and_to_registered_banks_only(
        books, client, bank_key):
    path = "/v1/checkpoints/latest"
    assert (await client.latest_checkpoint(bank_key))["seq"] == 9
    for key, code in ((SigningKey.generate(), "unknown_key"), (None, "unauthorized")):
        headers = {"authorization": sign_read(key, "GET", path)} if key else \
            {"authorization": ""}
        response = await client.http.get(path, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (401, code)
    response = await client.http.get(path, headers={"authorization": "Bearer wrong-token-0001"})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "unauthorized")
    forged = sign_read(bank_key, "GET", path).replace("sig=", "sig=AA")
    response = await client.http.get(path, headers={"authorization": forged})
    assert response.status_code == 401


async def test_no_checkpoint_yet_is_a_typed_404(client):
    with pytest.raises(RemoteError) as caught:
        await client.latest_checkpoint()
    assert caught.value.code == "not_found"


async def test_the_background_sealer_chains_and_signs_on_its_own(central_settings):
    settings = central_settings.model_copy(update={"checkpoint_interval_ms": 200})
    app = create_app(settings)
    async with app.router.lifespan_context(app), CentralClient(
            "http://central.test", operator_token=OPERATOR_TOKEN,
            transport=httpx.ASGITransport(app=app)) as client:
        key = SigningKey.generate()
        await client.register_bank(key, "bank-a", "Bank A")
        await client.deposit_reserves("bank-a", "deposit-a-0001", 1_000)
        await client.issue(key, "bank-a", 300)
        for _ in range(100):
            try:
                checkpoint = await client.latest_checkpoint()
            except RailError:
                checkpoint = {}
            if checkpoint.get("seq") == 2:
                break
            await asyncio.sleep(0.1)
        assert checkpoint.get("seq") == 2, checkpoint
        assert checkpoint["banks"][0]["holding_fen"] == 300
        assert (await report_of(app)).intact
