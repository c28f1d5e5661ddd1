"""What to tell a person when something is refused: one sentence they can act on.

Every error a screen can meet goes through `explain(exc)`: the rail's `RailError` codes
(every code in `rail_protocol.errors.CODES` has a sentence here, a unit test checks it),
the wallet's own `WalletError` codes, and anything unexpected (a generic sentence, never a
traceback)."""

from __future__ import annotations

from rail_protocol.errors import CODES, RailError
from wallet_app.core.errors import WalletError

UNEXPECTED = "Something went wrong; nothing was paid. Please try again."

MESSAGES: dict[str, str] = {
    # --- the wallet's own refusals ------------------------------------------------------
    "wrong_pin": "The PIN is wrong.",
    "pin_locked": "Too many wrong PINs. Wait a little, then try again.",
    "pin_format": "The PIN must be 6 digits.",
    "pin_mismatch": "The two PINs are not the same.",
    "pin_needed": "Enter your PIN to pay this amount.",
    "no_wallet": "There is no wallet on this device yet.",
    "locked": "Unlock the wallet with your PIN first.",
    "key_exists": "This device already holds a wallet.",
    "key_file_invalid": "The wallet's key file is damaged.",
    "unreadable_code": "The code could not be read. Try again, or ask for a new code.",
    "no_qr_reader": "This device has no QR reader installed.",
    "invalid_wallet_id": "That is not a wallet id.",
    "not_payable_here": "This code cannot be paid from a wallet.",
    "not_a_payment_code": "That is not a customer's payment code.",
    "payment_pending": "Your bank did not answer. The payment is kept and will be sent again "
                       "with the same id, so it can never be paid twice.",
    "no_bank": "No bank is configured. Start the wallet with --bank URL.",
    "camera_unavailable": "No camera is available. Open an image or paste the code instead.",
    # --- the rail's refusals, by code ---------------------------------------------------
    "malformed_json": "The bank could not read the request. Please update the wallet.",
    "payload_too_large": "The request was too large for the bank.",
    "invalid_field": "Some details are not right: {message}",
    "invalid_amount": "The amount is not valid: {message}",
    "float_not_allowed": "The amount must be whole fen.",
    "unsigned": "The bank wants a signed request. Please update the wallet.",
    "bad_signature": "The bank could not verify this wallet's signature.",
    "unknown_key": "The bank does not know this wallet's key.",
    "expired": "The request took too long and expired. Nothing was paid; try again.",
    "not_yet_valid": "This device's clock is wrong. Set the date and time, then try again.",
    "ttl_too_long": "The request lives too long for the bank.",
    "replayed": "This payment was already made.",
    "instruction_id_reused": "The bank saw a different request under the same id.",
    "wrong_instruction_type": "The bank refused the request type. Please update the wallet.",
    "signer_mismatch": "This wallet may not act for that account.",
    "unauthorized": "Only the bank's operator may do that.",
    "unknown_bank": "That bank is not part of the rail.",
    "bank_key_conflict": "The bank's key does not match its registration.",
    "insufficient_reserves": "The bank is short of reserves. Try again later.",
    "insufficient_holdings": "The bank is short of e-CNY. Try again later.",
    "deposit_id_reused": "The deposit was already recorded.",
    "not_found": "Not found.",
    "qr_malformed": "This is not a valid payment code: it may be damaged or from another "
                    "scheme.",
    "qr_bad_crc": "The code was misread or altered. Scan it again.",
    "qr_wrong_currency": "This code asks for another currency than yuan (CNY); it cannot be "
                         "paid with e-CNY.",
    "qr_invalid_amount": "The code's amount is not valid.",
    "unknown_wallet": "There is no such wallet at the bank.",
    "wallet_closed": "The wallet is closed and can neither pay nor receive.",
    "wallet_exists": "A wallet with this phone number already exists at this bank.",
    "wrong_key": "This wallet's key may not sign for that wallet.",
    "insufficient_funds": "Not enough money in your wallet. Top up, or switch on top-up on "
                          "use, and try again.",
    "per_payment_cap_exceeded": "This is more than your wallet class allows in one payment. "
                                "Link a bank account to raise your limits.",
    "daily_cap_exceeded": "This would pass your wallet's limit for today. Try a smaller "
                          "amount, or again tomorrow.",
    "balance_cap_exceeded": "This would take a wallet past its balance limit.",
    "self_payment": "A wallet cannot pay itself.",
    "no_linked_account": "Link your bank account first.",
    "insufficient_deposit": "Your bank account holds less than that.",
    "vault_empty": "The bank is short of e-CNY just now. Try again in a minute.",
    "rate_limited": "Too many requests. Wait a moment and try again.",
    "not_a_merchant": "Only a merchant wallet may do that.",
    "unknown_order": "The merchant's bank does not know this order.",
    "order_paid": "This order has already been paid.",
    "order_expired": "This order has expired. Ask the merchant for a new code.",
    "order_cancelled": "The merchant cancelled this order.",
    "order_amount_mismatch": "The amount is not the order's amount.",
    "order_reference_reused": "That order reference was used for another order.",
    "not_refundable": "That payment cannot be refunded.",
    "refund_exceeds_payment": "Refunds cannot add up to more than was paid.",
    "payment_code_invalid": "That is not a valid payment code. Ask the customer to refresh "
                            "it.",
    "payment_code_used": "That payment code was already used. Ask the customer to show a "
                         "new one.",
    "pin_required": "Above the no-PIN amount the customer must enter the PIN for the code.",
    "unknown_mandate": "There is no such authorisation.",
    "mandate_revoked": "That authorisation was revoked.",
    "mandate_cap_exceeded": "That is more than the authorisation allows.",
    "unknown_bank_node": "The other bank cannot be reached through the rail just now.",
    "upstream_unavailable": "Your bank cannot be reached. Check the connection and try "
                            "again.",
    "service_unavailable": "Your bank is busy just now. Try again in a moment; nothing was "
                           "paid twice.",
}


def explain(exc: BaseException) -> str:
    """One sentence for a person about `exc`."""
    if isinstance(exc, (RailError, WalletError)):
        text = MESSAGES.get(exc.code)
        if text is None:
            return exc.message or UNEXPECTED
        if "{message}" in text:
            return text.format(message=exc.message)
        if exc.code in ("wrong_pin", "pin_locked") and exc.message:
            return exc.message[:1].upper() + exc.message[1:] + "."
        if exc.code == "unreadable_code" and exc.message and exc.message != "unreadable code":
            return f"The code could not be read: {exc.message}."
        return text
    return UNEXPECTED


def missing_codes() -> set[str]:
    """Rail codes without a sentence here (a unit test wants none)."""
    return set(CODES) - set(MESSAGES)
