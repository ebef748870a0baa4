"""The operator-tokens view in real headless Chromium against a real aggregator, at desktop
(1280) and phone (390) widths: tokens are listed (live, expired, revoked, and the one the tab is
signed in with marked), one is issued with an expiry and its secret shown once and working, one
is revoked after a confirmation, and revoking the tab's own token warns first and signs out.

Screenshots (``JEISSON_SCREENSHOTS`` or ``artifacts/``): ``tokens-desktop.png`` and
``tokens-phone.png``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from playwright.async_api import Browser, Dialog, Page, ViewportSize, expect

from jeisson.common.protocol import utc_now
from tests.aggregator.common import RunningServer

from .helpers import PHONE, WAIT_MS, PageErrors, sign_in

DESKTOP: Final = ViewportSize(width=1280, height=900)
TOKENS: Final = "/api/v1/operator-tokens"


class Dialogs:
    """Answers the page's confirmation dialogs (accept or dismiss) and keeps their messages."""

    def __init__(self, page: Page) -> None:
        self.asked: list[str] = []
        self.accept = True
        page.on("dialog", self._answer)

    async def _answer(self, dialog: Dialog) -> None:
        self.asked.append(dialog.message)
        await (dialog.accept() if self.accept else dialog.dismiss())


async def status_with(server: RunningServer, token: str) -> int:
    """Return the HTTP status of listing operator tokens with ``token``."""
    status, _ = await server.request("GET", TOKENS, token=token)
    return status


