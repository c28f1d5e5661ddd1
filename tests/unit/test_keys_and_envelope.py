"""P-256 keys (pure-Python `ecdsa` and OpenSSL interoperate) and the signed envelope."""

import dataclasses
import hashlib

import ecdsa
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rail_protocol.canonical import canonical_bytes
from rail_protocol.envelope import (
    MAX_CLOCK_SKEW_MS,
    MAX_TTL_MS,
    Envelope,
    check_live,
    now_ms,
    seal,
    sign_statement,
    verify,
    verify_statement,
)
from rail_protocol.errors import RailError
from rail_protocol.instruction_types import TRANSFER
from rail_protocol.keys import PublicKey, SigningKey, b64decode, b64encode

pytestmark = pytest.mark.unit

ISSUE = "central.issue"
BODY = {"bank_id": "bank-a", "amount_fen": 500}

# Keys are made once: `ecdsa` is slow, and these tests are about signatures, not keygen.
SECRET = SigningKey.generate().secret_text()
ECDSA_KEY = SigningKey.from_text(SECRET, engine="ecdsa")
OPENSSL_KEY = SigningKey.from_text(SECRET, engine="openssl")
OTHER_KEY = SigningKey.generate(engine="openssl")


def raw_ecdsa_verifier(key: SigningKey) -> ecdsa.VerifyingKey:
    """The `ecdsa` package's own verifier for `key`, built from its public point only."""
    return ecdsa.VerifyingKey.from_string(key.public_key.point, curve=ecdsa.NIST256p)


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(RailError) as caught:
        call(*args, **kwargs)
    return caught.value.code


def tampered(env: Envelope, **changes) -> Envelope:
    """The envelope as a receiver would see it after someone edited it on the wire."""
    return Envelope.parse(orjson.loads(orjson.dumps({**env.to_dict(), **changes})))


# --- keys ---------------------------------------------------------------------------------


def test_both_engines_of_one_secret_are_the_same_key():
    assert ECDSA_KEY.public_key == OPENSSL_KEY.public_key
    assert ECDSA_KEY.key_id == OPENSSL_KEY.key_id
    assert ECDSA_KEY.key_id.startswith("k") and len(ECDSA_KEY.key_id) == 33


def test_key_id_is_a_hash_of_the_public_point():
    point = ECDSA_KEY.public_key.point
    assert len(point) == 65 and point[0] == 4
    assert ECDSA_KEY.key_id == "k" + hashlib.sha256(point).hexdigest()[:32]


def test_keys_round_trip_through_their_text():
    assert SigningKey.from_text(ECDSA_KEY.secret_text()).key_id == ECDSA_KEY.key_id
    assert PublicKey.from_text(ECDSA_KEY.public_key.to_text()) == ECDSA_KEY.public_key


def test_a_compressed_point_names_the_same_key():
    compressed = raw_ecdsa_verifier(ECDSA_KEY).to_string("compressed")
    assert len(compressed) == 33
    assert PublicKey(compressed) == ECDSA_KEY.public_key
    assert PublicKey(compressed).key_id == ECDSA_KEY.key_id


@pytest.mark.parametrize("point", [b"", b"\x04" + b"\x00" * 64, b"\x02" + b"\xff" * 32, b"junk"])
def test_a_point_not_on_p256_is_refused(point):
    with pytest.raises(RailError) as caught:
        PublicKey(point)
    assert caught.value.code == "invalid_field"


def test_unknown_engines_are_refused():
    with pytest.raises(ValueError):
        SigningKey.from_text(SECRET, engine="rsa")


def test_b64_is_unpadded_urlsafe_and_round_trips():
    assert b64encode(b"\xfb\xff") == "-_8"
    assert b64decode("-_8") == b"\xfb\xff"
    assert code_of(b64decode, 12) == "invalid_field"
    assert code_of(b64decode, "a" * 5000) == "invalid_field"


def test_the_ecdsa_engine_is_deterministic_and_openssl_is_not():
    message = b"same message"
    assert ECDSA_KEY.sign(message) == ECDSA_KEY.sign(message)
    assert OPENSSL_KEY.sign(message) != OPENSSL_KEY.sign(message)


