"""A service's own signing key, kept in a file only its operator can read."""

from __future__ import annotations

import os
from pathlib import Path

from rail_protocol.keys import SigningKey


def load_or_create_key(path: Path) -> SigningKey:
    """Load the key at `path`, or make one and store it there (mode 0600) on first start."""
    if path.exists():
        return SigningKey.from_text(path.read_text().strip(), engine="openssl")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate(engine="openssl")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.secret_text() + "\n")
    return key
