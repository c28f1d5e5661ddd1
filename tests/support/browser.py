"""A real browser for page tests: Debian's Chromium (/usr/bin/chromium, which scripts/test
installs) driven headless by Playwright's async API, on the test's own event loop.

Playwright never downloads a browser here (no `playwright install`): it launches the system
Chromium by path. Pages may reach 127.0.0.1 only; background networking is switched off.

    from tests.support.browser import chromium_page  # noqa: F401

    async def test_a_page(chromium_page):
        await chromium_page.goto("http://127.0.0.1:8701/cashier/O123")

`chromium_page` records every server-sent event the page receives in `window.__sse`
(`{type, data}` items) and counts the page's loads in `sessionStorage`, so a test can tell
a live update from a reload."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator

import pytest

CHROMIUM = os.environ.get("YUANRAIL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LAUNCH_TIMEOUT_MS = 30_000
ACTION_TIMEOUT_MS = 10_000

# Runs before the page's own scripts, on every load: wraps EventSource so each event the
# page gets is also kept in window.__sse, and counts loads of this tab.
RECORD_PAGE_SCRIPT = """
(() => {
  const loads = Number(sessionStorage.getItem("__loads") || "0") + 1;
  sessionStorage.setItem("__loads", String(loads));
  window.__loads = loads;
  window.__sse = [];
  const Original = window.EventSource;
  window.EventSource = class extends Original {
    constructor(...args) {
      super(...args);
      const keep = (type) => (e) => window.__sse.push({type, data: e.data});
      this.addEventListener("order", keep("order"));
      this.addEventListener("open", () => window.__sse.push({type: "open", data: null}));
    }
  };
})();
"""


def require_chromium() -> None:
    """Skip (with the fix) unless Playwright and the system Chromium are both here."""
    pytest.importorskip("playwright.async_api",
                        reason="Playwright is missing: pip install -e '.[dev]' (scripts/test)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (scripts/test "
                    "does it)")


@pytest.fixture
async def chromium_page() -> AsyncIterator:
    """A fresh page in a fresh headless Chromium; the browser and Playwright's driver are
    closed when the test ends, pass or fail."""
    require_chromium()
    from playwright.async_api import async_playwright

    playwright = await async_playwright().start()
    browser = None
    try:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            timeout=LAUNCH_TIMEOUT_MS)
        context = await browser.new_context(viewport={"width": 480, "height": 760})
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(ACTION_TIMEOUT_MS)
        await context.add_init_script(RECORD_PAGE_SCRIPT)
        page = await context.new_page()
        yield page
    finally:
        if browser is not None:
            await browser.close()
        await playwright.stop()


def decode_qr_png(png: bytes) -> list[str]:
    """The texts of every QR code in a PNG image (a screenshot or a served image)."""
    import zxingcpp
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return [found.text for found in zxingcpp.read_barcodes(image)
            if found.format == zxingcpp.BarcodeFormat.QRCode]
