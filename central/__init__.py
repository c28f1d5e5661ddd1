"""The central bank's issuer: issuance and redemption against reserves, the certification of
bank-node keys, the registration centre's journal, interbank settlement and the audit."""
