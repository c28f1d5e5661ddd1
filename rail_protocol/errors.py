"""Typed errors: every refusal on the rail has a snake_case code, an HTTP status and a
human message. Services raise `RailError`; the HTTP edge maps it to a 4xx body
`{"error": {"code": ..., "message": ...}}` and never to a 500."""

from __future__ import annotations

# code -> (HTTP status, one paragraph of explanation). One place for every code.
CODES: dict[str, tuple[int, str]] = {
    # --- request shape -------------------------------------------------------------
    "malformed_json": (400, "The body is not valid JSON, or JSON of the wrong shape."),
    "payload_too_large": (413, "The body is larger than the rail accepts for one request."),
    "invalid_field": (422, "A field is missing, of the wrong type, or out of range."),
    "invalid_amount": (422, "Amounts are positive integers in fen below the rail's ceiling; "
                            "floats, strings, negatives and booleans are refused."),
    "float_not_allowed": (422, "Floats never appear in anything the rail signs or moves."),
    # --- signatures and instructions ------------------------------------------------
    "unsigned": (401, "A money-moving request must be a signed instruction envelope."),
    "bad_signature": (401, "The signature does not verify against the signer's key."),
    "unknown_key": (401, "The signer's key id is not registered here."),
    "expired": (400, "The instruction's expiry has passed; sign a new one."),
    "not_yet_valid": (400, "The instruction claims to be created in the future."),
    "ttl_too_long": (400, "The instruction lives longer than the rail allows."),
    "replayed": (409, "This instruction was already executed and its validity window is "
                      "over; a replay has no effect."),
    "instruction_id_reused": (409, "The same instruction id was used with different content."),
    "wrong_instruction_type": (400, "The envelope's type does not match this endpoint."),
    "signer_mismatch": (403, "The signer may not act for the account named in the body."),
    # --- operators ------------------------------------------------------------------
    "unauthorized": (401, "This operation needs the operator credential."),
    "forbidden": (403, "This credential is valid but may not see or do this: a bank reads "
                       "only its own account and transfers (docs/roles.md)."),
    # --- central ledger -------------------------------------------------------------
    "unknown_bank": (404, "No bank node with that id is registered at central."),
    "bank_key_conflict": (409, "The bank is registered with a different key."),
    "insufficient_reserves": (409, "Issuing this much would exceed the bank's reserves; "
                                   "e-CNY is 100% backed."),
    "insufficient_holdings": (409, "The bank holds less e-CNY than it asked to redeem."),
    "deposit_id_reused": (409, "The same reserve deposit id was used with another amount."),
    "not_found": (404, "No such resource."),
    # --- merchant QR codes ----------------------------------------------------------
    "qr_malformed": (422, "The QR payload is truncated, has duplicate, unknown or missing "
                          "fields, or is not an EMVCo merchant-presented payload of this rail."),
    "qr_bad_crc": (422, "The QR payload's CRC-16 does not match: it was misread or altered."),
    "qr_wrong_currency": (422, "The QR payload is not in CNY (ISO 4217 numeric 156)."),
    "qr_invalid_amount": (422, "The QR payload's amount is malformed, zero or out of range."),
    # --- bank node: wallets, limits, payments ---------------------------------------
    "unknown_wallet": (404, "No wallet with that id at this bank."),
    "wallet_closed": (409, "The wallet is closed and can neither pay nor receive."),
    "wallet_exists": (409, "A wallet with that phone number or key already exists here."),
    "wrong_key": (403, "The instruction is not signed by the key of the wallet it debits."),
    "insufficient_funds": (409, "The wallet's balance (and top-up on use, if on) is less "
                                "than the amount."),
    "per_payment_cap_exceeded": (409, "The amount is above the wallet class's per-payment cap."),
    "daily_cap_exceeded": (409, "The payment would take the wallet past its class's daily cap."),
    "balance_cap_exceeded": (409, "The credit would take the payee past its class's balance cap "
                                  "and it has no linked deposit account to sweep the excess to."),
    "self_payment": (422, "A wallet cannot pay itself."),
    "no_linked_account": (409, "The wallet has no linked deposit account for this."),
    "insufficient_deposit": (409, "The deposit account holds less than the amount."),
    "vault_empty": (503, "The bank's e-CNY vault is short and central could not refill it; "
                         "retry later."),
    "rate_limited": (429, "Too many requests from this wallet; slow down."),
    "too_many_tries": (429, "Too many wrong credentials (operator token, PIN, PIN guard) "
                            "from this address: wait `details.wait_s` seconds."),
    # --- merchants: orders, refunds, payment codes, mandates ---------------------------
    "not_a_merchant": (403, "Only a merchant wallet may do this."),
    "unknown_order": (404, "No order with that id at the merchant's bank."),
    "order_paid": (409, "The order has already been paid; an order is paid at most once."),
    "order_expired": (409, "The order's time to pay has passed."),
    "order_cancelled": (409, "The merchant cancelled the order."),
    "order_amount_mismatch": (409, "The amount is not the order's amount."),
    "order_reference_reused": (409, "The merchant used the same order reference for another "
                                    "order."),
    "not_refundable": (409, "That payment was not made to this merchant, or cannot be "
                            "refunded."),
    "refund_exceeds_payment": (409, "Refunds in total may not exceed what was paid."),
    "payment_code_invalid": (422, "The payment code is unreadable or not of this rail."),
    "payment_code_used": (409, "The payment code was already used; codes are single-use."),
    "pin_required": (403, "Above the no-PIN threshold the payer must enter the PIN for the "
                          "code."),
    "wrong_pin": (403, "The PIN is wrong; `details.left` says how many tries remain before "
                       "the wallet's PIN is locked."),
    "pin_locked": (429, "Too many wrong PINs: the PIN is locked for `details.wait_s` seconds."),
    "unknown_pin_guard": (404, "No PIN guard with that id: the wallet's key was registered "
                               "again on another phone (a restored backup or a new PIN)."),
    "unknown_mandate": (404, "No such mandate for this payer and merchant."),
    "mandate_revoked": (409, "The payer revoked the mandate."),
    "mandate_cap_exceeded": (409, "The charge is above the mandate's cap per payment or "
                                  "what is left of its cap for the period."),
    "unknown_hold": (404, "No such hold or voucher for this wallet."),
    "hold_closed": (409, "The hold or voucher was already posted, voided or expired; each "
                         "closes exactly once."),
    "hold_expired": (409, "The hold's or voucher's deadline has passed; what it held goes "
                          "back."),
    "release_exceeds_hold": (409, "The amount is more than the hold or voucher has left."),
    "mcc_not_allowed": (409, "This voucher may be spent only at merchants of its category "
                             "(MCC)."),
    "offline_invalid": (422, "The offline payment is unreadable, not signed by the payer's "
                            "bank and wallet, or outside its purse's caps."),
    "offline_double_spend": (409, "The offline payment spends what the payer's reserve no "
                                  "longer holds (a note number used twice, or more than was "
                                  "reserved): refused, nothing credited."),
    "unknown_bank_node": (502, "The other bank's node is not known to central or not "
                               "certified."),
    "service_unavailable": (503, "The service could not get to its database in time (at "
                                 "capacity, or the database is down); retry the same "
                                 "instruction: a retry has exactly one effect."),
    "upstream_unavailable": (503, "A party this request depends on did not answer; the "
                                  "instruction may be retried with the same id."),
}


class RailError(Exception):
    """A refusal with a machine-readable code. Raising one must leave nothing written."""

    def __init__(self, code: str, message: str | None = None, **details: object) -> None:
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.status = CODES[code][0]
        self.message = message or CODES[code][1]
        self.details = details
        super().__init__(f"{code}: {self.message}")

    def to_dict(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}
