"""Who sheds what among third-party VENs, and what their reports say they delivered."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aggregator.openadr.dispatch import (
    EventView,
    delivered_now,
    delivered_over,
    event_request,
    published_share,
    readings,
    shares,
)
from aggregator.openadr.schema import schema_errors
from aggregator.openadr.vtn_store import Participant
from aggregator.records import EventRecord, EventStatus
from jeisson.common.protocol import EventKind

T0 = datetime(2026, 12, 5, 18, 0, tzinfo=UTC)
VENS = [Participant("c1", "heat-pump", 2.0), Participant("c2", "battery", 6.0)]
MARKET = EventRecord(
    event_id="evt_1",
    name="peak",
    kind=EventKind.MARKET,
    status=EventStatus.COMMITTED,
    target_kw=10.0,
    price_cap=0.4,
    start=T0,
    end=T0 + timedelta(hours=1),
    bid_window_s=30,
    restore_stagger_s=60,
    currency="EUR",
    created_at=T0 - timedelta(minutes=5),
)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_direct_events_dispatch_every_ven_its_capacity() -> None:
    direct = replace(MARKET, kind=EventKind.DIRECT, status=EventStatus.NEGOTIATING)
    assert shares(EventView(direct, homes_kw=50.0, round_open=False), VENS) == {
        "c1": 2.0,
        "c2": 6.0,
    }


def test_vens_cover_a_market_shortfall_pro_rata_and_at_most_their_capacity() -> None:
    assert shares(EventView(MARKET, homes_kw=6.0, round_open=False), VENS) == {
        "c1": 1.0,
        "c2": 3.0,
    }
    assert shares(EventView(MARKET, homes_kw=0.0, round_open=False), VENS) == {
        "c1": 2.0,
        "c2": 6.0,
    }
    assert shares(EventView(MARKET, homes_kw=12.0, round_open=False), VENS) == {
        "c1": 0.0,
        "c2": 0.0,
    }


@pytest.mark.parametrize(
    ("status", "round_open"),
    [(EventStatus.NEGOTIATING, True), (EventStatus.DRAFT, False), (EventStatus.ACTIVE, True)],
)
def test_a_market_event_dispatches_nobody_before_its_negotiation_has_an_outcome(
    status: EventStatus, round_open: bool
) -> None:
    record = replace(MARKET, status=status)
    assert shares(EventView(record, homes_kw=0.0, round_open=round_open), VENS) is None


def test_the_published_event_is_a_valid_openadr_event_request() -> None:
    body = event_request("program_1", MARKET, VENS[1], 3.0)
    assert schema_errors("eventRequest", body) == []
    assert body["targets"] == ["battery"]
    assert body["intervalPeriod"] == {"start": "2026-12-05T18:00:00.000Z", "duration": "PT3600S"}
    assert published_share(body) == 3.0


def report(*intervals: dict[str, Any], period: dict[str, str] | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceName": "r", "intervals": list(intervals)}
    if period is not None:
        resource["intervalPeriod"] = period
    return {"resources": [resource]}


def usage(interval_id: int, kw: float, **period: str) -> dict[str, Any]:
    interval: dict[str, Any] = {
        "id": interval_id,
        "payloads": [{"type": "DELTA_USAGE", "values": [kw]}],
    }
    if period:
        interval["intervalPeriod"] = period
    return interval


EVENT = event_request("program_1", MARKET, VENS[0], 2.0) | {"id": "event_1"}


def test_a_report_without_periods_covers_the_published_event() -> None:
    (reading,) = readings([report(usage(0, -1.5))], EVENT)
    assert (reading.start, reading.end, reading.shed_kw) == (at(0), at(60), 1.5)


def test_report_intervals_follow_their_resource_period_and_corrections_replace() -> None:
    period = {"start": "2026-12-05T18:00:00Z", "duration": "PT15M"}
    first = report(usage(0, -1.0), usage(1, -2.0), period=period)
    correction = report(usage(0, -1.2), period=period)
    found = sorted(readings([first, correction], EVENT), key=lambda item: item.start)
    assert [(item.start, item.end, item.shed_kw) for item in found] == [
        (at(0), at(15), 1.2),
        (at(15), at(30), 2.0),
    ]


def test_only_reductions_count_as_delivered() -> None:
    assert readings([report(usage(0, 0.8))], EVENT)[0].shed_kw == 0.0


def test_what_a_ven_sheds_now_is_its_latest_reading_while_it_holds() -> None:
    period = {"start": "2026-12-05T18:00:00Z", "duration": "PT15M"}
    found = readings([report(usage(0, -1.0), usage(1, -2.0), period=period)], EVENT)
    assert delivered_now(found, at(10)) == 1.0
    assert delivered_now(found, at(20)) == 2.0
    assert delivered_now(found, at(44)) == 2.0  # held a span after its end
    assert delivered_now(found, at(46)) == 0.0


def test_delivery_over_a_span_is_time_weighted() -> None:
    period = {"start": "2026-12-05T18:00:00Z", "duration": "PT15M"}
    found = readings([report(usage(0, -1.0), usage(1, -3.0), period=period)], EVENT)
    assert delivered_over(found, at(0), at(30)) == pytest.approx(2.0)
    assert delivered_over(found, at(0), at(60)) == pytest.approx(1.0)
