"""Light OpenLEADR VENs: a few thousand polling VENs in one process (the comparison's homes).

Runs in the OpenLEADR venv: ``python -m tests.benchmarks.scale.vens '<settings json>'``. Each VEN
keeps one HTTP/1.1 keep-alive connection to the VTN (as OpenLEADR's client does with its aiohttp
session) and sends what OpenLEADR's ``OpenADRClient.run()`` sends, built with OpenLEADR's own
``create_message``: query registration, create party registration, register (no) reports,
request events, poll; then an ``oadrPoll`` every poll interval (a fixed schedule at the VEN's own
random phase; a slot is skipped while the previous poll is still out, as APScheduler does). An
``oadrDistributeEvent`` is parsed with OpenLEADR's ``parse_message`` and answered at once with
``oadrCreatedEvent`` (optIn for every event in it, as the client does). The HTTP client is a few
lines on an asyncio protocol, and one scheduler per process starts the polls: the simulator must
cost far less than the VTN.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections import Counter, defaultdict
from typing import Any, Final

from openleadr.messaging import create_message, parse_message

from tests.benchmarks.scale.common import (
    HOST,
    pin_to,
    raise_fd_limit,
    serve_commands,
    worker_arguments,
)

PREFIX: Final = "/OpenADR2/Simple/2.0b"
REQUEST_TIMEOUT_S: Final = 120.0
DISTRIBUTE: Final = b"oadrDistributeEvent"
HTTP_OK: Final = 200
TICK_S: Final = 0.05


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, parsed in ``data_received``."""

    def __init__(self, port: int) -> None:
        """Prepare a connection to the VTN on ``port``; it opens on first use."""
        self.port = port
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[bytes] | None = None
        self._head = f"Host: {HOST}:{port}\r\nContent-Type: application/xml\r\n"

    async def open(self) -> None:
        """Connect (again) if not connected."""
        if self.transport is None or self.transport.is_closing():
            self._buffer.clear()
            await asyncio.get_running_loop().create_connection(lambda: self, HOST, self.port)

    def send(self, service: str, body: bytes) -> asyncio.Future[bytes]:
        """POST ``body`` to ``service``; the future gets the response body (open first)."""
        assert self.transport is not None
        assert self._answer is None
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._answer = answer
        request = f"POST {PREFIX}/{service} HTTP/1.1\r\n{self._head}Content-Length: {len(body)}"
        self.transport.write(request.encode() + b"\r\n\r\n" + body)
        return answer

    async def post(self, service: str, body: bytes) -> bytes:
        """POST and wait for the answer (at most :data:`REQUEST_TIMEOUT_S`)."""
        await self.open()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await self.send(service, body)
        except BaseException:
            self._answer = None
            self.close()  # an answer may still be on its way: never reuse this connection
            raise

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Complete the waiting request once its whole response is in."""
        buffer = self._buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        header = bytes(buffer[:end])
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(buffer) < end + 4 + length:
            return
        body = bytes(buffer[end + 4 : end + 4 + length])
        del buffer[: end + 4 + length]
        answer, self._answer = self._answer, None
        if answer is None or answer.done():
            return
        status = int(header.split(b" ", 2)[1])
        if status == HTTP_OK:
            answer.set_result(body)
        else:
            answer.set_exception(ConnectionError(f"HTTP {status}"))

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail the waiting request; the next one reconnects."""
        self.transport = None
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(exc or ConnectionError("connection closed"))

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.close()


