"""What every party of the rail speaks: money in fen, one canonical encoding, keys and
signatures, the signed-instruction envelope and typed errors. Imports no framework, so the
central issuer, the bank nodes and the mobile wallet all share it unchanged."""
