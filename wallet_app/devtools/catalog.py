"""The translation catalogs: find every msgid in the wallet's code and layouts, and keep
wallet_app/locale/wallet.pot and each language's .po in step with them.

    .venv/bin/python -m wallet_app.devtools.catalog     # then translate the empty msgstr

msgids are the English text of `_("...")`, `N_("...")` and `gettext("...")` calls in .py
files (found with ast, so concatenated literals count as one) and of `tr._("...")` in .kv
files. Updating keeps every translation whose msgid is still used, adds new msgids with an
empty msgstr, and drops the ones no longer used. tests/unit/test_wallet_i18n.py fails while
a msgid has no translation."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from wallet_app.core import i18n

PACKAGE = Path(__file__).resolve().parents[1]
POT = i18n.LOCALE_DIR / f"{i18n.DOMAIN}.pot"
CALLS = {"_", "N_", "gettext"}
KV_CALL = re.compile(r'tr\._\(\s*"((?:[^"\\]|\\.)*)"\s*\)')


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*") if p.suffix in (".py", ".kv")
                  and "devtools" not in p.parts and "__pycache__" not in p.parts)


def extract() -> dict[str, list[str]]:
    """msgid -> where it is used ("path:line"), in the order first met."""
    found: dict[str, list[str]] = {}
    for path in sources():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".kv":
            for number, line in enumerate(text.splitlines(), 1):
                for match in KV_CALL.finditer(line):
                    msgid = ast.literal_eval(f'"{match.group(1)}"')
                    found.setdefault(msgid, []).append(f"{rel}:{number}")
            continue
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else (
                func.attr if isinstance(func, ast.Attribute) else None)
            first = node.args[0]
            if name in CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.setdefault(first.value, []).append(f"{rel}:{node.lineno}")
    found.pop("", None)
    return found


def po_quote(text: str) -> str:
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\t", "\\t"))
    return f'"{escaped}"'


HEADER = ('Project-Id-Version: yuanrail wallet\\n"\n"Language: {lang}\\n"\n'
          '"MIME-Version: 1.0\\n"\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
          '"Content-Transfer-Encoding: 8bit\\n')


def render(msgids: dict[str, list[str]], translations: dict[str, str], lang: str) -> str:
    out = [f"# The yuanrail wallet's catalog ({lang or 'template'}); made by "
           "wallet_app/devtools/catalog.py.",
           'msgid ""', 'msgstr ""', '"' + HEADER.format(lang=lang) + '"', ""]
    for msgid, where in msgids.items():
        out.append("#: " + " ".join(where[:3]))
        if "{" in msgid:
            out.append("#, python-brace-format")
        out.append(f"msgid {po_quote(msgid)}")
        out.append(f"msgstr {po_quote(translations.get(msgid, ''))}")
        out.append("")
    return "\n".join(out)


def update() -> list[str]:
    """Rewrite the template and every language's .po; the msgids still untranslated."""
    msgids = extract()
    i18n.LOCALE_DIR.mkdir(parents=True, exist_ok=True)
    POT.write_text(render(msgids, {}, ""), encoding="utf-8")
    missing = []
    for lang in i18n.LANGUAGES:
        if lang == i18n.SOURCE_LANGUAGE:
            continue
        path = i18n.po_path(lang)
        old = i18n.read_po(path.read_text(encoding="utf-8")) if path.exists() else {}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(msgids, old, lang), encoding="utf-8")
        missing += [f"{lang}: {m}" for m in msgids if not old.get(m)]
    return missing


if __name__ == "__main__":
    untranslated = update()
    print("\n".join(untranslated) or "every msgid is translated")
    sys.exit(1 if untranslated else 0)
