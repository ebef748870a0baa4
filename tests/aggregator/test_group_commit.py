"""Group commit: many requests share one transaction; all of a batch is stored, or none of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from aggregator.store import (
    GroupCommitter,
    HomeSeen,
    Insert,
    OfferRecord,
    Store,
    StoreUnavailableError,
    TelemetryBatch,
    Unit,
    Update,
)
from jeisson.common.protocol import Sample, utc_now


@dataclass
class Counting:
    """Records what the committer reports."""

    commits: list[tuple[int, int]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)

    def observe_commit(self, requests: int, changes: int, seconds: float) -> None:
        assert seconds >= 0
        self.commits.append((requests, changes))

    def observe_store_failure(self, requests: int) -> None:
        self.failures.append(requests)


@dataclass
class FailingStore:
    """A real store whose transactions fail while ``down`` is set (the database is away)."""

    store: Store
    down: bool = False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Unit]:
        async with self.store.transaction() as unit:
            yield unit
            if self.down:
                raise ConnectionResetError("database went away")


@pytest.fixture
def observer() -> Counting:
    return Counting()


async def homes(store: Store, count: int) -> list[str]:
    return [(await store.add_home(f"h{index}"))[0].home_id for index in range(count)]


async def test_messages_of_many_homes_in_one_moment_share_one_transaction(
    store: Store, observer: Counting
) -> None:
    home_ids = await homes(store, 50)
    committer = GroupCommitter(store, observer)
    seen = utc_now()

    await asyncio.gather(
        *(committer.commit([Update(HomeSeen(home, seen, "2.0"))]) for home in home_ids)
    )

    assert observer.commits == [(50, 50)]
    stored = {home.home_id: home for home in await store.list_homes()}
    assert all(stored[home].software_version == "2.0" for home in home_ids)
    await committer.close()


async def test_a_failed_batch_fails_every_request_and_stores_nothing(
    store: Store, observer: Counting
) -> None:
    home_ids = await homes(store, 3)
    failing = FailingStore(store, down=True)
    committer = GroupCommitter(failing, observer)
    samples = (Sample(ts=utc_now(), power_kw=1.0, shed_kw=0.5),)

    results = await asyncio.gather(
        *(
            committer.commit([TelemetryBatch(home, "t1", None, samples, utc_now())])
            for home in home_ids
        ),
        return_exceptions=True,
    )

    assert all(isinstance(result, StoreUnavailableError) for result in results)
    assert observer.failures == [3]
    assert [await store.telemetry_count(home) for home in home_ids] == [0, 0, 0]

    failing.down = False  # the database is back: the same requests go through, once each
    receipt = await committer.commit(
        [TelemetryBatch(home, "t1", None, samples, utc_now()) for home in home_ids]
    )
    assert receipt.stored_telemetry == {(home, "t1") for home in home_ids}
    again = await committer.commit([TelemetryBatch(home_ids[0], "t1", None, samples, utc_now())])
    assert again.stored_telemetry == set()
    assert [await store.telemetry_count(home) for home in home_ids] == [1, 1, 1]
    await committer.close()


async def test_a_request_the_database_refuses_fails_alone(store: Store, observer: Counting) -> None:
    (home,) = await homes(store, 1)
    committer = GroupCommitter(store, observer)
    seen = utc_now() - timedelta(minutes=1)

    good = committer.commit([Update(HomeSeen(home, seen, "3.0"))])
    # An offer of an event that does not exist breaks a foreign key.
    bad = committer.commit([Insert(OfferRecord("evt_missing", 1, home))])
    results = await asyncio.gather(good, bad, return_exceptions=True)

    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], StoreUnavailableError)
    stored = await store.get_home(home)
    assert stored is not None
    assert stored.software_version == "3.0"
    await committer.close()


async def test_closing_writes_what_is_queued_then_refuses(store: Store) -> None:
    (home,) = await homes(store, 1)
    committer = GroupCommitter(store)
    pending = asyncio.ensure_future(committer.commit([Update(HomeSeen(home, utc_now(), "4.0"))]))
    await asyncio.sleep(0)

    await committer.close()

    await pending
    stored = await store.get_home(home)
    assert stored is not None
    assert stored.software_version == "4.0"
    with pytest.raises(StoreUnavailableError):
        await committer.commit([Update(HomeSeen(home, utc_now(), "5.0"))])


async def test_lingering_telemetry_of_several_moments_shares_one_transaction(
    store: Store, observer: Counting
) -> None:
    home_ids = await homes(store, 3)
    committer = GroupCommitter(store, observer)
    samples = (Sample(ts=utc_now(), power_kw=1.0),)

    async def later(index: int, home: str) -> object:
        await asyncio.sleep(0.05 * index)  # three separate moments, well within the linger
        return await committer.commit(
            [TelemetryBatch(home, "t1", None, samples, utc_now())], linger=0.5
        )

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(later(index, home) for index, home in enumerate(home_ids)))

    assert observer.commits == [(3, 3)]
    assert loop.time() - started >= 0.5  # written when the first one was due, not before
    assert [await store.telemetry_count(home) for home in home_ids] == [1, 1, 1]
    await committer.close()


async def test_a_request_that_does_not_linger_takes_the_lingering_ones_along(
    store: Store, observer: Counting
) -> None:
    first, second = await homes(store, 2)
    committer = GroupCommitter(store, observer)
    samples = (Sample(ts=utc_now(), power_kw=1.0),)
    lingering = asyncio.ensure_future(
        committer.commit([TelemetryBatch(first, "t1", None, samples, utc_now())], linger=60)
    )
    await asyncio.sleep(0.05)

    await asyncio.wait_for(committer.commit([Update(HomeSeen(second, utc_now(), "2.0"))]), 5)

    assert (await asyncio.wait_for(lingering, 1)).stored_telemetry == {(first, "t1")}
    assert observer.commits == [(2, 2)]
    await committer.close()


async def test_closing_writes_lingering_requests_at_once(store: Store) -> None:
    (home,) = await homes(store, 1)
    committer = GroupCommitter(store)
    samples = (Sample(ts=utc_now(), power_kw=1.0),)
    lingering = asyncio.ensure_future(
        committer.commit([TelemetryBatch(home, "t1", None, samples, utc_now())], linger=60)
    )
    await asyncio.sleep(0.05)

    await asyncio.wait_for(committer.close(), 5)

    assert (await lingering).stored_telemetry == {(home, "t1")}
