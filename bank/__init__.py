"""A commercial bank node: wallets, deposits, signed payments, interbank routing."""
