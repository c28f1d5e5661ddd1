"""History: the wallet's payments, newest first, a page at a time, with their status; a
refund is shown under the payment it refunds (when both are on the list)."""

from __future__ import annotations

from kivy.metrics import dp
from kivy.properties import BooleanProperty
from kivy.uix.label import Label

from wallet_app.core import present
from wallet_app.core.i18n import _
from wallet_app.ui.screens.base import WalletScreen, load_kv

load_kv(__file__)

PAGE = 20


INCOMING = (0.55, 0.9, 0.55, 1)   # money in: green
REFUSED = (1, 0.45, 0.4, 1)       # nothing moved: the error colour, never green
PLAIN = (1, 1, 1, 1)


def row_color(row: present.HistoryRow) -> tuple[float, float, float, float]:
    return REFUSED if row.refused else INCOMING if row.incoming else PLAIN


class HistoryRowLabel(Label):
    pass


class HistoryScreen(WalletScreen):
    has_more = BooleanProperty(False)

    def prepare(self, **params) -> None:
        super().prepare(**params)
        self._items = []
        self._next = None
        self.ids.rows.clear_widgets()
        self.load()

    def load(self) -> None:
        self.run(self.wallet.history(before=self._next, limit=PAGE), self._loaded,
                 _("Loading..."))

    def _loaded(self, page) -> None:
        self._items += page.items
        self._next = page.next_before
        self.has_more = page.next_before is not None
        self.rows = present.history_rows(self._items, self.wallet.wallet_id)
        self.ids.rows.clear_widgets()
        for row in self.rows:
            self.ids.rows.add_widget(HistoryRowLabel(text=row.text, color=row_color(row)))
        if not self.rows:
            self.ids.rows.add_widget(HistoryRowLabel(text=_("No payments yet."), height=dp(40)))