class Vens:
    """The VENs of this process and what they saw."""

    def __init__(self, port: int, names: list[str]) -> None:
        """Prepare VENs named ``names``; nothing connects until :meth:`register`."""
        self.vens = [Ven(self, HttpConnection(port), name) for name in names]
        self.background: set[asyncio.Task[None]] = set()
        self.poll_s = 10.0
        self.polling = False
        self.stopping = False
        self.ready_at: dict[str, float] = {}
        self.received: defaultdict[str, dict[str, float]] = defaultdict(dict)
        """Round tag -> VEN -> when its event arrived."""
        self.responded: defaultdict[str, dict[str, float]] = defaultdict(dict)
        """Round tag -> VEN -> when the VTN answered its optIn."""
        self.cancel_acked: Counter[str] = Counter()
        self.polls = 0
        self.poll_seconds = 0.0
        self.skipped = 0
        self.failures: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []

    async def register(self, in_flight: int, timeout: float) -> dict[str, Any]:
        """Register every VEN (at most ``in_flight`` at once); report when each was ready."""
        gate = asyncio.Semaphore(in_flight)
        started = time.time()

        async def register_one(ven: Ven) -> None:
            async with gate:
                try:
                    await ven.register()
                except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as err:
                    self.failures[f"register:{type(err).__name__}"] += 1

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(register_one(ven) for ven in self.vens))
        return {"started": started, "ready": list(self.ready_at.values()), "vens": len(self.vens)}

    def start_polling(self, poll_s: float) -> None:
        """(Re)start polling every ``poll_s``, each VEN at its own random phase."""
        self.stop_polling()
        self.poll_s = poll_s
        self.polling = True
        self._tasks = [asyncio.create_task(self._schedule(poll_s))]

    def stop_polling(self) -> None:
        """Stop polling (a poll in flight still completes)."""
        self.polling = False
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def _schedule(self, poll_s: float) -> None:
        """Start each VEN's poll when its slot comes (a slot is skipped while it is busy)."""
        started = time.monotonic()
        due = [(started + random.uniform(0, poll_s), index) for index in range(len(self.vens))]
        heapq.heapify(due)
        while self.polling and not self.stopping:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            while due and due[0][0] <= now:
                at, index = heapq.heappop(due)
                self.vens[index].poll()
                heapq.heappush(due, (at + poll_s, index))

    def counts(self, tag: str | None) -> dict[str, Any]:
        """Return counters (cheap enough to ask several times a second)."""
        return {
            "received": len(self.received[tag]) if tag else 0,
            "responded": len(self.responded[tag]) if tag else 0,
            "cancel_acked": self.cancel_acked[tag] if tag else 0,
            "polls": self.polls,
            "poll_seconds": self.poll_seconds,
            "skipped": self.skipped,
            "failures": sum(self.failures.values()),
        }

    def report(self, tag: str) -> dict[str, Any]:
        """Return every VEN's receive and response times for round ``tag``."""
        return {
            "received": list(self.received[tag].values()),
            "responded": list(self.responded[tag].values()),
            "failures": dict(self.failures),
        }

    async def close(self) -> dict[str, Any]:
        """Stop polling and close every connection."""
        self.stopping = True
        tasks = self._tasks
        self.stop_polling()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for ven in self.vens:
            ven.http.close()
        return {"closed": len(self.vens)}


