"""The dashboard's homes, fleet and event views in real headless Chromium, at laptop and phone
widths, against a real aggregator with simulated homes and thousands of stored homes.

Screenshots (``JEISSON_SCREENSHOTS`` or ``artifacts/``): ``dashboard-homes.png``,
``dashboard-homes-phone.png``, ``dashboard-fleet.png``, ``dashboard-fleet-phone.png``,
``dashboard-event.png`` and ``dashboard-event-phone.png``.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect
from sqlalchemy import insert

from aggregator import tables
from aggregator.history import tables as history_tables
from aggregator.history.recorder import HistorySettings
from aggregator.simulation.fleet import Fleet
from jeisson.common.protocol import Load, LoadKind, utc_now
from tests.aggregator.common import FAST, RunningServer
from tests.helpers import free_port, wait_for

from .helpers import HOMES, LAPTOP, PHONE, WAIT_MS, PageErrors, check_settlement, sign_in

STORED_HOMES: Final = 2000
POSITIVE: Final = re.compile(r"^[1-9]\d*$")
FAST_HISTORY: Final = HistorySettings(poll_s=0.2, event_every_s=0.5, fleet_every_s=0.5)
WATER_HEATER: Final = Load(
    load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=3.0
).model_dump(mode="json")


@pytest.fixture
async def server(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[RunningServer]:
    """Yield an aggregator whose history is sampled every half second."""
    running = RunningServer(
        db_path=tmp_path / "aggregator.db", port=free_port(), settings=FAST, history=FAST_HISTORY
    )
    running.session = http
    await running.start()
    yield running
    await running.stop()


async def store_homes(server: RunningServer, count: int) -> None:
    """Store ``count`` homes that never connected ("Flat 0000"...); every third not taking part."""
    created = utc_now() - timedelta(days=30)
    rows = [
        {
            "home_id": f"home_{number:016x}",
            "name": f"Flat {number:04d}",
            "created_at": created + timedelta(minutes=number),
            "enrolled_at": created + timedelta(minutes=number),
            "last_seen_at": created + timedelta(days=number % 20, minutes=number),
            "loads": [WATER_HEATER] if number % 2 else [],
            "participating": number % 3 != 0,
        }
        for number in range(count)
    ]
    async with server.store.engine.begin() as conn:
        await conn.execute(insert(tables.homes), rows)


async def store_kept_and_lost_awards(server: RunningServer) -> None:
    """Store a finished event that half the homes with a load kept and half lost."""
    start = utc_now() - timedelta(days=2)
    event = {
        "event_id": "evt_reliability",
        "name": "Earlier peak",
        "kind": "market",
        "status": "completed",
        "target_kw": 1500.0,
        "price_cap": 0.4,
        "start": start,
        "end": start + timedelta(hours=1),
        "bid_window_s": 30.0,
        "restore_stagger_s": 300.0,
        "currency": "EUR",
        "created_at": start - timedelta(hours=1),
        "current_round": 1,
    }
    awards = [
        {
            "award_id": f"awd_{number:05d}",
            "event_id": "evt_reliability",
            "round": 1,
            "home_id": f"home_{number:016x}",
            "kw": 3.0,
            "price": 0.2,
            "status": "acked" if number % 4 == 1 else "lost",
            "sent_at": start - timedelta(minutes=30),
            "load_kw": {"wh": 3.0},
            "opted_out_loads": [],
        }
        for number in range(1, STORED_HOMES, 2)
    ]
    async with server.store.engine.begin() as conn:
        await conn.execute(insert(tables.events), [event])
        await conn.execute(insert(tables.awards), awards)


async def store_past_week(server: RunningServer) -> None:
    """Store a week of fleet samples (every 20 minutes) and a few past events a day."""
    now = utc_now()
    samples = []
    for step in range(7 * 72):
        ts = now - timedelta(minutes=20 * (7 * 72 - step))
        daily = math.sin(2 * math.pi * (ts.hour + ts.minute / 60) / 24)
        online = round(1400 + 250 * daily)
        samples.append(
            {
                "ts": ts,
                "homes_total": STORED_HOMES,
                "homes_online": online,
                "homes_participating": round(online * 0.8),
                "flexible_kw": round(online * 3.1, 1),
            }
        )
    events = []
    for day in range(1, 7):
        for number in range(day % 3 + 1):
            start = now - timedelta(days=day, hours=number * 3)
            events.append(
                {
                    "event_id": f"evt_past_{day}_{number}",
                    "name": f"Peak {day}.{number}",
                    "kind": "market",
                    "status": "cancelled" if number == 2 else "completed",
                    "target_kw": 500.0,
                    "price_cap": 0.4,
                    "start": start,
                    "end": start + timedelta(hours=1),
                    "bid_window_s": 30.0,
                    "restore_stagger_s": 300.0,
                    "currency": "EUR",
                    "created_at": start - timedelta(hours=1),
                    "current_round": 1,
                }
            )
    async with server.store.engine.begin() as conn:
        await conn.execute(insert(history_tables.fleet_samples), samples)
        await conn.execute(insert(tables.events), events)


def showing(first: int, last: int, total: int) -> str:
    """Return the pager's text: which homes of how many."""
    return f"{first}\N{EN DASH}{last} of {total:,} homes"