@settings(max_examples=20, deadline=None)
@given(st.binary(max_size=512))
def test_ecdsa_and_openssl_signatures_interoperate(message):
    by_ecdsa = ECDSA_KEY.sign(message)
    by_openssl = OPENSSL_KEY.sign(message)
    assert len(by_ecdsa) == len(by_openssl) == 64
    # The rail's verifier (OpenSSL) accepts both engines' signatures...
    assert ECDSA_KEY.public_key.verify(by_ecdsa, message)
    assert ECDSA_KEY.public_key.verify(by_openssl, message)
    # ...and so does the pure-Python `ecdsa` package, on its own.
    raw = raw_ecdsa_verifier(ECDSA_KEY)
    assert raw.verify(by_ecdsa, message, hashfunc=hashlib.sha256)
    assert raw.verify(by_openssl, message, hashfunc=hashlib.sha256)
    # A signature is for one message and one key.
    assert not ECDSA_KEY.public_key.verify(by_openssl, message + b"!")
    assert not OTHER_KEY.public_key.verify(by_ecdsa, message)


def test_malformed_signatures_do_not_verify():
    message = b"m"
    good = OPENSSL_KEY.sign(message)
    order = ecdsa.NIST256p.order
    assert not OPENSSL_KEY.public_key.verify(good[:63], message)
    assert not OPENSSL_KEY.public_key.verify(good + b"\x00", message)
    assert not OPENSSL_KEY.public_key.verify(b"\x00" * 64, message)
    assert not OPENSSL_KEY.public_key.verify(good[:32] + order.to_bytes(32, "big"), message)


# --- envelopes ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [ECDSA_KEY, OPENSSL_KEY], ids=["ecdsa", "openssl"])
def test_a_sealed_envelope_verifies_after_a_trip_over_the_wire(key):
    env = seal(key, ISSUE, BODY)
    received = Envelope.parse(orjson.loads(orjson.dumps(env.to_dict())))
    verify(received, key.public_key, expected_type=ISSUE)
    assert received == env
    assert received.signer == key.key_id
    assert received.expires_ms - received.created_ms == 120_000


@pytest.mark.parametrize(
    "changes",
    [
        {"body": {**BODY, "amount_fen": 50_000}},
        {"body": {**BODY, "bank_id": "bank-b"}},
        {"id": "another-instruction-id"},
        {"type": "central.redeem"},
        {"expires_ms": 0},
        {"created_ms": 1},
    ],
    ids=["amount", "bank", "id", "type", "expiry", "created"],
)
def test_an_altered_envelope_fails_its_signature(changes):
    env = seal(ECDSA_KEY, ISSUE, BODY)
    if "expires_ms" in changes:
        changes = {"expires_ms": env.expires_ms + 3_600_000}
    assert code_of(verify, tampered(env, **changes), ECDSA_KEY.public_key) == "bad_signature"


@pytest.mark.parametrize("extra", [{"fee_fen": 1}, {"extra": None}])
def test_a_field_the_instruction_does_not_have_is_refused_even_when_signed(extra):
    env = seal(ECDSA_KEY, ISSUE, {**BODY, **extra})
    error = pytest.raises(RailError, Envelope.parse, env.to_dict()).value
    assert error.code == "invalid_field" and next(iter(extra)) in error.message


def test_a_nested_object_may_carry_only_its_own_fields():
    env = seal(ECDSA_KEY, TRANSFER, {"transfer_id": "a.1", "from_bank": "a", "to_bank": "b",
                                     "amount_fen": 1, "payee_wallet": "b.x",
                                     "details": {"payer_wallet": "a.y", "fee_fen": 5}})
    assert code_of(Envelope.parse, env.to_dict()) == "invalid_field"


