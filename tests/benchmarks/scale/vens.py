"""Light OpenLEADR VENs: a few thousand polling VENs in one process (the comparison's homes).

Runs in the OpenLEADR venv: ``python -m tests.benchmarks.scale.vens '<settings json>'``. Each VEN
keeps one HTTP/1.1 keep-alive connection to the VTN (as OpenLEADR's client does with its aiohttp
session) and sends what OpenLEADR's ``OpenADRClient.run()`` sends, built with OpenLEADR's own
``create_message``: query registration, create party registration, register (no) reports,
request events, poll; then an ``oadrPoll`` every poll interval (a fixed schedule at the VEN's own
random phase; a slot is skipped while the previous poll is still out, as APScheduler does). An
``oadrDistributeEvent`` is parsed with OpenLEADR's ``parse_message`` and answered at once with
``oadrCreatedEvent`` (optIn for every event in it, as the client does). The HTTP client is a few
lines over asyncio streams rather than aiohttp: the simulator must cost far less than the VTN.
"""

from __future__ import annotations

import asyncio
import contextlib
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


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that POSTs XML and reads the answer."""

    def __init__(self, port: int) -> None:
        """Prepare a connection to the VTN on ``port``; it opens on first use."""
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, service: str, body: bytes) -> bytes:
        """POST ``body`` to ``service``; return the response body (raises on HTTP errors)."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        head = (
            f"POST {PREFIX}/{service} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: application/xml\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                header = await self.reader.readuntil(b"\r\n\r\n")
                status = int(header.split(b" ", 2)[1])
                length = 0
                for line in header.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                content = await self.reader.readexactly(length) if length else b""
        except BaseException:
            self.close()  # an answer may still be on its way: never reuse this connection
            raise
        if status != 200:
            raise ConnectionError(f"HTTP {status} from {service}")
        return content

    def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Vens:
    """The VENs of this process and what they saw."""

    def __init__(self, port: int, names: list[str]) -> None:
        """Prepare VENs named ``names``; nothing connects until :meth:`register`."""
        self.vens = [Ven(self, HttpConnection(port), name) for name in names]
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
        """(Re)start every VEN's poll loop at ``poll_s``, each at its own random phase."""
        self.stop_polling()
        self.poll_s = poll_s
        self.polling = True
        self._tasks = [asyncio.create_task(ven.poll_loop(poll_s)) for ven in self.vens]

    def stop_polling(self) -> None:
        """Stop the poll loops (a poll in flight is abandoned)."""
        self.polling = False
        for task in self._tasks:
            task.cancel()
        self._tasks = []

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

    __slots__ = ("fleet", "http", "name", "poll_message", "seen")

    def __init__(self, fleet: Vens, http: HttpConnection, name: str) -> None:
        """Bind a VEN to its fleet and connection."""
        self.fleet = fleet
        self.http = http
        self.name = name
        self.poll_message = b""
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

    async def poll_loop(self, poll_s: float) -> None:
        """Poll on a fixed schedule until stopped (bounded by the fleet's stop)."""
        fleet = self.fleet
        next_at = time.monotonic() + random.uniform(0, poll_s)
        while fleet.polling and not fleet.stopping:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            started = time.monotonic()
            try:
                await self._handle(await self.http.post("OadrPoll", self.poll_message))
            except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as err:
                fleet.failures[f"poll:{type(err).__name__}"] += 1
                self.http.close()
            took = time.monotonic() - started
            fleet.polls += 1
            fleet.poll_seconds += took
            next_at += poll_s
            while next_at < time.monotonic():  # the poll outlasted its slot: skip slots
                next_at += poll_s
                fleet.skipped += 1

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
