"""The operator dashboard in real headless Chromium, against a real aggregator and simulated homes.

A fleet of virtual homes (real home clients bidding, acknowledging and sending telemetry) is
connected to a real aggregator; the tests sign in, create an event through the form, watch the
chart and the numbers update without a reload, cancel the event, open its settlement and download
it as CSV. Screenshots land in ``artifacts/`` (git-ignored): ``dashboard.png`` (laptop, mid-event),
``dashboard-phone.png``, ``dashboard-settlement.png`` and ``dashboard-empty.png``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from aggregator.simulation.fleet import Fleet, FleetConfig
from aggregator.simulation.home import HomeTiming
from tests.aggregator.common import RunningServer
from tests.helpers import wait_for

HOMES: Final = 4
LAPTOP: Final = ViewportSize(width=1366, height=900)
PHONE: Final = ViewportSize(width=390, height=844)
NO_FIGURE: Final = "\N{EN DASH}"
"""What a figure shows before there is one."""
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


@pytest.fixture
async def fleet(server: RunningServer) -> AsyncIterator[Fleet]:
    """Yield a started fleet of simulated homes connected to the server."""
    async with Fleet(server.url, server.operator_token, seed=7, config=FAST_HOMES) as started:
        await started.start(HOMES)
        yield started


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


async def record_figures(page: Page) -> None:
    """Mark this page load and record every text the committed and delivered figures show.

    ``window.__sameLoad`` disappears if anything reloads the page.
    """
    await page.evaluate(
        """() => {
            window.__sameLoad = true;
            window.__shown = {};
            for (const id of ['stat-committed', 'stat-delivered']) {
                const node = document.getElementById(id);
                const seen = (window.__shown[id] = [node.textContent]);
                new MutationObserver(() => {
                    if (seen.at(-1) !== node.textContent) seen.push(node.textContent);
                }).observe(node, {childList: true, characterData: true, subtree: true});
            }
        }"""
    )


async def settlement_answer(server: RunningServer, event_id: str, query: str = "") -> Any:
    """Return (status, body text) of the settlement endpoint for an event."""
    assert server.session is not None
    headers = {"Authorization": f"Bearer {server.operator_token}"}
    url = f"{server.url}/api/v1/events/{event_id}/settlement{query}"
    async with server.session.get(url, headers=headers) as response:
        return response.status, await response.text()


async def create_event_in_form(page: Page, server: RunningServer, target: float) -> dict[str, Any]:
    """Fill in and send the new-event form; return the event as the REST API lists it."""
    form = page.locator("#create-form")
    await form.locator("input[name=name]").fill("Browser peak")
    await form.locator("select[name=kind]").select_option("market")
    await form.locator("input[name=target_kw]").fill(str(target))
    await form.locator("input[name=price_cap]").fill("0.4")
    await form.locator("input[name=start_in]").fill("4")
    await form.locator("select[name=start_unit]").select_option("1")
    await form.locator("input[name=duration]").fill("2")
    await form.locator("select[name=duration_unit]").select_option("60")
    await form.locator("input[name=bid_window_s]").fill("2")
    await form.locator("input[name=restore_stagger_s]").fill("1")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#create-result")).to_have_text("Created “Browser peak”.")
    _, listed = await server.request("GET", "/api/v1/events", expect=200)
    event = dict(listed["events"][0])
    assert event["name"] == "Browser peak"
    assert event["target_kw"] == target
    assert event["bid_window_s"] == 2.0
    assert event["restore_stagger_s"] == 1.0
    return event


async def check_live_event(
    page: Page, server: RunningServer, fleet: Fleet, event: dict[str, Any]
) -> int:
    """Follow the event on the page until homes deliver; return the chart's point count."""
    target = event["target_kw"]
    await expect(page.locator("#event-title")).to_have_text("Browser peak", timeout=WAIT_MS)
    await expect(page.locator("#stat-target")).to_have_text(f"{target:.1f} kW")
    await expect(page.locator("#rounds tbody")).to_contain_text("cleared", timeout=WAIT_MS)
    await expect(page.locator("#event-status")).to_have_text("active", timeout=WAIT_MS)

    async def delivering() -> bool:
        return await kw_of(page, "#stat-delivered") > 0

    await wait_for(delivering, timeout=WAIT_MS / 1000, what="delivered kW on the page")
    detail = await server.event(event["id"])
    committed = await kw_of(page, "#stat-committed")
    assert committed == pytest.approx(detail["committed_kw"], abs=0.05)
    assert committed >= target
    acked = [award for award in detail["awards"] if award["status"] == "acked"]
    assert acked
    await expect(page.locator("#awards tbody tr")).to_have_count(len(detail["awards"]))
    names = {home.home_id: home.name for home in fleet.homes}
    for award in acked:
        await expect(page.locator("#awards tbody")).to_contain_text(names[award["home_id"]])
    await expect(page.locator("#activity")).to_contain_text("Round 1 cleared")

    chart = await page.evaluate(
        """() => Chart.getChart('chart').data.datasets.map((set) => ({
            label: set.label, points: set.data.length, last: set.data.at(-1).y,
            max: Math.max(...set.data.map((point) => point.y)),
        }))"""
    )
    by_label = {item["label"]: item for item in chart}
    assert set(by_label) == {"Target", "Committed", "Delivered"}
    assert by_label["Committed"]["points"] >= 3
    assert by_label["Target"]["last"] == target
    assert by_label["Committed"]["last"] == pytest.approx(committed, abs=0.05)
    assert by_label["Delivered"]["max"] > 0

    # Before the event nothing was shown; then the stream brought the figures in, no reload.
    shown = await page.evaluate("window.__shown")
    assert shown["stat-committed"][0] == NO_FIGURE
    assert f"{committed:.1f} kW" in shown["stat-committed"]
    assert shown["stat-delivered"][0] == NO_FIGURE
    assert "0.0 kW" in shown["stat-delivered"]  # committed, not yet active
    assert shown["stat-delivered"][-1] == f"{await kw_of(page, '#stat-delivered'):.1f} kW"
    return int(by_label["Committed"]["points"])