@pytest.mark.parametrize("kind, body, field", [
    ("bank.upgrade_wallet", {"wallet_id": "a.x", "id_number": "1", "deposit_account": 12345},
     "deposit_account"),
    ("bank.revoke_mandate", {"payer_wallet": "a.x", "mandate_id": ["M1", "M2"]}, "mandate_id"),
    ("bank.pay", {"payer_wallet": "a.x", "payee_wallet": "a.y", "amount_fen": True},
     "amount_fen"),
    ("bank.pay", {"payer_wallet": "a.x", "payee_wallet": "a.y", "amount_fen": "100"},
     "amount_fen"),
    ("bank.wallet_settings", {"wallet_id": "a.x", "topup_on_use": 1}, "topup_on_use"),
    ("bank.open_wallet", {"phone": "1", "public_key": "k", "merchant": {"name": 7}},
     "merchant.name"),
])
def test_a_field_of_the_wrong_json_type_is_refused_before_any_use_case_sees_it(kind, body,
                                                                                field):
    error = pytest.raises(RailError, Envelope.parse, seal(ECDSA_KEY, kind, body).to_dict()).value
    expected = "invalid_amount" if field.endswith("_fen") else "invalid_field"
    assert error.code == expected and error.message.startswith(field)


def test_null_stands_for_an_absent_optional_field():
    env = seal(ECDSA_KEY, "bank.merchant_settings", {"merchant_wallet": "a.x",
                                                     "webhook_url": None})
    assert Envelope.parse(env.to_dict()).body["webhook_url"] is None


def test_every_instruction_type_lists_its_fields():
    from rail_protocol import instruction_types as kinds

    declared = {value for name, value in vars(kinds).items()
                if name.isupper() and isinstance(value, str)}
    assert declared == set(kinds.BODY_FIELDS) | kinds.STATEMENT_TYPES


def test_a_signature_made_by_another_key_is_refused_as_unknown_key():
    env = seal(OTHER_KEY, ISSUE, BODY)
    assert code_of(verify, env, ECDSA_KEY.public_key) == "unknown_key"


def test_a_signer_field_rewritten_to_name_another_key_is_refused():
    env = seal(ECDSA_KEY, ISSUE, BODY)
    renamed = tampered(env, signer=OTHER_KEY.key_id)
    assert code_of(verify, renamed, OTHER_KEY.public_key) == "bad_signature"
    assert code_of(verify, renamed, ECDSA_KEY.public_key) == "unknown_key"


def test_another_keys_signature_under_a_forged_signer_is_a_bad_signature():
    env = seal(ECDSA_KEY, ISSUE, BODY)
    forged = tampered(env, sig=b64encode(OTHER_KEY.sign(env.signed_bytes())))
    assert code_of(verify, forged, ECDSA_KEY.public_key) == "bad_signature"


@pytest.mark.parametrize(
    ("sig", "code"),
    [
        ("AAAA", "bad_signature"),
        ("A" * 86, "bad_signature"),
        ("not base64 at all!", "bad_signature"),
        ("é" * 10, "invalid_field"),
        ("A" * 5000, "invalid_field"),
    ],
)
def test_garbage_signatures_are_refused(sig, code):
    env = tampered(seal(ECDSA_KEY, ISSUE, BODY), sig=sig)
    assert code_of(verify, env, ECDSA_KEY.public_key) == code


def test_an_envelope_of_another_type_is_refused_for_this_endpoint():
    env = seal(ECDSA_KEY, "central.redeem", BODY)
    assert code_of(verify, env, ECDSA_KEY.public_key, expected_type=ISSUE) == (
        "wrong_instruction_type"
    )


def test_an_expired_envelope_is_refused_but_its_signature_still_checks():
    env = seal(OPENSSL_KEY, ISSUE, BODY, created_ms=now_ms() - 10_000, ttl_ms=5_000)
    assert code_of(verify, env, OPENSSL_KEY.public_key) == "expired"
    verify(env, OPENSSL_KEY.public_key, check_expiry=False)


def test_expiry_is_exclusive_at_the_millisecond():
    env = seal(OPENSSL_KEY, ISSUE, BODY, created_ms=1_000_000, ttl_ms=60_000)
    verify(env, OPENSSL_KEY.public_key, at_ms=env.expires_ms - 1)
    assert code_of(verify, env, OPENSSL_KEY.public_key, at_ms=env.expires_ms) == "expired"
    assert code_of(check_live, env, env.expires_ms + 1) == "expired"


