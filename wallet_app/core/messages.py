"""What to tell a person when something is refused: one sentence they can act on.

Every error a screen can meet goes through `explain(exc)`: the rail's `RailError` codes
(every code in `rail_protocol.errors.CODES` has a sentence here, a unit test checks it),
the wallet's own `WalletError` codes, and anything unexpected (a generic sentence, never a
traceback). The sentences are English msgids, said in the chosen language (`i18n`)."""

from __future__ import annotations

from rail_protocol.errors import CODES, RailError
from wallet_app.core.errors import WalletError
from wallet_app.core.i18n import N_, _

UNEXPECTED = N_("Something went wrong; nothing was paid. Please try again.")

MESSAGES: dict[str, str] = {
    # --- the wallet's own refusals ------------------------------------------------------
    "wrong_pin": N_("The PIN is wrong."),
    "pin_locked": N_("Too many wrong PINs. Wait a little, then try again."),
    "unknown_pin_guard": N_("This wallet's key was restored on another phone or given a new "
                            "PIN there, so it no longer opens here. Restore your backup."),
    "pin_format": N_("The PIN must be 6 digits."),
    "pin_mismatch": N_("The two PINs are not the same."),
    "weak_passphrase": N_("The backup passphrase must be at least 12 characters."),
    "backup_wrong_passphrase": N_("The passphrase does not open this backup."),
    "backup_invalid": N_("That file is not a wallet backup, or it was altered."),
    "pin_needed": N_("Enter your PIN to pay this amount."),
    "no_wallet": N_("There is no wallet on this device yet."),
    "locked": N_("Unlock the wallet with your PIN first."),
    "key_exists": N_("This device already holds a wallet."),
    "key_file_invalid": N_("The wallet's key file is damaged."),
    "unreadable_code": N_("The code could not be read. Try again, or ask for a new code."),
    "no_qr_reader": N_("This device has no QR reader installed."),
    "invalid_wallet_id": N_("That is not a wallet id."),
    "not_payable_here": N_("This code cannot be paid from a wallet."),
    "not_a_payment_code": N_("That is not a customer's payment code."),
    "payment_pending": N_("Your bank did not answer. The payment is kept and will be sent again "
                       "with the same id, so it can never be paid twice."),
    "no_bank": N_("No bank is configured. Add your bank by its address or its QR code."),
    "bad_bank_url": N_("That is not a bank's address. Type it as https://... or scan the "
                       "bank's code."),
    "camera_unavailable": N_("No camera is available. Open an image or paste the code instead."),
    # --- the rail's refusals, by code ---------------------------------------------------
    "malformed_json": N_("The bank could not read the request. Please update the wallet."),
    "payload_too_large": N_("The request was too large for the bank."),
    "invalid_field": N_("Some details are not right: {message}"),
    "invalid_amount": N_("The amount is not valid: {message}"),
    "float_not_allowed": N_("The amount must be whole fen."),
    "unsigned": N_("The bank wants a signed request. Please update the wallet."),
    "bad_signature": N_("The bank could not verify this wallet's signature."),
    "unknown_key": N_("The bank does not know this wallet's key."),
    "expired": N_("The request took too long and expired. Nothing was paid; try again."),
    "not_yet_valid": N_("This device's clock is wrong. Set the date and time, then try again."),
    "ttl_too_long": N_("The request lives too long for the bank."),
    "replayed": N_("This payment was already made."),
    "instruction_id_reused": N_("The bank saw a different request under the same id."),
    "wrong_instruction_type": N_("The bank refused the request type. Please update the wallet."),
    "signer_mismatch": N_("This wallet may not act for that account."),
    "unauthorized": N_("Only the bank's operator may do that."),
    "forbidden": N_("That is not yours to see or do."),
    "unknown_bank": N_("That bank is not part of the rail."),
    "bank_key_conflict": N_("The bank's key does not match its registration."),
    "insufficient_reserves": N_("The bank is short of reserves. Try again later."),
    "insufficient_holdings": N_("The bank is short of e-CNY. Try again later."),
    "deposit_id_reused": N_("The deposit was already recorded."),
    "not_found": N_("Not found."),
    "qr_malformed": N_("This is not a valid payment code: it may be damaged or from another "
                    "scheme."),
    "qr_bad_crc": N_("The code was misread or altered. Scan it again."),
    "qr_wrong_currency": N_("This code asks for another currency than yuan (CNY); it cannot be "
                         "paid with e-CNY."),
    "qr_invalid_amount": N_("The code's amount is not valid."),
    "unknown_wallet": N_("There is no such wallet at the bank."),
    "wallet_closed": N_("The wallet is closed and can neither pay nor receive."),
    "wallet_exists": N_("A wallet with this phone number already exists at this bank."),
    "wrong_key": N_("This wallet's key may not sign for that wallet."),
    "insufficient_funds": N_("Not enough money in your wallet. Top up, or switch on top-up on "
                          "use, and try again."),
    "per_payment_cap_exceeded": N_("This is more than your wallet class allows in one payment. "
                                "Link a bank account to raise your limits."),
    "daily_cap_exceeded": N_("This would pass your wallet's limit for today. Try a smaller "
                          "amount, or again tomorrow."),
    "balance_cap_exceeded": N_("This would take a wallet past its balance limit."),
    "self_payment": N_("A wallet cannot pay itself."),
    "no_linked_account": N_("Link your bank account first."),
    "insufficient_deposit": N_("Your bank account holds less than that."),
    "vault_empty": N_("The bank is short of e-CNY just now. Try again in a minute."),
    "rate_limited": N_("Too many requests. Wait a moment and try again."),
    "too_many_tries": N_("Too many wrong tries from this network. Wait a few minutes, then "
                         "try again."),
    "not_a_merchant": N_("Only a merchant wallet may do that."),
    "unknown_order": N_("The merchant's bank does not know this order."),
    "order_paid": N_("This order has already been paid."),
    "order_expired": N_("This order has expired. Ask the merchant for a new code."),
    "order_cancelled": N_("The merchant cancelled this order."),
    "order_amount_mismatch": N_("The amount is not the order's amount."),
    "order_reference_reused": N_("That order reference was used for another order."),
    "not_refundable": N_("That payment cannot be refunded."),
    "refund_exceeds_payment": N_("Refunds cannot add up to more than was paid."),
    "payment_code_invalid": N_("That is not a valid payment code. Ask the customer to refresh "
                            "it."),
    "payment_code_used": N_("That payment code was already used. Ask the customer to show a "
                         "new one."),
    "pin_required": N_("Above the no-PIN amount the customer must enter the PIN for the code."),
    "unknown_mandate": N_("There is no such authorisation."),
    "mandate_revoked": N_("That authorisation was revoked."),
    "mandate_cap_exceeded": N_("That is more than the authorisation allows."),
    "unknown_hold": N_("There is no such hold or voucher."),
    "hold_closed": N_("That hold or voucher is already closed."),
    "hold_expired": N_("That hold or voucher has expired; the money went back."),
    "release_exceeds_hold": N_("That is more than is left on the hold or voucher."),
    "mcc_not_allowed": N_("This voucher cannot be spent at this kind of shop."),
    "offline_invalid": N_("That is not a valid offline payment."),
    "offline_double_spend": N_("That offline payment was already spent elsewhere; nothing was "
                               "credited."),
    "unknown_bank_node": N_("The other bank cannot be reached through the rail just now."),
    "upstream_unavailable": N_("Your bank cannot be reached. Check the connection and try "
                            "again."),
    "service_unavailable": N_("Your bank is busy just now. Try again in a moment; nothing was "
                           "paid twice."),
}


