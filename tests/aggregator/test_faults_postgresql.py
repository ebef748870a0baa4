"""A real PostgreSQL stopped and started mid-negotiation (a cluster of the test's own).

Across a bid deadline the clearing is retried until the database is back, with every stored
bid; an award_ack sent during the outage is not acknowledged (the home keeps it and sends it
again, and it is stored once the database is back); a cancel during the outage answers 503 and
changes nothing, and works afterwards. The operator sees why meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from aggregator.records import AwardStatus, EventStatus, RoundStatus
from jeisson.common.errors import RequestRejected
from jeisson.common.protocol import Award, Cancel, Offer, utc_now
from tests.helpers import free_port, wait_for

from .common import FAST, HomeFactory, RunningServer, ScriptedHome, bids, raw_home
from .own_postgres import OwnPostgres

SETTINGS = replace(FAST, ack_timeout_s=30.0, drop_grace_s=30.0)
"""An award may wait for its ack through the whole outage."""


@pytest.fixture
async def own_pg() -> AsyncIterator[OwnPostgres]:
    cluster = await OwnPostgres.create()
    await cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped
            await cluster.stop()
        cluster.remove()


@pytest.fixture
async def server(
    own_pg: OwnPostgres, tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[RunningServer]:
    """The aggregator on the test's own PostgreSQL (make_home uses this one)."""
    running = RunningServer(
        db_path=tmp_path / "unused.db", port=free_port(), settings=SETTINGS, db_url=own_pg.url
    )
    running.session = http
    await running.start()
    yield running
    await running.stop()


async def store_failing_gauge(server: RunningServer, http: aiohttp.ClientSession) -> float:
    async with http.get(server.url + "/metrics") as response:
        text = await response.text()
    found = re.search(r"^jeisson_events_store_failing (\S+)$", text, re.MULTILINE)
    assert found is not None
    return float(found.group(1))


async def test_a_database_outage_mid_negotiation_loses_nothing_and_tells_the_truth(
    server: RunningServer,
    own_pg: OwnPostgres,
    make_home: HomeFactory,
    http: aiohttp.ClientSession,
) -> None:
    first = await make_home(bids((3.0, 0.10, ["wh"])), auto_ack=False)
    second = await make_home(bids((3.0, 0.20, ["wh"])), auto_ack=False)
    async with raw_home(server, http) as never_bids:  # so the round waits for its deadline
        await never_bids.handshake()
        now = utc_now()
        event = await server.create_event(
            target_kw=6.0,
            bid_window_s=3.0,
            start=now + timedelta(seconds=10),
            end=now + timedelta(seconds=60),
        )
        await outage_across_the_bid_deadline(server, own_pg, http, event["id"], [first, second])
    await outage_with_an_ack_and_a_cancel(server, own_pg, event["id"], first, second)

    stored = await server.store.get_event(event["id"])
    assert stored is not None
    assert stored.status is EventStatus.CANCELLED
    (round_one,) = await server.store.rounds_for(event["id"])
    assert round_one.status is RoundStatus.CLEARED
    assert round_one.bids == 2
    awards = {award.home_id: award for award in await server.store.awards_for(event["id"])}
    assert awards[first.home_id].status is AwardStatus.ACKED  # acknowledged once stored
    assert awards[first.home_id].acked_at is not None
    assert awards[second.home_id].status is AwardStatus.CANCELLED  # never acknowledged


async def outage_across_the_bid_deadline(
    server: RunningServer,
    own_pg: OwnPostgres,
    http: aiohttp.ClientSession,
    event_id: str,
    homes: list[ScriptedHome],
) -> None:
    """Bids stored, then the database is down over the deadline: clearing waits, then runs."""
    for home in homes:
        await wait_for(lambda home=home: bool(home.of_type(Offer)), what="offer")

    async def bids_stored() -> bool:
        return len(await server.store.bids_for(event_id, 1)) == len(homes)

    await wait_for(bids_stored, what="bids stored")
    deadline = homes[0].of_type(Offer)[0].bid_deadline
    await own_pg.stop()
    down_at = time.monotonic()

    async def retrying() -> bool:
        problem = (await server.event(event_id))["store_error"]
        return problem is not None and problem["retrying"] and problem["step"] == "clear"

    await wait_for(retrying, what="the clearing retried, and the operator told why")
    assert utc_now() > deadline
    detail = await server.event(event_id)
    assert detail["status"] == "negotiating"  # memory unchanged: nothing was stored
    assert await store_failing_gauge(server, http) == 1
    await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - down_at)))
    assert not any(home.of_type(Award) for home in homes)

    await own_pg.start()
    up_at = time.monotonic()
    problem = (await server.event(event_id))["store_error"]
    attempts = problem["attempts"] if problem is not None else "?"

    async def committed() -> bool:
        detail = await server.event(event_id)
        return detail["status"] == "committed" and detail["store_error"] is None

    await wait_for(committed, what="cleared once the database is back")
    for home in homes:
        await wait_for(lambda home=home: bool(home.of_type(Award)), what="award sent")
    assert (await server.event(event_id))["rounds"][0]["bids"] == len(homes)
    assert await store_failing_gauge(server, http) == 0
    print(  # the figures docs/reliability.md quotes (pytest -s)
        f"\ndatabase down {up_at - down_at:.1f} s across the deadline; clearing tried "
        f"{attempts} times meanwhile, stored {time.monotonic() - up_at:.2f} s after it was back"
    )


async def outage_with_an_ack_and_a_cancel(
    server: RunningServer,
    own_pg: OwnPostgres,
    event_id: str,
    acking: ScriptedHome,
    silent: ScriptedHome,
) -> None:
    """Down again: an award_ack is not acknowledged, a cancel changes nothing; both work after."""
    await own_pg.stop()
    with pytest.raises(RequestRejected, match="internal_error"):
        await acking.client.ack_award(acking.of_type(Award)[0])
    assert acking.client.queued_messages  # kept, and sent again
    detail = await server.event(event_id)
    assert {a["home_id"]: a["status"] for a in detail["awards"]}[acking.home_id] == "sent"
    status, refused = await server.request("POST", f"/api/v1/events/{event_id}/cancel")
    assert status == 503
    assert refused["error"] == "store_unavailable"
    assert (await server.event(event_id))["status"] == "committed"
    assert not acking.of_type(Cancel)
    assert not silent.of_type(Cancel)

    await own_pg.start()
    await wait_for(lambda: not acking.client.queued_messages, what="the ack re-sent and stored")
    _, cancelled = await server.request(
        "POST", f"/api/v1/events/{event_id}/cancel", {"reason": "test"}, expect=200
    )
    assert cancelled["status"] == "cancelled"
    for home in (acking, silent):
        await wait_for(lambda home=home: bool(home.of_type(Cancel)), what="cancel reaches home")
