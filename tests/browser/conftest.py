"""The browser tier: Debian's chromium driven by Playwright's sync API.

RECIPES.md §1: no ``playwright install`` (the browser is /usr/bin/chromium,
installed by ``make test``), and no pytest-playwright fixtures, whose
session-wide event loop breaks the asyncio tests of the same run. The
browser here lives for one module, inside ``sync_playwright()``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from browser_support import Sockhub

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# A fresh machine gets both from `make test` (Makefile: chromium; the dev extra:
# playwright). A skipped test is a failure under CI=true (tests/conftest.py).
try:
    from playwright.sync_api import Browser, sync_playwright
except ImportError:  # pragma: no cover - only without the dev extra
    sync_playwright = None  # type: ignore[assignment]


def _missing() -> str | None:
    if sync_playwright is None:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (make test installs it: apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = _missing()
    if reason:  # a failure under CI=true (tests/conftest.py)
        pytest.skip(reason)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sockhub]:
    hub = Sockhub(tmp_path_factory.mktemp("data"), "--history", "5", "--flood-burst", "100")
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
