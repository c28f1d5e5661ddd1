"""The hash chain and checkpoints in plain Python (central/chain.py): links commit to the
previous link, any edit, deletion or reordering breaks verification, and checkpoints are
accepted only signed by central and matching the chain."""

from __future__ import annotations

import dataclasses

import pytest

from central import chain
from rail_protocol.envelope import sign_statement
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey

pytestmark = pytest.mark.unit

CENTRAL = SigningKey.generate()


def entries() -> list[chain.JournalEntry]:
    return [
        chain.JournalEntry(1, "reserve_deposit", "bank-a", "deposit:d1", 1000,
                           (("reserve_source", -500), ("reserve:bank-a", 500))),
        chain.JournalEntry(2, "issue", "bank-a", "k:i1", 1001,
                           (("reserve:bank-a", -200), ("backing", 200), ("issuance", -200),
                            ("holding:bank-a", 200))),
        chain.JournalEntry(3, "transfer_prepare", "bank-a", "transfer:bank-a.t:1:prepare",
                           1002, (("holding:bank-a", -50), ("in_flight", 50))),
        chain.JournalEntry(5, "transfer_settle", "bank-b", "transfer:bank-a.t:1:settled",
                           1003, (("in_flight", -50), ("holding:bank-b", 50))),
        chain.JournalEntry(4, "transfer_prepare", "bank-a", "transfer:bank-a.t2:prepare",
                           1004, (("holding:bank-a", -20), ("in_flight", 20))),
    ]


TRANSFERS = {"bank-a.t:1": ("bank-a", "bank-b"), "bank-a.t2": ("bank-a", "bank-b")}


def links(items=None):
    items = entries() if items is None else items
    return [(seq, link, entry, TRANSFERS.get(chain.transfer_id_of(entry.reference) or ""))
            for entry, seq, link in chain.seal(0, chain.GENESIS, items)]


def totals_of(items) -> dict[str, int]:
    totals: dict[str, int] = {}
    for _seq, _link, entry, transfer in items:
        chain.add_deltas(totals, chain.chain_deltas(entry, transfer))
    return totals


def signed_checkpoint(items, banks=("bank-a", "bank-b"), key=CENTRAL) -> dict:
    seq, head = (items[-1][0], items[-1][1]) if items else (0, chain.GENESIS)
    return sign_statement(key, chain.checkpoint(seq, head, totals_of(items), banks, 5000))


def test_a_link_commits_to_the_previous_hash_the_sequence_and_the_entry():
    entry = entries()[0]
    base = chain.link_hash(chain.GENESIS, 1, entry)
    assert len(base) == 64 and base == chain.link_hash(chain.GENESIS, 1, entry)
    assert chain.link_hash("1" * 64, 1, entry) != base
    assert chain.link_hash(chain.GENESIS, 2, entry) != base
    assert chain.link_hash(chain.GENESIS, 1, dataclasses.replace(entry, created_ms=1)) != base


def test_sealing_numbers_links_on_from_the_head_without_a_gap():
    sealed = chain.seal(7, "ab" * 32, entries()[:2])
    assert [seq for _e, seq, _h in sealed] == [8, 9]
    assert sealed[1][2] == chain.link_hash(sealed[0][2], 9, entries()[1])


def test_an_intact_chain_and_its_checkpoint_verify():
    items = links()
    report = chain.verify(items, [signed_checkpoint(items[:2]), signed_checkpoint(items)],
                          CENTRAL.public_key)
    assert report.intact, report.problems
    assert (report.links, report.head_seq, report.head_hash) == (5, 5, items[-1][1])


def test_the_running_totals_count_what_is_in_flight_per_bank():
    totals = totals_of(links())
    assert totals["in_flight"] == 20
    assert totals[chain.FLIGHT_OUT + "bank-a"] == 20 and totals[chain.FLIGHT_IN + "bank-b"] == 20
    line = chain.bank_line("bank-b", totals)
    assert line == {"bank_id": "bank-b", "reserves_fen": 0, "holding_fen": 50,
                    "in_flight_out_fen": 0, "in_flight_in_fen": 20}


def test_transfer_ids_are_read_from_references_even_with_colons():
    assert chain.transfer_id_of("transfer:bank-a.x:y:prepare") == "bank-a.x:y"
    assert chain.transfer_id_of("deposit:abc") is None
    assert chain.transfer_id_of("transfer:") is None


