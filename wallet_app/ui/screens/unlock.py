"""Unlock: the PIN opens the key for this session; the bank checks it (scrypt and the
request run off the UI thread)."""

from __future__ import annotations

from kivy.properties import BooleanProperty

from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class UnlockScreen(WalletScreen):
    back_to = None  # the first screen: Back leaves it alone
    can_pay_offline = BooleanProperty(False)   # an offline reserve: it pays with no PIN
    offer_restore = BooleanProperty(False)     # the PIN locked, or the key moved elsewhere

    def prepare(self, **params) -> None:
        super().prepare(**params)
        self.can_pay_offline = self.wallet.offline_left()[1] > 0
        self.offer_restore = False

    def unlock(self) -> None:
        pin = self.ids.pin.text
        self.ids.pin.text = ""

        async def unlock_and_load():
            await self.wallet.unlock(pin)
            return await self.wallet.refresh()

        self.run(unlock_and_load(), lambda view: self.app.go("home", view=view),
                 _("Unlocking..."), on_error=self._failed)

    def _failed(self, exc: BaseException) -> None:
        if self.wallet.key is not None:  # unlocked, but the bank did not answer
            self.app.go("home")
            self.app.screen("home").show_error(exc)
        else:
            self.show_error(exc)
            self.offer_restore = getattr(exc, "code", None) in ("pin_locked",
                                                                 "unknown_pin_guard")
