"""Real-browser fixtures: Debian's Chromium (the `chromium` package, found on PATH; never
Playwright's own download) driven by Playwright, against a real uvicorn serving /demo/.
Without Chromium or Playwright every test here is skipped, saying why."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, LiveServer, start_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
# On a loaded 2-core machine a page may take seconds to answer: every expectation waits on
# what the page shows, up to this long.
EXPECT_TIMEOUT_MS = 20_000
# Every WebSocket the page opens, so a test can drop them as a failing network would.
TRACK_SOCKETS = """
window.__sockets = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
"""


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does): browser tests skipped")
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        pytest.skip("Playwright is not installed (it is in requirements-dev.lock): browser tests skipped")
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A live server whose /demo/ pages the browser loads (dev: served by default)."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    live = start_server(tmp_path_factory.mktemp(name), name=name)
    yield live
    live.stop()


@pytest.fixture
async def context(browser: Any) -> AsyncIterator[Any]:
    """A fresh browser profile (cookies, storage): one person."""
    made = await browser.new_context(viewport={"width": 1280, "height": 800})
    made.set_default_timeout(EXPECT_TIMEOUT_MS)
    await made.add_init_script(TRACK_SOCKETS)
    yield made
    await made.close()


@pytest.fixture
async def other_context(browser: Any) -> AsyncIterator[Any]:
    """A second person, beside `context`."""
    made = await browser.new_context(viewport={"width": 1280, "height": 800})
    made.set_default_timeout(EXPECT_TIMEOUT_MS)
    yield made
    await made.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Any:
    """screenshot(page, "widget") → artifacts/screenshots/<test>-widget.png (CI keeps the folder)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    async def take(page: Any, label: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{label}.png"
        await page.screenshot(path=str(path))
        return path

    return take