def _edit_amount(items):
    seq, link, entry, transfer = items[1]
    postings = ((entry.postings[0][0], entry.postings[0][1] - 1),) + entry.postings[1:-1] + \
        ((entry.postings[-1][0], entry.postings[-1][1] + 1),)
    items[1] = (seq, link, dataclasses.replace(entry, postings=postings), transfer)


def _swap_postings(items):
    seq, link, entry, transfer = items[1]
    items[1] = (seq, link, dataclasses.replace(
        entry, postings=(entry.postings[1], entry.postings[0]) + entry.postings[2:]), transfer)


def _delete_middle(items):
    del items[2]


def _swap_links(items):
    items[1], items[2] = items[2], items[1]


def _swap_places(items):
    (s1, h1, e1, t1), (s2, h2, e2, t2) = items[1], items[2]
    items[1], items[2] = (s1, h1, e2, t2), (s2, h2, e1, t1)


def _rehash_one(items):
    """Recompute one link's hash after an edit, but not those after it."""
    seq, _link, entry, transfer = items[1]
    entry = dataclasses.replace(entry, bank_id="bank-b")
    items[1] = (seq, chain.link_hash(items[0][1], seq, entry), entry, transfer)


@pytest.mark.parametrize("tamper", [_edit_amount, _swap_postings, _delete_middle, _swap_links,
                                    _swap_places, _rehash_one])
def test_editing_deleting_or_reordering_a_link_is_found(tamper):
    items = links()
    tamper(items)
    assert not chain.verify(items).intact


def test_deleting_the_last_links_is_found_by_a_checkpoint_past_the_end():
    items = links()
    checkpoint = signed_checkpoint(items)
    assert not chain.verify(items[:-1]).problems   # a bare chain cannot tell it was longer
    report = chain.verify(items[:-1], [checkpoint], CENTRAL.public_key)
    assert any("no link there" in p for p in report.problems)


def test_a_rewritten_chain_does_not_match_a_checkpoint_signed_before():
    items = links()
    checkpoint = signed_checkpoint(items)
    rewritten = links([dataclasses.replace(e, created_ms=e.created_ms + 1) for e in entries()])
    report = chain.verify(rewritten, [checkpoint], CENTRAL.public_key)
    assert any("head hash differs" in p for p in report.problems)


def test_a_checkpoint_whose_figures_differ_from_the_chain_is_found():
    items = links()
    fields = chain.checkpoint(items[-1][0], items[-1][1], totals_of(items), ["bank-a"], 1)
    fields["banks"][0]["holding_fen"] += 1
    report = chain.verify(items, [sign_statement(CENTRAL, fields)], CENTRAL.public_key)
    assert report.problems == ["checkpoint at seq 5: banks differs from the chain's totals"]


def test_a_checkpoint_is_accepted_only_signed_by_central():
    checkpoint = signed_checkpoint(links())
    assert chain.read_checkpoint(checkpoint, CENTRAL.public_key) is checkpoint
    with pytest.raises(RailError) as caught:
        chain.read_checkpoint(signed_checkpoint(links(), key=SigningKey.generate()),
                              CENTRAL.public_key)
    assert caught.value.code == "unknown_key"
    altered = {**checkpoint, "total_supply_fen": checkpoint["total_supply_fen"] + 1}
    with pytest.raises(RailError) as caught:
        chain.read_checkpoint(altered, CENTRAL.public_key)
    assert caught.value.code == "bad_signature"
    for bad in (None, [], "x", sign_statement(CENTRAL, {"type": "central.receipt"})):
        with pytest.raises(RailError) as caught:
            chain.read_checkpoint(bad, CENTRAL.public_key)
        assert caught.value.code == "invalid_field"


def test_an_export_round_trips_and_a_malformed_one_is_refused():
    items = links()
    data = {"links": [{"seq": s, "hash": h, "entry": e.body(),
                       "transfer": list(t) if t else None} for s, h, e, t in items],
            "checkpoints": [signed_checkpoint(items)], "unsealed": 2}
    report = chain.verify_export(data, CENTRAL.public_key)
    assert report.intact and report.unsealed == 2, report.problems
    for bad in ({}, {"links": [{"seq": "1"}]}, {"links": [{"seq": 1, "entry": {}}]}):
        with pytest.raises(RailError) as caught:
            chain.verify_export(bad)
        assert caught.value.code == "invalid_field"
