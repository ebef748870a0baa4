"""A light Jeisson home simulator: a few thousand homes on raw websockets in one process.

Run by the coordinator as ``python -m tests.benchmarks.scale.homes '<settings json>'``. Each home
is a plain aiohttp websocket speaking the protocol's JSON directly (no HomeClient, no pydantic on
the hot path; the frames' shapes are checked against :mod:`jeisson.common.protocol` by the smoke
test). A home:

* says hello and sends its inventory (a 3 kW water heater, a 1.5 kW pool pump); it is *ready*
  when the server acknowledges the inventory;
* bids a 2-step curve at once on every offer (pool pump first, water heater 5 cents dearer);
* acknowledges every award at once; it *holds* the award when the server acknowledges that;
* sends WebSocket pings every 30 s (the client's default heartbeat);
* with telemetry on, sends what the Home Assistant integration sends outside events: one batch of
  15 one-minute samples every 15 minutes, each home at its own random phase (so the fleet sends
  N / 900 batches a second, the real steady rate, from the first second);
* after the server closes it, reconnects with the client's backoff (full jitter, base 1 s); while
  the coordinator restarts the server the retries are held and released when it answers, so the
  reconnect time measures the server, not how far the backoff grew while it was down.

Every timestamp is ``time.time()`` (one clock for every process on the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import random
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp

from tests.benchmarks.scale.common import (
    pin_to,
    raise_fd_limit,
    serve_commands,
    worker_arguments,
)

SCHEMA_VERSION: Final = 1
HEARTBEAT_S: Final = 30.0
BACKOFF_BASE_S: Final = 1.0
BACKOFF_MAX_S: Final = 60.0
TELEMETRY_PERIOD_S: Final = 900.0
SAMPLES_PER_BATCH: Final = 15
SAMPLE_SPACING: Final = timedelta(minutes=1)
TELEMETRY_TICK_S: Final = 0.25
HANDSHAKE_TIMEOUT_S: Final = 120.0
WATER_HEATER_KW: Final = 3.0
POOL_PUMP_KW: Final = 1.5
PRICE_LEVELS: Final = 20
LOWEST_PRICE: Final = 0.05
PRICE_TICK: Final = 0.01
SECOND_STEP_MARKUP: Final = 0.05

INVENTORY_LOADS: Final = [
    {"load_id": "wh", "name": "Water heater", "kind": "water_heater", "rated_kw": WATER_HEATER_KW},
    {"load_id": "pool", "name": "Pool pump", "kind": "pool_pump", "rated_kw": POOL_PUMP_KW},
]


def bid_steps(index: int) -> list[dict[str, Any]]:
    """Return home ``index``'s 2-step curve (prices spread over 20 levels across the fleet)."""
    first = round(LOWEST_PRICE + (index % PRICE_LEVELS) * PRICE_TICK, 2)
    return [
        {"kw": POOL_PUMP_KW, "price": first, "loads": ["pool"]},
        {"kw": WATER_HEATER_KW, "price": round(first + SECOND_STEP_MARKUP, 2), "loads": ["wh"]},
    ]


def hello_frame(message_id: str) -> dict[str, Any]:
    """Return a home's ``home_hello`` (no held awards)."""
    return {
        "type": "home_hello",
        "id": message_id,
        "schema_version": SCHEMA_VERSION,
        "software_version": "scale-bench",
    }


def inventory_frame(message_id: str) -> dict[str, Any]:
    """Return a home's ``inventory``: a water heater and a pool pump, participating."""
    return {"type": "inventory", "id": message_id, "loads": INVENTORY_LOADS, "participating": True}


def bid_frame(message_id: str, offer: dict[str, Any], index: int) -> dict[str, Any]:
    """Return home ``index``'s ``bid`` answering ``offer``."""
    return {
        "type": "bid",
        "id": message_id,
        "reply_to": offer["id"],
        "event_id": offer["event_id"],
        "round": offer["round"],
        "steps": bid_steps(index),
    }


