"""The names of the rail's signed instruction types, in one place: the services check them,
and every client (the mobile wallet included) signs them without importing a service."""

# wallet -> its bank
OPEN_WALLET = "bank.open_wallet"
UPGRADE_WALLET = "bank.upgrade_wallet"
WALLET_SETTINGS = "bank.wallet_settings"
TOP_UP = "bank.top_up"
REDEEM = "bank.redeem"
PAY = "bank.pay"
MANDATE = "bank.mandate"
REVOKE_MANDATE = "bank.revoke_mandate"
PAYMENT_CODE = "bank.payment_code"
SHORT_CODE_SECRET = "bank.short_code_secret"   # register the secret of short payment codes
PIN_GUARD = "bank.pin_guard"           # register the guard the wallet's PIN is checked by
# conditional payments: two-phase transfers (bank/domain/holds.py)
HOLD = "bank.hold"                     # the payer freezes an amount for a merchant
HOLD_RELEASE = "bank.hold_release"     # the releaser posts it (all or part)
HOLD_VOID = "bank.hold_void"           # the merchant voids a hold, the issuer a voucher
VOUCHER = "bank.voucher"               # an issuer gives a holder money to spend by a deadline
VOUCHER_SPEND = "bank.voucher_spend"   # the holder spends part of it at a merchant
# offline payments (rail_protocol/offline.py)
OFFLINE_RESERVE = "bank.offline_reserve"   # set money aside for offline payments
OFFLINE_PAY = "bank.offline_pay"           # a payment note, made and checked with no network
OFFLINE_CLAIM = "bank.offline_claim"       # the receiver syncs a note with its bank
# merchant -> its bank
CREATE_ORDER = "bank.create_order"
CANCEL_ORDER = "bank.cancel_order"
MERCHANT_SETTINGS = "bank.merchant_settings"
REFUND = "bank.refund"
CHARGE_CODE = "bank.charge_code"
MANDATE_CHARGE = "bank.mandate_charge"
# bank <-> bank, central -> bank
INTERBANK_CHARGE = "bank.interbank_charge"
INTERBANK_CREDIT = "bank.interbank_credit"
# bank -> central (a bank signs with its certified key)
REGISTER_BANK = "central.register_bank"
CENTRAL_ISSUE = "central.issue"        # draw e-CNY against the bank's reserves
CENTRAL_REDEEM = "central.redeem"      # return e-CNY, credited back to the reserves
TRANSFER = "central.transfer"          # interbank message 1, bank A -> central
# central -> banks, and their answers
TRANSFER_STATUS = "central.transfer_status"        # central's answer to message 1
CREDIT_RESULT = "bank.interbank_credit_result"     # bank B's answer to message 2
CHECKPOINT_FINDING = "bank.checkpoint_finding"     # a bank's check of central's checkpoint,
                                                   # read by central's dashboard

