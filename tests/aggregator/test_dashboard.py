"""The dashboard over HTTP: the page and its assets, and the live stream of snapshots."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import update

from aggregator import dashboard, tables
from aggregator.live_feed import FeedSettings, LiveFeed
from jeisson.client import enroll
from jeisson.common.protocol import BidStep, Offer, Sample, utc_now
from tests.aggregator.common import HomeFactory, RunningServer
from tests.helpers import wait_for

STREAM = "/api/v1/stream"
JAVASCRIPT = {"text/javascript", "application/javascript"}


def bid_all(price: float) -> Any:
    """Bid every curtailable load of the standard inventory at one price."""

    def steps(_offer: Offer) -> list[BidStep]:
        return [
            BidStep(kw=3.0, price=price, loads=["wh"]),
            BidStep(kw=7.0, price=price, loads=["ev"]),
        ]

    return steps


async def sse_frames(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """Yield (event, data) for each Server-Sent Events frame of a response."""
    name = "message"
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].strip())


async def next_frame(frames: AsyncIterator[tuple[str, Any]], timeout: float = 5.0) -> Any:
    """Return the next frame, failing the test when none comes in time."""
    return await asyncio.wait_for(anext(frames), timeout)


async def snapshot_where(
    frames: AsyncIterator[tuple[str, Any]], predicate: Any, timeout: float = 15.0, what: str = ""
) -> dict[str, Any]:
    """Read snapshots until one satisfies ``predicate``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            pytest.fail(f"no snapshot with {what or predicate}")
        name, data = await next_frame(frames, remaining)
        if name == "snapshot" and predicate(data):
            return dict(data)


def open_stream(server: RunningServer, token: str | None = None) -> Any:
    """Open the live stream as the operator (or with another token)."""
    assert server.session is not None
    headers = {"Authorization": f"Bearer {token or server.operator_token}"}
    return server.session.get(server.url + STREAM, headers=headers)


# --- the page and its assets ------------------------------------------------------------------


