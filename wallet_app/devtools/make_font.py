"""Make the bundled CJK font, wallet_app/ui/assets/fonts/YuanrailSansSC-Regular.otf: a
subset of Noto Sans CJK SC Regular (SIL Open Font License 1.1; Debian's fonts-noto-cjk)
holding what the wallet can show: every character of the catalogs and layouts, printable
ASCII and Latin-1, general and CJK punctuation, full-width forms, and the 3,755 common
hanzi of GB 2312 level 1 (merchant names, notes and cities typed by people; all 6,763 of
GB 2312 would double the file for characters seldom met). The subset is renamed, as the
OFL asks of a modified font, and its license is copied beside it.

    apt-get install fonts-noto-cjk
    .venv/bin/python -m wallet_app.devtools.make_font

tests/unit/test_wallet_i18n.py checks the font has a glyph for every character the
catalogs use; run this again when a translation brings a new one."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection

from wallet_app.core import i18n
from wallet_app.devtools import catalog

FONT_DIR = Path(__file__).resolve().parents[1] / "ui" / "assets" / "fonts"
FONT_FILE = FONT_DIR / "YuanrailSansSC-Regular.otf"  # wallet_app.ui.i18n loads it
NOTO_TTC = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
NOTO_SC_INDEX = 2  # the collection holds JP, KR, SC, TC, HK in that order
LICENSE_SOURCE = Path("/usr/share/doc/fonts-noto-cjk/copyright")
FAMILY = "Yuanrail Sans SC"


def gb2312_hanzi() -> str:
    """The level-1 hanzi of GB 2312: rows 0xB0-0xD7, cells 0xA1-0xFE."""
    chars = []
    for row in range(0xB0, 0xD8):
        for cell in range(0xA1, 0xFF):
            try:
                chars.append(bytes([row, cell]).decode("gb2312"))
            except UnicodeDecodeError:
                pass  # the few unassigned cells at the end of row 0xD7
    return "".join(chars)


def ranges(*spans: tuple[int, int]) -> str:
    return "".join(chr(c) for start, end in spans for c in range(start, end + 1))


def ui_text() -> str:
    """Every character a person can meet in the UI's own text, in every language."""
    text = "".join(catalog.extract())
    for lang in i18n.LANGUAGES:
        if lang != i18n.SOURCE_LANGUAGE:
            text += "".join(i18n.read_po(i18n.po_path(lang).read_text(encoding="utf-8"))
                            .values())
    for path in catalog.sources():
        if path.suffix == ".kv":
            text += path.read_text(encoding="utf-8")
    text += "".join(i18n.LANGUAGES.values())
    return text


def wanted() -> str:
    base = ranges((0x20, 0x7E), (0xA0, 0xFF), (0x2010, 0x2027), (0x2030, 0x203A),
                  (0x3000, 0x303F), (0xFF01, 0xFF5E), (0xFFE0, 0xFFE6))
    return "".join(sorted(set(base + gb2312_hanzi() + ui_text()) - {"\n", "\r", "\t"}))


def make(source: Path = NOTO_TTC, target: Path = FONT_FILE) -> Path:
    font = TTCollection(str(source)).fonts[NOTO_SC_INDEX]
    options = subset.Options()
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6]
    options.drop_tables += ["vhea", "vmtx", "VORG"]  # no vertical text in the wallet
    options.hinting = False
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=wanted())
    subsetter.subset(font)
    names = font["name"]
    for record in list(names.names):
        if record.nameID in (1, 3, 4, 6, 16, 17):
            names.removeNames(nameID=record.nameID)
    names.setName(FAMILY, 1, 3, 1, 0x409)
    names.setName("Regular", 2, 3, 1, 0x409)
    names.setName(f"{FAMILY} Regular (subset of Noto Sans CJK SC)", 3, 3, 1, 0x409)
    names.setName(f"{FAMILY} Regular", 4, 3, 1, 0x409)
    names.setName("YuanrailSansSC-Regular", 6, 3, 1, 0x409)
    if "CFF " in font:
        cff = font["CFF "].cff
        cff.fontNames = ["YuanrailSansSC-Regular"]
    target.parent.mkdir(parents=True, exist_ok=True)
    font.save(str(target))
    if LICENSE_SOURCE.exists():
        shutil.copyfile(LICENSE_SOURCE, FONT_DIR / "LICENSE-NotoSansCJK.txt")
    return target


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    out = make(*(Path(a) for a in sys.argv[1:3]))
    print(out, out.stat().st_size, "bytes")
