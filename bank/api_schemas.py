"""The shapes of a bank node's answers, as its OpenAPI document states them (see
rail_service/openapi.py). Answers may gain fields; the ones named required are always there."""

from rail_service.openapi import (
    BOOL, FEN, INT, MS, TEXT, array, nullable, obj, one_of,
)

HEALTH = obj({"status": one_of("ok")})
LIMITS = obj({"kyc_class": INT, "balance_cap_fen": nullable(FEN),
              "per_payment_cap_fen": nullable(FEN), "daily_cap_fen": nullable(FEN)})
IDENTITY = obj({"bank_id": TEXT, "name": TEXT, "key_id": TEXT, "public_key": TEXT,
                "no_pin_threshold_fen": FEN, "classes": array(LIMITS),
                "wallet_link": {**TEXT, "pattern": "^yuanrail:bank\\?url="}})
WALLET = obj({"wallet_id": TEXT, "bank_id": TEXT, "kind": one_of("personal", "merchant"),
              "kyc_class": INT, "status": one_of("open", "closed"), "balance_fen": FEN,
              "limits": LIMITS, "spent_today_fen": FEN, "daily_left_fen": nullable(FEN),
              "topup_on_use": BOOL, "deposit_account_linked": BOOL, "key_id": TEXT})
PAYMENT_STATUS = one_of("settled", "processing", "rejected")
# What a payment, a charge, a top-up, a redemption or a refund answers: settled here, or
# `processing` while the other bank has not answered yet (the history then tells).
PAYMENT_RESULT = obj({"status": PAYMENT_STATUS, "amount_fen": FEN, "payment_id": TEXT}, {
    "payer_wallet": nullable(TEXT), "payee_wallet": nullable(TEXT),
    "balance_after_fen": FEN, "pulled_from_deposit_fen": FEN, "swept_to_deposit_fen": FEN,
    "to_deposit_fen": FEN, "refund_of": TEXT, "transfer_id": TEXT, "order_id": nullable(TEXT),
    "created_ms": MS, "code": nullable(TEXT)})
PAYMENT = obj({"payment_id": TEXT, "kind": TEXT, "status": one_of(
    "settled", "processing", "rejected", "pending", "voided", "expired"), "amount_fen": FEN,
    "payer_wallet": nullable(TEXT), "payee_wallet": nullable(TEXT), "created_ms": MS,
    "updated_ms": MS})
HISTORY = obj({"items": array(PAYMENT), "next_before": nullable(INT)},
              {"names": {"type": "object", "additionalProperties": TEXT,
                         "description": "merchant names of the counterparties, by wallet id"}})
MANDATE = obj({"mandate_id": TEXT, "payer_wallet": TEXT, "merchant_wallet": TEXT,
               "merchant_name": nullable(TEXT), "per_payment_cap_fen": FEN, "period": TEXT,
               "period_cap_fen": FEN, "used_this_period_fen": FEN,
               "left_this_period_fen": FEN, "status": one_of("active", "revoked"),
               "created_ms": MS})
MANDATES = obj({"mandates": array(MANDATE)})
ORDER = obj({"order_id": TEXT, "merchant_wallet": TEXT, "merchant_name": nullable(TEXT),
             "amount_fen": FEN, "reference": TEXT, "refunded_fen": FEN,
             "status": one_of("created", "paid", "expired", "cancelled"), "created_ms": MS,
             "expires_ms": MS, "payment_id": nullable(TEXT), "qr_payload": TEXT},
            {"merchant_city": nullable(TEXT), "description": nullable(TEXT)})
# One server-sent event of an order's stream: `event: order`, its data the order as JSON.
ORDER_EVENT = obj({"event": one_of("order"), "data": {
    "type": "string", "contentMediaType": "application/json", "contentSchema": ORDER}})
SHORT_CODE_SLOT = obj({"wallet_id": TEXT, "issuer": {"type": "string", "pattern": "^[0-9]{2}$"},
                       "slot": {"type": "string", "pattern": "^[0-9]{8}$"}, "length": INT})
HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
PIN_GUARD_SHARE = obj({"wallet_id": TEXT, "share": HEX64})
HOLD = obj({"hold_id": TEXT, "kind": one_of("hold", "voucher", "purse"),
            "status": one_of("pending", "posted", "voided", "expired"),
            "funder_wallet": TEXT, "payee_wallet": nullable(TEXT),
            "holder_wallet": nullable(TEXT), "amount_fen": FEN, "remaining_fen": FEN,
            "mcc": nullable(TEXT), "deadline_ms": MS, "release_by": nullable(TEXT),
            "created_ms": MS, "closed_ms": nullable(MS)}, {"memo": nullable(TEXT)})
HOLDS = obj({"holds": array(HOLD)})
PURSE = obj({"type": one_of("bank.offline_purse"), "purse_id": TEXT, "bank_id": TEXT,
             "wallet_id": TEXT, "public_key": TEXT, "amount_fen": FEN, "max_payments": INT,
             "pay_until_ms": MS, "issuer": TEXT, "sig": TEXT})
OFFLINE_RESERVE = obj({"purse": PURSE, "reserve": HOLD})
OFFLINE_CLAIM = obj({"purse_id": TEXT, "seq": INT, "status": one_of("credited"),
                     "payee_wallet": TEXT, "amount_fen": FEN, "claimed_ms": MS})
MERCHANT_SETTINGS = obj({"merchant_wallet": TEXT, "webhook_url": nullable(TEXT)})
DELIVERIES = obj({"deliveries": array(obj({"status": TEXT, "attempts": INT}))})
STATIC_QR = obj({"qr_payload": TEXT})
CREDIT_RESULT = obj({"result": obj({"type": one_of("bank.interbank_credit_result"),
                                    "transfer_id": TEXT, "accepted": BOOL, "issuer": TEXT,
                                    "sig": TEXT})})
CREDIT_ERROR = obj({"error": obj({"code": TEXT, "message": TEXT})})
CREDIT_RESULTS = obj({"results": array({"anyOf": [CREDIT_RESULT, CREDIT_ERROR]})})
SEALED_CREDIT_RESULTS = obj({"results": array({"anyOf": [
    obj({"result": obj({"type": one_of("bank.interbank_credit_result"), "transfer_id": TEXT,
                        "accepted": BOOL, "issuer": TEXT})}), CREDIT_ERROR]}),
    "issuer": TEXT, "sig": TEXT})
DEPOSIT_ACCOUNT = obj({"account_id": TEXT, "holder_name": TEXT, "balance_fen": FEN})
AUDIT = obj({"bank_id": TEXT, "balanced": BOOL, "books_fen": FEN, "vault_fen": FEN,
             "wallets_fen": FEN, "interbank_out_fen": FEN, "redeem_out_fen": FEN,
             "wallet_count": INT, "problems": array({})})
CREDITED = obj({"credited": array(TEXT)})
CHECKPOINT_REPORT = obj({"bank_id": TEXT, "status": TEXT, "alarm": BOOL}, {
    "detail": nullable(TEXT), "checked_ms": nullable(MS), "alarms": {}})
FINDING = obj({"type": one_of("bank.checkpoint_finding"), "bank_id": TEXT, "status": TEXT,
               "alarm": BOOL, "at_ms": MS, "issuer": TEXT, "sig": TEXT})
FIGURES = obj({"service": TEXT, "bank_id": TEXT, "at_ms": MS, "payments": {"type": "object"},
               "refusals": {"type": "object"}, "wallet_classes": {"type": "object"},
               "outbox": {"type": "object"}, "webhooks": {"type": "object"},
               "vault": {"type": "object"}, "registry": {"type": "object"},
               "alarms": {"type": "array"}})
PNG = {"type": "string", "format": "binary"}
SVG = {"type": "string"}
