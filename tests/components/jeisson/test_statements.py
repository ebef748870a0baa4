"""Settled earnings: the aggregator's final statements reach Home Assistant, are kept across
restarts, shown apart from the live estimate, and a correction replaces the earlier version.

Runs against a real aggregator process. The home's history (the pre-event hours its baseline is
computed from) is written into the aggregator's database, as if the home had reported it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.const import EVENT_ENDED, EVENT_SETTLED
from custom_components.jeisson.statements import MAX_KEPT, StatementBook
from jeisson.common.protocol import Statement
from tests.helpers import wait_for

from .aggregator_process import AggregatorProcess
from .common import of_type, record, record_events

SETTLED = "sensor.jeisson_home_settled_earnings"
ESTIMATED = "sensor.jeisson_home_estimated_earnings"
RELIABILITY = "sensor.jeisson_home_reliability"
CALENDAR = "calendar.jeisson_home_demand_response_events"
HISTORY_KW = 12.0
"""What the home drew before the event (its three loads are 10.5 kW when all on)."""


async def _run_event(hass: HomeAssistant, aggregator: AggregatorProcess, home_id: str) -> str:
    """Give the home pre-event history, run a short market event to its end; return its id."""
    events = record_events(hass)
    now = dt_util.utcnow()
    await hass.async_add_executor_job(
        aggregator.store_telemetry,
        home_id,
        now - timedelta(hours=4),
        now - timedelta(minutes=1),
        HISTORY_KW,
        timedelta(minutes=5),
    )
    created = await aggregator.create_event(target_kw=1.0, price_cap=0.5, duration=3.0)

    async def completed() -> bool:
        return (await aggregator.event(created["id"]))["status"] == "completed"

    await wait_for(lambda: bool(of_type(events, EVENT_ENDED)), what="event end")
    await wait_for(completed, what="event completed on the aggregator")
    return str(created["id"])


async def test_a_settled_statement_is_shown_kept_and_acknowledged(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    home_id = loaded_entry.data["home_id"]
    settled = record(hass, EVENT_SETTLED)
    assert float(hass.states.get(SETTLED).state) == 0.0
    event_id = await _run_event(hass, aggregator, home_id)

    statement = await aggregator.settle(event_id)
    await wait_for(lambda: bool(settled), what="the statement in Home Assistant")

    line = next(home for home in statement["homes"] if home["home_id"] == home_id)
    assert line["payment"] > 0
    [announced] = settled
    assert announced["event_id"] == event_id
    assert announced["version"] == 1
    assert announced["payment"] == line["payment"]
    assert announced["correction"] == round(line["payment"], 6)  # all of it: version 1
    assert announced["data_quality"] == line["data_quality"]
    sensor = hass.states.get(SETTLED)
    assert float(sensor.state) == round(line["payment"], 4)
    assert sensor.attributes["unit_of_measurement"] == "EUR"
    assert sensor.attributes["last_event_id"] == event_id
    assert sensor.attributes["last_statement_version"] == 1
    assert float(hass.states.get(RELIABILITY).state) == round(
        line["reliability"] * 100, 1
    )  # after one event: (4 + delivered / committed) / 6, shown in %

    start, end = dt_util.utcnow() - timedelta(hours=1), dt_util.utcnow() + timedelta(hours=1)
    calendar = await _calendar_events(hass, start, end)
    [shown] = [item for item in calendar if event_id in item["description"]]
    assert f"paid {line['payment']:.2f} EUR" in shown["summary"]
    assert "settled (statement v1)" in shown["description"]

    async def acknowledged() -> bool:
        receipts = await hass.async_add_executor_job(aggregator.statement_receipts, home_id)
        return receipts == [(event_id, 1)]

    await wait_for(acknowledged, what="the statement acknowledged to the aggregator")

    # Kept across a restart of the integration; not announced again.
    await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert float(hass.states.get(SETTLED).state) == round(line["payment"], 4)
    assert len(settled) == 1


async def test_a_correction_replaces_the_earlier_version(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    home_id = loaded_entry.data["home_id"]
    settled = record(hass, EVENT_SETTLED)
    event_id = await _run_event(hass, aggregator, home_id)
    first = await aggregator.settle(event_id)
    await wait_for(lambda: len(settled) == 1, what="version 1")

    # Late telemetry: the home drew nothing during the event (more shed than first known).
    detail = await aggregator.event(event_id)
    start = datetime.fromisoformat(detail["start"])
    end = datetime.fromisoformat(detail["end"])
    await hass.async_add_executor_job(
        aggregator.store_telemetry, home_id, start, end, 0.0, timedelta(milliseconds=100)
    )
    second = await aggregator.settle(event_id)
    assert second["version"] == 2
    await wait_for(lambda: len(settled) == 2, what="version 2")

    paid = {
        version: next(home for home in found["homes"] if home["home_id"] == home_id)["payment"]
        for version, found in ((1, first), (2, second))
    }
    assert paid[2] > paid[1]
    assert settled[1]["version"] == 2
    assert settled[1]["correction"] == round(paid[2] - paid[1], 6)
    # The total counts the event once, at its newest payment.
    assert float(hass.states.get(SETTLED).state) == round(paid[2], 4)


async def _calendar_events(
    hass: HomeAssistant, start: datetime, end: datetime
) -> list[dict[str, str]]:
    response = await hass.services.async_call(
        "calendar",
        "get_events",
        {"entity_id": CALENDAR, "start_date_time": start, "end_date_time": end},
        blocking=True,
        return_response=True,
    )
    return list(response[CALENDAR]["events"])  # type: ignore[index]


async def test_the_book_keeps_the_newest_versions_and_a_whole_total(hass: HomeAssistant) -> None:
    """Old versions are ignored, the oldest statements are dropped past the limit, totals stay."""
    book = StatementBook(hass, "entry")
    await book.async_load()
    start = datetime(2026, 1, 1, 18, tzinfo=UTC)
    for day in range(MAX_KEPT + 1):
        window = start + timedelta(days=day)
        assert await book.async_add(_statement(f"evt_{day}", 1, window, payment=1.0))
    assert not await book.async_add(_statement("evt_7", 1, start, payment=5.0))  # a re-send
    assert await book.async_add(_statement("evt_7", 2, start + timedelta(days=7), payment=3.0))
    assert len(book.events) == MAX_KEPT
    assert "evt_0" not in book.events  # the oldest, dropped: its payment still counts
    assert book.total() == MAX_KEPT + 1 + 2.0

    again = StatementBook(hass, "entry")
    await again.async_load()
    assert again.total() == book.total()
    assert again.events["evt_7"].version == 2


def _statement(event_id: str, version: int, start: datetime, *, payment: float) -> Statement:
    return Statement(
        event_id=event_id,
        version=version,
        settled_at=start + timedelta(days=1),
        window_start=start,
        window_end=start + timedelta(hours=1),
        status="settled",
        committed_kw=2.0,
        delivered_kwh=2.0,
        paid_kwh=2.0,
        price=payment / 2,
        payment=payment,
        baseline="x_of_y",
    )
