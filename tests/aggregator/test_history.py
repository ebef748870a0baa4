"""The dashboard's history from the server: paged homes, when homes were seen, the fleet over time,
an event's chart, activity, bid curves and homes — real server, real SQLite, real home clients.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert, select

from aggregator import tables
from aggregator.history import tables as history_tables
from aggregator.history.recorder import HistorySettings
from jeisson.common.protocol import BidStep, Load, LoadKind, Offer, Sample, utc_now
from tests.helpers import free_port, wait_for

from .common import FAST, HomeFactory, RunningServer

FAST_HISTORY = HistorySettings(poll_s=0.1, event_every_s=0.3, fleet_every_s=0.3)
SECOND = timedelta(seconds=1)
LOADS = [
    Load(load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=3.0),
    Load(load_id="ev", name="EV charger", kind=LoadKind.EV_CHARGER, rated_kw=7.0),
]


@pytest.fixture
async def server(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[RunningServer]:
    """Yield a started aggregator whose history is sampled every few tenths of a second."""
    running = RunningServer(
        db_path=tmp_path / "aggregator.db", port=free_port(), settings=FAST, history=FAST_HISTORY
    )
    running.session = http
    await running.start()
    yield running
    await running.stop()


def bids(*steps: tuple[float, float, list[str]]) -> Callable[[Offer], list[BidStep]]:
    """Return a bid function answering every first-round offer with the same steps."""
    return lambda offer: (
        [BidStep(kw=kw, price=price, loads=loads) for kw, price, loads in steps]
        if offer.round == 1
        else []
    )


async def get(server: RunningServer, path: str, expect: int = 200) -> Any:
    """GET an operator route and return its JSON."""
    _, body = await server.request("GET", path, expect=expect)
    return body


async def event_reaches(server: RunningServer, event_id: str, status: str) -> None:
    """Wait until the event reaches ``status``."""

    async def reached() -> bool:
        return (await server.event(event_id))["status"] == status

    await wait_for(reached, timeout=20, what=f"event {status}")


def moment(text: str) -> datetime:
    """Parse an ISO time from an answer."""
    return datetime.fromisoformat(text)


# --- homes: search, filters, order, pages ----------------------------------------------------


async def test_homes_are_searched_filtered_sorted_and_paged(
    server: RunningServer, make_home: HomeFactory
) -> None:
    for number in range(12):
        await server.add_home(f"Casa {number:02d}")
    online = [await make_home(loads=LOADS), await make_home(loads=LOADS[:1])]

    everything = await get(server, "/api/v1/homes")
    assert everything["total"] == 14
    names = [home["name"] for home in everything["homes"]]
    assert names == sorted(names, key=str.casefold)

    found = await get(server, "/api/v1/homes?q=CASA%201")
    assert [home["name"] for home in found["homes"]] == ["Casa 10", "Casa 11"]

    connected = await get(server, "/api/v1/homes?online=true")
    assert {home["home_id"] for home in connected["homes"]} == {home.home_id for home in online}
    for home in connected["homes"]:
        assert utc_now() - moment(home["last_seen_at"]) < 5 * SECOND

    biggest = await get(server, "/api/v1/homes?sort=-flexible_kw&limit=1")
    assert biggest["total"] == 14
    assert [home["home_id"] for home in biggest["homes"]] == [online[0].home_id]
    assert biggest["homes"][0]["flexible_kw"] == 10.0

    last_page = await get(server, "/api/v1/homes?limit=5&offset=10")
    assert [home["name"] for home in last_page["homes"]] == names[10:]
    assert (last_page["offset"], last_page["limit"], last_page["total"]) == (10, 5, 14)

    offline_casas = await get(server, "/api/v1/homes?online=false&q=casa&participating=true")
    assert offline_casas["total"] == 12


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "sort=cheapest", "online=maybe", "offset=-1", "colour=red"]
)
async def test_bad_home_queries_are_refused_with_a_reason(
    server: RunningServer, query: str
) -> None:
    body = await get(server, f"/api/v1/homes?{query}", expect=400)
    assert body["error"] == "invalid_request"
    assert query.split("=", maxsplit=1)[0] in body["message"]


async def test_thousands_of_homes_are_read_in_chunks(server: RunningServer) -> None:
    created = utc_now()
    rows = [
        {
            "home_id": f"home_{number:016x}",
            "name": f"Flat {number:04d}",
            "created_at": created + timedelta(milliseconds=number),
            "loads": [LOADS[0].model_dump(mode="json")] if number % 2 else [],
            "participating": number % 3 != 0,
        }
        for number in range(2500)
    ]
    async with server.store.engine.begin() as conn:
        await conn.execute(insert(tables.homes), rows)

    page = await get(server, "/api/v1/homes?sort=-created&limit=3")
    assert page["total"] == 2500
    assert [home["name"] for home in page["homes"]] == ["Flat 2499", "Flat 2498", "Flat 2497"]
    one = await get(server, "/api/v1/homes?q=flat%202401")
    assert [home["flexible_kw"] for home in one["homes"]] == [3.0]
    not_taking_part = await get(server, "/api/v1/homes?participating=false&limit=1")
    assert not_taking_part["total"] == len(range(0, 2500, 3))


async def store_event(
    server: RunningServer,
    event_id: str,
    status: str,
    awards: list[tuple[str, str, dict[str, float], list[str]]],
) -> None:
    """Store an event and its awards: (home id, award status, kW by load, loads opted out)."""
    start = utc_now() - timedelta(days=1)
    async with server.store.engine.begin() as conn:
        await conn.execute(
            insert(tables.events).values(
                event_id=event_id,
                name=event_id,
                kind="market",
                status=status,
                target_kw=10.0,
                price_cap=0.4,
                start=start,
                end=start + timedelta(hours=1),
                bid_window_s=30.0,
                restore_stagger_s=60.0,
                currency="EUR",
                created_at=start - timedelta(hours=1),
                current_round=1,
            )
        )
        await conn.execute(
            insert(tables.awards),
            [
                {
                    "award_id": f"awd_{event_id}_{home_id}",
                    "event_id": event_id,
                    "round": 1,
                    "home_id": home_id,
                    "kw": sum(load_kw.values()),
                    "price": 0.2,
                    "status": award_status,
                    "sent_at": start - timedelta(minutes=30),
                    "load_kw": load_kw,
                    "opted_out_loads": opted_out,
                }
                for home_id, award_status, load_kw, opted_out in awards
            ],
        )


async def test_reliability_is_the_share_of_awarded_kw_a_home_kept(server: RunningServer) -> None:
    kept, halfway, dropped, spared, new = [
        (await server.add_home(name))[0] for name in ("kept", "halfway", "dropped", "spared", "new")
    ]
    both = {"wh": 3.0, "ev": 7.0}
    await store_event(
        server,
        "evt_done",
        "completed",
        [
            (kept, "acked", {"wh": 3.0}, []),
            (halfway, "acked", both, ["ev"]),  # kept the water heater's 3 of 10 kW
            (dropped, "lost", both, []),
        ],
    )
    await store_event(server, "evt_called_off", "cancelled", [(spared, "cancelled", both, [])])
    await store_event(server, "evt_running", "active", [(new, "acked", both, [])])

    page = await get(server, "/api/v1/homes?sort=reliability")
    shares = {home["name"]: home["reliability"] for home in page["homes"]}
    assert shares == {"dropped": 0.0, "halfway": 0.3, "kept": 1.0, "spared": None, "new": None}
    assert [home["name"] for home in page["homes"]][:3] == ["dropped", "halfway", "kept"]
    assert {home["name"]: home["finished_awards"] for home in page["homes"]}["kept"] == 1
    most = await get(server, "/api/v1/homes?sort=-reliability&limit=1")
    assert [home["name"] for home in most["homes"]] == ["kept"]
    low = await get(server, "/api/v1/homes?max_reliability=0.5")
    assert {home["name"] for home in low["homes"]} == {"dropped", "halfway"}
    high = await get(server, "/api/v1/homes?min_reliability=0.5")
    assert {home["name"] for home in high["homes"]} == {"kept"}


async def test_last_seen_is_when_a_connected_home_left(
    server: RunningServer, make_home: HomeFactory
) -> None:
    home = await make_home(loads=LOADS)
    stored = await server.store.get_home(home.home_id)
    assert stored is not None
    assert stored.last_seen_at is not None
    hello = stored.last_seen_at

    seen = (await get(server, "/api/v1/homes?online=true"))["homes"][0]["last_seen_at"]
    assert moment(seen) > hello  # a connected home is seen now, not at its hello

    await wait_for(lambda: utc_now() - hello > 1.5 * SECOND, what="time to pass")
    await home.client.close()
    left = utc_now()

    async def recorded() -> bool:
        home_row = await server.store.get_home(home.home_id)
        return (
            home_row is not None
            and home_row.last_seen_at is not None
            and (home_row.last_seen_at > hello + SECOND)
        )

    await wait_for(recorded, what="last_seen_at stored when the home left")
    offline = (await get(server, "/api/v1/homes?online=false"))["homes"][0]
    assert abs(moment(offline["last_seen_at"]) - left) < SECOND


# --- the fleet over time -----------------------------------------------------------------------


async def test_fleet_is_sampled_over_time_with_events_per_day(
    server: RunningServer, make_home: HomeFactory
) -> None:
    await server.add_home("never connected")
    await make_home(loads=LOADS)
    await make_home(loads=LOADS)
    await server.create_event(target_kw=4.0)

    async def sampled_online() -> bool:
        async with server.store.engine.connect() as conn:
            rows = (await conn.execute(select(history_tables.fleet_samples))).all()
        return any(row.homes_online == 2 for row in rows)

    await wait_for(sampled_online, what="a fleet sample with both homes online")
    now = await get(server, "/api/v1/fleet")
    assert (now["homes_total"], now["homes_enrolled"], now["homes_online"]) == (3, 2, 2)
    assert now["homes_participating"] == 2
    assert now["flexible_kw"] == 20.0
    assert now["events_running"] == 1

    history = await get(server, "/api/v1/fleet/history")
    assert len(history["points"]) >= 2
    stored = [point for point in history["points"][:-1] if point["homes_online"] == 2]
    assert stored
    assert all(moment(point["ts"]) <= moment(history["until"]) for point in stored)
    assert history["points"][-1]["flexible_kw"] == 20.0  # the live point
    (today,) = history["events_per_day"]
    assert today["day"] == utc_now().date().isoformat()
    assert today["total"] == 1

    later = (utc_now() + timedelta(days=2)).isoformat().replace("+00:00", "Z")
    refused = await get(server, f"/api/v1/fleet/history?since={later}", expect=400)
    assert refused["message"] == "since must be before until"
    unzoned = await get(server, "/api/v1/fleet/history?since=2026-01-01T00:00:00", expect=400)
    assert "since" in unzoned["message"]


# --- an event's story --------------------------------------------------------------------------


async def test_event_chart_and_activity_come_from_stored_records(
    server: RunningServer, make_home: HomeFactory
) -> None:
    cheap = await make_home(bids((3.0, 0.05, ["wh"])), loads=LOADS)
    dear = await make_home(bids((3.0, 0.10, ["wh"])), loads=LOADS)
    event = await server.create_event(target_kw=5.0)
    await event_reaches(server, event["id"], "active")
    sample = Sample(ts=utc_now(), power_kw=0.5, shed_kw=3.0)
    await cheap.client.send_telemetry([sample], event_id=event["id"])
    await event_reaches(server, event["id"], "completed")

    async def final_sample() -> bool:
        story = await get(server, f"/api/v1/events/{event['id']}/history")
        return story["points"][-1]["status"] == "completed"

    await wait_for(final_sample, what="the final status sampled")
    # The story survives a restart: it is stored, not kept by a browser tab or in memory.
    await server.stop()
    await server.start()
    story = await get(server, f"/api/v1/events/{event['id']}/history")

    statuses = list(dict.fromkeys(point["status"] for point in story["points"]))
    # Statuses are sampled every poll: a negotiation cleared within one (every bid in at once)
    # may show no "negotiating" sample; the round's own stored times tell that part below.
    assert [status for status in statuses if status != "negotiating"] == [
        "committed",
        "active",
        "completed",
    ]
    assert max(point["delivered_kw"] for point in story["points"]) == 3.0
    assert {point["target_kw"] for point in story["points"]} == {5.0}

    (stored_round,) = await server.store.rounds_for(event["id"])
    by_text = {item["text"]: item for item in story["activity"]}
    cleared = by_text["Round 1 cleared: 2 bids, 6.0 kW accepted at 0.100 EUR/kWh"]
    assert moment(cleared["ts"]) == stored_round.cleared_at
    assert moment(by_text["Round 1 opened: 5.0 kW asked of 2 homes"]["ts"]) == (
        stored_round.opened_at
    )
    awards = {award.home_id: award for award in await server.store.awards_for(event["id"])}
    for home in (cheap, dear):
        item = by_text[f"home-{[cheap, dear].index(home)} accepted its award (3.0 kW)"]
        assert item["home_id"] == home.home_id
        assert moment(item["ts"]) == awards[home.home_id].acked_at
    assert "Event completed" in by_text
    times = [moment(item["ts"]) for item in story["activity"]]
    assert times == sorted(times, reverse=True)
    assert story["activity_total"] == len(story["activity"])


async def test_round_bid_curve_is_in_merit_order_with_the_clearing_price(
    server: RunningServer, make_home: HomeFactory
) -> None:
    middle = await make_home(bids((2.0, 0.10, ["wh"])), loads=LOADS)
    cheapest = await make_home(bids((3.0, 0.05, ["wh"])), loads=LOADS)
    dearest = await make_home(bids((7.0, 0.30, ["ev"])), loads=LOADS)
    event = await server.create_event(target_kw=4.0)
    await event_reaches(server, event["id"], "committed")

    curve = await get(server, f"/api/v1/events/{event['id']}/rounds/1/bids")
    steps = curve["steps"]
    assert [step["home_id"] for step in steps] == [
        cheapest.home_id,
        middle.home_id,
        dearest.home_id,
    ]
    assert [step["price"] for step in steps] == [0.05, 0.10, 0.30]
    assert [step["cumulative_kw"] for step in steps] == [3.0, 5.0, 12.0]
    assert [step["accepted"] for step in steps] == [True, True, False]
    assert steps[2]["loads"] == [{"load_id": "ev", "name": "EV charger", "kw": None}]
    assert steps[0]["home_name"] == "home-1"
    assert curve["clearing_price"] == 0.10
    assert (curve["target_kw"], curve["accepted_kw"], curve["offered_kw"]) == (4.0, 5.0, 12.0)
    await get(server, f"/api/v1/events/{event['id']}/rounds/7/bids", expect=404)
    await get(server, f"/api/v1/events/{event['id']}/rounds/x/bids", expect=400)
    await get(server, "/api/v1/events/evt_none/rounds/1/bids", expect=404)


async def test_event_homes_compare_committed_and_delivered_kw(
    server: RunningServer, make_home: HomeFactory
) -> None:
    delivering = await make_home(bids((3.0, 0.05, ["wh"])), loads=LOADS)
    silent = await make_home(bids((7.0, 0.10, ["ev"])), loads=LOADS)
    event = await server.create_event(target_kw=9.0)
    await event_reaches(server, event["id"], "active")
    now = utc_now()
    samples = [
        Sample(ts=now, power_kw=0.0, shed_kw=3.0),
        Sample(ts=now + 0.2 * SECOND, power_kw=1.0, shed_kw=2.0),
    ]
    await delivering.client.send_telemetry(samples, event_id=event["id"])

    homes = await get(server, f"/api/v1/events/{event['id']}/homes")
    assert homes["total"] == 2
    assert homes["committed_kw"] == 10.0
    assert homes["settlement_url"] == f"/api/v1/events/{event['id']}/settlement"
    first, second = homes["homes"]
    assert first["home_id"] == silent.home_id  # the most committed first
    assert first["committed_kw"] == 7.0
    assert first["delivered_kw"] is None
    assert first["loads"] == [{"load_id": "ev", "name": "EV charger", "kw": 7.0}]
    assert second["home_id"] == delivering.home_id
    assert (second["delivered_kw"], second["last_delivered_kw"]) == (2.5, 2.0)
    assert second["connected"] is True
    assert second["status"] == "acked"
    page = await get(server, f"/api/v1/events/{event['id']}/homes?offset=1&limit=1")
    assert [home["home_id"] for home in page["homes"]] == [delivering.home_id]


async def test_live_snapshots_name_awarded_homes_and_loads(
    server: RunningServer, make_home: HomeFactory, http: aiohttp.ClientSession
) -> None:
    home = await make_home(bids((3.0, 0.05, ["wh"])), loads=LOADS)
    event = await server.create_event(target_kw=2.0)
    await event_reaches(server, event["id"], "committed")
    headers = {"Authorization": f"Bearer {server.operator_token}"}
    async with http.get(server.url + "/api/v1/stream", headers=headers) as response:
        async for line in response.content:
            if line.startswith(b"data:") and b'"awards":[{' in line:
                snapshot = json.loads(line[5:])
                break
    (award,) = snapshot["events"][0]["awards"]
    assert award["home_id"] == home.home_id
    assert award["home_name"] == "home-0"
    assert award["load_names"] == ["Water heater"]


async def test_openapi_describes_the_history_answers(server: RunningServer) -> None:
    document = await get(server, "/api/v1/openapi.json")
    schemas = document["components"]["schemas"]
    for path, name in [
        ("/api/v1/homes", "HomesPage"),
        ("/api/v1/fleet", "FleetNow"),
        ("/api/v1/fleet/history", "FleetHistory"),
        ("/api/v1/events/{event_id}/history", "EventHistory"),
        ("/api/v1/events/{event_id}/rounds/{round}/bids", "RoundBids"),
        ("/api/v1/events/{event_id}/homes", "EventHomes"),
    ]:
        operation = document["paths"][path]["get"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{name}"}
        assert operation["security"]

    def refs(node: Any) -> set[str]:
        if isinstance(node, dict):
            found = {node["$ref"]} if "$ref" in node else set()
            return found.union(*(refs(value) for value in node.values()))
        if isinstance(node, list):
            return set().union(*(refs(item) for item in node))
        return set()

    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    homes = document["paths"]["/api/v1/homes"]["get"]
    assert {item["name"] for item in homes["parameters"]} >= {"q", "online", "sort", "limit"}