def test_an_envelope_created_far_in_the_future_is_not_yet_valid():
    future = now_ms() + MAX_CLOCK_SKEW_MS + 60_000
    env = seal(OPENSSL_KEY, ISSUE, BODY, created_ms=future)
    assert code_of(verify, env, OPENSSL_KEY.public_key) == "not_yet_valid"


def test_clock_skew_within_the_allowance_is_tolerated():
    env = seal(OPENSSL_KEY, ISSUE, BODY, created_ms=now_ms() + MAX_CLOCK_SKEW_MS // 2)
    verify(env, OPENSSL_KEY.public_key)


def test_a_lifetime_over_the_maximum_is_refused():
    env = seal(OPENSSL_KEY, ISSUE, BODY, ttl_ms=MAX_TTL_MS + 1)
    assert code_of(verify, env, OPENSSL_KEY.public_key) == "ttl_too_long"
    verify(seal(OPENSSL_KEY, ISSUE, BODY, ttl_ms=MAX_TTL_MS), OPENSSL_KEY.public_key)


@pytest.mark.parametrize("ttl_ms", [0, -1000])
def test_an_envelope_that_expires_before_it_is_created_is_refused(ttl_ms):
    env = seal(OPENSSL_KEY, ISSUE, BODY, ttl_ms=ttl_ms)
    assert code_of(verify, env, OPENSSL_KEY.public_key) == "invalid_field"


def test_a_forgery_is_named_as_such_before_its_timing():
    stale = seal(OPENSSL_KEY, ISSUE, BODY, created_ms=now_ms() - 10_000, ttl_ms=5_000)
    altered = tampered(stale, body={**BODY, "amount_fen": 1})
    assert code_of(verify, altered, OPENSSL_KEY.public_key) == "bad_signature"


def wire(**changes) -> dict:
    return {**seal(OPENSSL_KEY, ISSUE, BODY).to_dict(), **changes}


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ({k: v for k, v in wire().items() if k != "sig"}, "unsigned"),
        (wire(sig=""), "unsigned"),
        (wire(sig=None), "unsigned"),
        ([wire()], "unsigned"),
        ("envelope", "unsigned"),
        (BODY, "unsigned"),
        ({k: v for k, v in wire().items() if k != "body"}, "invalid_field"),
        ({k: v for k, v in wire().items() if k != "expires_ms"}, "invalid_field"),
        (wire(extra="field"), "invalid_field"),
        (wire(amount_fen=5), "invalid_field"),
        (wire(id="short"), "invalid_field"),
        (wire(id="has spaces in it"), "invalid_field"),
        (wire(id="x" * 65), "invalid_field"),
        (wire(id=12345678), "invalid_field"),
        (wire(type="Central.Issue"), "invalid_field"),
        (wire(signer=None), "invalid_field"),
        (wire(sig=123), "invalid_field"),
        (wire(created_ms="1700000000000"), "invalid_field"),
        (wire(created_ms=True), "invalid_field"),
        (wire(created_ms=1.7e12), "invalid_field"),
        (wire(expires_ms=None), "invalid_field"),
        (wire(body=[1, 2]), "invalid_field"),
        (wire(body="{}"), "invalid_field"),
    ],
)
def test_envelope_parse_refuses_malformed_envelopes(value, code):
    assert code_of(Envelope.parse, value) == code


def test_ids_of_8_to_64_safe_characters_are_accepted():
    for instruction_id in ("a" * 8, "A-b_c.d:e" + "9" * 55, "bank-a.0001"):
        env = seal(OPENSSL_KEY, ISSUE, BODY, id=instruction_id)
        assert Envelope.parse(env.to_dict()).id == instruction_id