def award_ack_frame(message_id: str, award: dict[str, Any]) -> dict[str, Any]:
    """Return the ``award_ack`` accepting ``award``."""
    return {
        "type": "award_ack",
        "id": message_id,
        "reply_to": award["id"],
        "event_id": award["event_id"],
        "award_id": award["award_id"],
        "accepted": True,
    }


def telemetry_frame(message_id: str, index: int, now: datetime) -> dict[str, Any]:
    """Return an idle ``telemetry`` batch: 15 one-minute samples ending at ``now``."""
    samples = []
    for minute in range(SAMPLES_PER_BATCH):
        heater = WATER_HEATER_KW if (index + minute) % 4 == 0 else 0.0
        pump = POOL_PUMP_KW if minute % 2 == 0 else 0.0
        samples.append(
            {
                "ts": (now - SAMPLE_SPACING * (SAMPLES_PER_BATCH - 1 - minute)).isoformat(),
                "power_kw": heater + pump,
                "shed_kw": 0.0,
                "loads": {"wh": heater, "pool": pump},
            }
        )
    return {"type": "telemetry", "id": message_id, "samples": samples}


class Fleet:
    """The homes of this process and what they saw."""

    def __init__(self, url: str, tokens: list[str], first_index: int) -> None:
        """Prepare homes for ``tokens``; nothing connects until :meth:`connect`."""
        self.url = url
        self.homes = [
            Home(self, first_index + offset, token) for offset, token in enumerate(tokens)
        ]
        self.session: aiohttp.ClientSession | None = None
        self.stopping = False
        self.telemetry_on = False
        self.ready_at: dict[int, float] = {}
        """Latest ready time of every home (first connect, then each reconnect)."""
        self.connects: Counter[int] = Counter()
        self.offers: defaultdict[str, dict[int, float]] = defaultdict(dict)
        self.awards: defaultdict[str, dict[int, float]] = defaultdict(dict)
        self.held: defaultdict[str, dict[int, float]] = defaultdict(dict)
        self.bids_acked: Counter[str] = Counter()
        self.errors: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.other: Counter[str] = Counter()
        self.telemetry_sent = 0
        self.telemetry_acked = 0
        self.reconnect_gate = asyncio.Event()
        """Set while the server is up: a home whose connection closed waits for it first."""
        self._tasks: list[asyncio.Task[None]] = []
        self._telemetry_task: asyncio.Task[None] | None = None

    async def connect(self, in_flight: int, timeout: float) -> dict[str, Any]:
        """Connect every home (at most ``in_flight`` handshakes at once); report ready times."""
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        self.session = aiohttp.ClientSession(connector=connector)
        gate = asyncio.Semaphore(in_flight)
        self.reconnect_gate.set()
        started = time.time()
        self._tasks = [asyncio.create_task(home.run(gate)) for home in self.homes]
        deadline = started + timeout
        while len(self.ready_at) < len(self.homes) and time.time() < deadline:
            await asyncio.sleep(0.05)
        return {
            "started": started,
            "ready": list(self.ready_at.values()),
            "homes": len(self.homes),
        }

    def server_down(self) -> None:
        """Hold every reconnect until :meth:`server_up` (the coordinator restarts the server)."""
        self.reconnect_gate.clear()

    def server_up(self) -> None:
        """Release the reconnects: each home retries after the client's first backoff delay."""
        self.reconnect_gate.set()

    def status(self) -> dict[str, Any]:
        """Return the homes' ready times and counters (for reconnect and progress checks)."""
        return {
            "ready": list(self.ready_at.values()),
            "connected": sum(1 for home in self.homes if home.ready),
            "connects": sum(self.connects.values()),
            "telemetry_sent": self.telemetry_sent,
            "telemetry_acked": self.telemetry_acked,
            "other": dict(self.other),
        }

    def counts(self, event_id: str | None, since: float) -> dict[str, Any]:
        """Return how many homes got this far (cheap enough to ask several times a second)."""
        return {
            "offers": len(self.offers[event_id]) if event_id else 0,
            "awards": len(self.awards[event_id]) if event_id else 0,
            "held": len(self.held[event_id]) if event_id else 0,
            "bids_acked": self.bids_acked[event_id] if event_id else 0,
            "errors": sum(self.errors[event_id].values()) if event_id else 0,
            "ready_since": sum(1 for at in self.ready_at.values() if at >= since),
            "connected": sum(1 for home in self.homes if home.ready),
        }

    def event_report(self, event_id: str) -> dict[str, Any]:
        """Return every home's offer, award and held times for one event."""
        return {
            "offers": list(self.offers[event_id].values()),
            "awards": list(self.awards[event_id].values()),
            "held": list(self.held[event_id].values()),
            "bids_acked": self.bids_acked[event_id],
            "errors": dict(self.errors[event_id]),
        }

    def set_telemetry(self, on: bool) -> None:
        """Start or stop the idle telemetry of every home."""
        self.telemetry_on = on
        if on and self._telemetry_task is None:
            self._telemetry_task = asyncio.create_task(self._send_telemetry())

    async def _send_telemetry(self) -> None:
        """Send each home's batch when its phase in the 15-minute period comes round."""
        rng = random.Random(len(self.homes))
        started = time.monotonic()
        due = [
            (started + rng.uniform(0, TELEMETRY_PERIOD_S), home.index, home) for home in self.homes
        ]
        heapq.heapify(due)
        while self.telemetry_on and not self.stopping:
            await asyncio.sleep(TELEMETRY_TICK_S)
            now = time.monotonic()
            while due and due[0][0] <= now:
                at, index, home = heapq.heappop(due)
                home.send_telemetry()
                heapq.heappush(due, (at + TELEMETRY_PERIOD_S, index, home))
        self._telemetry_task = None

    async def close(self) -> dict[str, Any]:
        """Close every home's websocket and stop."""
        self.stopping = True
        self.telemetry_on = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.session is not None:
            await self.session.close()
        return {"closed": len(self.homes)}


