"""Real ``serve --cluster`` processes: events negotiated across them, coordinators killed.

Three processes on one fresh PostgreSQL database and the shared NATS (a subject prefix of the
test's own), homes spread over them through load balancers without stickiness.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from aggregator.cli import EXIT_ERROR
from jeisson.common.protocol import Award, EventEnd, Offer
from tests.aggregator.serve_process import ServeProcess
from tests.helpers import free_port, wait_for

from .fleet import HOME_KW, Cluster

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


@pytest.fixture
async def cluster(
    tmp_path: Path, pg_url: str, nats_url: str, prefix: str
) -> AsyncIterator[Cluster]:
    """Yield three running processes of one cluster (stopped afterwards)."""
    async with aiohttp.ClientSession() as http:
        running = Cluster(tmp_path, pg_url, nats_url, prefix, http)
        try:
            await running.start(3)
            yield running
        finally:
            await running.close()


async def test_a_cluster_on_sqlite_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    database = tmp_path / "one.db"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator.cli",
        "serve",
        "--port",
        str(free_port()),
        "--db",
        f"sqlite:///{database}",
        "--cluster",
        "nats://127.0.0.1:4222",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == EXIT_ERROR
    assert "clustering (--cluster) needs PostgreSQL" in err.decode()
    assert "--db postgresql://" in err.decode()
    assert not database.exists()  # refused before anything was opened


async def test_an_event_is_negotiated_across_three_processes_and_a_home_moves(
    cluster: Cluster,
) -> None:
    await cluster.add_homes(6)
    first, second, third = cluster.processes
    event_id = await cluster.create_event(
        first, target_kw=3 * HOME_KW, bid_window_s=2.5, lead_s=6.0, duration_s=4.0
    )
    await wait_for(lambda: all(home.of_type(Offer) for home in cluster.homes), what="offers")
    await cluster.wait_status(third, event_id, "committed", timeout=20)
    cheapest = {home.home_id for home in cluster.homes[:3]}  # one on each process
    awarded = {a.home_id for a in await cluster.awards(event_id)}
    assert awarded == cheapest
    # Every process answers the same, read from the database.
    views = [await cluster.event(process, event_id) for process in cluster.processes]
    assert {view["committed_kw"] for view in views} == {3 * HOME_KW}

    # The home on the coordinator's process moves to another process mid-event.
    mover = cluster.homes[0]
    mover.balancer.prefer(second.port)
    await mover.balancer.cut()
    await wait_for(lambda: mover.balancer.last_backend == second.port, what="home moved")
    await cluster.wait_status(second, event_id, "active", timeout=20)
    await cluster.wait_status(second, event_id, "completed", timeout=20)
    live = await cluster.check_outcome(event_id)
    assert {award.home_id for award in live} == cheapest  # the mover kept its award
    assert len(mover.of_type(Award)) >= 1
    assert mover.of_type(EventEnd)


async def test_operators_see_and_cancel_the_same_on_every_process(cluster: Cluster) -> None:
    await cluster.add_homes(6)
    first, _second, third = cluster.processes
    event_id = await cluster.create_event(
        first, target_kw=3 * HOME_KW, bid_window_s=1.5, lead_s=30.0, duration_s=10.0
    )
    await cluster.wait_status(third, event_id, "committed", timeout=20)
    for process in cluster.processes:  # live figures are shared every second

        async def fleet_shown(process: ServeProcess = process) -> bool:
            status, fleet = await cluster.request(process, "GET", "/api/v1/fleet")
            assert status == 200, fleet
            return (fleet["homes_online"], fleet["events_running"]) == (6, 1)

        await wait_for(fleet_shown, timeout=5, what="the fleet as every process sees it")
        async with asyncio.timeout(15):
            shown = await cluster.dashboard_events(process, event_id)
        assert (shown["homes_online"], shown["committed_kw"]) == (6, 3 * HOME_KW)
        metrics = await cluster.http.get(
            process.url + "/metrics", headers={"Authorization": f"Bearer {process.token}"}
        )
        body = await metrics.text()
        assert f'jeisson_event_committed_kw{{event_id="{event_id}"}} 9.0' in body
    # A cancel reaching a process that does not coordinate the event.
    status, body = await cluster.request(
        third, "POST", f"/api/v1/events/{event_id}/cancel", {"reason": "test"}
    )
    assert status == 200, body
    assert body["status"] == "cancelled"
    awarded = [home for home in cluster.homes if home.of_type(Award)]
    await wait_for(lambda: all(home.ended for home in awarded), what="homes told the cancel")
    status, body = await cluster.request(
        third, "POST", f"/api/v1/events/{event_id}/cancel", {"reason": "again"}
    )
    assert status == 409, body
    await wait_for(lambda: not_leased(cluster, event_id), what="the lease released")

    # A home suspended through a process that does not hold its connection is cut off.
    suspended = cluster.homes[1]  # connected to the second process
    status, body = await cluster.request(
        third, "POST", f"/api/v1/homes/{suspended.home_id}/suspend", {}
    )
    assert status == 200, body
    client = suspended.client
    assert client is not None
    await wait_for(lambda: not client.connected, what="the suspended home's session closed")

    async def online_after() -> bool:
        _, fleet = await cluster.request(first, "GET", "/api/v1/fleet")
        return bool(fleet["homes_online"] == 5)

    await wait_for(online_after, timeout=10, what="five homes online")


async def not_leased(cluster: Cluster, event_id: str) -> bool:
    """Return True once the event's lease row is gone."""
    return not await cluster.leased(event_id)


