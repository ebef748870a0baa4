"""The home websocket at the frame level: auth, validation, idempotency, limits."""

from __future__ import annotations

import json

import aiohttp
import pytest

from aggregator.app_keys import REGISTRY
from aggregator.sessions import WRITER_QUEUE_SIZE, ack_frame
from jeisson.common.const import CLOSE_REPLACED, CLOSE_TOO_SLOW, CLOSE_UNSUPPORTED_VERSION
from jeisson.common.protocol import (
    MAX_FRAME_BYTES,
    SCHEMA_VERSION,
    Ack,
    Bid,
    BidStep,
    ErrorCode,
    HomeHello,
    Inventory,
    Offer,
    Sample,
    Telemetry,
    dump_message,
    parse_message,
    utc_now,
)

from .common import RunningServer, enrolled_token, raw_home


async def test_websocket_without_valid_token_is_refused_with_401(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(server.url + "/api/v1/ws", headers=headers)
        assert info.value.status == 401


async def test_messages_before_hello_are_refused(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with raw_home(server, http) as home:
        await home.receive()
        await home.send(dump_message(Inventory(id="inv1", loads=[])))
        error = await home.receive()
        assert error["type"] == "error"
        assert error["code"] == ErrorCode.NOT_HELLOED
        assert error["reply_to"] == "inv1"


async def test_malformed_frames_get_errors_and_the_session_goes_on(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with raw_home(server, http) as home:
        await home.handshake()
        cases = [
            ("{not json", ErrorCode.INVALID_JSON),
            ("[1, 2]", ErrorCode.INVALID_JSON),
            (json.dumps({"type": "teleport", "id": "x1"}), ErrorCode.UNKNOWN_TYPE),
            (json.dumps({"type": "offer", "id": "x2"}), ErrorCode.UNKNOWN_TYPE),
            (
                json.dumps({"type": "telemetry", "id": "x3", "samples": []}),
                ErrorCode.INVALID_MESSAGE,
            ),
            (
                json.dumps(
                    {
                        "type": "opt_out",
                        "id": "x4",
                        "event_id": "evt_missing",
                    }
                ),
                ErrorCode.UNKNOWN_EVENT,
            ),
        ]
        for frame, code in cases:
            await home.send(frame)
            error = await home.receive()
            assert error["type"] == "error", frame
            assert error["code"] == code, frame
        await home.ws.send_bytes(b"\x00\x01")
        assert (await home.receive())["code"] == ErrorCode.INVALID_JSON

        telemetry = Telemetry(samples=[Sample(ts=utc_now(), power_kw=1.0)])
        await home.send(dump_message(telemetry))
        ack = await home.receive()
        assert ack == {"id": ack["id"], "type": "ack", "reply_to": telemetry.id}


async def test_oversized_frame_closes_only_that_session(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with raw_home(server, http) as bystander, raw_home(server, http) as offender:
        await bystander.handshake()
        await offender.handshake()
        await offender.send("x" * (MAX_FRAME_BYTES + 1))
        closing = await offender.ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert offender.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG

        telemetry = Telemetry(samples=[Sample(ts=utc_now(), power_kw=2.0)])
        await bystander.send(dump_message(telemetry))
        assert (await bystander.receive())["reply_to"] == telemetry.id


async def test_unsupported_schema_version_is_refused_and_closed(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with raw_home(server, http) as home:
        await home.receive()
        await home.send(
            dump_message(
                HomeHello(id="h1", schema_version=SCHEMA_VERSION + 1, software_version="x")
            )
        )
        error = await home.receive()
        assert error["code"] == ErrorCode.UNSUPPORTED_VERSION
        assert error["reply_to"] == "h1"
        closing = await home.ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert home.ws.close_code == CLOSE_UNSUPPORTED_VERSION


async def test_second_connection_of_a_home_replaces_the_first(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    _, token = await enrolled_token(server, http)
    async with raw_home(server, http, token) as first:
        await first.handshake()
        async with raw_home(server, http, token) as second:
            await second.handshake()
            closing = await first.ws.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert first.ws.close_code == CLOSE_REPLACED


async def test_duplicate_messages_are_harmless(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    home_id, token = await enrolled_token(server, http)
    async with raw_home(server, http, token) as home:
        await home.handshake()
        event = await server.create_event(target_kw=3.0, bid_window_s=2.0)
        offer = parse_message(json.dumps(await home.receive_type("offer")))
        assert isinstance(offer, Offer)
        bid = Bid(
            reply_to=offer.id,
            event_id=offer.event_id,
            round=offer.round,
            steps=[BidStep(kw=3.0, price=0.1, loads=["wh"])],
        )
        telemetry = Telemetry(samples=[Sample(ts=utc_now(), power_kw=1.0)])
        for _ in range(3):
            await home.send(dump_message(bid))
            assert (await home.receive_type("ack"))["reply_to"] == bid.id
            await home.send(dump_message(telemetry))
            assert (await home.receive_type("ack"))["reply_to"] == telemetry.id
        assert await server.store.telemetry_count(home_id) == 1
        bids = await server.store.bids_for(event["id"], 1)
        assert [stored.message_id for stored in bids] == [bid.id]


async def test_bids_naming_unknown_loads_or_late_rounds_are_refused(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with raw_home(server, http) as home:
        await home.handshake()
        await server.create_event(target_kw=3.0, bid_window_s=2.0)
        offer = await home.receive_type("offer")
        unknown = Bid(
            reply_to=offer["id"],
            event_id=offer["event_id"],
            round=1,
            steps=[BidStep(kw=3.0, price=0.1, loads=["jacuzzi"])],
        )
        await home.send(dump_message(unknown))
        error = await home.receive_type("error")
        assert error["code"] == ErrorCode.UNKNOWN_LOAD
        assert error["reply_to"] == unknown.id

        late = Bid(reply_to=offer["id"], event_id=offer["event_id"], round=2, steps=[])
        await home.send(dump_message(late))
        error = await home.receive_type("error")
        assert error["code"] == ErrorCode.DEADLINE_PASSED


def test_the_fast_ack_frame_is_the_protocols_ack() -> None:
    for reply_to in ("bid-1", "a.b:c_d-9", "x" * 64):
        frame = ack_frame(reply_to)
        parsed = parse_message(frame)
        assert isinstance(parsed, Ack)
        assert parsed.reply_to == reply_to
        assert frame == dump_message(Ack(id=parsed.id, reply_to=reply_to))


async def test_a_home_that_falls_too_far_behind_is_cut_off_and_others_go_on(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    slow_id, slow_token = await enrolled_token(server, http)
    async with raw_home(server, http, slow_token) as slow, raw_home(server, http) as other:
        await slow.handshake()
        await other.handshake()
        assert server.runner is not None
        registry = server.runner.app[REGISTRY]
        ack = Ack(reply_to="m_1")

        # More frames at once than one home may have waiting: the last are refused.
        sent = [registry.send(slow_id, ack) for _ in range(WRITER_QUEUE_SIZE + 5)]

        assert sent == [True] * WRITER_QUEUE_SIZE + [False] * 5
        frames = 0
        while (await slow.ws.receive(timeout=5)).type is aiohttp.WSMsgType.TEXT:
            frames += 1
        assert slow.ws.close_code == CLOSE_TOO_SLOW
        assert frames <= WRITER_QUEUE_SIZE
        # The other home's session is untouched.
        await other.send(
            dump_message(HomeHello(schema_version=SCHEMA_VERSION, software_version="x"))
        )
        assert (await other.receive())["type"] == "ack"
