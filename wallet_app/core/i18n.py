"""The wallet's languages: English (the source text) and Simplified Chinese, by gettext.

Every string a person reads is written in English in the code and the .kv files, wrapped
in `_()` (or marked `N_()` where it is looked up later), and translated from
`wallet_app/locale/<lang>/LC_MESSAGES/wallet.po`. The .po catalog is compiled to gettext's
.mo form in memory when a language is chosen (`compile_po`, a small msgfmt), so neither a
build step nor a writable folder is needed on the phone. No Kivy import: the UI's `tr`
(wallet_app/ui/i18n.py) listens here for switches.

The language is the one the person chose in Settings (`<home>/settings.json`), else the
system's (`system_language`), else English."""

from __future__ import annotations

import ast
import gettext as _gettext
import io
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

from wallet_app.core.files import read_json, write_json

DOMAIN = "wallet"
LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
SOURCE_LANGUAGE = "en"
LANGUAGES = {"en": "English", "zh_CN": "简体中文"}  # each named in itself, for the switch

_translations: _gettext.NullTranslations = _gettext.NullTranslations()
_language = SOURCE_LANGUAGE
_listeners: list[Callable[[str], None]] = []
_cache: dict[str, _gettext.NullTranslations] = {}


def N_(message: str) -> str:
    """Marks `message` for the catalog where it is translated later (`_(MESSAGES[code])`)."""
    return message


def gettext(message: str) -> str:
    """`message` in the current language (itself when the catalog lacks it)."""
    return _translations.gettext(message) if message else message


_ = gettext


def language() -> str:
    return _language


def set_language(code: str | None) -> str:
    """Switch to `code` (a key of LANGUAGES, or a locale name like zh_CN.UTF-8); anything
    else is English. Listeners (the UI) are told, so the screens redraw in it."""
    global _translations, _language
    chosen = normalize(code) or SOURCE_LANGUAGE
    if chosen not in _cache:
        _cache[chosen] = (_gettext.NullTranslations() if chosen == SOURCE_LANGUAGE
                          else load_translations(chosen))
    _translations, _language = _cache[chosen], chosen
    for listener in list(_listeners):
        listener(chosen)
    return chosen


def add_listener(listener: Callable[[str], None]) -> None:
    _listeners.append(listener)


def normalize(code: str | None) -> str | None:
    """'zh_CN.UTF-8', 'zh-Hans-CN', 'zh' -> 'zh_CN'; 'en_US' -> 'en'; unknown -> None.
    Every Chinese locale gets Simplified Chinese, the only Chinese catalog there is."""
    if not code:
        return None
    base = code.split(".", 1)[0].split("@", 1)[0].replace("-", "_")
    lang = base.split("_", 1)[0].lower()
    if lang == "zh":
        return "zh_CN"
    if lang == "en":
        return "en"
    return base if base in LANGUAGES else None


def system_language(environ: Mapping[str, str] | None = None) -> str:
    """The device's language: Android's default Locale, else gettext's variables."""
    env = os.environ if environ is None else environ
    if "ANDROID_ARGUMENT" in env:  # pragma: no cover - only on a phone
        try:
            from jnius import autoclass

            locale = autoclass("java.util.Locale").getDefault()
            found = normalize(f"{locale.getLanguage()}_{locale.getCountry()}")
            if found:
                return found
        except Exception:  # noqa: BLE001 - no pyjnius: fall back to the variables
            pass
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        for part in env.get(name, "").split(":"):
            found = normalize(part)
            if found:
                return found
    return SOURCE_LANGUAGE


def saved_language(home: Path) -> str | None:
    """The language chosen in Settings, if one was."""
    data = read_json(Path(home) / "settings.json")
    return normalize(data.get("language")) if isinstance(data, dict) else None


def save_language(home: Path, code: str) -> None:
    path = Path(home) / "settings.json"
    data = read_json(path)
    data = data if isinstance(data, dict) else {}
    data["language"] = code
    write_json(path, data)


# --- the catalogs ---------------------------------------------------------------------------

def po_path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


def load_translations(code: str) -> _gettext.GNUTranslations:
    mo = compile_po(po_path(code).read_text(encoding="utf-8"))
    return _gettext.GNUTranslations(io.BytesIO(mo))


def read_po(text: str) -> dict[str, str]:
    """msgid -> msgstr of a .po file (the header under ""); fuzzy and untranslated entries
    are left out, as msgfmt leaves them out. No plurals or contexts: the wallet has none."""
    entries: dict[str, str] = {}
    current: dict | None = None
    target: list[str] | None = None
    fuzzy = False

    def finish(entry: dict | None) -> None:
        if entry is None or entry["str"] is None:
            return
        key, value = "".join(entry["id"]), "".join(entry["str"])
        if value and not entry["fuzzy"]:
            entries[key] = value

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#,"):
            fuzzy = fuzzy or "fuzzy" in line
        elif not line or line.startswith("#"):
            continue
        elif line.startswith("msgid "):
            finish(current)
            current = {"id": [_po_string(line[6:], number)], "str": None, "fuzzy": fuzzy}
            target, fuzzy = current["id"], False
        elif line.startswith("msgstr "):
            if current is None or current["str"] is not None:
                raise ValueError(f"line {number}: msgstr without its msgid")
            current["str"] = [_po_string(line[7:], number)]
            target = current["str"]
        elif line.startswith('"') and target is not None:
            target.append(_po_string(line, number))
        else:
            raise ValueError(f"line {number}: not .po syntax: {line[:40]!r}")
    finish(current)
    return entries


def _po_string(token: str, number: int) -> str:
    token = token.strip()
    if not (len(token) >= 2 and token[0] == token[-1] == '"'):
        raise ValueError(f"line {number}: expected a quoted string")
    value = ast.literal_eval(token)  # C escapes: \n \t \" \\ (a Python string literal too)
    if not isinstance(value, str):
        raise ValueError(f"line {number}: expected a quoted string")
    return value


def compile_po(text: str) -> bytes:
    """The GNU .mo bytes of a .po text (what msgfmt writes): header, two tables of
    (length, offset) sorted by msgid, then the strings, each NUL-terminated."""
    entries = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in read_po(text).items())
    count = len(entries)
    ids_offset = 7 * 4
    strs_offset = ids_offset + count * 8
    data_offset = strs_offset + count * 8
    ids = strs = b""
    id_table, str_table = [], []
    for key, _value in entries:
        id_table.append((len(key), data_offset + len(ids)))
        ids += key + b"\0"
    strs_start = data_offset + len(ids)
    for _key, value in entries:
        str_table.append((len(value), strs_start + len(strs)))
        strs += value + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, count, ids_offset, strs_offset, 0, 0)
    tables = b"".join(struct.pack("<2I", *pair) for pair in id_table + str_table)
    return header + tables + ids + strs
