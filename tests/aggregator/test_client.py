"""Tests of the home client against a real protocol peer served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from jeisson.client.client import (
    DEDUP_WINDOW,
    Enrollment,
    HomeClient,
    backoff_delay,
    enroll,
)
from jeisson.common.errors import (
    AuthenticationFailed,
    CannotConnect,
    InvalidEnrollmentCode,
    NotConnected,
    RequestRejected,
    RequestTimeout,
    UnsupportedSchemaVersion,
)
from jeisson.common.protocol import (
    MAX_FRAME_BYTES,
    MAX_LOADS_PER_HOME,
    MAX_SAMPLES_PER_TELEMETRY,
    SCHEMA_VERSION,
    Award,
    AwardAck,
    Bid,
    BidStep,
    Cancel,
    ErrorCode,
    ErrorMessage,
    EventEnd,
    HeldAward,
    HomeEventStatus,
    HomeHello,
    Inventory,
    Load,
    LoadKind,
    Offer,
    OptOut,
    OptOutReason,
    Sample,
    ServerMessage,
    Telemetry,
    utc_now,
)
from tests.helpers import free_port

from .protocol_peer import HOME_ID, TOKEN, ProtocolPeer

WAIT = 5.0
FAST_BACKOFF = {"backoff_base": 0.01, "backoff_max": 0.05}


def make_inventory() -> Inventory:
    """Return the inventory of a home with a water heater and a pool pump."""
    return Inventory(
        loads=[
            Load(load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=4.5),
            Load(load_id="pool", name="Pool pump", kind=LoadKind.POOL_PUMP, rated_kw=1.1),
        ]
    )


def make_offer(event_id: str = "ev-1", round_: int = 1) -> Offer:
    """Return an offer for a one-hour event starting in an hour."""
    start = utc_now() + timedelta(hours=1)
    return Offer(
        event_id=event_id,
        round=round_,
        window_start=start,
        window_end=start + timedelta(hours=1),
        price_cap=0.4,
        bid_deadline=utc_now() + timedelta(seconds=30),
    )


def make_award(event_id: str = "ev-1") -> Award:
    """Return an award for the water heater."""
    start = utc_now() + timedelta(hours=1)
    return Award(
        event_id=event_id,
        award_id=f"aw-{event_id}",
        round=1,
        loads=["wh"],
        kw=4.5,
        price=0.3,
        window_start=start,
        window_end=start + timedelta(hours=1),
        restore_stagger_s=300,
    )


def sample(power_kw: float) -> Sample:
    """Return one telemetry sample measuring ``power_kw``."""
    return Sample(ts=utc_now(), power_kw=power_kw)


@pytest.fixture
async def peer() -> AsyncIterator[ProtocolPeer]:
    """Serve a protocol peer on 127.0.0.1; its base URL is in ``peer.base_url``."""
    protocol_peer = ProtocolPeer()
    server = TestServer(protocol_peer.app(), host="127.0.0.1")
    await server.start_server()
    protocol_peer.base_url = str(server.make_url("/")).rstrip("/")
    yield protocol_peer
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """Return a real aiohttp client session."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def make_client(
    peer: ProtocolPeer, session: aiohttp.ClientSession
) -> AsyncIterator[Callable[..., HomeClient]]:
    """Build clients for the peer; every client is closed after the test."""
    clients: list[HomeClient] = []

    def make(**kwargs: Any) -> HomeClient:
        options: dict[str, Any] = {
            "session": session,
            "software_version": "test-1.0",
            "inventory_provider": make_inventory,
            "request_timeout": WAIT,
        }
        options.update(kwargs)
        base_url = options.pop("base_url", peer.base_url)
        token = options.pop("token", TOKEN)
        client = HomeClient(base_url, token, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


class States:
    """Records connection state callbacks and lets a test wait for the next ones."""

    def __init__(self, client: HomeClient) -> None:
        self.seen: list[bool] = []
        self._queue: asyncio.Queue[bool] = asyncio.Queue()
        client.subscribe_connection(self._record)

    def _record(self, connected: bool) -> None:
        self.seen.append(connected)
        self._queue.put_nowait(connected)

    async def next(self) -> bool:
        """Return the next state change."""
        async with asyncio.timeout(WAIT):
            return await self._queue.get()


class Inbox:
    """A subscriber collecting server messages."""

    def __init__(self, client: HomeClient) -> None:
        self.messages: list[ServerMessage] = []
        self._queue: asyncio.Queue[ServerMessage] = asyncio.Queue()
        client.subscribe(self._record)

    def _record(self, message: ServerMessage) -> None:
        self.messages.append(message)
        self._queue.put_nowait(message)

    async def until(self, message_type: str) -> None:
        """Wait until a message of ``message_type`` was delivered."""
        async with asyncio.timeout(WAIT):
            while (await self._queue.get()).type != message_type:
                pass


@pytest.fixture
def running() -> Iterator[Callable[[HomeClient], asyncio.Task[None]]]:
    """Start ``client.run()`` as a task; tasks still running at the end are cancelled."""
    tasks: list[asyncio.Task[None]] = []

    def start(client: HomeClient) -> asyncio.Task[None]:
        task = asyncio.create_task(client.run())
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.cancel()


async def settle(client: HomeClient) -> None:
    """Round-trip one request: every frame the peer sent before it has been handled then."""
    await client.send_inventory()


# --- Session set-up ---------------------------------------------------------------------------


async def test_connect_sends_hello_then_inventory_and_reports_connected(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    held = HeldAward(event_id="ev-0", award_id="aw-0", status=HomeEventStatus.ACTIVE, loads=["wh"])
    client = make_client(held_awards_provider=lambda: [held])
    states = States(client)

    hello = await client.connect()

    assert hello.home_id == HOME_ID
    assert client.server_hello == hello
    assert client.connected
    assert states.seen == [True]
    home_hello, inventory = peer.received
    assert isinstance(home_hello, HomeHello)
    assert home_hello.schema_version == SCHEMA_VERSION
    assert home_hello.software_version == "test-1.0"
    assert home_hello.held_awards == [held]
    assert isinstance(inventory, Inventory)
    assert [load.load_id for load in inventory.loads] == ["wh", "pool"]


async def test_each_inventory_is_sent_under_a_new_message_id(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    fixed = make_inventory()
    client = make_client(inventory_provider=lambda: fixed)
    await client.connect()

    ack = await client.send_inventory()

    first, second = peer.of_type("inventory")
    assert first.id != second.id
    assert ack.reply_to == second.id
    assert isinstance(second, Inventory)
    assert second.loads == fixed.loads


async def test_bad_token_raises_authentication_failed_without_retrying(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(token="wrong-token-c0ffee", **FAST_BACKOFF)

    with pytest.raises(AuthenticationFailed):
        await client.connect()
    with pytest.raises(AuthenticationFailed):
        await asyncio.wait_for(running(client), WAIT)

    assert not peer.connections
    assert "wrong-token-c0ffee" not in caplog.text


async def test_server_requiring_newer_schema_is_refused(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    peer.schema_version = SCHEMA_VERSION + 1
    peer.min_supported_schema_version = SCHEMA_VERSION + 1
    client = make_client()

    with pytest.raises(UnsupportedSchemaVersion) as caught:
        await client.connect()

    assert caught.value.server_min_version == SCHEMA_VERSION + 1
    assert caught.value.client_version == SCHEMA_VERSION
    assert not peer.received  # no hello sent to a server we cannot speak with
    assert not client.connected


async def test_samples_say_measured_only_to_a_schema_2_aggregator(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    sample = Sample(ts=datetime(2026, 12, 4, 18, tzinfo=UTC), power_kw=1.0, measured=False)
    peer.schema_version = 1  # an aggregator from before statements refuses the unknown field
    old = make_client()
    await old.connect()
    await old.send_telemetry([sample])
    await old.close()
    peer.schema_version = SCHEMA_VERSION
    new = make_client()
    await new.connect()
    await new.send_telemetry([sample])

    first, second = peer.of_type("telemetry")
    assert isinstance(first, Telemetry)
    assert isinstance(second, Telemetry)
    assert first.samples[0].measured is None
    assert second.samples[0].measured is False


async def test_new_kinds_and_partial_steps_reach_a_schema_2_aggregator_as_it_reads_them(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    def flexible() -> Inventory:
        return Inventory(
            loads=[
                Load(load_id="t", name="Thermostat", kind=LoadKind.THERMOSTAT, rated_kw=2.0),
                Load(load_id="b", name="Battery", kind=LoadKind.BATTERY, rated_kw=5.0),
                Load(load_id="ev", name="Charger", kind=LoadKind.EV_CHARGER, rated_kw=11.0),
            ]
        )

    steps = [
        BidStep(kw=5.0, price=0.1, loads=["ev"], level_kw=6.0),
        BidStep(kw=6.0, price=0.2, loads=["ev"]),
    ]
    peer.schema_version = 2
    old = make_client(inventory_provider=flexible)
    await old.connect()
    await old.send_bid(make_offer(), steps)
    await old.close()
    peer.schema_version = SCHEMA_VERSION
    new = make_client(inventory_provider=flexible)
    await new.connect()
    await new.send_bid(make_offer(), steps)

    first, second = peer.of_type("inventory")
    assert isinstance(first, Inventory)
    assert isinstance(second, Inventory)
    assert [load.kind for load in first.loads] == [
        LoadKind.HVAC,
        LoadKind.OTHER,
        LoadKind.EV_CHARGER,
    ]
    assert second.loads == flexible().loads
    old_bid, new_bid = peer.of_type("bid")
    assert isinstance(old_bid, Bid)
    assert isinstance(new_bid, Bid)
    assert old_bid.steps == [steps[1]]  # the whole step still stands
    assert new_bid.steps == steps


async def test_server_older_than_supported_is_refused(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    peer.schema_version = 0
    peer.min_supported_schema_version = 0
    client = make_client()

    with pytest.raises(UnsupportedSchemaVersion) as caught:
        await client.connect()

    assert caught.value.server_version == 0
    assert not peer.received


async def test_server_refusing_home_version_ends_run(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
) -> None:
    peer.accepted_home_versions = range(SCHEMA_VERSION + 1, SCHEMA_VERSION + 2)
    client = make_client(**FAST_BACKOFF)

    with pytest.raises(UnsupportedSchemaVersion):
        await client.connect()
    with pytest.raises(UnsupportedSchemaVersion):
        await asyncio.wait_for(running(client), WAIT)

    assert len(peer.connections) == 2  # one per call, never retried
    assert not client.connected


async def test_close_code_4001_during_session_ends_run(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
) -> None:
    client = make_client(**FAST_BACKOFF)
    states = States(client)
    task = running(client)
    assert await states.next() is True

    await peer.current.close(4001)

    with pytest.raises(UnsupportedSchemaVersion):
        await asyncio.wait_for(task, WAIT)
    assert len(peer.connections) == 1


@pytest.mark.parametrize(
    "first_frame",
    [
        "not json",
        '{"type": "event_end", "id": "end-1", "event_id": "ev-1"}',  # not a server_hello
        '{"type": "server_hello", "id": "h1"}',  # missing fields
    ],
)
async def test_server_not_starting_with_a_valid_hello_is_refused(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient], first_frame: str
) -> None:
    peer.first_frame = first_frame
    client = make_client()

    with pytest.raises(CannotConnect):
        await client.connect()

    assert not peer.received
    assert not client.connected


async def test_refused_inventory_fails_the_connection_but_run_keeps_trying(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
) -> None:
    peer.reject = {"inventory": ErrorCode.INTERNAL_ERROR}
    client = make_client(**FAST_BACKOFF)
    states = States(client)

    with pytest.raises(CannotConnect, match="internal_error"):
        await client.connect()
    running(client)
    await peer.wait_until(lambda: len(peer.connections) >= 3)
    peer.reject = {}

    assert await states.next() is True
    assert states.seen == [True]


async def test_nothing_listening_raises_cannot_connect(
    make_client: Callable[..., HomeClient],
) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}", connect_timeout=2)

    with pytest.raises(CannotConnect):
        await client.connect()
    assert not client.connected


# --- Requests ---------------------------------------------------------------------------------


async def test_acks_arriving_out_of_order_reach_the_right_request(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    peer.hold = {"telemetry"}
    client = make_client()
    await client.connect()
    powers = [1.0, 2.0, 3.0]

    requests = [asyncio.create_task(client.send_telemetry([sample(kw)])) for kw in powers]
    await peer.wait_until(lambda: len(peer.held) == len(powers))
    for message in reversed(peer.held):
        await peer.answer(message)
    acks = await asyncio.gather(*requests)

    by_id = {message.id: message for message in peer.held}
    for kw, ack in zip(powers, acks, strict=True):
        telemetry = by_id[ack.reply_to]
        assert isinstance(telemetry, Telemetry)
        assert telemetry.samples[0].power_kw == kw
    assert client.queued_messages == ()


async def test_error_reply_raises_request_rejected_with_its_code(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    peer.reject = {"bid": ErrorCode.DEADLINE_PASSED, "opt_out": ErrorCode.UNKNOWN_EVENT}
    client = make_client()
    await client.connect()

    with pytest.raises(RequestRejected) as bid_error:
        await client.send_bid(make_offer(), [BidStep(kw=4.5, price=0.2, loads=["wh"])])
    with pytest.raises(RequestRejected) as opt_out_error:
        await client.opt_out("ev-unknown")

    assert bid_error.value.code is ErrorCode.DEADLINE_PASSED
    assert opt_out_error.value.code is ErrorCode.UNKNOWN_EVENT
    assert client.queued_messages == ()  # a refused message is not re-sent forever
    assert client.connected


async def test_internal_error_keeps_queued_message_for_resend(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    peer.reject = {"opt_out": ErrorCode.INTERNAL_ERROR}
    client = make_client()
    await client.connect()

    with pytest.raises(RequestRejected):
        await client.opt_out("ev-1")

    (queued,) = client.queued_messages
    assert isinstance(queued, OptOut)


async def test_a_message_the_aggregator_could_not_store_is_sent_again_until_stored(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    peer.reject = {"award_ack": ErrorCode.INTERNAL_ERROR}
    client = make_client(backoff_base=0.05, backoff_max=0.2)
    await client.connect()
    award = make_award()

    with pytest.raises(RequestRejected) as refused:
        await client.ack_award(award)
    assert refused.value.code is ErrorCode.INTERNAL_ERROR
    await peer.wait_until(lambda: len(peer.of_type("award_ack")) >= 3)  # re-sent, still refused
    peer.reject = {}  # the aggregator's database is back

    async with asyncio.timeout(WAIT):
        while client.queued_messages:  # settled by the peer's ack to the next re-send
            await asyncio.sleep(0.02)
    sent = peer.of_type("award_ack")
    assert len({message.id for message in sent}) == 1  # always the same message, same id
    count = len(sent)
    await asyncio.sleep(0.5)
    assert len(peer.of_type("award_ack")) == count  # settled: not sent again


async def test_a_bid_the_aggregator_could_not_store_is_sent_again_before_the_deadline(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    peer.reject = {"bid": ErrorCode.INTERNAL_ERROR}
    client = make_client(backoff_base=0.05, backoff_max=0.2)
    await client.connect()
    steps = [BidStep(kw=4.5, price=0.2, loads=["wh"])]

    sending = asyncio.ensure_future(client.send_bid(make_offer(), steps))
    await peer.wait_until(lambda: len(peer.of_type("bid")) >= 2)
    peer.reject = {}
    ack = await sending

    bids = peer.of_type("bid")
    assert len({bid.id for bid in bids}) == 1  # the same bid, same id, every time
    assert ack.reply_to == bids[0].id

    peer.reject = {"bid": ErrorCode.INTERNAL_ERROR}
    closing = make_offer().model_copy(update={"bid_deadline": utc_now() + timedelta(seconds=0.1)})
    with pytest.raises(RequestRejected) as refused:
        await client.send_bid(closing, steps)  # no time left to try again
    assert refused.value.code is ErrorCode.INTERNAL_ERROR


async def test_bid_carries_the_offer_id_event_and_round(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    client = make_client()
    await client.connect()
    offer = make_offer(round_=2)
    steps = [
        BidStep(kw=1.1, price=0.1, loads=["pool"]),
        BidStep(kw=4.5, price=0.25, loads=["wh"]),
    ]

    ack = await client.send_bid(offer, steps)

    (bid,) = peer.of_type("bid")
    assert ack.reply_to == bid.id
    assert isinstance(bid, Bid)
    assert bid.reply_to == offer.id
    assert (bid.event_id, bid.round, bid.steps) == (offer.event_id, 2, steps)


async def test_inconsistent_bid_is_refused_before_sending(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    client = make_client()
    await client.connect()
    decreasing = [
        BidStep(kw=4.5, price=0.3, loads=["wh"]),
        BidStep(kw=1.1, price=0.1, loads=["pool"]),
    ]

    with pytest.raises(ValueError, match="must not decrease"):
        await client.send_bid(make_offer(), decreasing)
    assert not peer.of_type("bid")


async def test_missing_reply_raises_request_timeout_and_keeps_message_queued(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    peer.hold = {"telemetry"}
    client = make_client(request_timeout=0.2)
    await client.connect()

    with pytest.raises(RequestTimeout):
        await client.send_telemetry([sample(2.0)])

    (queued,) = client.queued_messages
    assert queued.id == peer.held[0].id
    await peer.answer(peer.held[0])  # a late ack still settles the queued message
    await settle(client)
    assert client.queued_messages == ()


async def test_oversized_telemetry_is_refused_and_not_queued(
    make_client: Callable[..., HomeClient],
) -> None:
    client = make_client()
    loads = {f"load-{index:02d}-{'x' * 48}": 1234.567 for index in range(MAX_LOADS_PER_HOME)}
    samples = [
        Sample(ts=utc_now(), power_kw=5.0, loads=loads) for _ in range(MAX_SAMPLES_PER_TELEMETRY)
    ]

    with pytest.raises(ValueError, match=str(MAX_FRAME_BYTES)):
        await client.send_telemetry(samples)
    assert client.queued_messages == ()


# --- Outbox -----------------------------------------------------------------------------------


async def test_queued_messages_are_resent_in_order_with_their_ids_after_reconnect(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
) -> None:
    peer.hold = {"telemetry"}
    client = make_client(**FAST_BACKOFF)
    states = States(client)
    running(client)
    assert await states.next() is True
    in_flight = asyncio.create_task(client.send_telemetry([sample(1.5)], event_id="ev-1"))
    await peer.wait_until(lambda: len(peer.held) == 1)

    peer.refuse_connections = 1_000
    await peer.current.close(1011)
    with pytest.raises(CannotConnect):
        await in_flight
    assert await states.next() is False
    award = make_award()
    with pytest.raises(NotConnected):
        await client.ack_award(award)
    with pytest.raises(NotConnected):
        await client.opt_out("ev-1", "wh", OptOutReason.OVERRIDE)
    with pytest.raises(NotConnected):
        await client.send_bid(make_offer(), [])  # bids are not queued
    queued = client.queued_messages
    assert [message.type for message in queued] == ["telemetry", "award_ack", "opt_out"]

    peer.hold = set()
    peer.refuse_connections = 0
    assert await states.next() is True
    await peer.wait_until(lambda: len(peer.current.received) == 5)

    resent = peer.current.received
    assert [message.type for message in resent] == [
        "home_hello",
        "inventory",
        "telemetry",
        "award_ack",
        "opt_out",
    ]
    assert [message.id for message in resent[2:]] == [message.id for message in queued]
    assert resent[2].id == peer.held[0].id  # the in-flight telemetry kept its id
    ack = resent[3]
    assert isinstance(ack, AwardAck)
    assert (ack.reply_to, ack.award_id) == (award.id, award.award_id)
    await settle(client)
    assert client.queued_messages == ()
    assert not peer.of_type("bid")


async def test_saved_outbox_is_resent_after_a_restart(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    saved = OptOut(event_id="ev-1", reason=OptOutReason.USER)
    client = make_client(outbox=[saved])

    await client.connect()
    await peer.wait_until(lambda: len(peer.received) == 3)

    assert [message.type for message in peer.received] == ["home_hello", "inventory", "opt_out"]
    assert peer.received[2] == saved
    await settle(client)
    assert client.queued_messages == ()


async def test_offline_outbox_keeps_acks_and_opt_outs_but_drops_oldest_telemetry(
    make_client: Callable[..., HomeClient],
) -> None:
    client = make_client(max_queued_telemetry=2)
    award = make_award()

    for power in (1.0, 2.0):
        with pytest.raises(NotConnected):
            await client.send_telemetry([sample(power)])
    with pytest.raises(NotConnected):
        await client.ack_award(award)
    with pytest.raises(NotConnected):
        await client.send_telemetry([sample(3.0)])
    with pytest.raises(NotConnected):
        await client.opt_out("ev-1")

    queued = client.queued_messages
    assert [message.type for message in queued] == [
        "telemetry",
        "award_ack",
        "telemetry",
        "opt_out",
    ]
    assert [m.samples[0].power_kw for m in queued if isinstance(m, Telemetry)] == [2.0, 3.0]


def test_restored_outbox_message_too_large_to_send_is_refused(
    make_client: Callable[..., HomeClient],
) -> None:
    loads = {f"load-{index:02d}-{'x' * 48}": 1.5 for index in range(MAX_LOADS_PER_HOME)}
    huge = Telemetry(
        samples=[Sample(ts=utc_now(), power_kw=1.0, loads=loads)] * MAX_SAMPLES_PER_TELEMETRY
    )

    with pytest.raises(ValueError, match="smaller parts"):
        make_client(outbox=[huge])


# --- Server messages --------------------------------------------------------------------------


async def test_duplicate_server_messages_are_delivered_once(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    client = make_client()
    inbox = Inbox(client)
    async_seen: list[str] = []

    async def async_subscriber(message: ServerMessage) -> None:
        async_seen.append(message.id)

    client.subscribe(async_subscriber)
    await client.connect()
    offer, award = make_offer(), make_award()

    for message in (offer, offer, award, offer, award, EventEnd(event_id="ev-1")):
        await peer.current.send(message)
    await inbox.until("event_end")
    await settle(client)

    assert [message.type for message in inbox.messages] == ["offer", "award", "event_end"]
    assert inbox.messages[:2] == [offer, award]
    assert async_seen == [message.id for message in inbox.messages]


async def test_unsubscribed_callback_gets_nothing(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    client = make_client()
    inbox = Inbox(client)
    dropped: list[ServerMessage] = []
    unsubscribe = client.subscribe(dropped.append)
    unsubscribe()
    await client.connect()

    await peer.current.send(make_offer())
    await inbox.until("offer")

    assert dropped == []


async def test_failing_subscriber_does_not_stop_the_listener(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()

    def broken(message: ServerMessage) -> None:
        raise RuntimeError("sync subscriber bug")

    async def broken_async(message: ServerMessage) -> None:
        raise RuntimeError("async subscriber bug")

    client.subscribe(broken)
    client.subscribe(broken_async)
    inbox = Inbox(client)
    await client.connect()

    await peer.current.send(make_offer("ev-1"))
    await peer.current.send(make_offer("ev-2"))
    await inbox.until("offer")
    await inbox.until("offer")
    await settle(client)

    assert [getattr(message, "event_id", None) for message in inbox.messages] == ["ev-1", "ev-2"]
    assert client.connected
    assert "sync subscriber bug" in caplog.text
    assert "async subscriber bug" in caplog.text
    assert (await client.opt_out("ev-1")).type == "ack"


async def test_invalid_server_frames_are_skipped(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    inbox = Inbox(client)
    await client.connect()

    await peer.current.ws.send_str("not json")
    await peer.current.ws.send_str('{"type": "bid", "id": "b1"}')  # a home message type
    await peer.current.ws.send_str('{"type": "offer", "id": "o1"}')  # missing fields
    await peer.current.send(make_offer())
    await inbox.until("offer")

    assert len(inbox.messages) == 1
    assert client.connected
    assert "invalid_json" in caplog.text
    assert "unknown_type" in caplog.text
    assert "invalid_message" in caplog.text


async def test_stray_errors_binary_frames_and_hellos_do_not_disturb_the_session(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    inbox = Inbox(client)
    hello = await client.connect()

    await peer.current.ws.send_bytes(b"\x00\x01")
    await peer.current.send(
        ErrorMessage(reply_to="nobody", code=ErrorCode.INVALID_STATE, message="stray error")
    )
    await peer.current.send(hello.model_copy(update={"id": "another-hello"}))
    await peer.current.send(make_offer())
    await inbox.until("offer")

    assert [message.type for message in inbox.messages] == ["offer"]
    assert client.connected
    assert "binary frame" in caplog.text
    assert "stray error" in caplog.text
    assert "unexpected server_hello" in caplog.text


async def test_duplicate_memory_is_bounded(
    peer: ProtocolPeer, make_client: Callable[..., HomeClient]
) -> None:
    client = make_client()
    inbox = Inbox(client)
    await client.connect()
    first = EventEnd(event_id="ev-0")

    await peer.current.send(first)
    for index in range(DEDUP_WINDOW):
        await peer.current.send(EventEnd(event_id=f"ev-{index + 1}"))
    await peer.current.send(first)  # forgotten by now: delivered again
    await peer.current.send(Cancel(event_id="ev-last"))
    await inbox.until("cancel")

    assert len(inbox.messages) == DEDUP_WINDOW + 3
    assert inbox.messages[-2] == first


# --- Reconnecting and liveness ----------------------------------------------------------------


async def test_reconnects_after_the_server_closes(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jeisson.client")
    client = make_client(**FAST_BACKOFF)
    states = States(client)
    running(client)
    assert await states.next() is True

    peer.refuse_connections = 3
    await peer.current.close(1001)

    assert await states.next() is False
    assert await states.next() is True
    assert states.seen == [True, False, True]
    assert peer.refused == 3
    assert len(peer.connections) == 2
    assert [message.type for message in peer.current.received] == ["home_hello", "inventory"]
    messages = [record.getMessage() for record in caplog.records if record.levelname == "INFO"]
    assert sum("lost" in message for message in messages) == 1
    assert sum("restored" in message for message in messages) == 1
    assert TOKEN not in caplog.text


async def test_replaced_connection_reconnects(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jeisson.client")
    client = make_client(**FAST_BACKOFF)
    states = States(client)
    running(client)
    assert await states.next() is True

    await peer.current.close(4002)

    assert await states.next() is False
    assert await states.next() is True
    assert "replaced by a newer connection" in caplog.text


async def test_oversized_server_frame_closes_with_1009_and_reconnects(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jeisson.client")
    client = make_client(**FAST_BACKOFF)
    states = States(client)
    running(client)
    assert await states.next() is True

    await peer.current.ws.send_str("x" * (MAX_FRAME_BYTES + 1))

    assert await states.next() is False
    assert await states.next() is True
    assert "(1009)" in caplog.text


async def test_backoff_grows_while_down_and_resets_after_connecting(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
) -> None:
    class RecordingRandom(random.Random):
        def __init__(self) -> None:
            super().__init__(7)
            self.ceilings: list[float] = []

        def uniform(self, a: float, b: float) -> float:
            self.ceilings.append(b)
            return super().uniform(a, b)

    rng = RecordingRandom()
    client = make_client(backoff_base=0.001, backoff_max=0.004, rng=rng)
    states = States(client)
    peer.refuse_connections = 4
    running(client)
    assert await states.next() is True
    assert rng.ceilings == [0.001, 0.002, 0.004, 0.004]

    await peer.current.close(1001)
    assert await states.next() is False
    assert await states.next() is True
    assert rng.ceilings[4:] == [0.001]


async def test_silent_server_is_detected_by_heartbeat(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
) -> None:
    peer.autoping = False  # the peer never answers pings: a dead server as the client sees it
    client = make_client(heartbeat_interval=0.2, **FAST_BACKOFF)
    states = States(client)
    running(client)

    assert await states.next() is True
    assert await states.next() is False
    assert peer.connections[0].pings >= 1


async def test_heartbeat_follows_the_interval_the_server_announced(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
) -> None:
    peer.heartbeat_interval = 0.2
    peer.autoping = False  # let the peer see ping frames
    peer.close_after_inventory = 1001  # first connection ends before any 60 s ping could
    client = make_client(heartbeat_interval=60.0, **FAST_BACKOFF)
    running(client)

    await peer.wait_until(lambda: len(peer.connections) >= 2 and peer.connections[1].pings >= 1)
    assert peer.connections[0].pings == 0


# --- Closing ----------------------------------------------------------------------------------


async def test_close_stops_run_and_leaves_no_tasks(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
) -> None:
    peer.hold = {"telemetry"}
    client = make_client()
    states = States(client)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow_subscriber(message: ServerMessage) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client.subscribe(slow_subscriber)
    task = running(client)
    assert await states.next() is True
    await peer.current.send(make_offer())
    request = asyncio.create_task(client.send_telemetry([sample(1.0)]))
    await peer.wait_until(lambda: len(peer.held) == 1)
    await asyncio.wait_for(started.wait(), WAIT)

    await client.close()

    assert task.done()
    assert task.result() is None
    assert cancelled.is_set()
    with pytest.raises(CannotConnect):
        await request
    assert states.seen == [True, False]
    lingering = [
        t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("jeisson-client")
    ]
    assert lingering == []
    with pytest.raises(CannotConnect):
        await client.connect()


async def test_close_while_waiting_to_reconnect_ends_run(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
) -> None:
    peer.refuse_connections = 1_000
    client = make_client(backoff_base=30.0, backoff_max=30.0, rng=random.Random(1))
    task = running(client)
    await peer.wait_until(lambda: peer.refused >= 1)

    await asyncio.wait_for(client.close(), WAIT)

    assert task.done()
    assert task.result() is None


# --- Backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(12))
def test_backoff_delay_stays_within_the_capped_exponential_ceiling(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(60.0, 1.0 * 2**attempt)

    delays = [backoff_delay(attempt, 1.0, 60.0, rng) for _ in range(200)]

    assert all(0.0 <= delay <= ceiling for delay in delays)


def test_backoff_delay_is_fully_jittered() -> None:
    rng = random.Random(2024)
    ceiling = 8.0

    delays = [backoff_delay(3, 1.0, 60.0, rng) for _ in range(1000)]

    assert min(delays) < 0.05 * ceiling
    assert max(delays) > 0.95 * ceiling
    assert len(set(delays)) > 990  # not lock-step
    deciles = [sum(int(delay / ceiling * 10) == bucket for delay in delays) for bucket in range(10)]
    assert all(60 <= count <= 140 for count in deciles)  # uniform, about 100 per tenth


def test_backoff_delay_caps_huge_attempts_and_refuses_negative_ones() -> None:
    rng = random.Random(3)

    assert 0.0 <= backoff_delay(10_000, 1.0, 60.0, rng) <= 60.0
    with pytest.raises(ValueError, match="negative"):
        backoff_delay(-1, 1.0, 60.0, rng)


# --- Enrolment --------------------------------------------------------------------------------


async def test_enroll_returns_token_once_and_refuses_reused_code(
    peer: ProtocolPeer, session: aiohttp.ClientSession
) -> None:
    peer.enrollment_codes = {"ABCD-1234": (HOME_ID, "fresh-token-91b2")}
    base_url = peer.base_url

    enrollment = await enroll(session, base_url, "  ABCD-1234 ")

    assert enrollment == Enrollment(HOME_ID, "fresh-token-91b2", "agg-test")
    assert "fresh-token-91b2" not in repr(enrollment)
    with pytest.raises(InvalidEnrollmentCode):
        await enroll(session, base_url, "ABCD-1234")
    with pytest.raises(InvalidEnrollmentCode):
        await enroll(session, base_url, "NOPE-0000")
    with pytest.raises(InvalidEnrollmentCode):
        await enroll(session, base_url, "   ")


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, {"error": "boom"}), (503, {}), (200, {"home_id": "h1"}), (200, ["not", "an object"])],
)
async def test_enroll_server_failures_raise_cannot_connect(
    session: aiohttp.ClientSession, status: int, body: object
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/api/v1/enroll", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        with pytest.raises(CannotConnect):
            await enroll(session, str(server.make_url("")), "ABCD-1234")
    finally:
        await server.close()


async def test_enroll_without_server_raises_cannot_connect(
    session: aiohttp.ClientSession,
) -> None:
    with pytest.raises(CannotConnect):
        await enroll(session, f"http://127.0.0.1:{free_port()}", "ABCD-1234")


async def test_an_offer_re_sent_on_a_new_connection_is_delivered_again_until_bid(
    peer: ProtocolPeer,
    make_client: Callable[..., HomeClient],
    running: Callable[[HomeClient], asyncio.Task[None]],
) -> None:
    client = make_client(**FAST_BACKOFF)
    states = States(client)
    inbox = Inbox(client)
    running(client)
    assert await states.next() is True
    unbid, bid_on = make_offer("ev-1"), make_offer("ev-2")
    await peer.current.send(unbid)
    await peer.current.send(bid_on)
    await inbox.until("offer")
    await inbox.until("offer")
    await client.send_bid(bid_on, [BidStep(kw=1.0, price=0.1, loads=["wh"])])

    # The connection dies before the home bid on ev-1 (as when its process was killed).
    await peer.current.close(1011)
    assert await states.next() is False
    assert await states.next() is True
    # The aggregator re-sends the offers it holds no bid for — and, say, both.
    await peer.current.send(unbid)
    await peer.current.send(bid_on)
    await peer.current.send(unbid)  # a duplicate on the same connection stays dropped
    await peer.current.send(EventEnd(event_id="ev-3"))
    await inbox.until("event_end")

    assert [message.id for message in inbox.messages if isinstance(message, Offer)] == [
        unbid.id,
        bid_on.id,
        unbid.id,
    ]
