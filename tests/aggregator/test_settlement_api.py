"""Settlement of a stored event through the REST API (real server, real SQLite, real telemetry)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from aggregator.records import AwardRecord, AwardStatus, EventRecord, EventStatus
from aggregator.store import Store
from jeisson.common.protocol import EventKind, Sample

from .conftest import RunningServer

EVENT_START = datetime(2026, 11, 18, 18, 0, tzinfo=UTC)  # a Wednesday
EVENT_END = EVENT_START + timedelta(hours=1)
INTERVAL = timedelta(minutes=15)
HISTORY = timedelta(days=20)


async def store_day_profile(
    store: Store, home_id: str, kw_at: object, start: datetime, end: datetime
) -> None:
    """Store one sample per 15-minute interval from ``start`` to ``end``."""
    samples = []
    ts = start
    while ts < end:
        samples.append(Sample(ts=ts + timedelta(minutes=7), power_kw=kw_at(ts)))  # type: ignore[operator]
        ts += INTERVAL
    for chunk in range(0, len(samples), 500):
        await store.save_telemetry(
            home_id, f"{home_id}-{chunk}", None, samples[chunk : chunk + 500]
        )


def award(home_id: str, status: AwardStatus, price: float, kw: float = 3.0) -> AwardRecord:
    return AwardRecord(
        award_id=f"awd_{home_id}",
        event_id="evt_settle",
        round=1,
        home_id=home_id,
        kw=kw,
        price=price,
        status=status,
        sent_at=EVENT_START - timedelta(minutes=30),
        load_kw={"wh": kw},
        acked_at=EVENT_START - timedelta(minutes=29) if status is AwardStatus.ACKED else None,
    )


@pytest.fixture
async def settled_event(server: RunningServer) -> dict[str, str]:
    """A completed event: one home curtailed 2.5 kW for an hour, one curtailed nothing."""
    store = server.store
    curtailing, _ = await server.add_home("curtailing")
    steady, _ = await server.add_home("steady")
    never_acked, _ = await server.add_home("never-acked")
    await store.insert_event(
        EventRecord(
            event_id="evt_settle",
            name="settle me",
            kind=EventKind.MARKET,
            status=EventStatus.COMPLETED,
            target_kw=5.0,
            price_cap=0.4,
            start=EVENT_START,
            end=EVENT_END,
            bid_window_s=30,
            restore_stagger_s=60,
            currency="EUR",
            created_at=EVENT_START - timedelta(hours=1),
            clearing_price=0.2,
            current_round=1,
            baseline_method="residential",
        )
    )
    await store.insert_awards(
        [
            award(curtailing, AwardStatus.ACKED, 0.2),
            award(steady, AwardStatus.ACKED, 0.2, kw=2.0),
            award(never_acked, AwardStatus.EXPIRED, 0.2),
        ]
    )
    day_start = datetime(2026, 11, 18, tzinfo=UTC)
    in_event = lambda ts: EVENT_START <= ts < EVENT_END  # noqa: E731
    await store_day_profile(
        store,
        curtailing,
        lambda ts: 0.5 if in_event(ts) else 3.0,
        day_start - HISTORY,
        day_start + timedelta(days=1),
    )
    await store_day_profile(
        store, steady, lambda _ts: 2.0, day_start - HISTORY, day_start + timedelta(days=1)
    )
    return {"curtailing": curtailing, "steady": steady, "never_acked": never_acked}


async def test_settlement_pays_delivered_energy_at_the_award_price(
    server: RunningServer, settled_event: dict[str, str]
) -> None:
    _, report = await server.request("GET", "/api/v1/events/evt_settle/settlement", expect=200)
    rows = {row["home_id"]: row for row in report["homes"]}

    assert set(rows) == {settled_event["curtailing"], settled_event["steady"]}
    curtailing = rows[settled_event["curtailing"]]
    assert curtailing["baseline_kwh"] == pytest.approx(3.0)
    assert curtailing["measured_kwh"] == pytest.approx(0.5)
    assert curtailing["delivered_kwh"] == pytest.approx(2.5)
    assert curtailing["payment"] == pytest.approx(0.5)
    assert curtailing["baseline_reason"].startswith("high-5-of-10 weekdays")
    steady = rows[settled_event["steady"]]
    assert steady["delivered_kwh"] == pytest.approx(0.0)
    assert steady["payment"] == pytest.approx(0.0)
    assert report["totals"]["delivered_kwh"] == pytest.approx(2.5)
    assert report["totals"]["payment"] == pytest.approx(0.5)
    assert report["baseline_method"] == "residential"


async def test_settlement_downloads_as_csv(
    server: RunningServer, http: aiohttp.ClientSession, settled_event: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {server.operator_token}"}
    url = server.url + "/api/v1/events/evt_settle/settlement?format=csv"
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        text = await response.text()
    table = list(csv.reader(io.StringIO(text)))
    header, *homes, totals = table
    assert "delivered_kwh" in header
    assert len(homes) == 2
    column = header.index("delivered_kwh")
    assert float(totals[column]) == pytest.approx(2.5)


async def test_baseline_method_can_be_chosen_per_request(
    server: RunningServer, settled_event: dict[str, str]
) -> None:
    _, report = await server.request(
        "GET", "/api/v1/events/evt_settle/settlement?baseline=pre_event_average", expect=200
    )
    assert report["baseline_method"] == "pre_event_average"
    rows = {row["home_id"]: row for row in report["homes"]}
    assert rows[settled_event["curtailing"]]["delivered_kwh"] == pytest.approx(2.5)
    status, body = await server.request(
        "GET", "/api/v1/events/evt_settle/settlement?baseline=guesswork"
    )
    assert status == 400
    assert "residential" in body["message"]


async def test_settlement_refuses_unknown_and_running_events(server: RunningServer) -> None:
    status, _ = await server.request("GET", "/api/v1/events/evt_nope/settlement")
    assert status == 404
    event = await server.create_event(target_kw=3.0)
    status, body = await server.request("GET", f"/api/v1/events/{event['id']}/settlement")
    assert status == 409
    assert body["error"] == "settlement_unavailable"