async def no_side_scroll(page: Page) -> None:
    """Assert the page fits a phone's width."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways on a phone"


async def issue_night_shift(page: Page, server: RunningServer, artifacts: Path) -> tuple[str, str]:
    """Issue a token expiring in 30 days; check the secret is shown once and works.

    Return the secret and the token's id.
    """
    rows = page.locator("#tokens tbody tr")
    await page.fill("#token-form input[name=name]", "night shift")
    await page.fill("#token-form input[name=expires_in_days]", "30")
    await page.click("#token-form button[type=submit]")
    issued = page.locator("#token-issued")
    await expect(issued).to_be_visible(timeout=WAIT_MS)
    await expect(issued).to_contain_text("Copy it now, it is not shown again.")
    secret = await page.input_value("#token-secret")
    assert len(secret) >= 32
    assert await status_with(server, secret) == 200
    await expect(rows).to_have_count(3)
    _, listed = await server.request("GET", TOKENS)
    (night,) = [item for item in listed["tokens"] if item["name"] == "night shift"]
    assert night["status"] == "live"
    expires_in = datetime.fromisoformat(night["expires_at"]) - utc_now()
    assert timedelta(days=30) - timedelta(minutes=1) < expires_in <= timedelta(days=30)
    night_row = page.locator(f"#tokens tbody tr[data-token-id='{night['token_id']}']")
    await expect(night_row.locator("td").nth(1)).to_have_text("live")
    await expect(night_row.locator("td").nth(3)).not_to_have_text("never")
    assert secret not in (await page.locator("#tokens").inner_text())
    await page.click("#token-copy")
    await expect(page.locator("#token-copied")).to_have_text("Copied.")
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    await page.screenshot(path=str(artifacts / "tokens-desktop.png"), full_page=True)
    return secret, night["token_id"]


async def on_a_phone(browser: Browser, server: RunningServer, artifacts: Path, own_id: str) -> None:
    """Issue and list on a phone (nothing scrolls sideways); revoking its own token signs out."""
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    phone = await context.new_page()
    errors = PageErrors(phone)
    dialogs = Dialogs(phone)
    await sign_in(phone, server)
    await phone.click("#nav a[data-view=tokens]")
    await expect(phone.locator("#tokens tbody tr")).to_have_count(3)
    await phone.fill("#token-form input[name=name]", "pager")
    await phone.click("#token-form button[type=submit]")
    await expect(phone.locator("#token-issued")).to_be_visible(timeout=WAIT_MS)
    await expect(phone.locator("#tokens tbody tr")).to_have_count(4)
    await expect(phone.locator("#tokens tbody tr").last.locator("td").nth(3)).to_have_text("never")
    await no_side_scroll(phone)
    assert await phone.evaluate(  # every column fits: the table does not scroll in its box
        "document.querySelector('#tokens').scrollWidth <= "
        "document.querySelector('#tokens').parentElement.clientWidth"
    ), "the tokens table scrolls sideways on a phone"
    await phone.screenshot(path=str(artifacts / "tokens-phone.png"), full_page=True)

    phone_own = phone.locator(f"#tokens tbody tr[data-token-id='{own_id}']")
    await phone_own.locator("button[data-action=revoke]").click()
    assert "THIS DASHBOARD IS SIGNED IN WITH" in dialogs.asked[-1]
    await expect(phone.locator("#login-view")).to_be_visible(timeout=WAIT_MS)
    await expect(phone.locator("#login-error")).to_contain_text("You revoked the token")
    assert await status_with(server, server.operator_token) == 401
    errors.assert_only()
    await context.close()


async def test_operator_tokens_are_listed_issued_once_and_revoked_from_the_dashboard(
    server: RunningServer, browser: Browser, artifacts: Path
) -> None:
    expired, _ = await server.store.issue_operator_token(
        "old laptop", utc_now() - timedelta(days=1)
    )
    _, own = await server.request("GET", TOKENS)
    own_id = own["current_token_id"]

    context = await browser.new_context(
        viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"]
    )
    page = await context.new_page()
    errors = PageErrors(page)
    dialogs = Dialogs(page)
    await sign_in(page, server)
    await page.click("#nav a[data-view=tokens]")
    assert page.url.endswith("#/tokens")
    rows = page.locator("#tokens tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.locator("button[data-action=revoke]")).to_have_count(1)  # not the expired
    own_row = page.locator(f"#tokens tbody tr[data-token-id='{own_id}']")
    await expect(own_row).to_contain_text("this session")
    await expect(own_row.locator("td").nth(3)).to_have_text("never")
    old_row = page.locator(f"#tokens tbody tr[data-token-id='{expired.token_id}']")
    await expect(old_row.locator("td").nth(1)).to_have_text("expired")
    await expect(old_row).not_to_contain_text("this session")

    secret, night_id = await issue_night_shift(page, server, artifacts)
    night_row = page.locator(f"#tokens tbody tr[data-token-id='{night_id}']")

    # A bad expiry is refused on the page; nothing is issued.
    await page.fill("#token-form input[name=name]", "too long")
    await page.fill("#token-form input[name=expires_in_days]", "5000")
    await page.click("#token-form button[type=submit]")
    await expect(page.locator("#token-form-error")).to_contain_text("1 to 3650")
    await expect(rows).to_have_count(3)

    # Leaving the view forgets the secret; coming back does not show it again.
    await page.click("#nav a[data-view=homes]")
    await page.click("#nav a[data-view=tokens]")
    await expect(rows).to_have_count(3)
    await expect(page.locator("#token-issued")).to_be_hidden()
    assert await page.input_value("#token-secret") == ""

    # Revoke the new one: asked first, then refused by the server and shown revoked.
    await night_row.locator("button[data-action=revoke]").click()
    await expect(night_row.locator("td").nth(1)).to_have_text("revoked", timeout=WAIT_MS)
    assert "night shift" in dialogs.asked[-1]
    assert "SIGNED IN WITH" not in dialogs.asked[-1]
    assert await status_with(server, secret) == 401
    await expect(night_row.locator("button[data-action=revoke]")).to_have_count(0)

    # The tab's own token: a clear warning; declining keeps it.
    dialogs.accept = False
    await own_row.locator("button[data-action=revoke]").click()
    assert "THIS DASHBOARD IS SIGNED IN WITH" in dialogs.asked[-1]
    assert "signs you out" in dialogs.asked[-1]
    await expect(own_row.locator("td").nth(1)).to_contain_text("live")
    assert await status_with(server, server.operator_token) == 200
    errors.assert_only()
    await context.close()

    await on_a_phone(browser, server, artifacts, own_id)
