"""Live delivery on a real server: each event is credited with its own loads' shed, and a held
load reported on for a sustained period is released and re-negotiated like an opt-out.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import aiohttp

from jeisson.client import HomeClient
from jeisson.common.protocol import (
    Award,
    BidStep,
    HeldAward,
    HomeEventStatus,
    Inventory,
    Offer,
    Sample,
    utc_now,
)
from tests.helpers import wait_for

from .common import (
    FAST,
    HomeFactory,
    RunningServer,
    bids,
    event_status,
    water_heater_and_ev,
)


async def test_a_batch_naming_one_event_credits_each_event_with_its_own_loads(
    server: RunningServer, make_home: HomeFactory
) -> None:
    # Event A (price cap 0.4) gets the water heater, event B (cap 0.5) the EV charger.
    def by_event(offer: Offer) -> list[BidStep]:
        load, kw = ("wh", 3.0) if offer.price_cap < 0.45 else ("ev", 7.0)
        return [BidStep(kw=kw, price=0.2, loads=[load])]

    home = await make_home(by_event)
    start = utc_now() + timedelta(seconds=2.5)
    window = {"start": start, "end": start + timedelta(seconds=20)}
    first = await server.create_event(target_kw=3.0, price_cap=0.4, **window)
    second = await server.create_event(target_kw=7.0, price_cap=0.5, **window)
    await event_status(server, first["id"], "active")
    await event_status(server, second["id"], "active")
    assert len(home.of_type(Award)) == 2

    # Both loads held off; the batch names event A but reports the whole home's 10 kW.
    await home.client.send_telemetry(
        [Sample(ts=utc_now(), power_kw=0.0, shed_kw=10.0, loads={"wh": 0.0, "ev": 0.0})],
        event_id=first["id"],
    )

    assert (await server.event(first["id"]))["delivered_kw"] == 3.0
    assert (await server.event(second["id"]))["delivered_kw"] == 7.0


async def test_a_held_load_seen_on_for_the_sustained_period_is_renegotiated(
    server: RunningServer, make_home: HomeFactory
) -> None:
    server.settings = replace(FAST, shortfall_grace_s=0.5, shortfall_sustained_s=1.0)
    await server.stop()
    await server.start()
    failing = await make_home(bids((3.0, 0.10, ["wh"])))
    spare = await make_home(bids((3.0, 0.30, ["wh"])))
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=30))
    await event_status(server, event["id"], "active")
    detail = await server.event(event["id"])
    assert [award["home_id"] for award in detail["awards"]] == [failing.home_id]

    # The water heater stays on (a relay that did not switch): reported every 0.3 s.
    async def renegotiated() -> bool:
        await failing.client.send_telemetry(
            [Sample(ts=utc_now(), power_kw=3.0, shed_kw=3.0, loads={"wh": 3.0})],
            event_id=event["id"],
        )
        current = await server.event(event["id"])
        return any(award["home_id"] == spare.home_id for award in current["awards"])

    await wait_for(renegotiated, timeout=15, poll=0.3, what="the shortfall re-negotiated")

    detail = await server.event(event["id"])
    released = next(award for award in detail["awards"] if award["home_id"] == failing.home_id)
    assert released["opted_out_loads"] == ["wh"]
    assert released["committed_kw"] == 0.0
    assert [item["round"] for item in detail["rounds"]] == [1, 2]
    assert detail["rounds"][1]["target_kw"] == 3.0


async def test_a_home_that_comes_back_still_holding_its_lost_award_counts_again(
    server: RunningServer, make_home: HomeFactory, http: aiohttp.ClientSession
) -> None:
    # The home's devices keep shedding on their own while it cannot reach the aggregator.
    away = await make_home(bids((3.0, 0.10, ["wh"]), (7.0, 0.15, ["ev"])))
    event = await server.create_event(target_kw=10.0, end=utc_now() + timedelta(seconds=30))
    await event_status(server, event["id"], "active")
    (award,) = away.of_type(Award)
    await away.client.close()

    async def lost() -> bool:
        detail = await server.event(event["id"])
        return detail["awards"][0]["status"] == "lost"

    await wait_for(lost, what="award lost after the grace period")
    assert (await server.event(event["id"]))["committed_kw"] == 0.0

    # Back, still holding the water heater (the homeowner switched the EV charger on meanwhile).
    held = HeldAward(
        event_id=event["id"], award_id=award.award_id, status=HomeEventStatus.ACTIVE, loads=["wh"]
    )
    back = HomeClient(
        server.url,
        away.token,
        session=http,
        software_version="test",
        inventory_provider=lambda: Inventory(loads=water_heater_and_ev()),
        held_awards_provider=lambda: [held],
    )
    task = asyncio.create_task(back.run())
    try:

        async def reinstated() -> bool:
            detail = await server.event(event["id"])
            return detail["awards"][0]["status"] == "acked"

        await wait_for(reinstated, what="the held award counted again")
        detail = await server.event(event["id"])
        assert detail["awards"][0]["opted_out_loads"] == ["ev"]
        assert detail["awards"][0]["committed_kw"] == 3.0
    finally:
        await back.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
