"""Partial steps, load levels and power-up events end to end (schema 3), and old homes beside them.

A real aggregator on 127.0.0.1 with real home clients (schema 3) and raw homes speaking schema 1
frame by frame: what an older home sees must not change.
"""

from __future__ import annotations

import aiohttp
import pytest

from jeisson.common.protocol import (
    Award,
    BidStep,
    EventDirection,
    Offer,
)
from tests.helpers import wait_for

from .common import HomeFactory, RunningServer, event_status, raw_home


def charger_steps(_offer: Offer) -> list[BidStep]:
    """Bid the 7 kW charger down to 3 kW cheaply, the rest of the way only dearly."""
    return [
        BidStep(kw=4.0, price=0.10, loads=["ev"], level_kw=3.0),
        BidStep(kw=3.0, price=0.30, loads=["ev"]),
    ]


async def test_a_partial_step_awards_the_load_a_level(
    server: RunningServer, make_home: HomeFactory
) -> None:
    home = await make_home(charger_steps)
    event = await server.create_event(target_kw=3.5)

    await event_status(server, event["id"], "committed")
    await wait_for(lambda: bool(home.of_type(Award)), what="the award")

    (award,) = home.of_type(Award)
    assert award.loads == ["ev"]
    assert award.levels == {"ev": 3.0}
    assert award.kw == pytest.approx(4.0)
    assert award.direction is None
    detail = await server.event(event["id"])
    (view,) = detail["awards"]
    assert view["load_levels"] == {"ev": 3.0}
    assert view["committed_kw"] == pytest.approx(4.0)
    assert detail["clearing_price"] == pytest.approx(0.10)


async def test_a_load_s_later_step_takes_it_the_rest_of_the_way(
    server: RunningServer, make_home: HomeFactory
) -> None:
    home = await make_home(charger_steps)
    event = await server.create_event(target_kw=6.0)

    await event_status(server, event["id"], "committed")
    await wait_for(lambda: bool(home.of_type(Award)), what="the award")

    (award,) = home.of_type(Award)
    assert award.loads == ["ev"]
    assert award.levels is None  # its whole step was accepted too: off
    assert award.kw == pytest.approx(7.0)


async def test_a_power_up_event_is_offered_only_to_homes_that_speak_schema_3(
    server: RunningServer, make_home: HomeFactory, http: aiohttp.ClientSession
) -> None:
    async with raw_home(server, http) as old:
        await old.handshake(schema_version=1)
        new = await make_home(
            lambda offer: (
                [BidStep(kw=4.0, price=0.05, loads=["ev"], level_kw=7.0)]
                if offer.is_power_up
                else []
            )
        )
        event = await server.create_event(target_kw=4.0, direction="up")

        await event_status(server, event["id"], "committed")
        await wait_for(lambda: bool(new.of_type(Award)), what="the award")

        (offer,) = new.of_type(Offer)
        assert offer.direction is EventDirection.UP
        (award,) = new.of_type(Award)
        assert award.is_power_up
        assert award.levels == {"ev": 7.0}
        detail = await server.event(event["id"])
        assert detail["direction"] == "up"
        assert {award["home_id"] for award in detail["awards"]} == {new.home_id}
        # The schema 1 home was never offered it (it would have read a call to shed).
        await old.send(
            {
                "type": "telemetry",
                "id": "t-1",
                "samples": [{"ts": offer.window_start.isoformat(), "power_kw": 1.0}],
            }
        )
        assert (await old.receive())["type"] == "ack"


async def test_a_schema_1_home_negotiates_with_frames_it_knows(
    server: RunningServer, make_home: HomeFactory, http: aiohttp.ClientSession
) -> None:
    async with raw_home(server, http) as old:
        await old.handshake(schema_version=1)
        newer = await make_home(charger_steps)
        event = await server.create_event(target_kw=6.0)

        offer = await old.receive_type("offer")
        assert set(offer) == {
            "type",
            "id",
            "event_id",
            "round",
            "kind",
            "window_start",
            "window_end",
            "price_cap",
            "bid_deadline",
            "currency",
        }
        await old.send(
            {
                "type": "bid",
                "id": "bid-old",
                "reply_to": offer["id"],
                "event_id": event["id"],
                "round": 1,
                "steps": [{"kw": 3.0, "price": 0.05, "loads": ["wh"]}],
            }
        )
        assert (await old.receive())["type"] == "ack"
        award = await old.receive_type("award")
        assert "levels" not in award
        assert "direction" not in award
        assert award["loads"] == ["wh"]
        await old.send(
            {
                "type": "award_ack",
                "id": "ack-old",
                "reply_to": award["id"],
                "event_id": event["id"],
                "award_id": award["award_id"],
            }
        )
        assert (await old.receive())["type"] == "ack"

        await event_status(server, event["id"], "committed")
        await wait_for(lambda: bool(newer.of_type(Award)), what="the newer home's award")
        (newer_award,) = newer.of_type(Award)
        assert newer_award.levels == {"ev": 3.0}
        detail = await server.event(event["id"])
        assert detail["committed_kw"] == pytest.approx(7.0)
        assert (await old.receive_type("event_end", timeout=15))["event_id"] == event["id"]


async def test_a_partial_step_above_the_rating_or_the_wrong_way_is_refused(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with raw_home(server, http) as home:
        await home.handshake()
        event = await server.create_event(target_kw=5.0, bid_window_s=5.0)
        offer = await home.receive_type("offer")

        def bid(message_id: str, steps: list[dict[str, object]]) -> dict[str, object]:
            return {
                "type": "bid",
                "id": message_id,
                "reply_to": offer["id"],
                "event_id": event["id"],
                "round": 1,
                "steps": steps,
            }

        await home.send(bid("too-high", [{"kw": 1, "price": 0.1, "loads": ["ev"], "level_kw": 9}]))
        refused = await home.receive()
        assert (refused["type"], refused["code"]) == ("error", "invalid_message")
        assert "rated" in refused["message"]
        await home.send(
            bid(
                "rising",
                [
                    {"kw": 1, "price": 0.1, "loads": ["ev"], "level_kw": 2},
                    {"kw": 1, "price": 0.2, "loads": ["ev"], "level_kw": 4},
                ],
            )
        )
        refused = await home.receive()
        assert (refused["type"], refused["code"]) == ("error", "invalid_message")
        assert "fall" in refused["message"]
        await home.send(
            bid(
                "good",
                [
                    {"kw": 3, "price": 0.1, "loads": ["ev"], "level_kw": 4},
                    {"kw": 2, "price": 0.2, "loads": ["ev"], "level_kw": 2},
                ],
            )
        )
        assert (await home.receive())["type"] == "ack"
