"""Helpers the aggregator tests share: the server under test, scripted and raw homes, bids.

Fixtures live in conftest.py; this module holds the classes and functions test modules import
(test modules never import each other).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from aggregator.app_keys import STORE
from aggregator.history.recorder import HistorySettings
from aggregator.home_limits import RateLimits
from aggregator.negotiation import NegotiationSettings
from aggregator.server import ServerConfig, create_app
from aggregator.store import Store
from jeisson.client import HomeClient, enroll
from jeisson.common.protocol import (
    SCHEMA_VERSION,
    Award,
    BidStep,
    Cancel,
    EventEnd,
    HomeHello,
    Inventory,
    Load,
    LoadKind,
    Offer,
    ServerMessage,
    dump_message,
    utc_now,
)
from tests.helpers import wait_for

FAST = NegotiationSettings(
    ack_timeout_s=2.0,
    drop_grace_s=1.0,
    renegotiation_window_s=1.0,
    min_offer_lead_s=0.2,
    retry_base_s=0.05,
    retry_max_s=0.5,
)

# The settled event (conftest's settled_event fixture) is on a Wednesday evening.
EVENT_START = datetime(2026, 11, 18, 18, 0, tzinfo=UTC)  # a Wednesday
EVENT_END = EVENT_START + timedelta(hours=1)
INTERVAL = timedelta(minutes=15)
HISTORY = timedelta(days=20)


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
    history: HistorySettings = field(default_factory=HistorySettings)
    """How often the dashboard's history is sampled."""
    home_limits: RateLimits = field(default_factory=RateLimits)
    """How much each home may send."""

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
            history=self.history,
            home_limits=self.home_limits,
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
    token: str = ""
    """The home's token, to connect it again with another client."""
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


HomeFactory = Callable[..., Awaitable[ScriptedHome]]


def bids(*steps: tuple[float, float, list[str]]) -> object:
    """Return a bid function answering every offer with the same steps."""
    return lambda _offer: [BidStep(kw=kw, price=price, loads=loads) for kw, price, loads in steps]


def first_round_only(*steps: tuple[float, float, list[str]]) -> object:
    """Return a bid function that bids in round 1 and nothing afterwards."""
    return lambda offer: (
        [BidStep(kw=kw, price=price, loads=loads) for kw, price, loads in steps]
        if offer.round == 1
        else []
    )


async def event_status(server: RunningServer, event_id: str, status: str) -> None:
    """Wait until the event reaches ``status``."""

    async def reached() -> bool:
        return (await server.event(event_id))["status"] == status

    await wait_for(reached, what=f"event {status}")


# --- A home speaking the protocol frame by frame ---------------------------------------------


class RawHome:
    """A home speaking the protocol frame by frame over a real websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, frame: str | dict[str, Any]) -> None:
        await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        message = await self.ws.receive(timeout=timeout)
        assert message.type is aiohttp.WSMsgType.TEXT, message
        return dict(json.loads(message.data))

    async def receive_type(self, kind: str, timeout: float = 8.0) -> dict[str, Any]:
        while True:
            frame = await self.receive(timeout)
            if frame["type"] == kind:
                return frame

    async def handshake(self, schema_version: int = SCHEMA_VERSION) -> None:
        hello = await self.receive()
        assert hello["type"] == "server_hello"
        await self.send(
            dump_message(HomeHello(schema_version=schema_version, software_version="raw"))
        )
        assert (await self.receive())["type"] == "ack"
        await self.send(dump_message(Inventory(loads=water_heater_and_ev())))
        assert (await self.receive())["type"] == "ack"


async def enrolled_token(server: RunningServer, http: aiohttp.ClientSession) -> tuple[str, str]:
    home_id, code = await server.add_home("raw")
    return home_id, (await enroll(http, server.url, code)).token


@asynccontextmanager
async def raw_home(
    server: RunningServer, http: aiohttp.ClientSession, token: str | None = None
) -> AsyncIterator[RawHome]:
    token = token or (await enrolled_token(server, http))[1]
    async with http.ws_connect(
        server.url + "/api/v1/ws", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        yield RawHome(ws)
