"""Fixtures: a real aggregator on 127.0.0.1 with a real SQLite store, and real home clients."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from sqlalchemy.engine import make_url

from aggregator.app_keys import STORE
from aggregator.negotiation import NegotiationSettings
from aggregator.server import ServerConfig, create_app
from aggregator.store import Store
from jeisson.client import HomeClient, enroll
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

FAST = NegotiationSettings(
    ack_timeout_s=2.0,
    drop_grace_s=1.0,
    renegotiation_window_s=1.0,
    min_offer_lead_s=0.2,
)


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, what: str = ""
) -> None:
    """Poll ``predicate`` until it is true, failing the test after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)


@dataclass
class RunningServer:
    """A real aggregator process-in-the-loop, restartable on the same port and database."""

    db_path: Path
    port: int
    settings: NegotiationSettings
    heartbeat_interval: float = 30.0
    runner: web.AppRunner | None = None
    operator_token: str = ""
    session: aiohttp.ClientSession | None = None
    db_url: str | None = None
    """Another database (e.g. ``pg_url``) instead of SQLite at ``db_path``."""

    @property
    def url(self) -> str:
        """Return the base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> Store:
        """Return the running app's store."""
        assert self.runner is not None
        return self.runner.app[STORE]

    async def start(self) -> None:
        """Start (or restart) the server."""
        config = ServerConfig(
            db_url=self.db_url or f"sqlite:///{self.db_path}",
            heartbeat_interval=self.heartbeat_interval,
            negotiation=self.settings,
        )
        self.runner = web.AppRunner(create_app(config), shutdown_timeout=2)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        if not self.operator_token:
            self.operator_token = await self.store.create_operator_token("tests")

    async def stop(self) -> None:
        """Stop the server (homes see their connections close)."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        expect: int | None = None,
    ) -> tuple[int, Any]:
        """Call the REST API as the operator; return status and JSON."""
        assert self.session is not None
        headers = {"Authorization": f"Bearer {token or self.operator_token}"}
        async with self.session.request(
            method, self.url + path, json=body, headers=headers
        ) as response:
            payload = await response.json(content_type=None)
            if expect is not None:
                assert response.status == expect, payload
            return response.status, payload

    async def add_home(self, name: str = "home") -> tuple[str, str]:
        """Add a home; return (home_id, enrolment code)."""
        _, body = await self.request("POST", "/api/v1/homes", {"name": name}, expect=201)
        return body["home_id"], body["code"]

    async def create_event(self, **overrides: Any) -> dict[str, Any]:
        """Create an event starting shortly, with fast defaults."""
        now = utc_now()
        lead = float(overrides.get("bid_window_s", 1.0)) + 1.0
        body: dict[str, Any] = {
            "target_kw": 5.0,
            "price_cap": 0.4,
            "bid_window_s": 1.0,
            "restore_stagger_s": 0.5,
            "start": (now + timedelta(seconds=lead)).isoformat(),
            "end": (now + timedelta(seconds=lead + 6)).isoformat(),
        }
        for key, value in overrides.items():
            body[key] = value.isoformat() if isinstance(value, datetime) else value
        _, event = await self.request("POST", "/api/v1/events", body, expect=201)
        return dict(event)

    async def event(self, event_id: str) -> dict[str, Any]:
        """Return an event's detail."""
        _, event = await self.request("GET", f"/api/v1/events/{event_id}", expect=200)
        return dict(event)


def water_heater_and_ev() -> list[Load]:
    """Return a typical two-load inventory."""
    return [
        Load(load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=3.0),
        Load(load_id="ev", name="EV charger", kind=LoadKind.EV_CHARGER, rated_kw=7.0),
    ]


@dataclass
class ScriptedHome:
    """A real HomeClient whose bids are given by the test; it records what it receives."""

    home_id: str
    client: HomeClient
    steps: Callable[[Offer], Sequence[BidStep]]
    auto_ack: bool = True
    received: list[ServerMessage] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def of_type[T](self, kind: type[T]) -> list[T]:
        """Return the received messages of one type."""
        return [message for message in self.received if isinstance(message, kind)]

    async def on_message(self, message: ServerMessage) -> None:
        """Record a message; bid on offers and ack awards as scripted."""
        self.received.append(message)
        if isinstance(message, Offer):
            await self.client.send_bid(message, self.steps(message))
        elif isinstance(message, Award) and self.auto_ack:
            await self.client.ack_award(message)

    @property
    def ended(self) -> bool:
        """Return True once the home was told its event is over (end or cancel)."""
        return bool(self.of_type(EventEnd) or self.of_type(Cancel))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """Yield an aiohttp session."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def server(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[RunningServer]:
    """Yield a started aggregator on a free port with a fresh SQLite database."""
    running = RunningServer(db_path=tmp_path / "aggregator.db", port=free_port(), settings=FAST)
    running.session = http
    await running.start()
    yield running
    await running.stop()


PG_ADMIN_URL = os.environ.get(
    "JEISSON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""A PostgreSQL role allowed to create databases; CI starts the server (127.0.0.1:5432)."""


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """Yield the URL of a fresh, empty PostgreSQL database, dropped afterwards.

    Fails (never skips) when PostgreSQL is unreachable: the PostgreSQL tests must run.
    """
    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as err:
        pytest.fail(
            f"PostgreSQL is needed at {make_url(PG_ADMIN_URL)!r} and is unreachable: {err}. "
            "Start it (pg_ctlcluster --skip-systemctl-redirect <version> main start) "
            "or point JEISSON_TEST_PG_URL at a role that may create databases."
        )
    name = f"jeisson_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Yield the URL of a fresh, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """Yield a store opened (and so migrated) on the fresh database."""
    opened = await Store.open(db_url)
    yield opened
    await opened.close()


HomeFactory = Callable[..., Awaitable[ScriptedHome]]


@pytest.fixture
async def make_home(
    server: RunningServer, http: aiohttp.ClientSession
) -> AsyncIterator[HomeFactory]:
    """Yield a factory of enrolled, connected, scripted homes (closed at teardown)."""
    homes: list[ScriptedHome] = []

    async def factory(
        steps: Callable[[Offer], Sequence[BidStep]] | None = None,
        loads: list[Load] | None = None,
        *,
        auto_ack: bool = True,
        participating: bool = True,
    ) -> ScriptedHome:
        home_id, code = await server.add_home(f"home-{len(homes)}")
        enrolled = await enroll(http, server.url, code)
        inventory = Inventory(loads=loads or water_heater_and_ev(), participating=participating)
        client = HomeClient(
            server.url,
            enrolled.token,
            session=http,
            software_version="test",
            inventory_provider=lambda: inventory,
            backoff_base=0.05,
            backoff_max=0.2,
        )
        home = ScriptedHome(
            home_id=home_id,
            client=client,
            steps=steps or (lambda _offer: []),
            auto_ack=auto_ack,
        )
        client.subscribe(home.on_message)
        home.task = asyncio.create_task(client.run())
        homes.append(home)
        await wait_for(lambda: client.connected, what="home connected")
        return home

    yield factory
    for home in homes:
        await home.client.close()
        if home.task is not None:
            home.task.cancel()
            await asyncio.gather(home.task, return_exceptions=True)