async def test_the_coordinator_killed_mid_round_is_replaced(cluster: Cluster) -> None:
    await cluster.add_homes(6)
    first, second, _third = cluster.processes
    event_id = await cluster.create_event(
        first, target_kw=3 * HOME_KW, bid_window_s=8.0, lead_s=14.0, duration_s=3.0
    )
    await wait_for(lambda: all(home.of_type(Offer) for home in cluster.homes), what="offers")
    # The coordinator, mid-round: some bids stored, some on their way. The round's deadline
    # leaves time for the takeover (within a lease's lifetime): bids forwarded meanwhile wait
    # for the new coordinator; homes of the killed process reconnect and are offered again.
    await first.kill()
    await cluster.wait_status(second, event_id, "committed", timeout=30)
    await cluster.wait_status(second, event_id, "completed", timeout=30)
    live = await cluster.check_outcome(event_id)
    prices = {home.home_id: home.price for home in cluster.homes}
    assert sum(award.kw for award in live) == pytest.approx(3 * HOME_KW)
    # Every home had its bid stored: forwarded bids waited for the new coordinator, and a home
    # of the killed process whose bid died with its connection was offered the round again on
    # its new connection (the client delivers a re-sent offer it holds no acked bid for).
    bidders = await cluster.bidders(event_id)
    assert bidders == {home.home_id for home in cluster.homes}
    cheapest = sorted(bidders, key=lambda home_id: prices[home_id])[:3]
    assert {a.home_id for a in live} == set(cheapest)


async def test_the_coordinator_killed_mid_event_is_replaced(cluster: Cluster) -> None:
    await cluster.add_homes(6)
    first, second, third = cluster.processes
    event_id = await cluster.create_event(
        first, target_kw=3 * HOME_KW, bid_window_s=1.5, lead_s=4.0, duration_s=10.0
    )
    await cluster.wait_status(second, event_id, "active", timeout=20)
    before = {a.award_id for a in await cluster.awards(event_id)}
    await first.kill()
    await cluster.wait_status(third, event_id, "completed", timeout=30)
    live = await cluster.check_outcome(event_id)
    assert {a.award_id for a in live} == before  # nothing lost, nothing awarded twice
    assert {a.home_id for a in live} == {h.home_id for h in cluster.homes[:3]}


async def test_a_rolling_restart_drops_no_event(cluster: Cluster) -> None:
    await cluster.add_homes(6)
    first, second, _third = cluster.processes
    event_id = await cluster.create_event(
        first, target_kw=3 * HOME_KW, bid_window_s=1.5, lead_s=4.0, duration_s=10.0
    )
    await cluster.wait_status(second, event_id, "active", timeout=20)
    before = {a.award_id for a in await cluster.awards(event_id)}
    assert await first.stop() == 0  # SIGTERM: homes move on, the lease is handed over
    assert "Handed 1 events over" in first.log()
    await first.start()  # back, as a new process of the same cluster
    await cluster.wait_status(first, event_id, "completed", timeout=30)
    live = await cluster.check_outcome(event_id)
    assert {a.award_id for a in live} == before


class OwnNats:
    """A nats-server of this test's own (the shared one on 4222 is never stopped)."""

    def __init__(self, workdir: Path) -> None:
        """Serve on a free port, logging into ``workdir``."""
        self.port = free_port()
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """Return its URL."""
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start it and wait until it accepts connections."""
        self.process = await asyncio.create_subprocess_exec(
            NATS_SERVER,
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-l",
            str(self.workdir / "nats.log"),
        )

        async def answers() -> bool:
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return False
            writer.close()
            return True

        await wait_for(answers, what="nats-server listening")

    async def stop(self) -> None:
        """Stop it (SIGKILL: an outage, not a clean shutdown)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def own_nats(tmp_path: Path) -> AsyncIterator[OwnNats]:
    """Yield a running nats-server of this test's own, stopped afterwards."""
    server = OwnNats(tmp_path)
    await server.start()
    yield server
    await server.stop()


async def test_nats_restarted_mid_event(
    tmp_path: Path, pg_url: str, own_nats: OwnNats, prefix: str
) -> None:
    async with aiohttp.ClientSession() as http:
        cluster = Cluster(tmp_path, pg_url, own_nats.url, prefix, http)
        try:
            await cluster.start(3)
            await cluster.add_homes(6)
            first, second, third = cluster.processes
            event_id = await cluster.create_event(
                first, target_kw=3 * HOME_KW, bid_window_s=1.5, lead_s=4.0, duration_s=6.0
            )
            await cluster.wait_status(second, event_id, "active", timeout=20)
            before = {a.award_id for a in await cluster.awards(event_id)}
            await own_nats.stop()
            await asyncio.sleep(2.0)  # the processes cannot hear each other
            await own_nats.start()
            await cluster.wait_status(third, event_id, "completed", timeout=30)
            live = await cluster.check_outcome(event_id)  # the ends crossed the new NATS
            assert {a.award_id for a in live} == before
        finally:
            await cluster.close()
