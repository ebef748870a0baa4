"""Event leases on real PostgreSQL: one coordinator at a time, stale writes refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from aggregator.cluster.leases import LeaseStore
from aggregator.records import EventRecord, EventStatus
from aggregator.store import (
    ClaimLease,
    Fence,
    FencedError,
    GroupCommitter,
    Insert,
    Store,
    Update,
)

from .events import an_event

TTL_S = 0.6


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[Store]:
    """Yield a store on a fresh PostgreSQL database."""
    opened = await Store.open(pg_url)
    yield opened
    await opened.close()


async def test_one_holder_at_a_time_and_a_takeover_moves_the_token(pg_store: Store) -> None:
    event = an_event()
    await pg_store.insert_event(event)
    first = LeaseStore(pg_store, "node_a", TTL_S)
    second = LeaseStore(pg_store, "node_b", TTL_S)

    assert await first.acquire(event.event_id) == 1
    assert await second.acquire(event.event_id) is None, "a live lease is not taken"
    assert await second.orphans() == []

    await asyncio.sleep(TTL_S + 0.2)
    assert await second.orphans() == [event.event_id], "a lease that ran out needs a holder"
    assert await second.acquire(event.event_id) == 2
    assert await first.renew({event.event_id: 1}) == set(), "the old holder lost it"
    assert await second.renew({event.event_id: 2}) == {event.event_id}


async def test_renewal_keeps_a_lease_past_its_first_lifetime(pg_store: Store) -> None:
    event = an_event()
    await pg_store.insert_event(event)
    holder = LeaseStore(pg_store, "node_a", TTL_S)
    other = LeaseStore(pg_store, "node_b", TTL_S)
    assert await holder.acquire(event.event_id) == 1
    for _ in range(4):
        await asyncio.sleep(TTL_S / 3)
        assert await holder.renew({event.event_id: 1}) == {event.event_id}
    assert await other.acquire(event.event_id) is None


async def test_a_stale_coordinators_step_is_refused_by_the_database(pg_store: Store) -> None:
    event = an_event()
    await pg_store.insert_event(event)
    old = LeaseStore(pg_store, "node_a", TTL_S)
    new = LeaseStore(pg_store, "node_b", TTL_S)
    assert await old.acquire(event.event_id) == 1
    await pg_store.write([Fence(event.event_id, 1), Update(event)])  # the holder may write

    await old.hand_over({event.event_id: 1})
    assert await new.acquire(event.event_id) == 2
    with pytest.raises(FencedError):
        await pg_store.write(
            [Fence(event.event_id, 1), Update(_with_status(event, EventStatus.COMPLETED))]
        )
    stored = await pg_store.get_event(event.event_id)
    assert stored is not None
    assert stored.status is EventStatus.NEGOTIATING, "nothing was written"
    await pg_store.write([Fence(event.event_id, 2), Update(event)])


async def test_a_takeover_waits_for_the_old_holders_open_step(pg_store: Store) -> None:
    """The takeover's UPDATE queues behind the share lock: the step is stored, then fenced off."""
    event = an_event()
    await pg_store.insert_event(event)
    old = LeaseStore(pg_store, "node_a", TTL_S)
    new = LeaseStore(pg_store, "node_b", TTL_S)
    assert await old.acquire(event.event_id) == 1
    await old.hand_over({event.event_id: 1})
    async with pg_store.transaction() as unit:
        await unit.apply([Fence(event.event_id, 1)])
        takeover = asyncio.create_task(new.acquire(event.event_id))
        await asyncio.sleep(0.3)
        assert not takeover.done(), "the takeover waits for the step's transaction"
        await unit.apply([Update(_with_status(event, EventStatus.COMMITTED))])
    assert await takeover == 2
    stored = await pg_store.get_event(event.event_id)
    assert stored is not None
    assert stored.status is EventStatus.COMMITTED


async def test_a_new_event_and_its_lease_are_stored_together(pg_store: Store) -> None:
    event = an_event(EventStatus.DRAFT)
    await pg_store.write([Insert(event), ClaimLease(event.event_id, "node_a", TTL_S)])
    leases = LeaseStore(pg_store, "node_b", TTL_S)
    assert await leases.holders([event.event_id]) == {event.event_id: ("node_a", 1)}
    assert await leases.orphans() == []


async def test_a_fenced_step_fails_alone_in_a_group_commit(pg_store: Store) -> None:
    ours, theirs = an_event(), an_event()
    for event in (ours, theirs):
        await pg_store.insert_event(event)
    leases = LeaseStore(pg_store, "node_a", TTL_S)
    assert await leases.acquire(ours.event_id) == 1
    assert await leases.acquire(theirs.event_id) == 1
    committer = GroupCommitter(pg_store)
    try:
        good, stale = await asyncio.gather(
            committer.commit([Fence(ours.event_id, 1), Update(ours)]),
            committer.commit([Fence(theirs.event_id, 7), Update(theirs)]),
            return_exceptions=True,
        )
    finally:
        await committer.close()
    assert not isinstance(good, BaseException)
    assert isinstance(stale, FencedError)
    assert stale.event_id == theirs.event_id


async def test_finished_events_with_a_dead_holder_are_orphans_until_released(
    pg_store: Store,
) -> None:
    finished = an_event(EventStatus.COMPLETED)
    await pg_store.insert_event(finished)
    leases = LeaseStore(pg_store, "node_a", TTL_S)
    assert await leases.orphans() == [], "a finished event without a lease needs nobody"
    assert await leases.acquire(finished.event_id) == 1
    await leases.hand_over({finished.event_id: 1})
    assert await leases.orphans() == [finished.event_id], "its end may not have been sent"
    assert await leases.acquire(finished.event_id) == 2
    await leases.release(finished.event_id, 2)
    assert await leases.orphans() == []


def _with_status(event: EventRecord, status: EventStatus) -> EventRecord:
    return replace(event, status=status)
