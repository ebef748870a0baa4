"""Real ``serve --cluster`` processes on one PostgreSQL database, and homes spread over them.

A :class:`Cluster` runs aggregator processes (:class:`~tests.aggregator.serve_process.
ServeProcess`) that share a fresh database and a NATS subject prefix; each :class:`FleetHome` is
a real :class:`~jeisson.client.HomeClient` reaching the processes through its own load balancer
(:mod:`.balancer`), so a test chooses where each home lands and moves it. Homes bid their one
step on every offer, acknowledge every award, and record which acknowledgements the aggregator
confirmed (an ``ack`` to a home means stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select

from aggregator import tables
from aggregator.records import AwardRecord, AwardStatus
from aggregator.store import Store
from jeisson.client import HomeClient, enroll
from jeisson.common.errors import JeissonError
from jeisson.common.protocol import (
    Award,
    BidStep,
    Cancel,
    EventEnd,
    Inventory,
    Load,
    LoadKind,
    Offer,
    ServerMessage,
    utc_now,
)
from tests.aggregator.serve_process import ServeProcess
from tests.helpers import wait_for

from .balancer import Balancer

LEASE_TTL_S = 3.0
"""A dead coordinator's events are taken over about this long after its last renewal."""
HOME_KW = 3.0


def serve_args(nats_url: str, prefix: str) -> list[str]:
    """Return the options of one clustered ``serve`` with fast negotiation timings."""
    return [
        "--cluster",
        nats_url,
        "--cluster-prefix",
        prefix,
        "--lease-ttl",
        str(LEASE_TTL_S),
        "--ack-timeout",
        "4",
        "--drop-grace",
        "15",
        "--renegotiation-window",
        "1",
    ]


@dataclass
class FleetHome:
    """One home: a real client behind its own balancer; what it got and what was confirmed."""

    home_id: str
    price: float
    balancer: Balancer
    client: HomeClient | None = None
    task: asyncio.Task[None] | None = None
    received: list[ServerMessage] = field(default_factory=list)
    confirmed_acks: set[str] = field(default_factory=set)
    """Award ids whose acknowledgement the aggregator answered with ``ack`` (stored)."""

    def of_type[T](self, kind: type[T]) -> list[T]:
        """Return the received messages of one type."""
        return [message for message in self.received if isinstance(message, kind)]

    @property
    def ended(self) -> bool:
        """Return True once the home was told its event is over."""
        return bool(self.of_type(EventEnd) or self.of_type(Cancel))

    async def on_message(self, message: ServerMessage) -> None:
        """Bid on offers, acknowledge awards; remember confirmed acknowledgements."""
        self.received.append(message)
        assert self.client is not None
        try:
            if isinstance(message, Offer):
                step = BidStep(kw=HOME_KW, price=self.price, loads=["wh"])
                await self.client.send_bid(message, [step])
            elif isinstance(message, Award):
                await self.client.ack_award(message)
                self.confirmed_acks.add(message.award_id)
        except (JeissonError, ValueError):
            pass  # not stored: a re-sent offer or award brings it back

    async def close(self) -> None:
        """Close the client and the balancer."""
        if self.client is not None:
            await self.client.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.balancer.close()


