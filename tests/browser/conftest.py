"""Fixtures for the browser tests: the real aggregator fixtures and Debian's headless Chromium.

Playwright drives ``/usr/bin/chromium`` (installed by ``scripts/lib/browser.sh``); Playwright's
own browser download is not used. Screenshots go to ``artifacts/`` at the top of the checkout.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
from playwright.async_api import Browser, async_playwright

from aggregator.simulation.fleet import Fleet
from tests.aggregator.common import RunningServer
from tests.aggregator.fixtures import http, server  # noqa: F401 - fixtures used by the tests

from .helpers import FAST_HOMES, HOMES

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
    """Return the folder for screenshots and downloads kept after the run (git-ignored).

    ``JEISSON_SCREENSHOTS`` names another folder (for a person to look at them).
    """
    folder = Path(os.environ.get("JEISSON_SCREENSHOTS") or ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def fleet(server: RunningServer) -> AsyncIterator[Fleet]:
    """Yield a started fleet of simulated homes connected to the server."""
    async with Fleet(server.url, server.operator_token, seed=7, config=FAST_HOMES) as started:
        await started.start(HOMES)
        yield started
