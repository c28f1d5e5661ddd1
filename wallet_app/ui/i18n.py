"""The UI's side of the languages: `tr._("text")` in .kv files, redrawn on a switch, and
the bundled CJK font that makes Chinese render.

In a .kv file, `#:import tr wallet_app.ui.i18n.tr` then `text: tr._("Unlock")`. Kivy binds
such a rule to `tr`'s `_`; `tr` keeps those bindings and calls them all again when
`i18n.set_language` switches, so every label redraws in the new language (the pattern of
Kivy's own i18n example). Strings a screen sets from Python use `wallet_app.core.i18n._`
and are set again when the screen is next prepared.

The font: Kivy's default font is Roboto, which has no Chinese glyphs (they show as boxes).
`register_font` makes the bundled subset of Noto Sans CJK SC (every glyph the catalogs and
layouts use, and the 3,755 common hanzi of GB 2312 level 1 for names and notes; SIL Open
Font License, see assets/fonts/; made by wallet_app/devtools/make_font.py) the default for
every label and text field."""

from __future__ import annotations

from pathlib import Path

from kivy.core.text import DEFAULT_FONT, LabelBase
from kivy.event import Observable

from wallet_app.core import i18n

FONT_DIR = Path(__file__).with_name("assets") / "fonts"
FONT_FILE = FONT_DIR / "YuanrailSansSC-Regular.otf"


class Translator(Observable):
    """`tr._(text)`: the translation, re-evaluated in every .kv rule on a switch."""

    def __init__(self) -> None:
        super().__init__()
        self._observers: list[tuple] = []
        i18n.add_listener(self._switched)

    def _(self, text: str) -> str:
        return i18n.gettext(text)

    def fbind(self, name, func, *largs, **kwargs):
        if name == "_":  # a .kv rule calls tr._(...): keep it, to call on a switch
            self._observers.append((func, largs))
            return 0
        return super().fbind(name, func, *largs, **kwargs)

    def funbind(self, name, func, *largs, **kwargs):
        if name == "_":
            self._observers = [o for o in self._observers if not (
                o[0] is func and len(o[1]) == len(largs)
                and all(a is b for a, b in zip(o[1], largs)))]
            return None
        return super().funbind(name, func, *largs, **kwargs)

    def _switched(self, _language: str) -> None:
        alive = []
        for func, largs in self._observers:
            try:
                func(largs[0] if len(largs) == 1 else largs, None, None)
            except ReferenceError:  # the widget is gone (an app that stopped): forget it
                continue
            alive.append((func, largs))
        self._observers = alive


tr = Translator()


def register_font() -> None:
    """The bundled CJK font as Kivy's default (labels, buttons, text fields)."""
    LabelBase.register(DEFAULT_FONT, str(FONT_FILE))
