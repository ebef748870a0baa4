"""Shared helpers of the browser tests: viewports, waiting, signing in, collecting page errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

from playwright.async_api import Page, ViewportSize, expect

from aggregator.simulation.fleet import Fleet, FleetConfig
from aggregator.simulation.home import HomeTiming
from tests.aggregator.common import RunningServer

HOMES: Final = 4
LAPTOP: Final = ViewportSize(width=1366, height=900)
PHONE: Final = ViewportSize(width=390, height=844)
WAIT_MS: Final = 20_000
FAST_HOMES: Final = FleetConfig(
    timing=HomeTiming(
        event_sample_s=0.2,
        event_report_s=0.5,
        idle_sample_s=1.0,
        idle_report_s=2.0,
        bid_delay_max_s=0.1,
    ),
    backoff_base_s=0.05,
    backoff_max_s=0.2,
)
_KW: Final = re.compile(r"^(-?\d+(?:\.\d+)?) kW$")


class PageErrors:
    """Collects console errors and uncaught exceptions of a page (CSP violations included)."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        self.failed: list[str] = []
        page.on(
            "response",
            lambda response: (
                self.failed.append(f"{response.status} {response.url}")
                if response.status >= 400
                else None
            ),
        )
        page.on("pageerror", lambda error: self.messages.append(f"pageerror: {error}"))
        page.on(
            "console",
            lambda message: (
                self.messages.append(f"console: {message.text}")
                if message.type == "error"
                else None
            ),
        )

    def assert_only(self, *expected: str) -> None:
        """Assert no error happened but the expected failed requests ("404 /path?query")."""
        failed = [
            f"{status} {url.split('/', 3)[-1]}"
            for status, url in (entry.split(" ", 1) for entry in self.failed)
        ]
        assert failed == [item.replace(" /", " ", 1) for item in expected]
        failed_loads = [text for text in self.messages if "Failed to load resource" in text]
        assert len(failed_loads) == len(expected), self.messages
        assert [text for text in self.messages if text not in failed_loads] == []


async def kw_of(page: Page, selector: str) -> float:
    """Return the kW figure shown in an element ("12.3 kW")."""
    text = (await page.locator(selector).text_content() or "").strip()
    match = _KW.match(text)
    assert match, f"{selector} shows {text!r}, not a kW figure"
    return float(match.group(1))


async def sign_in(page: Page, server: RunningServer) -> None:
    """Open the dashboard and sign in with the operator token."""
    await page.goto(server.url + "/")
    await page.fill("#token", server.operator_token)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#app-view")).to_be_visible()
    await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)


async def settlement_answer(server: RunningServer, event_id: str, query: str = "") -> Any:
    """Return (status, body text) of the settlement endpoint for an event."""
    assert server.session is not None
    headers = {"Authorization": f"Bearer {server.operator_token}"}
    url = f"{server.url}/api/v1/events/{event_id}/settlement{query}"
    async with server.session.get(url, headers=headers) as response:
        return response.status, await response.text()


async def check_settlement(
    page: Page, server: RunningServer, fleet: Fleet, artifacts: Path, event: dict[str, Any]
) -> None:
    """Settle a finished event from its view: a row per awarded home, the totals, the CSV.

    The page is on the event's view; statements are settled a day after the event, or at once.
    """
    await page.click("#detail-settlement")
    assert page.url.endswith(f"#/events/{event['id']}/settlement")
    await expect(page.locator("#settlement-note")).to_contain_text("Not settled yet")
    await page.click("#settlement-settle")
    await expect(page.locator("#settlement-table")).to_be_visible(timeout=WAIT_MS)
    status, body = await settlement_answer(server, event["id"])
    assert status == 200, body
    report = json.loads(body)
    assert report["homes"]
    table = page.locator("#settlement-table")
    await expect(table).to_be_visible()
    await expect(table.locator("tbody tr")).to_have_count(len(report["homes"]))
    for home in report["homes"]:
        cells = table.locator(f"tbody tr[data-home-id='{home['home_id']}'] td")
        await expect(cells.nth(0)).to_have_text(fleet.home(home["home_id"]).name)
        await expect(cells.nth(3)).to_have_text(f"{home['measured_kwh']:.2f}")
        await expect(cells.nth(4)).to_have_text(f"{home['delivered_kwh']:.2f}")
        await expect(cells.nth(6)).to_have_text(f"{home['payment']:.2f} {report['currency']}")
        await expect(cells.nth(7)).to_have_text(home["status"].replace("_", " "))
    totals = report["totals"]
    await expect(table.locator("tfoot")).to_contain_text(
        f"{totals['payment']:.2f} {report['currency']}"
    )
    await expect(table.locator("tfoot")).to_contain_text(f"{totals['homes']} homes")
    await page.locator("#settlement").screenshot(path=str(artifacts / "dashboard-settlement.png"))

    async with page.expect_download() as download_info:
        await page.click("#settlement-csv")
    download = await download_info.value
    assert download.suggested_filename == f"settlement-{event['id']}.csv"
    saved = artifacts / "settlement.csv"
    await download.save_as(saved)
    status, csv_text = await settlement_answer(server, event["id"], "?format=csv")
    assert status == 200
    assert saved.read_bytes().decode() == csv_text  # byte for byte (CRLF rows)
    assert csv_text.startswith("event_id,version,home_id,")
