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
