"""The actuator's connection loop: handshake, reports, commands and reconnects.

:class:`ActuatorClient` keeps one device connected to Home Assistant for as long as it runs:

1. A *ticker* task enforces the device's hold end times, polls its button and feeds the
   watchdog every ``tick_s``, connected or not: the fail-safe never waits for the network.
2. A connection: receive ``challenge``, send ``hello`` (with the device's proof), then obey
   ``command`` frames only after a ``welcome`` whose proof shows Home Assistant knows the key.
   ``state`` reports go out every ``report_interval_s`` and at once on every change. A ping
   goes out every ``heartbeat_s``; a connection that received nothing since the previous ping
   is dropped.
3. Any failure (refused connection, malformed frame, closed socket) ends the connection; the
   client waits a full-jitter exponential backoff and reconnects. A rejected key or protocol
   version waits at least ``rejected_backoff_s``.

Only the ``asyncio`` subset MicroPython has is used (``create_task``, ``sleep``, ``wait_for``),
so the same loop runs on the ESP32 and in the simulator.
"""

import asyncio
import os

from actuator.log import get_logger
from actuator.transport import MalformedFrame, TransportError
from jeisson.actuator import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any, Protocol

    from actuator.device import Device
    from actuator.log import Logger
    from actuator.transport import Connection

    class Button(Protocol):
        """A push button polled by the ticker."""

        def pressed(self) -> bool:
            """Return True once per press."""

    class Watchdog(Protocol):
        """A hardware watchdog the ticker feeds."""

        def feed(self) -> None:
            """Postpone the reset."""


# Why a connection ended (``ActuatorClient.last_outcome``).
OUTCOME_CONNECT_FAILED = "connect_failed"
OUTCOME_CLOSED = "closed"
OUTCOME_PROTOCOL_ERROR = "protocol_error"
OUTCOME_REJECTED = "rejected"
OUTCOME_TIMEOUT = "timeout"

_JITTER_SCALE = 65535.0


class Settings:
    """Timing of the connection loop (seconds)."""

    def __init__(
        self,
        *,
        tick_s: float = 0.25,
        heartbeat_s: float = 20.0,
        handshake_timeout_s: float = protocol.HANDSHAKE_TIMEOUT_S,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        rejected_backoff_s: float = 60.0,
    ) -> None:
        """Keep the timings; every one must be positive."""
        for value in (
            tick_s,
            heartbeat_s,
            handshake_timeout_s,
            backoff_base_s,
            backoff_max_s,
            rejected_backoff_s,
        ):
            if value <= 0:
                raise ValueError("session timings must be positive")
        self.tick_s = tick_s
        self.heartbeat_s = heartbeat_s
        self.handshake_timeout_s = handshake_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.rejected_backoff_s = rejected_backoff_s


def backoff_delay(attempt: int, base: float, maximum: float) -> float:
    """Return a full-jitter delay: uniform in ``[0, min(maximum, base * 2**attempt)]``."""
    ceiling = min(maximum, base * float(1 << min(attempt, 30)))
    return ceiling * int.from_bytes(os.urandom(2), "big") / _JITTER_SCALE


class _Link:
    """What one connection knows: the nonces, whether Home Assistant proved the key, timers."""

    def __init__(self, conn: "Connection", server_nonce: str, now: float) -> None:
        """Start a link right after a valid ``challenge``."""
        self.conn = conn
        self.server_nonce = server_nonce
        self.device_nonce = protocol.new_nonce()
        self.authenticated = False
        self.interval = float(protocol.DEFAULT_REPORT_INTERVAL_S)
        self.reported_version = -1
        self.next_report = now
        self.next_ping = now
        self.rx_at_ping = -1


