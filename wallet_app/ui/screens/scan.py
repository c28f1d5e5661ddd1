"""Scan to pay: every way of reading a code (camera, image, paste) ends in `on_qr`, which
asks the core what the code wants and moves on to the confirmation. An offline payment goes
to the offline screen to be accepted; scanning for the offline screen (`then="offline"`)
hands the receiver's code back to it."""

from __future__ import annotations

from rail_protocol import offline
from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv
from wallet_app.ui import scanner  # noqa: F401 - registers QrScanner for the .kv

load_kv(__file__)


class ScanScreen(WalletScreen):
    def prepare(self, **params) -> None:
        super().prepare(**params)
        self._then = params.get("then")
        folder = self.app.images_folder
        if folder is not None:
            self.ids.scanner.start_folder = str(folder)

    def leave(self) -> None:
        self.ids.scanner.stop_camera()

    def on_qr(self, text: str) -> None:
        """The one handler every QR path ends in."""
        if text.startswith(offline.PREFIX):
            self.app.go("offline", incoming=text)
            return
        if self._then == "offline":
            self.app.go("offline", receiver=text)
            return
        self.run(self.wallet.prepare(text), self._ready, _("Reading the code..."))

    def _ready(self, request) -> None:
        self.app.go("confirm", request=request)