@dataclass
class Cluster:
    """Processes of one cluster, homes spread over them, and the shared database."""

    workdir: Path
    db_url: str
    nats_url: str
    prefix: str
    http: aiohttp.ClientSession
    processes: list[ServeProcess] = field(default_factory=list)
    homes: list[FleetHome] = field(default_factory=list)

    async def start(self, count: int) -> None:
        """Start ``count`` processes: the first alone (it migrates the database), then the rest."""
        for number in range(count):
            workdir = self.workdir / f"p{number}"
            workdir.mkdir()
            self.processes.append(
                ServeProcess(
                    workdir, args=serve_args(self.nats_url, self.prefix), database=self.db_url
                )
            )
        await self.processes[0].start()
        await asyncio.gather(*(process.start() for process in self.processes[1:]))

    @property
    def ports(self) -> list[int]:
        """Return the processes' ports."""
        return [process.port for process in self.processes]

    async def add_homes(self, count: int) -> None:
        """Enrol ``count`` homes; home i connects to process i mod n (prices rise with i)."""
        first = self.processes[0]
        for number in range(count):
            code = await first.add_home(self.http, f"home-{number}")
            enrolled = await enroll(self.http, first.url, code)
            preferred = self.ports[number % len(self.ports)]
            balancer = Balancer(self.ports, preferred)
            await balancer.start()
            home = FleetHome(enrolled.home_id, price=0.05 + 0.01 * number, balancer=balancer)
            inventory = Inventory(
                loads=[
                    Load(
                        load_id="wh",
                        name="Water heater",
                        kind=LoadKind.WATER_HEATER,
                        rated_kw=HOME_KW,
                    )
                ],
                participating=True,
            )
            home.client = HomeClient(
                balancer.url,
                enrolled.token,
                session=self.http,
                software_version="test",
                inventory_provider=lambda inventory=inventory: inventory,
                backoff_base=0.05,
                backoff_max=0.3,
            )
            home.client.subscribe(home.on_message)
            home.task = asyncio.create_task(home.client.run())
            self.homes.append(home)
        for home in self.homes:
            client = home.client
            assert client is not None
            await wait_for(lambda client=client: client.connected, what="home connected")

    async def close(self) -> None:
        """Close the homes, then stop the processes still running."""
        for home in self.homes:
            await home.close()
        for process in self.processes:
            with contextlib.suppress(Exception):
                await process.stop()

    async def request(
        self, process: ServeProcess, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """Call one process's REST API as the operator."""
        headers = {"Authorization": f"Bearer {process.token}"}
        async with self.http.request(
            method, process.url + path, json=body, headers=headers
        ) as response:
            return response.status, await response.json(content_type=None)

    async def create_event(
        self,
        process: ServeProcess,
        target_kw: float,
        bid_window_s: float,
        lead_s: float,
        duration_s: float,
    ) -> str:
        """Create a market event through ``process``; return its id."""
        now = utc_now()
        status, body = await self.request(
            process,
            "POST",
            "/api/v1/events",
            {
                "target_kw": target_kw,
                "price_cap": 0.4,
                "bid_window_s": bid_window_s,
                "restore_stagger_s": 0.2,
                "start": (now + timedelta(seconds=lead_s)).isoformat(),
                "end": (now + timedelta(seconds=lead_s + duration_s)).isoformat(),
            },
        )
        assert status == 201, body
        return str(body["id"])

    async def event(self, process: ServeProcess, event_id: str) -> dict[str, Any]:
        """Return an event's detail as ``process`` answers it."""
        status, body = await self.request(process, "GET", f"/api/v1/events/{event_id}")
        assert status == 200, body
        return dict(body)

    async def wait_status(
        self, process: ServeProcess, event_id: str, status: str, timeout: float = 40.0
    ) -> None:
        """Wait until ``process`` reports the event in ``status``."""

        async def reached() -> bool:
            return (await self.event(process, event_id))["status"] == status

        await wait_for(reached, timeout=timeout, what=f"event {status}")

    async def dashboard_events(self, process: ServeProcess, event_id: str) -> dict[str, Any]:
        """Read ``process``'s dashboard stream until a snapshot shows the event; return it."""
        headers = {"Authorization": f"Bearer {process.token}"}
        async with self.http.get(process.url + "/api/v1/stream", headers=headers) as response:
            assert response.status == 200
            event = ""
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "snapshot":
                    snapshot = json.loads(line.removeprefix("data: "))
                    for item in snapshot["events"]:
                        if item["id"] == event_id:
                            return {"homes_online": snapshot["homes_online"], **item}
        raise AssertionError("the stream ended")

    async def awards(self, event_id: str) -> list[AwardRecord]:
        """Return the event's stored awards (read from the database itself)."""
        store = await Store.open(self.db_url)
        try:
            return await store.awards_for(event_id)
        finally:
            await store.close()

    async def leased(self, event_id: str) -> bool:
        """Return True while the event has a lease row (its coordinator releases it at the end)."""
        store = await Store.open(self.db_url)
        try:
            async with store.engine.connect() as conn:
                query = select(tables.event_leases.c.token).where(
                    tables.event_leases.c.event_id == event_id
                )
                return (await conn.execute(query)).first() is not None
        finally:
            await store.close()

    async def bidders(self, event_id: str, round_number: int = 1) -> set[str]:
        """Return the homes whose bids of a round are stored."""
        store = await Store.open(self.db_url)
        try:
            return {bid.home_id for bid in await store.bids_for(event_id, round_number)}
        finally:
            await store.close()

    async def check_outcome(self, event_id: str) -> list[AwardRecord]:
        """Check what must hold once an event completed; return its acknowledged awards.

        No home holds two live awards, the committed kW never exceeds the target, every
        acknowledgement a home was told is stored is stored as acknowledged, the homes with
        awards are the cheapest bidders, and every home holding an award was told the end.
        """
        awards = await self.awards(event_id)
        live = [a for a in awards if a.status is AwardStatus.ACKED]
        holders = [a.home_id for a in live]
        assert len(holders) == len(set(holders)), f"a home holds two awards: {awards}"
        by_id = {a.award_id: a for a in awards}
        for home in self.homes:
            for award_id in home.confirmed_acks:
                assert by_id[award_id].status is AwardStatus.ACKED, (home.home_id, award_id)
        for award in live:
            home = next(h for h in self.homes if h.home_id == award.home_id)
            await wait_for(lambda home=home: home.ended, what=f"{home.home_id} told the end")

        async def released() -> bool:
            return not await self.leased(event_id)

        await wait_for(released, what="the finished event's lease released")
        return live
