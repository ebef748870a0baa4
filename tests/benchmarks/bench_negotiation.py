"""How one aggregator process copes with many homes at once (scripts/bench -k negotiation).

Homes are lightweight raw websocket peers in the same process (so the figure includes their
cost too, on the same 2 cores): they connect, bid one step per offer and acknowledge awards.
Measured: connecting N homes, and one market event from creation to every award acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from aggregator.app_keys import MANAGER, REGISTRY, STORE
from aggregator.negotiation import EventRequest, NegotiationSettings
from aggregator.server import ServerConfig, create_app
from jeisson.common.protocol import (
    SCHEMA_VERSION,
    AwardAck,
    Bid,
    BidStep,
    EventKind,
    HomeHello,
    Inventory,
    Load,
    LoadKind,
    dump_message,
    utc_now,
)
from tests.helpers import free_port

HOMES = 2000
BID_WINDOW_S = 20.0


async def run_home(
    http: aiohttp.ClientSession, url: str, token: str, price: float, acked: asyncio.Queue[str]
) -> None:
    """Speak the protocol until the server closes: bid on offers, ack awards."""
    inventory = Inventory(
        loads=[Load(load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=3.0)]
    )
    async with http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.receive()  # server_hello
        await ws.send_str(
            dump_message(HomeHello(schema_version=SCHEMA_VERSION, software_version="b"))
        )
        await ws.send_str(dump_message(inventory))
        async for message in ws:
            frame: dict[str, Any] = json.loads(message.data)
            if frame["type"] == "offer":
                bid = Bid(
                    reply_to=frame["id"],
                    event_id=frame["event_id"],
                    round=frame["round"],
                    steps=[BidStep(kw=3.0, price=price, loads=["wh"])],
                )
                await ws.send_str(dump_message(bid))
            elif frame["type"] == "award":
                ack = AwardAck(
                    reply_to=frame["id"], event_id=frame["event_id"], award_id=frame["award_id"]
                )
                await ws.send_str(dump_message(ack))
                await acked.put(frame["award_id"])


async def negotiate_with_many_homes(tmp_path: Path) -> dict[str, float]:
    """Run the scenario once; return the measured seconds."""
    settings = NegotiationSettings(ack_timeout_s=60, drop_grace_s=120)
    app = create_app(
        ServerConfig(db_url=f"sqlite:///{tmp_path / 'bench.db'}", negotiation=settings)
    )
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    store = app[STORE]
    figures: dict[str, float] = {}
    tokens = []
    for index in range(HOMES):
        _, code = await store.add_home(f"bench-{index}")
        tokens.append((await store.enroll(code)).token)
    acked: asyncio.Queue[str] = asyncio.Queue()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        url = f"http://127.0.0.1:{port}/api/v1/ws"
        started = time.perf_counter()
        homes = [
            asyncio.create_task(run_home(http, url, token, 0.05 + (index % 50) / 100, acked))
            for index, token in enumerate(tokens)
        ]
        registry = app[REGISTRY]
        while len(registry) < HOMES:
            await asyncio.sleep(0.05)
        figures["connect_s"] = time.perf_counter() - started

        manager = app[MANAGER]
        target_kw = HOMES * 3.0 * 0.4
        started = time.perf_counter()
        record = await manager.create_event(
            EventRequest(
                name="bench",
                kind=EventKind.MARKET,
                target_kw=target_kw,
                price_cap=1.0,
                start=utc_now() + timedelta(seconds=BID_WINDOW_S + 5),
                end=utc_now() + timedelta(seconds=BID_WINDOW_S + 65),
                bid_window_s=BID_WINDOW_S,
                restore_stagger_s=60,
                currency="EUR",
            )
        )
        state = manager.live(record.event_id)
        assert state is not None
        while state.committed_kw < target_kw:  # every award acknowledged and processed
            await asyncio.sleep(0.01)
            state = manager.live(record.event_id)  # each committed step is a new state
            assert state is not None
        figures["event_to_all_acked_s"] = time.perf_counter() - started
        figures["acks_seen_by_homes"] = acked.qsize()
        assert state.rounds[1].bids == HOMES
        for task in homes:
            task.cancel()
        await asyncio.gather(*homes, return_exceptions=True)
    await runner.cleanup()
    return figures


@pytest.mark.benchmark(group="negotiation")
def test_negotiation_with_2000_homes(benchmark: Any, tmp_path: Path) -> None:
    figures: dict[str, float] = {}

    def scenario() -> None:
        figures.update(asyncio.run(negotiate_with_many_homes(tmp_path)))

    benchmark.pedantic(scenario, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    print(
        f"\n{HOMES} homes: connected in {figures['connect_s']:.1f} s; "
        f"event created → all awards acknowledged in {figures['event_to_all_acked_s']:.1f} s"
    )