class ActuatorClient:
    """Keeps a :class:`~actuator.device.Device` connected to Home Assistant."""

    def __init__(
        self,
        device: "Device",
        resolve_url: "Callable[[], Awaitable[str]]",
        connect: "Callable[[str], Awaitable[Connection]]",
        *,
        settings: "Settings | None" = None,
        button: "Button | None" = None,
        watchdog: "Watchdog | None" = None,
        on_welcome: "Callable[[], None] | None" = None,
        logger: "Logger | None" = None,
    ) -> None:
        """Use ``resolve_url`` to find Home Assistant and ``connect`` to open a websocket.

        ``on_welcome`` is called each time Home Assistant accepts the device.
        """
        self.device = device
        self._resolve_url = resolve_url
        self._connect = connect
        self.settings = settings or Settings()
        self._button = button
        self._watchdog = watchdog
        self._on_welcome = on_welcome
        self._log = logger or get_logger("actuator.session")
        self.authenticated = False
        self.connections = 0
        self.last_outcome = ""

    async def run(self) -> None:
        """Run the ticker and keep reconnecting until cancelled."""
        ticker = asyncio.create_task(self._tick_loop())
        attempt = 0
        try:
            while True:
                outcome, was_welcomed = await self._connect_once()
                self.last_outcome = outcome
                attempt = 0 if was_welcomed else attempt + 1
                delay = backoff_delay(
                    attempt, self.settings.backoff_base_s, self.settings.backoff_max_s
                )
                if outcome == OUTCOME_REJECTED:
                    delay = max(delay, self.settings.rejected_backoff_s)
                self._log.info("reconnecting in %.1f s", delay)
                await asyncio.sleep(delay)
        finally:
            ticker.cancel()

    async def _tick_loop(self) -> None:
        """Enforce hold end times, poll the button and feed the watchdog, forever."""
        while True:
            try:
                self.device.tick()
                if self._button is not None and self._button.pressed():
                    self.device.local_override()
            except Exception as err:  # the fail-safe loop must survive anything
                self._log.error("device tick failed: %r", err)
            if self._watchdog is not None:
                self._watchdog.feed()
            await asyncio.sleep(self.settings.tick_s)

    async def _connect_once(self) -> "tuple[str, bool]":
        """Run one connection to its end; return ``(outcome, whether it was welcomed)``."""
        try:
            url = await self._resolve_url()
            conn = await self._connect(url)
        except (TransportError, OSError, ValueError) as err:
            self._log.warning("cannot reach Home Assistant: %s", err)
            return OUTCOME_CONNECT_FAILED, False
        self.connections += 1
        self._log.info("connected to %s", url)
        link: _Link | None = None
        outcome = OUTCOME_CLOSED
        try:
            link = await self._handshake(conn)
            if link is not None:
                outcome = await self._serve(link)
        except ProtocolFailure as failure:
            outcome = failure.outcome
            await self._refuse(conn, failure.error)
        except TransportError as err:
            self._log.warning("connection lost: %s", err)
        except Exception as err:  # never let the device loop die
            self._log.error("unexpected error, reconnecting: %r", err)
        finally:
            self.authenticated = False
            await conn.close()
        welcomed = link is not None and link.authenticated
        self._log.info("disconnected from Home Assistant (%s)", outcome)
        return outcome, welcomed

    async def _refuse(self, conn: "Connection", error: protocol.ProtocolError) -> None:
        """Tell Home Assistant why its frame was refused, then close with the matching code."""
        self._log.warning("refusing Home Assistant's frame: %s (%s)", error.message, error.code)
        try:
            await conn.send(protocol.encode(error.to_message()))
        except TransportError:
            return
        await conn.close(error.close_code(), error.code)

    async def _receive(self, conn: "Connection") -> "dict[str, Any] | None":
        """Return the next valid message, or None when the connection closed.

        Raises :class:`ProtocolFailure` for a fatal protocol error; answers a non-fatal one
        (an unknown command) with ``error`` and reads on.
        """
        while True:
            failure: protocol.ProtocolError | None = None
            message: dict[str, Any] | None = None
            try:  # (no exception chaining on MicroPython: errors are raised after the except)
                frame = await conn.receive()
                if frame is None:
                    return None
                message = protocol.decode_from_server(frame)
            except MalformedFrame as err:
                failure = protocol.ProtocolError(err.code, str(err))
            except protocol.ProtocolError as err:
                failure = err
            if failure is None:
                return message
            if failure.fatal:
                rejected = failure.code == protocol.E_UNSUPPORTED_VERSION
                raise ProtocolFailure(
                    OUTCOME_REJECTED if rejected else OUTCOME_PROTOCOL_ERROR, failure
                )
            self._log.warning("refused: %s", failure.message)
            await conn.send(protocol.encode(failure.to_message()))

    async def _handshake(self, conn: "Connection") -> "_Link | None":
        """Answer Home Assistant's challenge with ``hello``; return the new link."""
        try:
            first = await asyncio.wait_for(self._receive(conn), self.settings.handshake_timeout_s)
        except asyncio.TimeoutError:  # noqa: UP041 - MicroPython's is not the builtin
            self._log.warning("no challenge from Home Assistant")
            return None
        if first is None:
            return None
        if first["type"] == protocol.ERROR:
            self._log_server_error(first)
            return None
        if first["type"] != protocol.CHALLENGE:
            raise ProtocolFailure(
                OUTCOME_PROTOCOL_ERROR,
                protocol.ProtocolError(protocol.E_INVALID_MESSAGE, "expected challenge first"),
            )
        link = _Link(conn, first["nonce"], self.device.clock.monotonic())
        info = self.device.info
        proof = protocol.device_proof(
            info.key, link.server_nonce, link.device_nonce, info.device_id
        )
        hello = protocol.hello(
            device_id=info.device_id,
            name=info.name,
            rated_kw=info.rated_kw,
            firmware=info.firmware,
            nonce=link.device_nonce,
            proof=proof,
            state_payload=self.device.state_payload(),
            meter=self.device.has_meter,
            model=info.model,
        )
        await conn.send(protocol.encode(hello))
        link.reported_version = self.device.version
        link.next_report = self.device.clock.monotonic() + link.interval
        return link

    async def _serve(self, link: _Link) -> str:
        """Handle Home Assistant's messages while a reporter task sends state; return outcome."""
        reporter = asyncio.create_task(self._report_loop(link))
        try:
            while True:
                message = await self._receive(link.conn)
                if message is None:
                    return OUTCOME_CLOSED
                outcome = await self._handle(link, message)
                if outcome:
                    return outcome
        finally:
            reporter.cancel()

    async def _handle(self, link: _Link, message: "dict[str, Any]") -> str:
        """Act on one message; return an outcome when the connection must end, else ``""``."""
        kind = message["type"]
        if kind == protocol.COMMAND:
            if not link.authenticated:
                refusal = protocol.error(
                    protocol.E_NOT_AUTHENTICATED,
                    "commands are obeyed only after Home Assistant proves the device key",
                    message["id"],
                )
                await link.conn.send(protocol.encode(refusal))
                return ""
            reply = self.device.handle_command(message)
            await link.conn.send(protocol.encode(reply))
            link.reported_version = self.device.version
            return ""
        if kind == protocol.WELCOME:
            return self._welcome(link, message)
        if kind == protocol.PENDING:
            self._log.info(
                "waiting for the user to confirm this device in Home Assistant "
                "(with the key shown on its label or serial console)"
            )
            return ""
        if kind == protocol.ERROR:
            return OUTCOME_REJECTED if self._log_server_error(message) else ""
        raise ProtocolFailure(  # a second challenge
            OUTCOME_PROTOCOL_ERROR,
            protocol.ProtocolError(protocol.E_INVALID_MESSAGE, "unexpected " + kind),
        )

    def _welcome(self, link: _Link, message: "dict[str, Any]") -> str:
        """Check Home Assistant's proof; on success start obeying commands."""
        info = self.device.info
        if not protocol.check_server_proof(
            info.key, link.server_nonce, link.device_nonce, info.device_id, message
        ):
            raise ProtocolFailure(
                OUTCOME_REJECTED,
                protocol.ProtocolError(
                    protocol.E_AUTH_FAILED, "Home Assistant did not prove the device key"
                ),
            )
        link.authenticated = True
        self.authenticated = True
        link.interval = float(message["report_interval_s"])
        link.next_report = self.device.clock.monotonic() + link.interval
        self.device.sync_clock(message["time"])
        self._log.info("Home Assistant accepted this device; obeying its commands")
        if self._on_welcome is not None:
            self._on_welcome()
        return ""

    def _log_server_error(self, message: "dict[str, Any]") -> bool:
        """Log an ``error`` from Home Assistant; return True when it rejects the device."""
        code = message["code"]
        self._log.warning("Home Assistant reports %s: %s", code, message["message"])
        return code in (protocol.E_AUTH_FAILED, protocol.E_UNSUPPORTED_VERSION, protocol.E_IGNORED)

    async def _report_loop(self, link: _Link) -> None:
        """Send state reports (periodic and on change) and pings; drop a silent connection."""
        clock = self.device.clock
        try:
            while True:
                now = clock.monotonic()
                if self.device.version != link.reported_version or now >= link.next_report:
                    link.reported_version = self.device.version
                    link.next_report = now + link.interval
                    report = protocol.state(self.device.state_payload())
                    await link.conn.send(protocol.encode(report))
                if now >= link.next_ping:
                    if link.rx_at_ping >= 0 and link.conn.rx_count == link.rx_at_ping:
                        self._log.warning("Home Assistant stopped answering; dropping it")
                        break
                    link.rx_at_ping = link.conn.rx_count
                    link.next_ping = now + self.settings.heartbeat_s
                    await link.conn.ping()
                await asyncio.sleep(self.settings.tick_s)
        except TransportError as err:
            self._log.warning("connection lost while reporting: %s", err)
        await link.conn.close(protocol.CLOSE_NORMAL, "no answer")


class ProtocolFailure(Exception):
    """A connection must end because of ``error``; ``outcome`` says how to back off."""

    def __init__(self, outcome: str, error: protocol.ProtocolError) -> None:
        """Record the outcome and the error to send."""
        super().__init__(error.message)
        self.outcome = outcome
        self.error = error
