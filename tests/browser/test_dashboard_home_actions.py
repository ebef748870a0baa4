"""The homes view's actions in real headless Chromium against a real aggregator: suspending a
connected home closes its session (4005) and shows it suspended, resuming lets it back, removing
takes it off the list. Screenshot: ``dashboard-home-actions.png``.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
from playwright.async_api import Browser, Dialog, expect

from jeisson.common.const import CLOSE_REVOKED
from tests.aggregator.common import RunningServer, enrolled_token, raw_home

from .helpers import LAPTOP, WAIT_MS, PageErrors, sign_in


async def test_a_home_is_suspended_resumed_and_removed_from_the_dashboard(
    server: RunningServer, http: aiohttp.ClientSession, browser: Browser, artifacts: Path
) -> None:
    home_id, token = await enrolled_token(server, http)
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    errors = PageErrors(page)
    asked: list[str] = []

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await sign_in(page, server)
    await page.click("#nav a[data-view=homes]")
    row = page.locator(f"#homes tbody tr[data-home-id='{home_id}']")

    async with raw_home(server, http, token) as home:
        await home.handshake()
        await page.fill("#homes-form input[name=q]", home_id)
        await expect(row).to_contain_text("online", timeout=WAIT_MS)
        await row.locator("button[data-action=suspend]").click()
        await expect(row).to_contain_text("suspended", timeout=WAIT_MS)
        message = await home.ws.receive(timeout=5)
        assert message.data == CLOSE_REVOKED, message
    assert "Suspend" in asked[-1]
    await page.screenshot(path=str(artifacts / "dashboard-home-actions.png"))

    await row.locator("button[data-action=resume]").click()
    await expect(row.locator("button[data-action=suspend]")).to_be_visible(timeout=WAIT_MS)
    _, view = await server.request("GET", f"/api/v1/homes?q={home_id}", expect=200)
    assert view["homes"][0]["suspended"] is False

    await row.locator("button[data-action=remove]").click()
    await expect(page.locator("#homes-range")).to_have_text("0 homes", timeout=WAIT_MS)
    assert "Remove" in asked[-1]
    errors.assert_only()
    await context.close()
