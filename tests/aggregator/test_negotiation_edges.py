"""Less common paths of the negotiation: declines, late acks, repeats, reconnects."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from jeisson.client import enroll
from jeisson.common.errors import RequestRejected
from jeisson.common.protocol import (
    SCHEMA_VERSION,
    Award,
    AwardAck,
    Bid,
    BidStep,
    Cancel,
    ErrorCode,
    HeldAward,
    HomeEventStatus,
    HomeHello,
    Inventory,
    OptOutReason,
    dump_message,
    utc_now,
)
from tests.helpers import wait_for

from .common import HomeFactory, RunningServer, bids, event_status, raw_home, water_heater_and_ev


async def test_declined_award_is_renegotiated(
    server: RunningServer, make_home: HomeFactory
) -> None:
    decliner = await make_home(bids((3.0, 0.10, ["wh"])), auto_ack=False)
    backup = await make_home(bids((3.0, 0.30, ["wh"])))
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=12))
    await wait_for(lambda: bool(decliner.of_type(Award)), what="award")

    await decliner.client.ack_award(decliner.of_type(Award)[0], accepted=False)

    await wait_for(lambda: bool(backup.of_type(Award)), what="award to the backup home")
    detail = await server.event(event["id"])
    statuses = {a["home_id"]: a["status"] for a in detail["awards"]}
    assert statuses[decliner.home_id] == "declined"
    # A repeated answer changes nothing.
    await decliner.client.ack_award(decliner.of_type(Award)[0], accepted=False)
    assert len((await server.event(event["id"]))["awards"]) == 2


async def test_late_or_unknown_award_acks_are_refused(
    server: RunningServer, make_home: HomeFactory
) -> None:
    late = await make_home(bids((3.0, 0.10, ["wh"])), auto_ack=False)
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=12))
    await wait_for(lambda: bool(late.of_type(Award)), what="award")
    award = late.of_type(Award)[0]

    async def expired() -> bool:
        detail = await server.event(event["id"])
        return detail["awards"][0]["status"] == "expired"

    await wait_for(expired, what="award expiry")
    with pytest.raises(RequestRejected) as refused:
        await late.client.ack_award(award)
    assert refused.value.code is ErrorCode.INVALID_STATE

    forged = award.model_copy(update={"award_id": "awd_forged"})
    with pytest.raises(RequestRejected) as unknown:
        await late.client.ack_award(forged)
    assert unknown.value.code is ErrorCode.UNKNOWN_AWARD


async def test_repeated_opt_out_is_harmless(server: RunningServer, make_home: HomeFactory) -> None:
    home = await make_home(bids((3.0, 0.10, ["wh"])))
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=12))
    await event_status(server, event["id"], "active")

    await home.client.opt_out(event["id"], load_id="wh", reason=OptOutReason.OVERRIDE)
    await home.client.opt_out(event["id"], load_id="wh", reason=OptOutReason.OVERRIDE)
    await home.client.opt_out(event["id"])
    await home.client.opt_out(event["id"])

    detail = await server.event(event["id"])
    assert [a["status"] for a in detail["awards"]] == ["opted_out"]
    with pytest.raises(RequestRejected) as unknown:
        await home.client.opt_out(event["id"], load_id="sauna")
    assert unknown.value.code is ErrorCode.UNKNOWN_LOAD


async def test_cancel_withdraws_unacknowledged_awards(
    server: RunningServer, make_home: HomeFactory
) -> None:
    home = await make_home(bids((3.0, 0.10, ["wh"])), auto_ack=False)
    event = await server.create_event(target_kw=3.0)
    await wait_for(lambda: bool(home.of_type(Award)), what="award")

    await server.request("POST", f"/api/v1/events/{event['id']}/cancel", expect=200)

    detail = await server.event(event["id"])
    assert detail["awards"][0]["status"] == "cancelled"
    await wait_for(lambda: bool(home.of_type(Cancel)), what="cancel")


async def test_unacknowledged_award_is_sent_again_after_a_reconnect(
    server: RunningServer, make_home: HomeFactory
) -> None:
    home = await make_home(bids((3.0, 0.10, ["wh"])), auto_ack=False)
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=12))
    await wait_for(lambda: bool(home.of_type(Award)), what="award")
    first = home.of_type(Award)[0]

    await server.stop()
    await server.start()
    await wait_for(lambda: home.client.connected, what="reconnect")

    # The client de-duplicates by message id, so the resend is the same award, not a new one.
    detail = await server.event(event["id"])
    assert detail["awards"][0]["status"] == "sent"
    await home.client.ack_award(first)
    detail = await server.event(event["id"])
    assert detail["awards"][0]["status"] == "acked"


async def test_home_holding_an_award_of_an_ended_event_is_told_to_restore(
    server: RunningServer, http: aiohttp.ClientSession, make_home: HomeFactory
) -> None:
    home = await make_home(bids((3.0, 0.10, ["wh"])))
    event = await server.create_event(target_kw=3.0)
    await wait_for(lambda: bool(home.of_type(Award)), what="award")
    await server.request("POST", f"/api/v1/events/{event['id']}/cancel", expect=200)
    award = home.of_type(Award)[0]

    # A home that was offline during the cancel reconnects still holding the award.
    _, code = await server.request("POST", f"/api/v1/homes/{home.home_id}/code", expect=201)
    token = (await enroll(http, server.url, code["code"])).token
    held = HeldAward(
        event_id=event["id"], award_id=award.award_id, status=HomeEventStatus.AWARDED, loads=["wh"]
    )
    unknown = HeldAward(event_id="evt_gone", award_id="awd_gone", status=HomeEventStatus.ACTIVE)
    async with raw_home(server, http, token) as raw:
        await raw.receive()
        hello = HomeHello(
            schema_version=SCHEMA_VERSION, software_version="t", held_awards=[held, unknown]
        )
        await raw.send(dump_message(hello))
        await raw.send(dump_message(Inventory(loads=water_heater_and_ev())))
        # The two answers are independent: they may arrive in either order.
        told: dict[str, dict[str, Any]] = {}
        while len(told) < 2:
            frame = await raw.receive()
            if frame["type"] in ("cancel", "event_end"):
                told[frame["type"]] = frame
        assert told["cancel"]["event_id"] == event["id"]
        assert told["event_end"]["event_id"] == "evt_gone"

    # A home that was never in the event learns nothing of why it was cancelled.
    prying = HeldAward(event_id=event["id"], award_id="awd_x", status=HomeEventStatus.ACTIVE)
    async with raw_home(server, http) as stranger:
        await stranger.receive()
        hello = HomeHello(schema_version=SCHEMA_VERSION, software_version="t", held_awards=[prying])
        await stranger.send(dump_message(hello))
        await stranger.send(dump_message(Inventory(loads=water_heater_and_ev())))
        told_stranger = await stranger.receive_type("event_end")
        assert told_stranger["event_id"] == event["id"]


async def test_bid_from_a_home_that_was_not_offered_is_refused(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with raw_home(server, http) as offered, raw_home(server, http) as stranger:
        await offered.handshake()  # offered, and never bids: the round stays open
        event = await server.create_event(target_kw=3.0, bid_window_s=3.0)
        await offered.receive_type("offer")
        await stranger.receive()
        await stranger.send(
            dump_message(HomeHello(schema_version=SCHEMA_VERSION, software_version="t"))
        )
        await stranger.receive_type("ack")
        # Not participating, so it is never offered anything.
        await stranger.send(
            dump_message(Inventory(loads=water_heater_and_ev(), participating=False))
        )
        await stranger.receive_type("ack")
        bid = Bid(
            reply_to=f"offer-{event['id']}-1",
            event_id=event["id"],
            round=1,
            steps=[BidStep(kw=3.0, price=0.01, loads=["wh"])],
        )
        await stranger.send(dump_message(bid))
        error = await stranger.receive_type("error")
        assert error["code"] == ErrorCode.INVALID_STATE
        assert error["reply_to"] == bid.id
        ack = AwardAck(reply_to="x", event_id=event["id"], award_id="awd_x")
        await stranger.send(dump_message(ack))
        assert (await stranger.receive_type("error"))["code"] == ErrorCode.UNKNOWN_AWARD