async def test_page_is_served_with_a_strict_content_security_policy(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(server.url + "/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        html = await response.text()
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    for asset in ("/static/app.js", "/static/app.css", "/static/vendor/chart.umd.min.js"):
        assert asset in html
    assert "Operator token" in html
    assert "<script>" not in html  # no inline script: the policy would block it


@pytest.mark.parametrize(
    ("path", "content_type", "marker"),
    [
        ("/static/app.js", JAVASCRIPT, "./js/live.js"),
        ("/static/js/live.js", JAVASCRIPT, "/api/v1/stream"),
        ("/static/js/homes.js", JAVASCRIPT, "/api/v1/homes"),
        ("/static/app.css", {"text/css"}, ".chart-box"),
        ("/static/vendor/chart.umd.min.js", JAVASCRIPT, "Chart.js v4"),
        ("/static/vendor/chart.js.LICENSE.txt", {"text/plain"}, "MIT License"),
    ],
)
async def test_assets_are_served_with_their_content_types(
    server: RunningServer,
    http: aiohttp.ClientSession,
    path: str,
    content_type: set[str],
    marker: str,
) -> None:
    async with http.get(server.url + path) as response:
        assert response.status == 200
        assert response.content_type in content_type
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert marker in await response.text()


@pytest.mark.parametrize(
    "path", ["/static/missing.js", "/static/../dashboard.py", "/static/%2e%2e/api.py"]
)
async def test_unknown_or_escaping_asset_paths_are_not_served(
    server: RunningServer, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(server.url + path) as response:
        assert response.status in (403, 404)
        assert "def " not in await response.text()


async def test_the_page_needs_no_token_but_the_api_does(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(server.url + "/") as page:
        assert page.status == 200
    async with http.get(server.url + "/api/v1/events") as api:
        assert api.status == 401


# --- the stream: authentication -----------------------------------------------------------------


async def test_stream_refuses_a_missing_token(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(server.url + STREAM) as response:
        assert response.status == 401
        body = await response.json()
    assert body["error"] == "unauthorized"


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer "])
async def test_stream_refuses_a_wrong_token(
    server: RunningServer, http: aiohttp.ClientSession, header: str
) -> None:
    async with http.get(server.url + STREAM, headers={"Authorization": header}) as response:
        assert response.status == 401
        assert response.content_type == "application/json"


async def test_stream_refuses_a_home_token(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    _, code = await server.add_home("a home")
    enrolled = await enroll(http, server.url, code)
    async with open_stream(server, token=enrolled.token) as response:
        assert response.status == 401


async def test_stream_ends_when_the_operator_token_is_revoked(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "TOKEN_RECHECK_S", 0.0)
    async with open_stream(server) as response:
        assert response.status == 200
        frames = sse_frames(response)
        assert (await next_frame(frames))[0] == "history"
        async with server.store.engine.begin() as conn:
            await conn.execute(update(tables.operator_tokens).values(revoked_at=utc_now()))
        received = [item async for item in frames]  # ends: the server closed the stream
        assert len(received) <= 2  # at most a frame or two were on their way
    async with open_stream(server) as again:
        assert again.status == 401


# --- the stream: what it delivers -----------------------------------------------------------


async def test_stream_starts_with_history_then_a_snapshot_of_the_fleet(
    server: RunningServer, make_home: HomeFactory
) -> None:
    await make_home()
    await make_home(participating=False)
    async with open_stream(server) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-store"
        frames = sse_frames(response)
        name, history = await next_frame(frames)
        assert (name, history) == ("history", {})
        snapshot = await snapshot_where(
            frames, lambda data: data["homes_online"] == 2, what="both homes online"
        )
    # Only the participating home's curtailable loads (3 + 7 kW) are flexible.
    assert snapshot["flexible_kw"] == pytest.approx(10.0)
    assert snapshot["events"] == []
    assert utc_now() - timedelta(seconds=10) < datetime.fromisoformat(snapshot["ts"]) <= utc_now()


async def test_stream_sends_a_snapshot_every_second_without_changes(
    server: RunningServer,
) -> None:
    async with open_stream(server) as response:
        frames = sse_frames(response)
        await next_frame(frames)  # history
        stamps = [(await next_frame(frames))[1]["ts"] for _ in range(3)]
    assert len(set(stamps)) == 3
    assert stamps == sorted(stamps)


async def test_stream_follows_an_event_from_bids_to_delivery_and_cancel(
    server: RunningServer, make_home: HomeFactory
) -> None:
    homes = [await make_home(bid_all(0.10)), await make_home(bid_all(0.20))]
    async with open_stream(server) as response:
        frames = sse_frames(response)
        await next_frame(frames)  # history
        event = await server.create_event(target_kw=12.0, price_cap=0.5)
        event_id = event["id"]

        def running(data: dict[str, Any]) -> dict[str, Any] | None:
            return next((item for item in data["events"] if item["id"] == event_id), None)

        committed = await snapshot_where(
            frames,
            lambda data: (item := running(data)) is not None and item["committed_kw"] >= 12.0,
            what="the event committed",
        )
        live = running(committed)
        assert live is not None
        assert live["target_kw"] == 12.0
        assert live["rounds"][0]["round"] == 1
        assert live["rounds"][0]["status"] == "cleared"
        acked = [award for award in live["awards"] if award["status"] == "acked"]
        assert {award["home_id"] for award in acked} == {home.home_id for home in homes}
        assert live["awards_total"] == len(live["awards"])
        assert sum(award["committed_kw"] for award in acked) == pytest.approx(live["committed_kw"])
        assert live["shortfall_kw"] == 0.0
        # The REST view agrees with the stream.
        detail = await server.event(event_id)
        assert detail["committed_kw"] == pytest.approx(live["committed_kw"])
        assert detail["clearing_price"] == live["clearing_price"]

        # Once active, the homes' telemetry shows up as delivered kW.
        await snapshot_where(
            frames,
            lambda data: (item := running(data)) is not None and item["status"] == "active",
            what="the event active",
        )
        # Each home reports shedding what it holds (a home is credited no more than that).
        held = {award["home_id"]: award["committed_kw"] for award in acked}
        for home in homes:
            sample = Sample(ts=utc_now(), power_kw=0.5, shed_kw=held[home.home_id])
            await home.client.send_telemetry([sample], event_id=event_id)
        delivering = await snapshot_where(
            frames,
            lambda data: (item := running(data)) is not None and item["delivered_kw"] >= 12.0,
            what="delivered kW",
        )
        live = running(delivering)
        assert live is not None
        assert live["delivered_kw"] == pytest.approx(sum(held.values()))

        await server.request("POST", f"/api/v1/events/{event_id}/cancel", {}, expect=200)
        after = await snapshot_where(
            frames, lambda data: running(data) is None, what="the event gone"
        )
        assert after["events"] == []

    # A viewer joining mid-event gets the chart so far; after the event it is dropped.
    async with open_stream(server) as response:
        name, history = await next_frame(sse_frames(response))
        assert name == "history"
        assert event_id not in history


async def test_a_late_viewer_gets_the_chart_history_of_a_running_event(
    server: RunningServer, make_home: HomeFactory
) -> None:
    await make_home(bid_all(0.10))
    async with open_stream(server) as first:
        frames = sse_frames(first)
        await next_frame(frames)
        event = await server.create_event(target_kw=5.0, price_cap=0.5)
        seen: list[list[Any]] = []
        while len(seen) < 3:
            name, data = await next_frame(frames)
            seen.extend(
                [data["ts"], item["target_kw"], item["committed_kw"], item["delivered_kw"]]
                for item in data["events"]
            )
        async with open_stream(server) as late:
            name, history = await next_frame(sse_frames(late))
    assert name == "history"
    points = history[event["id"]]
    # Every snapshot the first viewer saw is a point of the chart, in order.
    assert points[: len(seen)] == seen
    assert all(point[1] == 5.0 for point in points)
    assert points[-1][2] >= 5.0


async def test_the_feed_stops_building_when_the_last_viewer_leaves(server: RunningServer) -> None:
    assert server.runner is not None
    feed = server.runner.app[dashboard.FEED]
    async with open_stream(server) as response:
        await next_frame(sse_frames(response))
        assert feed.viewers == 1
    await wait_for(lambda: feed.viewers == 0, what="the viewer gone")


# --- the live feed on its own -----------------------------------------------------------------


async def test_feed_publishes_changes_at_once_and_repeats_only_on_the_heartbeat() -> None:
    figures = {"committed_kw": 0.0}
    builds = 0

    async def build() -> dict[str, Any]:
        nonlocal builds
        builds += 1
        return {"ts": f"t{builds}", "homes_online": 1, "flexible_kw": 3.0, "events": [], **figures}

    feed = LiveFeed(build, FeedSettings(poll_s=0.01, heartbeat_s=3600))
    frames = feed.frames()
    assert (await anext(frames)).startswith(b"event: history\n")
    first = await asyncio.wait_for(anext(frames), 2)
    assert b'"committed_kw":0.0' in first
    pending = asyncio.ensure_future(anext(frames))
    await wait_for(lambda: builds >= 10, what="ten unchanged builds")
    assert not pending.done()  # unchanged snapshots are not repeated before the heartbeat
    figures["committed_kw"] = 4.5
    changed = await asyncio.wait_for(pending, 2)
    assert b'"committed_kw":4.5' in changed
    await feed.close()
    with pytest.raises(StopAsyncIteration):
        await anext(frames)
    assert feed.viewers == 0


async def test_feed_keeps_going_when_a_snapshot_fails() -> None:
    calls = 0

    async def build() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database briefly unavailable")
        return {"ts": "t", "homes_online": 0, "flexible_kw": 0.0, "events": []}

    feed = LiveFeed(build, FeedSettings(poll_s=0.01))
    frames = feed.frames()
    await anext(frames)
    assert b"event: snapshot" in await asyncio.wait_for(anext(frames), 2)
    assert calls >= 2
    await feed.close()