async def check_phone(
    browser: Browser, server: RunningServer, artifacts: Path, points: int
) -> None:
    """A phone joining mid-event sees the same event with the chart so far, and no side-scroll."""
    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await phone.new_page()
    errors = PageErrors(page)
    await sign_in(page, server)
    await expect(page.locator("#event-title")).to_have_text("Browser peak", timeout=WAIT_MS)
    await expect(page.locator("#activity")).to_contain_text("sim-home-")
    await expect(page.locator("#activity")).not_to_contain_text("home_")  # names, not ids
    seeded = await page.evaluate("Chart.getChart('chart').data.datasets[1].data.length")
    assert seeded >= points  # seeded from the stream's history
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways on a phone"
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(artifacts / "dashboard-phone.png"), full_page=True)
    await phone.close()
    errors.assert_only()


async def cancel_in_page(page: Page, server: RunningServer, event: dict[str, Any]) -> None:
    """Cancel the event from its panel and see every part of the page say so."""
    page.once("dialog", lambda dialog: dialog.accept())
    await page.click("#event-cancel")
    await expect(page.locator("#event-status")).to_have_text("cancelled", timeout=WAIT_MS)
    row = page.locator(f"#events tbody tr[data-event-id='{event['id']}']")
    await expect(row).to_contain_text("cancelled")
    await expect(page.locator("#event-cancel")).to_be_hidden()
    assert (await server.event(event["id"]))["status"] == "cancelled"
    await expect(page.locator("#activity")).to_contain_text("Browser peak: cancelled")


async def check_settlement(
    page: Page, server: RunningServer, fleet: Fleet, artifacts: Path, event: dict[str, Any]
) -> None:
    """Open the event's settlement: a row per awarded home, the totals, and the CSV download."""
    row = page.locator(f"#events tbody tr[data-event-id='{event['id']}']")
    await row.get_by_role("button", name="Settlement").click()
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
    assert csv_text.startswith("home_id,")