def explain(exc: BaseException) -> str:
    """One sentence for a person about `exc`, in the current language. A detail from the
    device (`WalletError.message`, marked N_ where raised) is translated too; a bank's own
    detail is shown as the bank wrote it."""
    if isinstance(exc, (RailError, WalletError)):
        text = MESSAGES.get(exc.code)
        details = getattr(exc, "details", {}) or {}
        if text is None:
            return _(exc.message) if exc.message else _(UNEXPECTED)
        if "{message}" in text:
            return _(text).format(message=_(exc.message))
        if exc.code == "wrong_pin" and details.get("left"):
            return _("The PIN is wrong ({left} tries before it locks).").format(
                left=details["left"])
        if exc.code == "pin_locked" and isinstance(details.get("wait_s"), int):
            if details["wait_s"] > 3600:
                return _("Too many wrong PINs: the PIN is locked for {hours} h. A backup "
                         "restores the wallet at once.").format(
                    hours=-(-details["wait_s"] // 3600))
            return _("Too many wrong PINs: try again in {wait_s} s.").format(
                wait_s=details["wait_s"])
        if exc.code == "unreadable_code" and exc.message and exc.message != "unreadable code":
            return _("The code could not be read: {reason}.").format(reason=_(exc.message))
        return _(text)
    return _(UNEXPECTED)


def missing_codes() -> set[str]:
    """Rail codes without a sentence here (a unit test wants none)."""
    return set(CODES) - set(MESSAGES)
