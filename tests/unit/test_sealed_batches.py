"""Sealed batches (rail_protocol/batches.py): many instructions under ONE signature over
the list of their digests, and their answers likewise. What a sealed batch proves is what
each item's own signature would: altering, adding, dropping or reordering an item, or a
signer other than the expected one, refuses the whole batch; an altered answer is no answer
at all."""

from __future__ import annotations

import copy

import pytest

from rail_protocol.batches import open_batch, open_results, seal_batch, seal_results
from rail_protocol.envelope import Envelope, seal, unsigned
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import INTERBANK_CREDIT
from rail_protocol.keys import SigningKey

pytestmark = pytest.mark.unit

CENTRAL, PEARL = SigningKey.generate(), SigningKey.generate()


def credit(n: int, key: SigningKey = CENTRAL) -> Envelope:
    transfer_id = f"yangtze.{n:032x}"
    return unsigned(key.key_id, INTERBANK_CREDIT, {
        "transfer_id": transfer_id, "from_bank": "yangtze", "to_bank": "pearl",
        "amount_fen": 100 + n, "payee_wallet": "pearl.0123456789abcdef"},
        id=transfer_id, ttl_ms=60_000)


def refused(code: str, raw: object) -> None:
    with pytest.raises(RailError) as err:
        open_batch(raw, "credits", CENTRAL.public_key)
    assert err.value.code == code, err.value


def test_a_sealed_batch_opens_to_the_same_instructions_each_signature_would_make():
    envs = [credit(n) for n in range(3)]
    opened = open_batch(seal_batch(CENTRAL, "credits", envs), "credits", CENTRAL.public_key)
    assert [e.digest() for e in opened] == [e.digest() for e in envs]
    # the same instruction as if signed alone: a retry one by one is recognised
    alone = seal(CENTRAL, INTERBANK_CREDIT, envs[1].body, id=envs[1].id,
                 created_ms=envs[1].created_ms, ttl_ms=60_000)
    assert alone.digest() == opened[1].digest()


@pytest.mark.parametrize("change", ["amount", "added", "dropped", "reordered"])
def test_any_change_to_the_items_refuses_the_whole_batch(change):
    sealed = seal_batch(CENTRAL, "credits", [credit(n) for n in range(3)])
    items = sealed["credits"]
    if change == "amount":
        items[1]["body"]["amount_fen"] += 1
    elif change == "added":
        items.append(credit(9).signed_fields())
    elif change == "dropped":
        items.pop()
    else:
        items.reverse()
    refused("bad_signature", sealed)


def test_a_batch_by_another_key_or_with_an_item_of_another_signer_is_refused():
    refused("unknown_key", seal_batch(PEARL, "credits", [credit(1, PEARL)]))
    mixed = seal_batch(CENTRAL, "credits", [credit(1), credit(2, PEARL)])
    refused("invalid_field", mixed)


def test_items_carry_no_signature_of_their_own_and_the_shape_is_strict():
    sealed = seal_batch(CENTRAL, "credits", [credit(1)])
    refused("invalid_field", {**sealed, "credits": [{**sealed["credits"][0], "sig": "x"}]})
    refused("invalid_field", {**sealed, "extra": 1})
    refused("invalid_field", {**sealed, "credits": []})
    refused("invalid_field", {"credits": sealed["credits"]})


def test_a_sealed_answer_opens_to_its_statements_and_errors_are_not_answers():
    results = [{"result": {"type": "bank.interbank_credit_result", "transfer_id": "t1",
                           "accepted": True}},
               {"error": {"code": "service_unavailable", "message": "again"}}]
    answer = seal_results(PEARL, results)
    statements = open_results(answer, PEARL.public_key, 2)
    assert statements == [{**results[0]["result"], "issuer": PEARL.key_id}, None]
    assert open_results(answer, PEARL.public_key, 3) is None       # not one per item
    assert open_results(answer, CENTRAL.public_key, 2) is None     # not the bank's


@pytest.mark.parametrize("change", ["accepted", "error_to_answer", "sig"])
def test_an_altered_answer_is_no_answer(change):
    results = [{"result": {"type": "bank.interbank_credit_result", "transfer_id": "t1",
                           "accepted": False, "code": "unknown_wallet"}},
               {"error": {"code": "service_unavailable", "message": "again"}}]
    answer = copy.deepcopy(seal_results(PEARL, results))
    if change == "accepted":
        answer["results"][0]["result"]["accepted"] = True
        del answer["results"][0]["result"]["code"]
    elif change == "error_to_answer":
        answer["results"][1] = {"result": {"type": "bank.interbank_credit_result",
                                           "transfer_id": "t2", "accepted": True,
                                           "issuer": PEARL.key_id}}
    else:
        answer["sig"] = "AAAA"
    assert open_results(answer, PEARL.public_key, 2) is None


def test_a_peer_without_the_sealed_route_is_asked_again_after_a_while():
    from rail_protocol.batches import MissingRoutes

    now = [1_000.0]
    routes = MissingRoutes(recheck_s=600, clock=lambda: now[0])
    assert not routes.missing("http://pearl") and routes.peers() == set()
    routes.mark("http://pearl")
    now[0] += 599
    assert routes.missing("http://pearl") and not routes.missing("http://yangtze")
    assert routes.peers() == {"http://pearl"}
    now[0] += 1                      # upgraded meanwhile, perhaps: try the sealed route
    assert not routes.missing("http://pearl") and routes.peers() == set()
    routes.mark("http://pearl")      # still a 404: another while on the plain route
    assert routes.missing("http://pearl")
