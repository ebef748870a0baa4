"""Leadership on real PostgreSQL and NATS: one coordinator per event, taken over when it dies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

import pytest

from aggregator.cluster.bus import Bus
from aggregator.cluster.forwarding import EventInbox
from aggregator.cluster.leadership import Leadership
from aggregator.cluster.leases import LeaseStore
from aggregator.records import EventRecord, EventStatus
from aggregator.store import Fence, Store
from jeisson.common.protocol import AwardAck, Bid, OptOut
from tests.helpers import wait_for

from .conftest import settings_for
from .events import an_event


@dataclass
class Driving:
    """A negotiation that notes which events it was given and taken."""

    adopted: list[Fence] = field(default_factory=list)
    relinquished: list[str] = field(default_factory=list)

    async def adopt(self, event_id: str, fence: Fence) -> bool:
        self.adopted.append(fence)
        return True

    async def relinquish(self, event_id: str) -> None:
        self.relinquished.append(event_id)

    async def handle_bid(self, home_id: str, bid: Bid) -> None:
        """Take nothing."""

    async def handle_award_ack(self, home_id: str, ack: AwardAck) -> None:
        """Take nothing."""

    async def handle_opt_out(self, home_id: str, opt_out: OptOut) -> None:
        """Take nothing."""


@dataclass
class Member:
    """One process's leadership and what it drives."""

    leadership: Leadership
    driving: Driving
    inbox: EventInbox


type Join = Callable[[str], Awaitable[Member]]


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[Store]:
    """Yield a store on a fresh PostgreSQL database."""
    opened = await Store.open(pg_url)
    yield opened
    await opened.close()


@pytest.fixture
async def join(pg_store: Store, nats_url: str, prefix: str) -> AsyncIterator[Join]:
    """Yield a factory of started leaderships (one per simulated process)."""
    members: list[tuple[Member, Bus]] = []

    async def make(node_id: str) -> Member:
        settings = settings_for(nats_url, prefix, lease_ttl_s=1.0, sweep_interval_s=0.1)
        bus = Bus(settings)
        await bus.connect()
        driving = Driving()
        inbox = EventInbox(bus, driving)
        leadership = Leadership(LeaseStore(pg_store, node_id, 1.0), settings, inbox)
        await leadership.start(driving)
        member = Member(leadership, driving, inbox)
        members.append((member, bus))
        return member

    yield make
    for member, bus in members:
        await member.leadership.pause()
        await bus.close()


async def test_an_orphaned_event_gets_exactly_one_coordinator(join: Join, pg_store: Store) -> None:
    event = an_event()
    await pg_store.insert_event(event)
    first, second = await join("node_a"), await join("node_b")
    await wait_for(
        lambda: bool(first.driving.adopted or second.driving.adopted), what="someone took it"
    )
    await asyncio.sleep(1.5)  # past a lease lifetime: renewals keep it where it is
    adopted = first.driving.adopted + second.driving.adopted
    assert adopted == [Fence(event.event_id, 1)], "one coordinator, token 1"
    leader = first if first.driving.adopted else second
    assert leader.leadership.leads(event.event_id)
    assert leader.inbox.events == {event.event_id}, "it takes the event's home messages"


async def test_a_dead_coordinators_event_is_taken_over_with_a_new_token(
    join: Join, pg_store: Store
) -> None:
    event = an_event()
    await pg_store.insert_event(event)
    first = await join("node_a")
    await wait_for(lambda: bool(first.driving.adopted), what="a took the event")
    await first.leadership.pause()  # as if killed: no renewal, no hand-over
    second = await join("node_b")
    await wait_for(lambda: bool(second.driving.adopted), timeout=5, what="b took it over")
    assert second.driving.adopted == [Fence(event.event_id, 2)]
    await first.leadership.renew()
    assert first.driving.relinquished == [event.event_id], "a learns it lost the event"


async def test_a_clean_stop_hands_events_over_at_once(join: Join, pg_store: Store) -> None:
    event = an_event()
    await pg_store.insert_event(event)
    first = await join("node_a")
    await wait_for(lambda: bool(first.driving.adopted), what="a took the event")
    second = await join("node_b")
    await first.leadership.pause()
    await first.leadership.hand_over()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wait_for(lambda: bool(second.driving.adopted), timeout=5, what="b took it over")
    assert loop.time() - started < 0.8, "within a sweep, not a lease lifetime"


async def test_a_finished_event_releases_its_lease(join: Join, pg_store: Store) -> None:
    event = an_event()
    await pg_store.insert_event(event)
    first = await join("node_a")
    await wait_for(lambda: bool(first.driving.adopted), what="a took the event")
    await pg_store.update_event(_completed(event))
    await first.leadership.finished(event.event_id)
    leases = LeaseStore(pg_store, "node_x", 1.0)
    assert await leases.holders([event.event_id]) == {}
    assert await leases.orphans() == []
    assert not first.leadership.leads(event.event_id)


def _completed(event: EventRecord) -> EventRecord:
    return replace(event, status=EventStatus.COMPLETED)