async def test_operator_runs_an_event_from_the_dashboard(
    server: RunningServer, fleet: Fleet, browser: Browser, artifacts: Path
) -> None:
    flexible = sum(home.flexible_kw for home in fleet.homes)
    context = await browser.new_context(viewport=LAPTOP, accept_downloads=True)
    page = await context.new_page()
    errors = PageErrors(page)
    await sign_in(page, server)

    # The token is kept for this tab only, never in the address.
    stored = await page.evaluate("sessionStorage.getItem('jeisson.operatorToken')")
    assert stored == server.operator_token
    assert server.operator_token not in page.url

    # Fleet figures.
    await expect(page.locator("#stat-homes")).to_have_text(str(HOMES), timeout=WAIT_MS)
    assert await kw_of(page, "#stat-flex") == pytest.approx(flexible, abs=0.05)
    await expect(page.locator("#homes tbody tr")).to_have_count(HOMES)
    await expect(page.locator("#homes tbody")).not_to_contain_text("offline")

    await record_figures(page)
    event = await create_event_in_form(page, server, round(flexible * 0.4, 1))
    points = await check_live_event(page, server, fleet, event)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

    await check_phone(browser, server, artifacts, points)
    await cancel_in_page(page, server, event)
    await check_settlement(page, server, fleet, artifacts, event)

    assert await page.evaluate("window.__sameLoad") is True
    errors.assert_only()
    await context.close()


async def test_sign_in_refuses_a_wrong_token_and_sign_out_forgets_it(
    server: RunningServer, browser: Browser, artifacts: Path
) -> None:
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    errors = PageErrors(page)
    await page.goto(server.url + "/")
    await page.fill("#token", "not-the-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_have_text(
        "This token is not a valid operator token."
    )
    await expect(page.locator("#app-view")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0

    await sign_in(page, server)
    await page.reload()  # the token survives a reload of the tab
    await expect(page.locator("#app-view")).to_be_visible()
    await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)

    await expect(page.locator("#chart-empty")).to_be_visible()
    await page.screenshot(path=str(artifacts / "dashboard-empty.png"))

    # A bad event is refused with the server's reason, shown next to the form.
    form = page.locator("#create-form")
    await form.locator("input[name=target_kw]").fill("0")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#create-result")).to_contain_text("target_kw > 0")
    _, listed = await server.request("GET", "/api/v1/events", expect=200)
    assert listed["events"] == []

    await page.click("#logout")
    await expect(page.locator("#login-view")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    await expect(page.locator("#conn")).to_have_text("offline")
    await page.reload()
    await expect(page.locator("#login-view")).to_be_visible()
    await expect(page.locator("#app-view")).to_be_hidden()
    errors.assert_only("401 /api/v1/events?limit=1", "400 /api/v1/events")
    await context.close()


async def test_watch_switches_the_panel_between_running_events(
    server: RunningServer, browser: Browser
) -> None:
    first = await server.create_event(name="Morning peak", target_kw=4.0, bid_window_s=30.0)
    second = await server.create_event(name="Evening peak", target_kw=9.0, bid_window_s=30.0)
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    errors = PageErrors(page)
    await sign_in(page, server)
    rows = page.locator("#events tbody tr")
    await expect(rows).to_have_count(2)

    for event in (second, first, second):
        row = page.locator(f"#events tbody tr[data-event-id='{event['id']}']")
        await row.get_by_role("button", name="Watch").click()
        await expect(page.locator("#event-title")).to_have_text(event["name"])
        await expect(page.locator("#stat-target")).to_have_text(f"{event['target_kw']:.1f} kW")
        # The chart follows the watched event: its target line is this event's target.
        await expect(page.locator("#chart")).to_have_attribute("data-points", re.compile(r"\d+"))
        target_line = await page.evaluate(
            "Chart.getChart('chart').data.datasets[0].data.map((point) => point.y)"
        )
        assert set(target_line) == {event["target_kw"]}
    errors.assert_only()
    await context.close()


async def test_live_view_reconnects_after_a_server_restart(
    server: RunningServer, browser: Browser
) -> None:
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await sign_in(page, server)
    await page.evaluate("window.__sameLoad = true")
    await server.stop()
    await expect(page.locator("#conn")).not_to_have_text("live", timeout=WAIT_MS)
    await server.start()
    event = await server.create_event(name="After restart", target_kw=3.0, bid_window_s=30.0)
    await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
    await expect(page.locator("#event-title")).to_have_text("After restart", timeout=WAIT_MS)
    row = page.locator(f"#events tbody tr[data-event-id='{event['id']}']")
    await expect(row).to_be_visible()
    assert await page.evaluate("window.__sameLoad") is True
    await context.close()