class Ven:
    """One VEN: a connection, its pre-built poll message and the events it answered."""

    __slots__ = ("busy", "fleet", "http", "name", "poll_message", "poll_started", "seen")

    def __init__(self, fleet: Vens, http: HttpConnection, name: str) -> None:
        """Bind a VEN to its fleet and connection."""
        self.fleet = fleet
        self.http = http
        self.name = name
        self.poll_message = b""
        self.busy = False
        self.poll_started = 0.0
        self.seen: set[tuple[str, str]] = set()
        """(event id, status) pairs already recorded."""

    async def _request(self, service: str, message_type: str, **payload: Any) -> bytes:
        return await self.http.post(service, create_message(message_type, **payload).encode())

    async def register(self) -> None:
        """Do what ``OpenADRClient.run()`` does before its first scheduled poll."""
        await self._request("EiRegisterParty", "oadrQueryRegistration", request_id=_new_id())
        answer = await self._request(
            "EiRegisterParty",
            "oadrCreatePartyRegistration",
            request_id=_new_id(),
            ven_name=self.name,
            ven_id=None,
            http_pull_model=True,
            xml_signature=False,
            report_only=False,
            profile_name="2.0b",
            transport_name="simpleHttp",
            transport_address=None,
            registration_id=None,
        )
        _, payload = parse_message(answer)
        if payload.get("ven_id") != self.name:
            raise ConnectionError("registration refused")
        await self._request(
            "EiReport",
            "oadrRegisterReport",
            request_id=_new_id(),
            ven_id=self.name,
            reports=[],
            report_request_id=0,
        )
        await self._handle(
            await self._request(
                "EiEvent",
                "oadrRequestEvent",
                request_id=_new_id(),
                ven_id=self.name,
                reply_limit=None,
            )
        )
        self.poll_message = create_message("oadrPoll", ven_id=self.name).encode()
        await self._handle(await self.http.post("OadrPoll", self.poll_message))
        self.fleet.ready_at[self.name] = time.time()

    def poll(self) -> None:
        """Send an oadrPoll now, unless the previous one (or its answer) is still out."""
        fleet = self.fleet
        if self.busy:
            fleet.skipped += 1
            return
        self.busy = True
        self.poll_started = time.monotonic()
        if self.http.transport is None or self.http.transport.is_closing():
            task = asyncio.get_running_loop().create_task(self._poll_reconnecting())
            fleet.background.add(task)
            task.add_done_callback(fleet.background.discard)
            return
        self.http.send("OadrPoll", self.poll_message).add_done_callback(self._polled)

    async def _poll_reconnecting(self) -> None:
        try:
            answer = await self.http.post("OadrPoll", self.poll_message)
        except (OSError, ConnectionError, TimeoutError) as err:
            self._failed(err)
            return
        await self._after_poll(answer)

    def _polled(self, answer: asyncio.Future[bytes]) -> None:
        if answer.cancelled():
            self.busy = False
            return
        err = answer.exception()
        if err is not None:
            self._failed(err)
            return
        body = answer.result()
        if DISTRIBUTE not in body:
            self._done()
            return
        task = asyncio.get_running_loop().create_task(self._after_poll(body))
        self.fleet.background.add(task)
        task.add_done_callback(self.fleet.background.discard)

    async def _after_poll(self, body: bytes) -> None:
        try:
            await self._handle(body)
        except (OSError, ConnectionError, TimeoutError) as err:
            self._failed(err)
            return
        self._done()

    def _done(self) -> None:
        self.busy = False
        self.fleet.polls += 1
        self.fleet.poll_seconds += time.monotonic() - self.poll_started

    def _failed(self, err: BaseException) -> None:
        self.busy = False
        self.fleet.failures[f"poll:{type(err).__name__}"] += 1
        self.http.close()

    async def _handle(self, answer: bytes) -> None:
        """Answer an oadrDistributeEvent as OpenLEADR's client does; ignore anything else."""
        if DISTRIBUTE not in answer:
            return
        now = time.time()
        _, message = parse_message(answer)
        responses = []
        new: list[tuple[str, str]] = []
        for event in message.get("events", []):
            descriptor = event["event_descriptor"]
            event_id = descriptor["event_id"]
            status = descriptor["event_status"]
            tag = event_id.split("-", 1)[0]
            if (event_id, status) not in self.seen:
                self.seen.add((event_id, status))
                new.append((tag, status))
                if status != "cancelled":
                    self.fleet.received[tag].setdefault(self.name, now)
            responses.append(
                {
                    "response_code": 200,
                    "response_description": "OK",
                    "request_id": message["request_id"],
                    "modification_number": descriptor["modification_number"],
                    "event_id": event_id,
                    "opt_type": "optIn",
                }
            )
        if not responses:
            return
        await self._request(
            "EiEvent",
            "oadrCreatedEvent",
            response={
                "response_code": 200,
                "response_description": "OK",
                "request_id": message["request_id"],
            },
            event_responses=responses,
            ven_id=self.name,
        )
        answered = time.time()
        for tag, status in new:
            if status == "cancelled":
                self.fleet.cancel_acked[tag] += 1
            else:
                self.fleet.responded[tag].setdefault(self.name, answered)


def _new_id() -> str:
    return f"{random.getrandbits(64):016x}"


async def main() -> None:
    """Serve the coordinator's commands for this process's VENs."""
    settings = worker_arguments()
    pin_to(set(settings["cores"]))
    raise_fd_limit()
    logging.getLogger("openleadr").setLevel(logging.ERROR)  # per-event warnings cost CPU here
    vens = Vens(settings["port"], settings["names"])

    async def register(command: dict[str, Any]) -> dict[str, Any]:
        return await vens.register(command["in_flight"], command["timeout"])

    async def poll(command: dict[str, Any]) -> dict[str, Any]:
        if command["poll_s"]:
            vens.start_polling(command["poll_s"])
        else:
            vens.stop_polling()
        return {}

    async def counts(command: dict[str, Any]) -> dict[str, Any]:
        return vens.counts(command.get("tag"))

    async def report(command: dict[str, Any]) -> dict[str, Any]:
        return vens.report(command["tag"])

    async def close(_command: dict[str, Any]) -> dict[str, Any]:
        return await vens.close()

    await serve_commands(
        {"register": register, "poll": poll, "counts": counts, "report": report, "close": close}
    )
    if not vens.stopping:
        await vens.close()


if __name__ == "__main__":
    asyncio.run(main())