def test_digest_covers_content_and_not_the_signature():
    created = now_ms()
    first = seal(OPENSSL_KEY, ISSUE, BODY, id="instruction-1", created_ms=created)
    second = seal(OPENSSL_KEY, ISSUE, BODY, id="instruction-1", created_ms=created)
    by_ecdsa = seal(ECDSA_KEY, ISSUE, BODY, id="instruction-1", created_ms=created)
    assert first.sig != second.sig  # OpenSSL signs with a random nonce
    assert first.digest() == second.digest() == by_ecdsa.digest()
    assert Envelope.parse(first.to_dict()).digest() == first.digest()
    assert first.digest() == hashlib.sha256(canonical_bytes(first.signed_fields())).hexdigest()


def test_digest_differs_when_any_signed_field_differs():
    created = now_ms()
    base = seal(OPENSSL_KEY, ISSUE, BODY, id="instruction-1", created_ms=created)
    others = [
        seal(OPENSSL_KEY, ISSUE, {**BODY, "amount_fen": 501}, id="instruction-1",
             created_ms=created),
        seal(OPENSSL_KEY, ISSUE, BODY, id="instruction-2", created_ms=created),
        seal(OPENSSL_KEY, ISSUE, BODY, id="instruction-1", created_ms=created + 1),
        seal(OPENSSL_KEY, "central.redeem", BODY, id="instruction-1", created_ms=created),
    ]
    assert len({base.digest(), *(o.digest() for o in others)}) == 5


def test_an_envelope_copied_with_another_body_no_longer_verifies():
    env = seal(OPENSSL_KEY, ISSUE, BODY)
    copied = dataclasses.replace(env, body={**BODY, "amount_fen": 10**12})
    assert copied.body["amount_fen"] == 10**12
    assert code_of(verify, copied, OPENSSL_KEY.public_key) == "bad_signature"


# --- statements (certificates, receipts) ---------------------------------------------------


def test_a_signed_statement_verifies_and_names_its_issuer():
    statement = sign_statement(OPENSSL_KEY, {"type": "central.receipt", "amount_fen": 5})
    assert statement["issuer"] == OPENSSL_KEY.key_id
    assert isinstance(statement["sig"], str)
    verify_statement(OPENSSL_KEY.public_key, statement)
    verify_statement(OPENSSL_KEY.public_key, orjson.loads(orjson.dumps(statement)))


def test_a_statement_signed_by_the_ecdsa_engine_verifies_too():
    verify_statement(ECDSA_KEY.public_key, sign_statement(ECDSA_KEY, {"n": 1}))


def test_signing_a_statement_replaces_any_signature_it_carried():
    statement = sign_statement(OPENSSL_KEY, {"n": 1, "sig": "forged", "issuer": "someone"})
    assert statement["issuer"] == OPENSSL_KEY.key_id
    verify_statement(OPENSSL_KEY.public_key, statement)


@pytest.mark.parametrize(
    "changes", [{"amount_fen": 6}, {"type": "central.other"}, {"added": True}]
)
def test_an_altered_statement_is_a_bad_signature(changes):
    statement = sign_statement(OPENSSL_KEY, {"type": "central.receipt", "amount_fen": 5})
    code = code_of(verify_statement, OPENSSL_KEY.public_key, {**statement, **changes})
    assert code == "bad_signature"


def test_a_statement_by_another_issuer_is_an_unknown_key():
    statement = sign_statement(OTHER_KEY, {"n": 1})
    assert code_of(verify_statement, OPENSSL_KEY.public_key, statement) == "unknown_key"


def test_a_statement_claiming_an_issuer_it_was_not_signed_by_is_a_bad_signature():
    fields = {"n": 1, "issuer": OPENSSL_KEY.key_id}
    forged = {**fields, "sig": b64encode(OTHER_KEY.sign(canonical_bytes(fields)))}
    assert code_of(verify_statement, OPENSSL_KEY.public_key, forged) == "bad_signature"


@pytest.mark.parametrize("sig", [None, 5, "", "AAAA"])
def test_a_statement_without_a_valid_signature_is_a_bad_signature(sig):
    statement = {**sign_statement(OPENSSL_KEY, {"n": 1}), "sig": sig}
    if sig is None:
        del statement["sig"]
    assert code_of(verify_statement, OPENSSL_KEY.public_key, statement) == "bad_signature"