class Home:
    """One home: a websocket and a tiny protocol loop."""

    __slots__ = ("_ack_waits", "_seq", "fleet", "index", "ready", "token", "ws")

    def __init__(self, fleet: Fleet, index: int, token: str) -> None:
        """Bind a home to its fleet; ``index`` names it and sets its prices."""
        self.fleet = fleet
        self.index = index
        self.token = token
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ready = False
        self._seq = 0
        self._ack_waits: dict[str, tuple[str, str]] = {}
        """Ids of sent frames whose ``ack`` matters -> (what, event id)."""

    def _id(self) -> str:
        self._seq += 1
        return f"h{self.index}-{self._seq}"

    async def run(self, gate: asyncio.Semaphore) -> None:
        """Connect, serve, and reconnect with backoff until the fleet stops."""
        attempt = 0
        first = True
        while not self.fleet.stopping:
            try:
                if first:
                    async with gate:
                        ws = await self._open()
                    first = False
                else:
                    ws = await self._open()
                attempt = 0
                await self._serve(ws)
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            finally:
                self.ready = False
                if self.ws is not None:
                    await self.ws.close()
                    self.ws = None
            if self.fleet.stopping:
                return
            if not self.fleet.reconnect_gate.is_set():
                await self.fleet.reconnect_gate.wait()
                attempt = 0
            ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0**attempt)
            attempt += 1
            await asyncio.sleep(random.uniform(0, ceiling))

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        """Open the websocket and complete hello + inventory; return when the home is ready."""
        session = self.fleet.session
        assert session is not None
        ws = await session.ws_connect(
            self.fleet.url,
            headers={"Authorization": f"Bearer {self.token}"},
            heartbeat=HEARTBEAT_S,
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
        )
        self.ws = ws
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            hello = await ws.receive_str()
            if json.loads(hello)["type"] != "server_hello":
                raise aiohttp.ClientError("no server_hello")
            await ws.send_str(json.dumps(hello_frame(self._id())))
            inventory_id = self._id()
            await ws.send_str(json.dumps(inventory_frame(inventory_id)))
            while True:
                message = await ws.receive()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    raise aiohttp.ClientError(f"closed during hello: {message.type}")
                frame = json.loads(message.data)
                if frame["type"] == "ack" and frame["reply_to"] == inventory_id:
                    break
                await self._handle(frame, time.time())
        self.ready = True
        self.fleet.ready_at[self.index] = time.time()
        self.fleet.connects[self.index] += 1
        return ws

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                await self._handle(json.loads(message.data), time.time())

    async def _handle(self, frame: dict[str, Any], now: float) -> None:
        kind = frame["type"]
        fleet = self.fleet
        ws = self.ws
        assert ws is not None
        if kind == "ack":
            waiting = self._ack_waits.pop(frame["reply_to"], None)
            if waiting is None:
                return
            what, event_id = waiting
            if what == "award_ack":
                fleet.held[event_id].setdefault(self.index, now)
            elif what == "bid":
                fleet.bids_acked[event_id] += 1
            else:
                fleet.telemetry_acked += 1
        elif kind == "offer":
            event_id = frame["event_id"]
            if frame["round"] == 1:
                fleet.offers[event_id].setdefault(self.index, now)
            bid_id = self._id()
            self._ack_waits[bid_id] = ("bid", event_id)
            await ws.send_str(json.dumps(bid_frame(bid_id, frame, self.index)))
        elif kind == "award":
            event_id = frame["event_id"]
            fleet.awards[event_id].setdefault(self.index, now)
            ack_id = self._id()
            self._ack_waits[ack_id] = ("award_ack", event_id)
            await ws.send_str(json.dumps(award_ack_frame(ack_id, frame)))
        elif kind == "error":
            refused = self._ack_waits.pop(str(frame.get("reply_to")), None)
            fleet.errors[refused[1] if refused else ""][frame["code"]] += 1
            fleet.other[f"error:{frame['code']}"] += 1
        else:
            fleet.other[kind] += 1

    def send_telemetry(self) -> None:
        """Send one idle batch (15 one-minute samples ending now), if connected."""
        ws = self.ws
        if ws is None or not self.ready or ws.closed:
            return
        now = datetime.now(UTC).replace(microsecond=0)
        batch_id = self._id()
        self._ack_waits[batch_id] = ("telemetry", "")
        self.fleet.telemetry_sent += 1
        task = asyncio.get_running_loop().create_task(
            ws.send_str(json.dumps(telemetry_frame(batch_id, self.index, now)))
        )
        task.add_done_callback(_ignore_result)


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


