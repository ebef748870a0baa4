"""The operator dashboard in real headless Chromium, against a real aggregator and simulated homes.

A fleet of virtual homes (real home clients bidding, acknowledging and sending telemetry) is
connected to a real aggregator; the tests sign in, create an event through the form, watch the
chart and the numbers update without a reload, cancel the event, open its settlement and download
it as CSV. Screenshots land in ``artifacts/`` (git-ignored): ``dashboard.png`` (laptop, mid-event),
``dashboard-phone.png``, ``dashboard-settlement.png`` and ``dashboard-empty.png``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
from playwright.async_api import Browser, Page, expect

from aggregator.simulation.fleet import Fleet
from jeisson.common.protocol import utc_now
from tests.aggregator.common import RunningServer
from tests.helpers import wait_for

from .helpers import (
    HOMES,
    LAPTOP,
    PHONE,
    WAIT_MS,
    PageErrors,
    kw_of,
    settlement_answer,
    sign_in,
)

NO_FIGURE: Final = "\N{EN DASH}"
"""What a figure shows before there is one."""


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
    """A phone joining mid-event sees the same event with the chart so far, and no side-scroll.

    The chart and the activity come from the server: they begin before the phone opened the
    page, and each activity line carries the time it happened.
    """
    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await phone.new_page()
    errors = PageErrors(page)
    opened = utc_now()
    await sign_in(page, server)
    await expect(page.locator("#event-title")).to_have_text("Browser peak", timeout=WAIT_MS)
    await expect(page.locator("#activity")).to_contain_text("sim-home-")
    await expect(page.locator("#activity")).not_to_contain_text("home_")  # names, not ids
    await expect(page.locator("#chart")).to_have_attribute("data-points", re.compile(r"\d+"))
    first = await page.evaluate("Chart.getChart('chart').data.datasets[1].data[0].x")
    assert first < (opened - timedelta(seconds=2)).timestamp() * 1000
    assert points > 0
    cleared = page.locator("#activity li", has_text="Round 1 cleared")
    stamped = datetime.fromisoformat(await cleared.locator("time").get_attribute("datetime") or "")
    assert stamped < opened  # when it happened, not when the page loaded
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
    await expect(page.locator("#activity")).to_contain_text("Event cancelled", timeout=WAIT_MS)


async def check_settlement_waits_for_the_window(
    page: Page, server: RunningServer, event: dict[str, Any]
) -> None:
    """A cancelled event is settled once its window is over: until then the page says why."""
    row = page.locator(f"#events tbody tr[data-event-id='{event['id']}']")
    await row.get_by_role("link", name="Settlement").click()
    await expect(page.locator("#view-event")).to_be_visible()
    assert page.url.endswith(f"#/events/{event['id']}/settlement")
    await expect(page.locator("#settlement-note")).to_contain_text("Not settled yet")
    await page.click("#settlement-settle")
    await expect(page.locator("#settlement-note")).to_contain_text("has not finished yet")
    await expect(page.locator("#settlement-table")).to_be_hidden()
    status, _ = await settlement_answer(server, event["id"])
    assert status == 409


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
    await page.click("#nav a[data-view=homes]")
    await expect(page.locator("#homes tbody tr")).to_have_count(HOMES)
    await expect(page.locator("#homes tbody")).not_to_contain_text("offline")
    await page.click("#nav a[data-view=live]")
    await expect(page.locator("#view-live")).to_be_visible()

    await record_figures(page)
    event = await create_event_in_form(page, server, round(flexible * 0.4, 1))
    points = await check_live_event(page, server, fleet, event)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

    await check_phone(browser, server, artifacts, points)
    await cancel_in_page(page, server, event)
    await check_settlement_waits_for_the_window(page, server, event)

    assert await page.evaluate("window.__sameLoad") is True
    settlement = f"409 /api/v1/events/{event['id']}/settlement"
    errors.assert_only(settlement, settlement)  # asked (GET), then "Settle now" (POST)
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
