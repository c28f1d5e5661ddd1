"""The mobile wallet: `wallet_app.core`, money logic with no Kivy import (keys under the
PIN, the typed bank client, the outbox of pending instructions, payment codes, QR payloads),
and `wallet_app.ui`, Kivy screens over it (each a class with a matching `.kv` layout)."""
