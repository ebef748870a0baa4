"""A light Jeisson home simulator: a few thousand homes on raw websockets in one process.

Run by the coordinator as ``python -m tests.benchmarks.scale.homes '<settings json>'``. Each home
is a raw websocket (``rawsocket.py``) speaking the protocol's JSON directly (no HomeClient, no
pydantic on the hot path; the frames' shapes are checked against :mod:`jeisson.common.protocol`
by a test). A home:

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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from tests.benchmarks.scale.common import (
    pin_to,
    raise_fd_limit,
    serve_commands,
    worker_arguments,
)
from tests.benchmarks.scale.rawsocket import RawWebSocket

SCHEMA_VERSION: Final = 1
HEARTBEAT_S: Final = 30.0
BACKOFF_BASE_S: Final = 1.0
BACKOFF_MAX_S: Final = 60.0
TELEMETRY_PERIOD_S: Final = 900.0
SAMPLES_PER_BATCH: Final = 15
SAMPLE_SPACING: Final = timedelta(minutes=1)
TICK_S: Final = 0.25
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
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path
        self.homes = [
            Home(self, first_index + offset, token) for offset, token in enumerate(tokens)
        ]
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
        self._ping_task: asyncio.Task[None] | None = None

    async def connect(self, in_flight: int, timeout: float) -> dict[str, Any]:
        """Connect every home (at most ``in_flight`` handshakes at once); report ready times."""
        gate = asyncio.Semaphore(in_flight)
        self.reconnect_gate.set()
        started = time.time()
        self._tasks = [asyncio.create_task(home.run(gate)) for home in self.homes]
        self._ping_task = asyncio.create_task(
            self._every(HEARTBEAT_S, Home.ping, lambda: not self.stopping)
        )
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
            self._telemetry_task = asyncio.create_task(
                self._every(TELEMETRY_PERIOD_S, Home.send_telemetry, lambda: self.telemetry_on)
            )
        elif not on and self._telemetry_task is not None:
            self._telemetry_task.cancel()
            self._telemetry_task = None

    async def _every(
        self, period: float, action: Callable[[Home], None], running: Callable[[], bool]
    ) -> None:
        """Call ``action`` for each home once a ``period``, each at its own random phase."""
        rng = random.Random(len(self.homes) + int(period))
        started = time.monotonic()
        due = [(started + rng.uniform(0, period), home.index, home) for home in self.homes]
        heapq.heapify(due)
        while running() and not self.stopping:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            while due and due[0][0] <= now:
                at, index, home = heapq.heappop(due)
                action(home)
                heapq.heappush(due, (at + period, index, home))

    async def close(self) -> dict[str, Any]:
        """Close every home's websocket and stop."""
        self.stopping = True
        self.telemetry_on = False
        tasks = [*self._tasks, self._ping_task, self._telemetry_task]
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return {"closed": len(self.homes)}


class Home:
    """One home: a raw websocket and a tiny protocol handler (synchronous, no task per frame)."""

    __slots__ = (
        "_ack_waits",
        "_hello_done",
        "_inventory_id",
        "_seq",
        "fleet",
        "index",
        "ready",
        "token",
        "ws",
    )

    def __init__(self, fleet: Fleet, index: int, token: str) -> None:
        """Bind a home to its fleet; ``index`` names it and sets its prices."""
        self.fleet = fleet
        self.index = index
        self.token = token
        self.ws: RawWebSocket | None = None
        self.ready = False
        self._seq = 0
        self._inventory_id = ""
        self._hello_done: asyncio.Future[None] | None = None
        self._ack_waits: dict[str, tuple[str, str]] = {}
        """Ids of sent frames whose answer matters -> (what, event id)."""

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
                await ws.closed
            except (OSError, TimeoutError):  # ConnectionError and HandshakeError included
                pass
            finally:
                self.ready = False
                if self.ws is not None:
                    self.ws.close()
                    self.ws = None
            if self.fleet.stopping:
                return
            if not self.fleet.reconnect_gate.is_set():
                await self.fleet.reconnect_gate.wait()
                attempt = 0
            ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0**attempt)
            attempt += 1
            await asyncio.sleep(random.uniform(0, ceiling))

    async def _open(self) -> RawWebSocket:
        """Open the websocket; return once hello and inventory are acknowledged (ready)."""
        fleet = self.fleet
        loop = asyncio.get_running_loop()
        hello_done: asyncio.Future[None] = loop.create_future()
        self._hello_done = hello_done
        ws = RawWebSocket(fleet.host, fleet.port, fleet.path, self.token, self._on_text)
        self.ws = ws
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            await loop.create_connection(lambda: ws, fleet.host, fleet.port)
            await ws.opened
            await asyncio.wait((hello_done, ws.closed), return_when=asyncio.FIRST_COMPLETED)
        if not hello_done.done():
            raise ConnectionError("closed during hello")
        return ws

    def _send(self, frame: dict[str, Any]) -> None:
        ws = self.ws
        if ws is not None:
            ws.send_text(json.dumps(frame))

    def _on_text(self, text: str) -> None:
        now = time.time()
        frame = json.loads(text)
        kind = frame["type"]
        fleet = self.fleet
        if kind == "ack":
            reply_to = frame["reply_to"]
            if reply_to == self._inventory_id:
                self._became_ready(now)
                return
            waiting = self._ack_waits.pop(reply_to, None)
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
            self._send(bid_frame(bid_id, frame, self.index))
        elif kind == "award":
            event_id = frame["event_id"]
            fleet.awards[event_id].setdefault(self.index, now)
            ack_id = self._id()
            self._ack_waits[ack_id] = ("award_ack", event_id)
            self._send(award_ack_frame(ack_id, frame))
        elif kind == "server_hello":
            self._send(hello_frame(self._id()))
            self._inventory_id = self._id()
            self._send(inventory_frame(self._inventory_id))
        elif kind == "error":
            refused = self._ack_waits.pop(str(frame.get("reply_to")), None)
            fleet.errors[refused[1] if refused else ""][frame["code"]] += 1
            fleet.other[f"error:{frame['code']}"] += 1
        else:
            fleet.other[kind] += 1

    def _became_ready(self, now: float) -> None:
        self.ready = True
        self.fleet.ready_at[self.index] = now
        self.fleet.connects[self.index] += 1
        if self._hello_done is not None and not self._hello_done.done():
            self._hello_done.set_result(None)

    def ping(self) -> None:
        """Send a WebSocket ping (the client's heartbeat), if connected."""
        if self.ready and self.ws is not None:
            self.ws.ping()

    def send_telemetry(self) -> None:
        """Send one idle batch (15 one-minute samples ending now), if connected."""
        if not self.ready or self.ws is None:
            return
        now = datetime.now(UTC).replace(microsecond=0)
        batch_id = self._id()
        self._ack_waits[batch_id] = ("telemetry", "")
        self.fleet.telemetry_sent += 1
        self._send(telemetry_frame(batch_id, self.index, now))


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
