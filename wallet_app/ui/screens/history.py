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
    """A row; tapping it opens the payment's receipt."""

    payment = None
    screen = None

    def on_touch_up(self, touch) -> bool:
        if self.payment is not None and self.screen is not None \
                and self.collide_point(*touch.pos):
            self.screen.open_receipt(self.payment)
            return True
        return super().on_touch_up(touch)


class HistoryScreen(WalletScreen):
    has_more = BooleanProperty(False)

    def prepare(self, **params) -> None:
        super().prepare(**params)
        self._items = []
        self._names: dict[str, str] = {}
        self._next = None
        self.ids.rows.clear_widgets()
        self.load()

    def open_receipt(self, payment) -> None:
        self.app.go("receipt", payment=payment, names=dict(self._names))

    def load(self) -> None:
        self.run(self.wallet.history(before=self._next, limit=PAGE), self._loaded,
                 _("Loading..."))

    def _loaded(self, page) -> None:
        self._items += page.items
        self._names.update(page.names)
        self._next = page.next_before
        self.has_more = page.next_before is not None
        self.rows = present.history_rows(self._items, self.wallet.wallet_id, self._names)
        self.ids.rows.clear_widgets()
        by_id = {item.payment_id: item for item in self._items}
        for row in self.rows:
            label = HistoryRowLabel(text=row.text, color=row_color(row))
            label.payment = by_id.get(row.payment_id)
            label.screen = self
            self.ids.rows.add_widget(label)
        if not self.rows:
            self.ids.rows.add_widget(HistoryRowLabel(text=_("No payments yet."), height=dp(40)))
