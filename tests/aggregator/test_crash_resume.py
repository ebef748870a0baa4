"""kill -9 of a real ``jeisson-aggregator serve`` between negotiation steps, then a restart.

The server runs as its own process on SQLite; real homes (jeisson.client) stay connected to it
and reconnect after each kill. Killed after the bids were stored and before the clearing, the
restarted server clears with the stored bids; killed after the awards were acknowledged and
before the event turned active, it activates and completes the event. Nothing is stuck, lost or
stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from aggregator.records import AwardStatus, EventStatus, RoundStatus
from aggregator.store import Store
from jeisson.common.protocol import Award, EventEnd, Offer, utc_now
from tests.helpers import free_port, wait_for

from .common import FAST, HomeFactory, RunningServer, bids, raw_home

JEISSON_AGGREGATOR = Path(sys.executable).parent / "jeisson-aggregator"
START_TIMEOUT_S = 30.0


@dataclass
class ServeProcess:
    """``jeisson-aggregator serve`` in a process of its own."""

    db_url: str
    port: int
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.process = await asyncio.create_subprocess_exec(
            str(JEISSON_AGGREGATOR),
            "serve",
            "--port",
            str(self.port),
            "--db",
            self.db_url,
            "--ack-timeout",
            "20",
            "--drop-grace",
            "20",
            "--renegotiation-window",
            "1",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.starts += 1

        async def healthy() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                    return response.status == 200
            return False

        await wait_for(healthy, timeout=START_TIMEOUT_S, what="server process up")

    async def kill(self) -> None:
        """kill -9: no shutdown, no flush, nothing but what was committed."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        self.process = None


async def operator_token(db_url: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(JEISSON_AGGREGATOR),
        "operator-token",
        "create",
        "--db",
        db_url,
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0
    return output.decode().strip()


@pytest.fixture
async def serve(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[ServeProcess]:
    process = ServeProcess(db_url=f"sqlite:///{tmp_path / 'crash.db'}", port=free_port())
    yield process
    if process.process is not None:
        await process.kill()


@pytest.fixture
async def server(serve: ServeProcess, http: aiohttp.ClientSession) -> RunningServer:
    """The REST side of the process (make_home enrols and connects homes through it)."""
    running = RunningServer(
        db_path=Path(serve.db_url.removeprefix("sqlite:///")), port=serve.port, settings=FAST
    )
    running.session = http
    running.operator_token = await operator_token(serve.db_url)
    await serve.start(http)
    return running


async def test_kill_9_between_steps_resumes_from_the_store(
    serve: ServeProcess, server: RunningServer, make_home: HomeFactory, http: aiohttp.ClientSession
) -> None:
    cheap = await make_home(bids((3.0, 0.10, ["wh"])))
    dear = await make_home(bids((3.0, 0.20, ["wh"])))
    reader = await Store.open(serve.db_url)
    try:
        async with raw_home(server, http) as never_bids:  # keeps the round open to its deadline
            await never_bids.handshake()
            now = utc_now()
            event = await server.create_event(
                target_kw=6.0,
                bid_window_s=3.0,
                start=now + timedelta(seconds=8),
                end=now + timedelta(seconds=18),
            )
            for home in (cheap, dear):
                await wait_for(lambda home=home: bool(home.of_type(Offer)), what="offer")

            async def bids_stored() -> bool:
                return len(await reader.bids_for(event["id"], 1)) == 2

            await wait_for(bids_stored, what="bids stored")
            assert (await reader.rounds_for(event["id"]))[0].status is RoundStatus.OPEN
            await serve.kill()  # bids stored, round not cleared
        restarted = time.monotonic()
        await serve.start(http)
        up_s = time.monotonic() - restarted

        async def both_acked() -> bool:
            detail = await server.event(event["id"])
            return [a["status"] for a in detail["awards"]] == ["acked", "acked"]

        await wait_for(both_acked, what="cleared with the stored bids, awards acknowledged")
        acked_s = time.monotonic() - restarted
        assert (await server.event(event["id"]))["status"] == "committed"
        await serve.kill()  # acknowledged, not yet active
        await serve.start(http)

        async def completed() -> bool:
            return (await server.event(event["id"]))["status"] == "completed"

        await wait_for(completed, timeout=30, what="resumed to completion")
        for home in (cheap, dear):
            await wait_for(lambda home=home: bool(home.of_type(EventEnd)), what="event_end")
            assert len({award.award_id for award in home.of_type(Award)}) == 1

        stored = await reader.get_event(event["id"])
        assert stored is not None
        assert stored.status is EventStatus.COMPLETED
        (round_one,) = await reader.rounds_for(event["id"])
        assert round_one.status is RoundStatus.CLEARED
        assert round_one.bids == 2
        assert (await reader.offered_counts(event["id"])) == {1: 3}
        awards = await reader.awards_for(event["id"])
        assert sorted(award.home_id for award in awards) == sorted([cheap.home_id, dear.home_id])
        assert all(award.status is AwardStatus.ACKED for award in awards)
    finally:
        await reader.close()
    assert serve.starts == 3
    print(  # the figures docs/reliability.md quotes (pytest -s)
        f"\nrestarted after kill -9 in {up_s:.1f} s; cleared and acknowledged "
        f"{acked_s:.1f} s after the kill"
    )