# The body fields each signed instruction may carry, in one place. Anything else is refused
# before it is acted on: an unknown `fee_fen` must never be signed, accepted and ignored (or,
# by a later version, acted on). Required fields and their values are each use case's
# rules; here is only which names exist and which JSON type each holds.
BODY_FIELDS: dict[str, frozenset[str]] = {kind: frozenset(names) for kind, names in {
    OPEN_WALLET: ("phone", "public_key", "kind", "merchant"),
    UPGRADE_WALLET: ("wallet_id", "id_number", "deposit_account"),
    WALLET_SETTINGS: ("wallet_id", "topup_on_use"),
    TOP_UP: ("wallet_id", "amount_fen"),
    REDEEM: ("wallet_id", "amount_fen"),
    PAY: ("payer_wallet", "payee_wallet", "amount_fen", "memo", "order_id"),
    MANDATE: ("payer_wallet", "merchant_wallet", "merchant_public_key", "per_payment_cap_fen",
              "period_cap_fen", "period", "merchant_name"),
    REVOKE_MANDATE: ("payer_wallet", "mandate_id"),
    PAYMENT_CODE: ("payer_wallet", "pin_verified"),
    SHORT_CODE_SECRET: ("wallet_id", "secret"),
    PIN_GUARD: ("wallet_id", "guard_hash", "verifier_hash"),
    HOLD: ("payer_wallet", "payee_wallet", "amount_fen", "deadline_ms", "release_by", "memo"),
    HOLD_RELEASE: ("hold_id", "signer_wallet", "amount_fen"),
    HOLD_VOID: ("hold_id", "signer_wallet"),
    VOUCHER: ("issuer_wallet", "holder_wallet", "amount_fen", "deadline_ms", "mcc", "memo"),
    VOUCHER_SPEND: ("hold_id", "holder_wallet", "payee_wallet", "amount_fen"),
    OFFLINE_RESERVE: ("wallet_id", "amount_fen", "max_payments", "purse_key"),
    OFFLINE_PAY: ("purse_id", "seq", "payee_wallet", "amount_fen"),
    OFFLINE_CLAIM: ("payee_wallet", "payment"),
    CREATE_ORDER: ("merchant_wallet", "amount_fen", "reference", "description", "ttl_ms"),
    CANCEL_ORDER: ("merchant_wallet", "order_id"),
    MERCHANT_SETTINGS: ("merchant_wallet", "webhook_url"),
    REFUND: ("merchant_wallet", "payment_id", "amount_fen"),
    CHARGE_CODE: ("merchant_wallet", "code", "amount_fen"),
    MANDATE_CHARGE: ("merchant_wallet", "payer_wallet", "mandate_id", "amount_fen"),
    INTERBANK_CHARGE: ("merchant_bank", "merchant_wallet", "code", "amount_fen", "charge"),
    INTERBANK_CREDIT: ("transfer_id", "from_bank", "to_bank", "amount_fen", "payee_wallet",
                       "details"),
    REGISTER_BANK: ("bank_id", "name", "public_key", "url"),
    CENTRAL_ISSUE: ("bank_id", "amount_fen"),
    CENTRAL_REDEEM: ("bank_id", "amount_fen"),
    TRANSFER: ("transfer_id", "from_bank", "to_bank", "amount_fen", "payee_wallet", "details"),
}.items()}
# Signed statements (answers), not instructions: their fields are the signer's to choose.
STATEMENT_TYPES = frozenset({TRANSFER_STATUS, CREDIT_RESULT, CHECKPOINT_FINDING})
# Objects inside a body, and the fields they may carry.
NESTED_FIELDS: dict[str, frozenset[str]] = {
    "merchant": frozenset({"name", "mcc", "city"}),
    "details": frozenset({"payer_wallet", "order_id", "refund_of"}),
}
# A field's JSON type, by name (one name means one type in every instruction); every field
# not named here is a string. null stands for an absent field.
FIELD_TYPES: dict[str, type] = {
    "amount_fen": int, "per_payment_cap_fen": int, "period_cap_fen": int, "ttl_ms": int,
    "deadline_ms": int, "seq": int, "max_payments": int,
    "topup_on_use": bool, "pin_verified": bool,
    "merchant": dict, "details": dict, "charge": dict,
}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "an object"}


def _type_problem(name: str, value: object) -> tuple[str, str] | None:
    if value is None:
        return None
    expected = FIELD_TYPES.get(name.rsplit(".", 1)[-1], str)
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return None
    code = "invalid_amount" if name.endswith("_fen") else "invalid_field"
    return code, f"{name} must be {_TYPE_NAMES[expected]}"


def body_problem(kind: str, body: dict) -> tuple[str, str] | None:
    """Why `body` cannot be an instruction of type `kind`, as (error code, message): unknown
    fields (dotted for a nested object's) or a field of the wrong JSON type; None when it
    can, and for a type the rail does not know (refused elsewhere)."""
    allowed = BODY_FIELDS.get(kind)
    if allowed is None:
        return None
    unknown = sorted(set(body) - allowed)
    fields = dict(body)
    for name, inner in NESTED_FIELDS.items():
        value = body.get(name)
        if name in allowed and isinstance(value, dict):
            unknown += [f"{name}.{field}" for field in sorted(set(value) - inner)]
            fields.update({f"{name}.{field}": v for field, v in value.items()})
    if unknown:
        return "invalid_field", f"unknown fields in a {kind} instruction: {', '.join(unknown)}"
    for name, value in fields.items():
        problem = _type_problem(name, value)
        if problem:
            return problem
    return None
