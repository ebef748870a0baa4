"""The cluster's home directory on real NATS: every process knows where every home is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from aggregator.cluster.bus import Bus, Json
from aggregator.cluster.directory import SYNC_PAGE_SIZE, HomeDirectory
from aggregator.records import HomeRecord
from jeisson.common.protocol import Load, LoadKind
from tests.helpers import wait_for

from .conftest import settings_for

HEARTBEAT_S = 0.1
TTL_S = 0.5


@dataclass
class Heard:
    """A listener that writes down what it hears."""

    events: list[tuple[str, str]] = field(default_factory=list)
    homes: dict[str, HomeRecord] = field(default_factory=dict)

    def home_arrived(self, home: HomeRecord, *_extras: object) -> None:
        self.events.append(("arrived", home.home_id))
        self.homes[home.home_id] = home

    def home_changed(self, home: HomeRecord) -> None:
        self.events.append(("changed", home.home_id))
        self.homes[home.home_id] = home

    def home_left(self, home_id: str) -> None:
        self.events.append(("left", home_id))
        self.homes.pop(home_id, None)


@dataclass
class Process:
    """One simulated aggregator process: its bus, directory and listener."""

    bus: Bus
    directory: HomeDirectory
    heard: Heard


type Spawn = Callable[[str], Awaitable[Process]]


@pytest.fixture
async def spawn(nats_url: str, prefix: str) -> AsyncIterator[Spawn]:
    """Yield a factory of started directories on one test cluster."""
    started: list[Process] = []

    async def make(node_id: str) -> Process:
        settings = settings_for(nats_url, prefix)
        bus = Bus(settings)
        await bus.connect()
        heard = Heard()
        directory = HomeDirectory(bus, node_id, heard, heartbeat_s=HEARTBEAT_S, ttl_s=TTL_S)
        await directory.start()
        process = Process(bus, directory, heard)
        started.append(process)
        return process

    yield make
    for process in started:
        await process.directory.stop()
        await process.bus.close()


def a_home(home_id: str, participating: bool = True) -> HomeRecord:
    """Return a home with one curtailable water heater."""
    return HomeRecord(
        home_id=home_id,
        name="kept private",
        created_at=datetime.now(UTC),
        loads=(Load(load_id="wh", name="WH", kind=LoadKind.WATER_HEATER, rated_kw=3.0),),
        participating=participating,
    )


async def test_a_home_ready_changed_and_gone_on_one_process_is_known_on_another(
    spawn: Spawn,
) -> None:
    a, b = await spawn("node_a"), await spawn("node_b")
    connection = a.directory.announce_ready(a_home("h1"))
    await wait_for(lambda: b.directory.node_of("h1") == "node_a", what="h1 known on b")
    assert b.heard.homes["h1"].loads[0].rated_kw == 3.0
    assert b.heard.homes["h1"].name == "", "names stay in the database"
    assert a.directory.node_of("h1") == "node_a"

    a.directory.announce_changed(a_home("h1", participating=False), connection)
    await wait_for(lambda: not b.heard.homes["h1"].participating, what="change seen")

    a.directory.announce_gone("h1", connection)
    await wait_for(lambda: not b.directory.is_connected("h1"), what="h1 gone on b")
    assert b.heard.events == [("arrived", "h1"), ("changed", "h1"), ("left", "h1")]
    assert len(a.directory) == 0


async def test_a_process_that_starts_late_fetches_every_home_page_by_page(spawn: Spawn) -> None:
    a = await spawn("node_a")
    count = SYNC_PAGE_SIZE * 2 + 10
    for number in range(count):
        a.directory.announce_ready(a_home(f"h{number}"))
    late = await spawn("node_late")
    await wait_for(lambda: len(late.directory) == count, what="every home fetched")
    assert late.directory.by_node(["h0", f"h{count - 1}", "nowhere"]) == {
        "node_a": ["h0", f"h{count - 1}"]
    }


async def test_a_home_that_moves_keeps_being_connected(spawn: Spawn) -> None:
    a, b, c = await spawn("node_a"), await spawn("node_b"), await spawn("node_c")
    old = a.directory.announce_ready(a_home("h1"))
    await wait_for(lambda: c.directory.node_of("h1") == "node_a", what="h1 on a")
    b.directory.announce_ready(a_home("h1"))  # it reconnected to b before a noticed it left
    await wait_for(lambda: c.directory.node_of("h1") == "node_b", what="h1 moved to b")
    a.directory.announce_gone("h1", old)
    await asyncio.sleep(HEARTBEAT_S * 3)
    assert c.directory.node_of("h1") == "node_b"
    assert ("left", "h1") not in c.heard.events
    assert a.directory.node_of("h1") == "node_b"


async def test_the_homes_of_a_process_that_goes_silent_are_disconnected(spawn: Spawn) -> None:
    a, b = await spawn("node_a"), await spawn("node_b")
    a.directory.announce_ready(a_home("h1"))
    b.directory.announce_ready(a_home("h2"))
    await wait_for(lambda: len(b.directory) == 2, what="both homes known on b")
    await a.directory.stop()  # no more heartbeats: as if the process was killed
    await wait_for(lambda: not b.directory.is_connected("h1"), timeout=5, what="h1 expired")
    assert b.directory.is_connected("h2")
    assert dict(b.directory.nodes()) == {"node_b": 1}


async def test_a_lost_announcement_is_repaired_by_the_next_heartbeat(
    spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await spawn("node_a"), await spawn("node_b")
    a.directory.announce_ready(a_home("h1"))
    await wait_for(lambda: b.directory.is_connected("h1"), what="h1 on b")

    # NATS delivers at most once: drop the next presence message, as a reconnection would.
    publish = a.bus.publish
    dropped: list[Json] = []

    async def lose_presence_once(subject: str, payload: Json) -> None:
        if subject == a.bus.subjects.presence and not dropped:
            dropped.append(payload)
            return
        await publish(subject, payload)

    monkeypatch.setattr(a.bus, "publish", lose_presence_once)
    a.directory.announce_ready(a_home("h2"))
    await wait_for(lambda: b.directory.is_connected("h2"), timeout=5, what="h2 after a sync")
    assert dropped, "the announcement of h2 was lost on the way"
    assert b.directory.is_connected("h1")
