"""Homes are untrusted: what one enrolled home says is bounded by its inventory, clock and quota.

Each attack an audit tried on a real aggregator, tried again here against a real server on
127.0.0.1 with a real SQLite store (and PostgreSQL where the storage differs): telemetry for an
event the home is not in, samples from the future and before enrolment, figures beyond the
home's loads, a 2 kW home committing 9,999 kW, and a flood of telemetry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aggregator.app_keys import MANAGER
from aggregator.home_limits import (
    CLOCK_SKEW,
    MAX_SAMPLE_AGE,
    RateLimits,
    TokenBucket,
    check_telemetry,
)
from aggregator.records import HomeRecord
from jeisson.client import HomeClient, enroll
from jeisson.common.errors import RequestRejected
from jeisson.common.protocol import (
    Award,
    ErrorCode,
    EventKind,
    Inventory,
    Load,
    LoadKind,
    ProtocolError,
    Sample,
    Telemetry,
    dump_message,
    utc_now,
)
from tests.helpers import free_port, wait_for

from .common import (
    FAST,
    HomeFactory,
    RunningServer,
    ScriptedHome,
    bids,
    event_status,
    raw_home,
)

HEATER = Load(load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=2.0)


def telemetry(*samples: Sample, event_id: str | None = None) -> Telemetry:
    return Telemetry(event_id=event_id, samples=list(samples))


# --- the bounds, as pure functions -------------------------------------------------------------


def test_a_sample_outside_the_homes_clock_enrolment_or_inventory_is_refused() -> None:
    now = utc_now()
    home = HomeRecord(
        home_id="h",
        name="h",
        created_at=now - timedelta(days=30),
        enrolled_at=now - timedelta(days=2),
        loads=(HEATER,),
    )
    fine = Sample(ts=now, power_kw=2.1, shed_kw=2.0, loads={"wh": 2.1})
    check_telemetry(telemetry(fine), home, now)  # measured a little above rated: fine

    refused = {
        "year 9999": (fine.model_copy(update={"ts": now.replace(year=9999)}), "in the future"),
        "beyond the skew": (
            fine.model_copy(update={"ts": now + CLOCK_SKEW + timedelta(seconds=1)}),
            "in the future",
        ),
        "before enrolment": (
            fine.model_copy(update={"ts": now - timedelta(days=14)}),
            "before",
        ),
        "shed beyond rated": (fine.model_copy(update={"shed_kw": 5_000.0}), "shed_kw"),
        "power beyond rated": (fine.model_copy(update={"power_kw": 9_999.0}), "power_kw"),
        "a load beyond rated": (fine.model_copy(update={"loads": {"wh": 50.0}}), "loads.wh"),
    }
    for case, (sample, text) in refused.items():
        with pytest.raises(ProtocolError) as info:
            check_telemetry(telemetry(fine, sample), home, now)
        assert info.value.code is ErrorCode.INVALID_MESSAGE, case
        assert text in info.value.message, case

    with pytest.raises(ProtocolError) as info:
        check_telemetry(telemetry(fine.model_copy(update={"loads": {"sauna": 1.0}})), home, now)
    assert info.value.code is ErrorCode.UNKNOWN_LOAD

    old_home = HomeRecord(
        home_id="h", name="h", created_at=now, enrolled_at=now - timedelta(days=90), loads=(HEATER,)
    )
    stale = fine.model_copy(update={"ts": now - MAX_SAMPLE_AGE - timedelta(hours=1)})
    with pytest.raises(ProtocolError):
        check_telemetry(telemetry(stale), old_home, now)


def test_a_token_bucket_refuses_past_its_burst_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=20.0, now=0.0)
    assert bucket.take(20, now=0.0) == 0.0
    assert bucket.take(1, now=0.0) == pytest.approx(0.1)  # nothing taken: wait 0.1 s
    assert bucket.take(5, now=0.5) == 0.0
    assert bucket.take(1, now=0.5) == pytest.approx(0.1)


# --- against a real server ---------------------------------------------------------------------


async def send_and_reply(home: Any, message: Telemetry) -> dict[str, Any]:
    await home.send(dump_message(message))
    while True:
        reply: dict[str, Any] = await home.receive()
        if reply.get("reply_to") == message.id:
            return reply


async def test_refused_samples_are_not_stored_and_the_session_goes_on(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with raw_home(server, http) as home:
        await home.handshake()  # inventory: water heater 3 kW, EV 7 kW
        now = utc_now()
        bad = [
            Sample(ts=now.replace(year=9999), power_kw=1.0),
            Sample(ts=now - timedelta(days=14), power_kw=1.0),
            Sample(ts=now, power_kw=1.0, shed_kw=5_000.0),
            Sample(ts=now, power_kw=1.0, loads={"someone-elses": 1.0}),
        ]
        for sample in bad:
            reply = await send_and_reply(home, telemetry(sample))
            assert reply["type"] == "error", sample
            assert reply["code"] in (ErrorCode.INVALID_MESSAGE, ErrorCode.UNKNOWN_LOAD)
        reply = await send_and_reply(home, telemetry(Sample(ts=now, power_kw=4.0, shed_kw=3.0)))
        assert reply["type"] == "ack"
    (home_record,) = await server.store.list_homes()
    assert await server.store.telemetry_count(home_record.home_id) == 1


async def test_telemetry_naming_an_event_the_home_is_not_in_counts_for_nothing(
    server: RunningServer, http: aiohttp.ClientSession, make_home: HomeFactory
) -> None:
    honest = await make_home(bids((3.0, 0.1, ["wh"])))
    event = await server.create_event(target_kw=3.0)
    await event_status(server, event["id"], "active")
    await honest.client.send_telemetry(
        [Sample(ts=utc_now(), power_kw=7.0, shed_kw=3.0)], event["id"]
    )
    await wait_for(
        lambda: _delivered(server, event["id"]) == pytest.approx(3.0),
        what="the honest home's shed counted",
    )

    async with raw_home(server, http) as outsider:
        await outsider.handshake()
        claim = telemetry(Sample(ts=utc_now(), power_kw=0.0, shed_kw=10.0), event_id=event["id"])
        assert (await send_and_reply(outsider, claim))["type"] == "ack"  # stored: it measured

    assert _delivered(server, event["id"]) == pytest.approx(3.0)
    shed = await server.store.event_shed(
        event["id"], utc_now() - timedelta(minutes=5), utc_now() + timedelta(minutes=5)
    )
    assert {row[0] for row in shed} == {honest.home_id}  # the outsider's row names no event


def _delivered(server: RunningServer, event_id: str) -> float:
    assert server.runner is not None
    manager = server.runner.app[MANAGER]
    state = manager.live(event_id)
    return 0.0 if state is None else manager.delivered_kw(state)


async def award_of(home: ScriptedHome) -> Award:
    await wait_for(lambda: bool(home.of_type(Award)), what=f"{home.home_id} awarded")
    return home.of_type(Award)[0]


async def test_a_home_with_one_2kw_load_cannot_commit_9999kw_to_a_direct_event(
    server: RunningServer, make_home: HomeFactory
) -> None:
    small = await make_home(loads=[HEATER], auto_ack=False)
    event = await server.create_event(kind=EventKind.DIRECT.value, target_kw=1.0)
    award = await award_of(small)
    await small.client.ack_award(award, loads=["wh", "ev"], kw=9_999.0)

    detail = await server.event(event["id"])
    assert detail["committed_kw"] == pytest.approx(2.0)


async def test_a_direct_event_awards_only_the_homes_its_target_needs(
    server: RunningServer, make_home: HomeFactory
) -> None:
    homes = [await make_home(auto_ack=False) for _ in range(3)]  # 10 kW each
    event = await server.create_event(kind=EventKind.DIRECT.value, target_kw=15.0)
    await wait_for(
        lambda: sum(bool(home.of_type(Award)) for home in homes) == 2, what="two homes awarded"
    )
    for home in homes:
        if home.of_type(Award):
            await home.client.ack_award(home.of_type(Award)[0], loads=["wh", "ev"], kw=10.0)
    detail = await server.event(event["id"])
    assert detail["committed_kw"] == pytest.approx(20.0)
    assert sum(bool(home.of_type(Award)) for home in homes) == 2


async def test_a_direct_event_awards_another_home_when_one_takes_on_less(
    server: RunningServer, make_home: HomeFactory
) -> None:
    homes = [await make_home(auto_ack=False) for _ in range(2)]
    event = await server.create_event(kind=EventKind.DIRECT.value, target_kw=8.0)
    await wait_for(lambda: sum(bool(home.of_type(Award)) for home in homes) == 1, what="awarded")
    first = next(home for home in homes if home.of_type(Award))
    second = next(home for home in homes if home is not first)
    await first.client.ack_award(first.of_type(Award)[0], loads=["wh"], kw=3.0)  # EV stays on
    award = await award_of(second)
    await second.client.ack_award(award, loads=["wh", "ev"], kw=10.0)
    detail = await server.event(event["id"])
    assert detail["committed_kw"] == pytest.approx(13.0)


@pytest.fixture
async def limited_server(
    tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[RunningServer]:
    running = RunningServer(
        db_path=tmp_path / "limited.db",
        port=free_port(),
        settings=FAST,
        home_limits=RateLimits(frames_per_s=20, frame_burst=10, samples_per_s=20, sample_burst=20),
    )
    running.session = http
    await running.start()
    yield running
    await running.stop()


async def test_a_flooding_home_is_rate_limited_and_nothing_valid_is_lost(
    limited_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    """10 batches of 10 samples at once against 20 samples/s: refused, re-sent, all stored."""
    server = limited_server
    home_id, code = await server.add_home("flood")
    enrolled = await enroll(http, server.url, code)
    inventory = Inventory(loads=[HEATER])
    client = HomeClient(
        server.url,
        enrolled.token,
        session=http,
        software_version="test",
        inventory_provider=lambda: inventory,
        backoff_base=0.1,
        backoff_max=0.5,
    )
    task = asyncio.create_task(client.run())
    try:
        await wait_for(lambda: client.connected, what="connected")
        start = utc_now()
        batches = [
            [Sample(ts=start + timedelta(milliseconds=10 * b + n), power_kw=1.0) for n in range(10)]
            for b in range(10)
        ]
        results = await asyncio.gather(
            *(client.send_telemetry(samples) for samples in batches), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, RequestRejected)]
        assert refused
        assert all(r.code is ErrorCode.RATE_LIMITED for r in refused)
        assert all(not isinstance(r, Exception) or isinstance(r, RequestRejected) for r in results)

        async def all_stored() -> bool:
            return await server.store.telemetry_count(home_id) == 100

        await wait_for(all_stored, timeout=30, what="every refused batch re-sent and stored")
    finally:
        await client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