async def no_side_scroll(page: Page) -> None:
    """Assert the page fits a phone's width."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways on a phone"


async def phone_page(browser: Browser) -> tuple[Any, Page]:
    """Open a phone-sized browser context and page."""
    context = await browser.new_context(
        viewport=ViewportSize(width=PHONE["width"], height=PHONE["height"]),
        is_mobile=True,
        has_touch=True,
    )
    return context, await context.new_page()


# --- homes -------------------------------------------------------------------------------------


async def test_homes_view_searches_filters_sorts_and_pages_thousands_of_homes(
    server: RunningServer, fleet: Fleet, browser: Browser, artifacts: Path
) -> None:
    await store_homes(server, STORED_HOMES)
    await store_kept_and_lost_awards(server)
    total = STORED_HOMES + HOMES
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    errors = PageErrors(page)
    await sign_in(page, server)
    await page.click("#nav a[data-view=homes]")
    rows = page.locator("#homes tbody tr")
    await expect(page.locator("#homes-range")).to_have_text(showing(1, 50, total))
    await expect(rows).to_have_count(50)

    await page.fill("#homes-form input[name=q]", "sim-home")
    await expect(rows).to_have_count(HOMES)
    for row in await rows.all():
        await expect(row).to_contain_text("online")
        await expect(row.locator("td").nth(6)).to_have_text("now")  # last seen: online now

    await page.fill("#homes-form input[name=q]", "")
    await expect(page.locator("#homes-range")).to_have_text(showing(1, 50, total))
    await page.select_option("#homes-form select[name=online]", "false")
    await expect(page.locator("#homes-range")).to_have_text(showing(1, 50, STORED_HOMES))
    await page.click("#homes-next")
    await expect(page.locator("#homes-range")).to_have_text(showing(51, 100, STORED_HOMES))
    await expect(rows.first).to_contain_text("Flat 0050")

    await page.select_option("#homes-form select[name=online]", "")
    await page.select_option("#homes-form select[name=sort]", "-flexible_kw")
    await expect(page.locator("#homes-range")).to_have_text(showing(1, 50, total))
    biggest = max(home.flexible_kw for home in fleet.homes)
    biggest_home = next(home for home in fleet.homes if home.flexible_kw == biggest)
    await expect(rows.first).to_contain_text(biggest_home.name)
    await expect(rows.first.locator("td").nth(3)).to_have_text(f"{biggest:.1f}")

    await page.select_option("#homes-form select[name=reliability]", "low")
    await expect(page.locator("#homes-range")).to_have_text(showing(1, 50, STORED_HOMES // 4))
    await expect(rows.first.locator("td").nth(5)).to_have_text("0%")
    await page.select_option("#homes-form select[name=reliability]", "")
    await page.select_option("#homes-form select[name=sort]", "name")
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(artifacts / "dashboard-homes.png"), full_page=True)

    await page.select_option("#homes-form select[name=participating]", "false")
    await expect(page.locator("#homes-range")).to_have_text(
        showing(1, 50, len(range(0, STORED_HOMES, 3)))
    )
    errors.assert_only()
    await context.close()

    context, phone = await phone_page(browser)
    errors = PageErrors(phone)
    await sign_in(phone, server)
    await phone.click("#nav a[data-view=homes]")
    await expect(phone.locator("#homes tbody tr")).to_have_count(50)
    await no_side_scroll(phone)
    await phone.screenshot(path=str(artifacts / "dashboard-homes-phone.png"))
    errors.assert_only()
    await context.close()


# --- the fleet ---------------------------------------------------------------------------------


async def test_fleet_view_charts_homes_online_flexible_kw_and_events_per_day(
    server: RunningServer, fleet: Fleet, browser: Browser, artifacts: Path
) -> None:
    await store_homes(server, STORED_HOMES)
    await store_past_week(server)
    await server.create_event(name="Today's peak", target_kw=5.0, bid_window_s=30.0)

    async def sampled_now() -> bool:
        _, history = await server.request("GET", "/api/v1/fleet/history", expect=200)
        return sum(point["homes_online"] == HOMES for point in history["points"]) >= 3

    await wait_for(sampled_now, what="three fleet samples with the fleet online")
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    errors = PageErrors(page)
    await sign_in(page, server)
    await page.click("#nav a[data-view=fleet]")
    await expect(page.locator("#fleet-online")).to_have_text(str(HOMES))
    await expect(page.locator("#fleet-total")).to_have_text(f"{STORED_HOMES + HOMES:,}")
    flexible = sum(home.flexible_kw for home in fleet.homes)
    await expect(page.locator("#fleet-flexible")).to_have_text(f"{flexible:.1f} kW")
    await expect(page.locator("#fleet-running")).to_have_text("1")

    await page.click("#fleet-range button[data-hours='168']")
    await expect(page.locator("#events-chart")).to_have_attribute("data-days", "7")
    chart = await page.evaluate(
        """() => Chart.getChart('fleet-chart').data.datasets.map((set) => ({
            label: set.label, points: set.data.length, last: set.data.at(-1).y,
            max: Math.max(...set.data.map((point) => point.y)),
        }))"""
    )
    by_label = {item["label"]: item for item in chart}
    assert by_label["Homes online"]["points"] > 7 * 72
    assert by_label["Homes online"]["last"] == HOMES  # now
    assert by_label["Homes online"]["max"] == 1650
    assert by_label["Flexible kW"]["last"] == pytest.approx(flexible, abs=0.05)
    days = await page.evaluate(
        """() => { const chart = Chart.getChart('events-chart');
            return Object.fromEntries(chart.data.datasets.map(
                (set) => [set.label, set.data.reduce((a, b) => a + b, 0)])); }"""
    )
    today = days.pop("negotiating", 0) + days.pop("committed", 0)
    assert (days, today) == ({"cancelled": 2, "completed": 10}, 1)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(artifacts / "dashboard-fleet.png"), full_page=True)
    errors.assert_only()
    await context.close()

    context, phone = await phone_page(browser)
    errors = PageErrors(phone)
    await sign_in(phone, server)
    await phone.click("#nav a[data-view=fleet]")
    await expect(phone.locator("#fleet-chart")).to_have_attribute("data-points", POSITIVE)
    await no_side_scroll(phone)
    await phone.screenshot(path=str(artifacts / "dashboard-fleet-phone.png"), full_page=True)
    errors.assert_only()
    await context.close()


# --- one event ---------------------------------------------------------------------------------


async def test_event_view_shows_bid_curve_committed_vs_delivered_and_settlement(
    server: RunningServer, fleet: Fleet, browser: Browser, artifacts: Path
) -> None:
    flexible = sum(home.flexible_kw for home in fleet.homes)
    event = await server.create_event(
        name="Detail peak",
        target_kw=round(flexible * 0.4, 1),
        bid_window_s=2.0,
        start=utc_now() + timedelta(seconds=3),
        end=utc_now() + timedelta(seconds=15),
        restore_stagger_s=1.0,
    )
    context = await browser.new_context(viewport=LAPTOP, accept_downloads=True)
    page = await context.new_page()
    errors = PageErrors(page)
    await sign_in(page, server)
    await expect(page.locator("#event-title")).to_have_text("Detail peak", timeout=WAIT_MS)
    await expect(page.locator("#event-status")).to_have_text("active", timeout=WAIT_MS)
    await page.click("#event-details")
    assert page.url.endswith(f"#/events/{event['id']}")
    await expect(page.locator("#detail-title")).to_have_text("Detail peak")

    _, curve = await server.request("GET", f"/api/v1/events/{event['id']}/rounds/1/bids")
    await expect(page.locator("#detail-curve")).to_have_attribute(
        "data-steps", str(len(curve["steps"]))
    )
    datasets = await page.evaluate(
        """() => Object.fromEntries(Chart.getChart('detail-curve').data.datasets.map(
            (set) => [set.label, set.data.filter((point) => point.y !== null)]))"""
    )
    accepted = [step for step in curve["steps"] if step["accepted"]]
    assert len(datasets["Accepted steps"]) == 2 * len(accepted)
    assert len(datasets["Steps not accepted"]) == 2 * (len(curve["steps"]) - len(accepted))
    assert {point["y"] for point in datasets["Clearing price"]} == {curve["clearing_price"]}
    assert {point["x"] for point in datasets["Target"]} == {event["target_kw"]}
    prices = [point["y"] for point in datasets["Accepted steps"]]
    assert prices == sorted(prices)  # merit order
    await expect(page.locator("#detail-curve-note")).to_contain_text(f"{len(accepted)} accepted")

    awarded = await check_homes_table(page, server, fleet, event["id"])
    await expect(page.locator("#detail-activity")).to_contain_text("Round 1 cleared")
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(artifacts / "dashboard-event.png"), full_page=True)

    # After the event: its settlement, one click away.
    await wait_for(
        lambda: _status(server, event["id"], "completed"), timeout=30, what="event completed"
    )
    await check_settlement(page, server, fleet, artifacts, event)
    await expect(page.locator("#settlement-table tbody tr")).to_have_count(len(awarded))
    await expect(page.locator("#detail-status")).to_have_text("completed")
    errors.assert_only(f"409 /api/v1/events/{event['id']}/settlement")  # before "Settle now"
    await context.close()

    context, phone = await phone_page(browser)
    errors = PageErrors(phone)
    await sign_in(phone, server)
    await phone.goto(f"{server.url}/#/events/{event['id']}")
    await expect(phone.locator("#detail-curve")).to_have_attribute(
        "data-steps", str(len(curve["steps"]))
    )
    await expect(phone.locator("#detail-homes tbody tr")).to_have_count(len(awarded))
    await no_side_scroll(phone)
    await phone.screenshot(path=str(artifacts / "dashboard-event-phone.png"), full_page=True)
    errors.assert_only()
    await context.close()


async def check_homes_table(
    page: Page, server: RunningServer, fleet: Fleet, event_id: str
) -> set[str]:
    """Check committed vs delivered per home on the event view; return the awarded homes."""
    detail = await server.event(event_id)
    awarded = {award["home_id"] for award in detail["awards"]}
    rows = page.locator("#detail-homes tbody tr")
    await expect(rows).to_have_count(len(awarded))
    names = {home.home_id: home.name for home in fleet.homes}
    for home_id in awarded:
        cells = page.locator(f"#detail-homes tr[data-home-id='{home_id}'] td")
        await expect(cells.first).to_have_text(names[home_id])

    async def delivery_shown() -> bool:
        cells = await page.locator("#detail-homes tbody tr td:nth-child(5)").all_text_contents()
        return bool(cells) and all(cell != "\N{EN DASH}" for cell in cells)

    # The view refreshes itself every 5 s while the event runs.
    await wait_for(delivery_shown, timeout=WAIT_MS / 1000, what="delivered kW per home")
    bars = await page.evaluate(
        "Chart.getChart('detail-bars').data.datasets.map((set) => set.data.length)"
    )
    assert bars == [len(awarded), len(awarded)]
    return awarded


async def _status(server: RunningServer, event_id: str, status: str) -> bool:
    return (await server.event(event_id))["status"] == status
