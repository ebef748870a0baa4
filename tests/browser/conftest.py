"""Fixtures for the browser tests: the real aggregator fixtures and Debian's headless Chromium.

Playwright drives ``/usr/bin/chromium`` (installed by ``scripts/lib/browser.sh``); Playwright's
own browser download is not used. Screenshots go to ``artifacts/`` at the top of the checkout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
from playwright.async_api import Browser, async_playwright

from tests.aggregator.fixtures import http, server  # noqa: F401 - fixtures used by the tests

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS: Final = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Yield Debian's Chromium, headless, driven by Playwright."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/lib/browser.sh (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def artifacts() -> Path:
    """Return the folder for screenshots and downloads kept after the run (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