async def main() -> None:
    """Serve the coordinator's commands for this process's homes."""
    settings = worker_arguments()
    pin_to(set(settings["cores"]))
    raise_fd_limit()
    fleet = Fleet(settings["url"], settings["tokens"], settings["first_index"])

    async def connect(command: dict[str, Any]) -> dict[str, Any]:
        return await fleet.connect(command["in_flight"], command["timeout"])

    async def status(_command: dict[str, Any]) -> dict[str, Any]:
        return fleet.status()

    async def counts(command: dict[str, Any]) -> dict[str, Any]:
        return fleet.counts(command.get("event_id"), command.get("since", 0.0))

    async def event(command: dict[str, Any]) -> dict[str, Any]:
        return fleet.event_report(command["event_id"])

    async def telemetry(command: dict[str, Any]) -> dict[str, Any]:
        fleet.set_telemetry(command["on"])
        return {"telemetry_sent": fleet.telemetry_sent, "telemetry_acked": fleet.telemetry_acked}

    async def close(_command: dict[str, Any]) -> dict[str, Any]:
        return await fleet.close()

    async def server_down(_command: dict[str, Any]) -> dict[str, Any]:
        fleet.server_down()
        return {}

    async def server_up(_command: dict[str, Any]) -> dict[str, Any]:
        fleet.server_up()
        return {}

    await serve_commands(
        {
            "connect": connect,
            "status": status,
            "counts": counts,
            "event": event,
            "telemetry": telemetry,
            "close": close,
            "server_down": server_down,
            "server_up": server_up,
        }
    )
    if not fleet.stopping:
        await fleet.close()


if __name__ == "__main__":
    asyncio.run(main())
