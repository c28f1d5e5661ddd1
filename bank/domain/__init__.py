"""A bank node's rules in plain Python: wallet classes and their limits, what a debit or a
credit may do, and the double-entry shape of every movement."""
