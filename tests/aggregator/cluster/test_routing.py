"""Routing on real NATS: messages reach homes where they are, home messages their coordinator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from aggregator.cluster.bus import Bus, Json
from aggregator.cluster.delivery import ClusterLink
from aggregator.cluster.directory import HomeDirectory
from aggregator.cluster.forwarding import EventInbox, Forwarder
from aggregator.cluster.settings import ClusterSettings
from aggregator.records import HomeRecord
from aggregator.store import StoreUnavailableError
from jeisson.common.protocol import (
    AwardAck,
    Bid,
    Cancel,
    ErrorCode,
    EventEnd,
    OptOut,
    ProtocolError,
    ServerMessage,
)
from tests.helpers import wait_for

from .conftest import settings_for


@dataclass
class Sessions:
    """The homes held by one simulated process: what each was sent."""

    held: set[str] = field(default_factory=set)
    got: dict[str, list[ServerMessage]] = field(default_factory=dict)

    def send(self, home_id: str, message: ServerMessage) -> bool:
        return self.broadcast([home_id], message) == 1

    def broadcast(self, home_ids: Iterable[str], message: ServerMessage) -> int:
        sent = 0
        for home_id in home_ids:
            if home_id in self.held:
                self.got.setdefault(home_id, []).append(message)
                sent += 1
        return sent


class NoListener:
    """A directory listener that needs to hear nothing."""

    def home_arrived(self, home: HomeRecord, *_extras: object) -> None:
        """Ignore."""

    def home_changed(self, home: HomeRecord) -> None:
        """Ignore."""

    def home_left(self, home_id: str) -> None:
        """Ignore."""


@dataclass
class Node:
    """One simulated process: bus, directory, link, its sessions."""

    settings: ClusterSettings
    bus: Bus
    directory: HomeDirectory
    sessions: Sessions
    link: ClusterLink

    def hold(self, home_id: str) -> None:
        self.sessions.held.add(home_id)
        self.directory.announce_ready(
            HomeRecord(home_id=home_id, name="", created_at=datetime.now(UTC))
        )


@pytest.fixture
async def nodes(nats_url: str, prefix: str) -> AsyncIterator[list[Node]]:
    """Yield three started processes on one test cluster."""
    made: list[Node] = []
    for name in ("node_a", "node_b", "node_c"):
        settings = settings_for(nats_url, prefix)
        bus = Bus(settings)
        await bus.connect()
        directory = HomeDirectory(bus, name, NoListener(), heartbeat_s=0.1, ttl_s=0.5)
        await directory.start()
        sessions = Sessions()
        link = ClusterLink(bus, directory, sessions, timeout_s=0.5)
        await link.start()
        made.append(Node(settings, bus, directory, sessions, link))
    yield made
    for node in made:
        await node.link.stop()
        await node.directory.stop()
        await node.bus.close()


async def test_messages_reach_each_home_through_the_process_holding_it(nodes: list[Node]) -> None:
    a, b, c = nodes
    a.hold("h_a")
    b.hold("h_b1")
    b.hold("h_b2")
    c.hold("h_c")
    await wait_for(lambda: len(a.directory) == 4, what="every home known on a")

    assert a.link.send("h_b1", EventEnd(id="end-1", event_id="evt_1"))
    assert not a.link.send("h_nowhere", EventEnd(id="end-1", event_id="evt_1"))
    cancel = Cancel(id="cancel-2", event_id="evt_2", reason="grid ok")
    assert a.link.broadcast(["h_a", "h_b1", "h_b2", "h_c", "h_nowhere"], cancel) == 4

    await wait_for(lambda: len(b.sessions.got.get("h_b1", [])) == 2, what="b1 got both")
    await wait_for(lambda: "h_c" in c.sessions.got, what="c got the cancel")
    assert [m.id for m in b.sessions.got["h_b1"]] == ["end-1", "cancel-2"], "in order"
    assert b.sessions.got["h_b2"] == [cancel]
    assert a.sessions.got["h_a"] == [cancel], "a home held here gets it directly"
    assert c.sessions.got["h_c"] == [cancel]


async def test_a_delivery_is_retried_until_the_process_takes_it(nodes: list[Node]) -> None:
    a, b, _ = nodes
    b.hold("h_b")
    await wait_for(lambda: a.directory.is_connected("h_b"), what="h_b known on a")
    await b.link.stop()  # b cannot take deliveries for a while (as during a NATS restart)
    assert a.link.send("h_b", EventEnd(id="end-9", event_id="evt_9"))
    await asyncio.sleep(1.0)
    assert "h_b" not in b.sessions.got
    await b.link.start()
    await wait_for(lambda: "h_b" in b.sessions.got, what="delivered after b came back")
    assert [m.id for m in b.sessions.got["h_b"]] == ["end-9"]


@dataclass
class Coordinator:
    """An event's coordinator that stores what it is given (refusing what the test says)."""

    stored: list[tuple[str, str]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    unavailable_once: set[str] = field(default_factory=set)

    async def _take(self, home_id: str, message_id: str) -> None:
        if message_id in self.refuse:
            raise ProtocolError(ErrorCode.DEADLINE_PASSED, "round is over", message_id)
        if message_id in self.unavailable_once:
            self.unavailable_once.discard(message_id)
            raise StoreUnavailableError("database restarting")
        self.stored.append((home_id, message_id))

    async def handle_bid(self, home_id: str, bid: Bid) -> None:
        await self._take(home_id, bid.id)

    async def handle_award_ack(self, home_id: str, ack: AwardAck) -> None:
        await self._take(home_id, ack.id)

    async def handle_opt_out(self, home_id: str, opt_out: OptOut) -> None:
        await self._take(home_id, opt_out.id)


def a_bid(event_id: str, message_id: str) -> Bid:
    """Return an empty bid."""
    return Bid(id=message_id, reply_to="offer", event_id=event_id, round=1, steps=[])


async def running(_event_id: str) -> bool:
    """Say every event is still running."""
    return True


async def test_home_messages_reach_the_coordinator_in_one_request_per_moment(
    nodes: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, _ = nodes
    coordinator = Coordinator(refuse={"bid-late"})
    inbox = EventInbox(b.bus, coordinator)
    await inbox.open("evt_1")
    forwarder = Forwarder(a.bus, running, patience_s=2.0, timeout_s=0.5)
    requests: list[int] = []
    request = a.bus.request

    async def counted(subject: str, payload: Json, timeout: float) -> Json:
        if subject == b.bus.subjects.inbox("evt_1"):
            requests.append(len(payload["items"]))
        return await request(subject, payload, timeout)

    monkeypatch.setattr(a.bus, "request", counted)
    try:
        results = await asyncio.gather(
            *(forwarder.forward("evt_1", f"h{n}", a_bid("evt_1", f"bid-{n}")) for n in range(50)),
            forwarder.forward("evt_1", "h_late", a_bid("evt_1", "bid-late")),
            forwarder.forward("evt_1", "h_ack", _an_ack("evt_1", "ack-1")),
            return_exceptions=True,
        )
    finally:
        await forwarder.close()
        await inbox.close_all()
    assert all(result is None for result in results[:50])
    refused = results[50]
    assert isinstance(refused, ProtocolError)
    assert refused.code is ErrorCode.DEADLINE_PASSED
    assert refused.reply_to == "bid-late"
    assert results[51] is None
    assert [message for _, message in coordinator.stored] == [
        *(f"bid-{n}" for n in range(50)),
        "ack-1",
    ], "stored in the order the homes sent them"
    # One request carries the whole moment (NATS may answer "no responders" right after a
    # subscription, now and then: the same request is then sent again).
    assert requests, "the messages went to the coordinator's inbox"
    assert set(requests) == {52}, "one request for the whole moment"


async def test_a_message_waits_for_a_coordinator_that_takes_over(nodes: list[Node]) -> None:
    a, b, c = nodes
    coordinator = Coordinator(unavailable_once={"ack-1"})
    forwarder = Forwarder(a.bus, running, patience_s=3.0, timeout_s=0.3)
    inbox = EventInbox(c.bus, coordinator)
    try:
        waiting = asyncio.create_task(forwarder.forward("evt_1", "h1", _an_ack("evt_1", "ack-1")))
        await asyncio.sleep(0.8)  # nobody coordinates evt_1 yet: its old process died
        assert not waiting.done()
        await inbox.open("evt_1")  # c took the lease over
        await asyncio.wait_for(waiting, timeout=3)
    finally:
        await forwarder.close()
        await inbox.close_all()
    assert coordinator.stored == [("h1", "ack-1")], "stored once, after one failed try"
    del b


async def test_a_message_nobody_takes_is_refused_retryable_or_as_over(nodes: list[Node]) -> None:
    a = nodes[0]

    async def over(_event_id: str) -> bool:
        return False

    patient = Forwarder(a.bus, running, patience_s=0.6, timeout_s=0.2)
    finished = Forwarder(a.bus, over, patience_s=5.0, timeout_s=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await patient.forward("evt_gone", "h1", _an_ack("evt_gone", "ack-1"))
        assert 0.5 < time.monotonic() - started < 3
        started = time.monotonic()
        with pytest.raises(ProtocolError) as refused:
            await finished.forward("evt_done", "h1", _an_ack("evt_done", "ack-2"))
        assert refused.value.code is ErrorCode.UNKNOWN_EVENT
        assert time.monotonic() - started < 2, "an event that is over is said so at once"
        with pytest.raises(ProtocolError):
            await finished.forward("evt.bad*", "h1", _an_ack("evt_1", "ack-3"))
    finally:
        await patient.close()
        await finished.close()


def _an_ack(event_id: str, message_id: str) -> AwardAck:
    return AwardAck(
        id=message_id, reply_to="award", event_id=event_id, award_id="awd_1", accepted=True
    )
