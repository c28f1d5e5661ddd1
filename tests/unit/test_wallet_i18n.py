"""The wallet's languages without Kivy: the catalogs cover every msgid the code and layouts
use, the pure-Python .po compiler writes .mo files gettext reads back, the language follows
the system until one is chosen, refusals and views read in Chinese, and the bundled font
has a glyph for every character the catalogs use."""

from __future__ import annotations

import gettext
import io
import re
import string

import pytest

from rail_protocol.errors import RailError
from wallet_app.core import i18n, messages, present
from wallet_app.core.client import ClassLimits
from wallet_app.core.errors import WalletError
from wallet_app.devtools import catalog

pytestmark = pytest.mark.unit


@pytest.fixture
def chinese():
    i18n.set_language("zh_CN")
    yield
    i18n.set_language("en")


def fields(text: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name}


def test_every_msgid_is_translated_with_the_same_placeholders():
    used = catalog.extract()
    for lang in i18n.LANGUAGES:
        if lang == i18n.SOURCE_LANGUAGE:
            continue
        translated = i18n.read_po(i18n.po_path(lang).read_text(encoding="utf-8"))
        header = translated.pop("")
        assert "charset=UTF-8" in header
        assert set(used) - set(translated) == set(), "run wallet_app/devtools/catalog.py"
        assert set(translated) - set(used) == set(), "obsolete entries: run catalog.py"
        for msgid in used:
            assert fields(translated[msgid]) == fields(msgid), msgid


def test_the_template_is_in_step_with_the_code():
    template = catalog.POT.read_text(encoding="utf-8")
    assert set(re.findall(r'^msgid "(.*)"$', template, re.M)) - {""} == {
        catalog.po_quote(m)[1:-1] for m in catalog.extract()}


def test_the_compiled_catalog_reads_back_through_gettext():
    po = ('msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\n'
          '#: a.py:1\nmsgid "Pay"\nmsgstr "付款"\n\n'
          'msgid "two\\nlines \\"quoted\\""\nmsgstr ""\n"两行\\n"\n"\\"引号\\""\n\n'
          '#, fuzzy\nmsgid "Fuzzy"\nmsgstr "模糊"\n\n'
          'msgid "Untranslated"\nmsgstr ""\n')
    entries = i18n.read_po(po)
    assert entries["Pay"] == "付款" and entries['two\nlines "quoted"'] == '两行\n"引号"'
    assert "Fuzzy" not in entries and "Untranslated" not in entries
    translations = gettext.GNUTranslations(io.BytesIO(i18n.compile_po(po)))
    assert translations.gettext("Pay") == "付款"
    assert translations.gettext('two\nlines "quoted"') == '两行\n"引号"'
    assert translations.gettext("Fuzzy") == "Fuzzy"
    real = i18n.load_translations("zh_CN")
    for msgid, msgstr in i18n.read_po(i18n.po_path("zh_CN").read_text("utf-8")).items():
        if msgid:
            assert real.gettext(msgid) == msgstr


@pytest.mark.parametrize("bad", ['msgid "a"\nmsgstr "b"\nbogus\n', 'msgstr "x"\n',
                                 'msgid "a" + 1\nmsgstr "b"\n'])
def test_bad_po_syntax_is_refused(bad):
    with pytest.raises((ValueError, SyntaxError)):
        i18n.read_po(bad)


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "en"), ({"LANG": "C.UTF-8"}, "en"), ({"LANG": "zh_CN.UTF-8"}, "zh_CN"),
    ({"LANG": "en_US.UTF-8", "LC_ALL": "zh_TW.UTF-8"}, "zh_CN"),
    ({"LANGUAGE": "fr:zh_CN:en", "LANG": "en_US"}, "zh_CN"), ({"LANG": "de_DE"}, "en"),
    ({"LANGUAGE": "en_GB", "LANG": "zh_CN.UTF-8"}, "en")])
def test_the_system_language(env, expected):
    assert i18n.system_language(env) == expected


def test_the_choice_is_kept_in_the_wallets_home(tmp_path):
    assert i18n.saved_language(tmp_path) is None
    i18n.save_language(tmp_path, "zh_CN")
    assert i18n.saved_language(tmp_path) == "zh_CN"
    i18n.save_language(tmp_path, "")
    assert i18n.saved_language(tmp_path) is None
    assert i18n.set_language("xx_YY") == "en" and i18n.gettext("Pay") == "Pay"


def test_refusals_read_in_chinese(chinese):
    assert messages.explain(RailError("insufficient_funds")).startswith("钱包余额不足")
    assert messages.explain(WalletError("wrong_pin", left=3)) == "支付密码错误（再错 3 次将被锁定）。"
    assert messages.explain(WalletError("pin_locked", wait_s=30)) == \
        "支付密码错误次数过多：请 30 秒后再试。"
    assert messages.explain(WalletError("invalid_amount", "the amount is too large")) == \
        "金额无效：金额过大"
    assert messages.explain(WalletError("unreadable_code", "the file is not an image")) == \
        "无法识别此码：文件不是图片。"
    assert messages.explain(ValueError("boom")) == "出了点问题，没有付款。请重试。"
    for code, english in messages.MESSAGES.items():  # every refusal has a Chinese sentence
        said = messages.explain(WalletError(code, "x"))
        assert said != english and not re.search(r"[A-Za-z]{3}", said.replace("CNY", "")
                                                  .replace("--bank URL", "")), said


def test_refusals_read_in_english_as_before():
    assert messages.explain(WalletError("wrong_pin", left=3)) == \
        "The PIN is wrong (3 tries before it locks)."
    assert messages.explain(WalletError("wrong_pin", left=0)) == "The PIN is wrong."


def test_views_read_in_chinese(chinese):
    limits = ClassLimits(4, 1_000_000, 200_000, 500_000)
    assert present.limits_text(limits) == \
        "余额上限 ¥10,000.00，单笔限额 ¥2,000.00，每日限额 ¥5,000.00。"
    assert present.countdown(30_000, 0) == "30 秒后刷新"
    assert present.status_text("settled") == "完成"


def test_the_bundled_font_covers_every_character_of_the_catalogs():
    from fontTools.ttLib import TTFont

    from wallet_app.devtools.make_font import FONT_FILE, ui_text

    cmap = TTFont(str(FONT_FILE), lazy=True).getBestCmap()
    missing = {c for c in ui_text() if c not in "\n\r\t" and ord(c) not in cmap}
    assert not missing, f"run wallet_app/devtools/make_font.py: {''.join(sorted(missing))}"
    assert all(ord(c) in cmap for c in "数字人民币钱包付款码元角分¥，。：（）")
    assert (FONT_FILE.parent / "LICENSE-NotoSansCJK.txt").exists()
    assert FONT_FILE.stat().st_size < 2_500_000
