"""Sub-wallets: the merchant apps this wallet authorised, their caps and what they used,
and revoking one at once."""

from __future__ import annotations

from kivy.properties import StringProperty
from kivy.uix.boxlayout import BoxLayout

from wallet_app.core import present
from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)


class MandateRow(BoxLayout):
    text = StringProperty("")
    mandate_id = StringProperty("")
    status = StringProperty("")


class SubWalletsScreen(WalletScreen):
    def prepare(self, **params) -> None:
        super().prepare(**params)
        self.load()

    def load(self) -> None:
        self.run(self.wallet.mandates(), self._show, _("Loading..."))

    def _show(self, mandates) -> None:
        rows = self.ids.rows
        rows.clear_widgets()
        for mandate in mandates:
            row = MandateRow(text=present.mandate_text(mandate), mandate_id=mandate.mandate_id,
                             status=mandate.status)
            row.screen = self
            rows.add_widget(row)
        if not mandates:
            self.info = _("No merchant app may charge this wallet.")

    def revoke(self, mandate_id: str) -> None:
        async def revoke_and_list():
            await self.wallet.revoke(mandate_id)
            return await self.wallet.mandates()

        def done(mandates) -> None:
            self._show(mandates)
            self.info = _("Revoked: that app can no longer charge this wallet.")

        self.run(revoke_and_list(), done, _("Revoking..."))
