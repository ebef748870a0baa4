"""Home websocket sessions: one :class:`HomeSession` per connection, and the registry of them.

A session validates every frame with :func:`jeisson.common.protocol.parse_message`, answers invalid
ones with an ``error`` (the session goes on), and hands valid messages to small handlers named
after the message. Outgoing frames go through a per-session writer queue, so one slow home never
blocks the negotiation or other homes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, KeysView
from dataclasses import dataclass, field, replace
from typing import Final

from aiohttp import WSCloseCode, WSMsgType, web

from aggregator import __version__
from aggregator.home_limits import RateLimits, TokenBucket, check_telemetry
from aggregator.metrics import Metrics
from aggregator.negotiation import EventManager
from aggregator.records import HomeRecord
from aggregator.settlement.courier import StatementCourier
from aggregator.store import (
    GroupCommitter,
    HomeInventory,
    HomeSeen,
    Store,
    StoreUnavailableError,
    Update,
)
from jeisson.common.const import (
    CLOSE_REPLACED,
    CLOSE_REVOKED,
    CLOSE_SILENT,
    CLOSE_TOO_SLOW,
    CLOSE_UNSUPPORTED_VERSION,
)
from jeisson.common.protocol import (
    HOME_MESSAGE_TYPES,
    MIN_SUPPORTED_SCHEMA_VERSION,
    SCHEMA_VERSION,
    AwardAck,
    Bid,
    ErrorCode,
    HeldAward,
    HomeHello,
    HomeMessage,
    Inventory,
    Message,
    OptOut,
    ProtocolError,
    ServerHello,
    ServerMessage,
    StatementAck,
    Telemetry,
    dump_message,
    new_message_id,
    parse_message,
    utc_now,
)

_LOGGER = logging.getLogger(__name__)

SILENT_INTERVALS: Final = 3
"""A home silent (not even a ping) for this many heartbeat intervals is dropped."""
WRITER_QUEUE_SIZE: Final = 1000
"""Frames queued for one home at most; a home this far behind is cut off (it is not reading)."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What every session needs to know about the server."""

    aggregator_id: str
    heartbeat_interval: float = 30.0
    limits: RateLimits = field(default_factory=RateLimits)
    """How much each home may send (frames and telemetry samples per second)."""


def ack_frame(reply_to: str) -> str:
    """Return the serialised ``ack`` of a message, built without a model.

    The same JSON as ``dump_message(Ack(reply_to=...))`` at a tenth of the cost (one per home
    message); ``reply_to`` is an identifier that was validated already.
    """
    return f'{{"id":"{new_message_id()}","reply_to":{json.dumps(reply_to)},"type":"ack"}}'


class SessionRegistry:
    """The homes connected right now; implements the negotiation's ``HomeLink``."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        """Start with no sessions."""
        self.metrics = metrics or Metrics()
        self._sessions: dict[str, HomeSession] = {}
        self._open: set[HomeSession] = set()
        """Every open session, ready or still saying hello."""
        self._departure_listeners: list[Callable[[str], None]] = []
        self._closed_at: dict[str, float] = {}
        """When each home's sessions were last closed by :meth:`close_home` (monotonic)."""

    def __len__(self) -> int:
        """Return how many homes are connected and ready."""
        return len(self._sessions)

    def is_connected(self, home_id: str) -> bool:
        """Return True when the home has a ready session."""
        return home_id in self._sessions

    def home_ids(self) -> KeysView[str]:
        """Return the ids of the connected, ready homes (a live view)."""
        return self._sessions.keys()

    def on_departure(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(home_id)`` whenever a home's live session ends."""
        self._departure_listeners.append(listener)

    def schema_version(self, home_id: str) -> int | None:
        """Return the protocol version a connected home speaks (None: not connected)."""
        session = self._sessions.get(home_id)
        return None if session is None else session.schema_version

    def send(self, home_id: str, message: ServerMessage) -> bool:
        """Queue a message for one home; False when it is not connected."""
        session = self._sessions.get(home_id)
        if session is None or not session.enqueue(dump_message(message)):
            return False
        self.metrics.count_out(message.type)
        return True

    def broadcast(self, home_ids: Iterable[str], message: ServerMessage) -> int:
        """Queue one message (serialised once) for many homes; return how many got it."""
        frame = dump_message(message)
        sent = 0
        for home_id in home_ids:
            session = self._sessions.get(home_id)
            if session is not None and session.enqueue(frame):
                sent += 1
        self.metrics.count_out(message.type, sent)
        return sent

    async def register(self, session: HomeSession) -> None:
        """Make a session the home's live one, closing an older session of the same home."""
        older = self._sessions.get(session.home_id)
        self._sessions[session.home_id] = session
        if older is not None and older is not session:
            await older.close(CLOSE_REPLACED, "replaced by a newer connection")

    def attach(self, session: HomeSession) -> None:
        """Track a session from the moment its websocket opens."""
        self._open.add(session)

    def unregister(self, session: HomeSession) -> bool:
        """Forget a session; return True when it was the home's live one."""
        self._open.discard(session)
        if self._sessions.get(session.home_id) is session:
            del self._sessions[session.home_id]
            for listener in self._departure_listeners:
                listener(session.home_id)
            return True
        return False

    async def close_home(self, home_id: str, reason: str) -> int:
        """Close every open session of one home (revoked, suspended, removed, re-enrolled).

        Returns how many were closed; the close code is ``CLOSE_REVOKED``.
        """
        self._closed_at[home_id] = time.monotonic()
        sessions = [session for session in list(self._open) if session.home_id == home_id]
        for session in sessions:
            await session.close(CLOSE_REVOKED, reason)
        return len(sessions)

    def closed_since(self, home_id: str, since: float) -> bool:
        """Return True when the home's sessions were closed (revoked...) after ``since``."""
        closed = self._closed_at.get(home_id)
        return closed is not None and closed >= since

    async def close_all(self) -> None:
        """Close every session (server shutdown)."""
        for session in list(self._open):
            await session.close(WSCloseCode.GOING_AWAY, "server shutting down")


class HomeSession:
    """One home's websocket connection."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        home: HomeRecord,
        *,
        store: Store,
        committer: GroupCommitter,
        manager: EventManager,
        registry: SessionRegistry,
        settings: SessionSettings,
        courier: StatementCourier | None = None,
        admitted_at: float | None = None,
    ) -> None:
        """Bind a prepared websocket to the authenticated home.

        ``admitted_at`` is when (monotonic) its token was looked up: a revocation, suspension or
        removal after that closes the session as soon as it starts.
        """
        self._admitted_at = admitted_at
        self._ws = ws
        self._home = home
        self._store = store
        self._committer = committer
        self._manager = manager
        self._registry = registry
        self._settings = settings
        # The writer queue: a plain list and one future while the writer waits. An
        # asyncio.Queue (three deques, an Event, a dict) cost ~2.4 KiB per connected home.
        self._outbox: list[str] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._cut_off: asyncio.Task[None] | None = None
        """The close of a home that fell too far behind (kept: one close, one log line)."""
        self._courier = courier
        self._held: list[HeldAward] = []
        self._helloed = False
        self._ready = False
        limits = settings.limits
        started = time.monotonic()
        self._frames = TokenBucket(limits.frames_per_s, limits.frame_burst, started)
        self._samples = TokenBucket(limits.samples_per_s, limits.sample_burst, started)
        self.schema_version = MIN_SUPPORTED_SCHEMA_VERSION
        """The protocol version the home stated in its hello."""

    @property
    def home_id(self) -> str:
        """Return the id of the home on this connection."""
        return self._home.home_id

    def enqueue(self, frame: str) -> bool:
        """Queue a serialised frame; a home that cannot keep up is disconnected."""
        if self._ws.closed or self._cut_off is not None:
            return False
        if len(self._outbox) >= WRITER_QUEUE_SIZE:
            _LOGGER.warning(
                "Home %s is not reading; closing its session",
                self.home_id,
                extra={"home_id": self.home_id},
            )
            self._cut_off = asyncio.get_running_loop().create_task(
                self.close(CLOSE_TOO_SLOW, "not reading messages")
            )
            return False
        self._outbox.append(frame)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return True

    async def close(self, code: int, reason: str) -> None:
        """Close the websocket with a code and reason."""
        await self._ws.close(code=code, message=reason.encode())

    async def run(self) -> None:
        """Serve the connection until it closes."""
        writer = asyncio.create_task(self._write_frames(), name=f"writer-{self.home_id}")
        self._registry.attach(self)
        try:
            if self._admitted_at is not None and self._registry.closed_since(
                self.home_id, self._admitted_at
            ):  # its access was taken away while it was connecting
                await self.close(CLOSE_REVOKED, "this home's access changed while it connected")
                return
            self.enqueue(
                dump_message(
                    ServerHello(
                        server_version=__version__,
                        aggregator_id=self._settings.aggregator_id,
                        home_id=self.home_id,
                        heartbeat_interval=self._settings.heartbeat_interval,
                        server_time=utc_now(),
                        home_name=self._home.name,
                    )
                )
            )
            await self._read_frames()
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if self._registry.unregister(self):
                self._manager.home_disconnected(self.home_id)
                _LOGGER.info("Home %s disconnected", self.home_id, extra={"home_id": self.home_id})

    async def _write_frames(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._outbox:
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
            frames, self._outbox = self._outbox, []
            for frame in frames:
                try:
                    await self._ws.send_str(frame)
                except ConnectionError:
                    return

    async def _read_frames(self) -> None:
        timeout = SILENT_INTERVALS * self._settings.heartbeat_interval
        while not self._ws.closed:
            try:
                msg = await self._ws.receive(timeout=timeout)
            except TimeoutError:
                _LOGGER.info(
                    "Home %s silent for %.0f s; dropping it",
                    self.home_id,
                    timeout,
                    extra={"home_id": self.home_id},
                )
                await self.close(CLOSE_SILENT, "no heartbeat")
                return
            if msg.type is WSMsgType.TEXT:
                await self._handle_frame(msg.data)
            elif msg.type is WSMsgType.BINARY:
                self._send_error(
                    ProtocolError(ErrorCode.INVALID_JSON, "binary frames are not accepted")
                )
            elif msg.type is WSMsgType.ERROR:
                _LOGGER.warning(
                    "Home %s: websocket error: %s",
                    self.home_id,
                    msg.data,
                    extra={"home_id": self.home_id},
                )
                return
            else:  # CLOSE, CLOSING, CLOSED
                return

    async def _handle_frame(self, frame: str) -> None:
        message_id: str | None = None
        try:
            message = parse_message(frame, allowed=HOME_MESSAGE_TYPES)
            message_id = message.id
            self._check_quota(self._frames, 1, "frames", message_id)
            await self._dispatch(message)
        except ProtocolError as err:
            _LOGGER.debug(
                "Home %s: refused a message: %s %s",
                self.home_id,
                err.code,
                err,
                extra={"home_id": self.home_id},
            )
            self._send_error(err)
        except StoreUnavailableError:
            # Nothing of the message was stored (the store logs why): the home keeps it and
            # sends it again (internal_error is retryable for the client).
            self._send_error(
                ProtocolError(
                    ErrorCode.INTERNAL_ERROR,
                    "storage temporarily unavailable; nothing was stored, send it again",
                    message_id,
                )
            )
        except Exception:
            _LOGGER.exception(
                "Home %s: failed to handle a message", self.home_id, extra={"home_id": self.home_id}
            )
            self._send_error(ProtocolError(ErrorCode.INTERNAL_ERROR, "internal error", message_id))

    async def _dispatch(self, message: Message) -> None:
        """Hand a validated message to the handler named after it."""
        self._registry.metrics.count_in(message.type)
        if not self._helloed and not isinstance(message, HomeHello):
            raise ProtocolError(ErrorCode.NOT_HELLOED, "send home_hello first", message.id)
        match message:
            case HomeHello():
                await self._handle_home_hello(message)
            case Inventory():
                await self._handle_inventory(message)
            case Bid():
                await self._handle_bid(message)
            case AwardAck():
                await self._handle_award_ack(message)
            case Telemetry():
                await self._handle_telemetry(message)
            case OptOut():
                await self._handle_opt_out(message)
            case StatementAck():
                await self._handle_statement_ack(message)
            case _:  # parse_message(allowed=HOME_MESSAGE_TYPES) lets nothing else through
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "not a home message", message.id)

    def _check_quota(self, bucket: TokenBucket, amount: int, what: str, message_id: str) -> None:
        """Refuse a message (``rate_limited``, nothing stored) when it exceeds the home's quota."""
        wait = bucket.take(amount, time.monotonic())
        if wait > 0:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"too many {what} from this home; nothing was stored, send it again in "
                f"{wait:.1f} s",
                message_id,
            )

    def _send_error(self, err: ProtocolError) -> None:
        self._registry.metrics.errors.labels(err.code.value).inc()
        self.enqueue(dump_message(err.to_message()))

    def _ack(self, message: HomeMessage) -> None:
        self.enqueue(ack_frame(message.id))

    # --- handlers, one per home message ---------------------------------------------------

    async def _handle_home_hello(self, hello: HomeHello) -> None:
        if not MIN_SUPPORTED_SCHEMA_VERSION <= hello.schema_version <= SCHEMA_VERSION:
            self._send_error(
                ProtocolError(
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"schema {hello.schema_version} unsupported; this server speaks "
                    f"{MIN_SUPPORTED_SCHEMA_VERSION}..{SCHEMA_VERSION}",
                    hello.id,
                )
            )
            await self._flush_and_close(CLOSE_UNSUPPORTED_VERSION, "unsupported schema version")
            return
        await self._committer.commit(
            [Update(HomeSeen(self.home_id, utc_now(), hello.software_version))]
        )
        self._home = replace(self._home, software_version=hello.software_version)
        self._held = list(hello.held_awards)
        self.schema_version = hello.schema_version
        self._helloed = True
        self._ack(hello)

    async def _handle_inventory(self, inventory: Inventory) -> None:
        await self._committer.commit(
            [Update(HomeInventory(self.home_id, tuple(inventory.loads), inventory.participating))]
        )
        home = replace(
            self._home, loads=tuple(inventory.loads), participating=inventory.participating
        )
        self._home = home
        self._ack(inventory)
        if self._ready:
            self._manager.home_inventory_changed(home)
            return
        self._ready = True
        await self._registry.register(self)
        _LOGGER.info(
            "Home %s connected (%s)",
            self.home_id,
            home.software_version,
            extra={"home_id": self.home_id},
        )
        await self._manager.home_ready(home, self._held, self.schema_version)
        if self._courier is not None:
            await self._courier.home_ready(self.home_id)

    async def _handle_bid(self, bid: Bid) -> None:
        await self._manager.handle_bid(self.home_id, bid)
        self._ack(bid)

    async def _handle_award_ack(self, ack: AwardAck) -> None:
        await self._manager.handle_award_ack(self.home_id, ack)
        self._ack(ack)

    async def _handle_telemetry(self, telemetry: Telemetry) -> None:
        check_telemetry(telemetry, self._home, utc_now())
        self._check_quota(self._samples, len(telemetry.samples), "telemetry samples", telemetry.id)
        await self._manager.handle_telemetry(self.home_id, telemetry)
        self._ack(telemetry)

    async def _handle_opt_out(self, opt_out: OptOut) -> None:
        await self._manager.handle_opt_out(self.home_id, opt_out)
        self._ack(opt_out)

    async def _handle_statement_ack(self, ack: StatementAck) -> None:
        if self._courier is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, "statements are not kept here", ack.id)
        await self._courier.acknowledged(self.home_id, ack)
        self._ack(ack)

    async def _flush_and_close(self, code: int, reason: str) -> None:
        """Give the writer a moment to send queued frames, then close."""
        for _ in range(10):
            if not self._outbox and self._wakeup is not None:  # sent, writer waiting again
                break
            await asyncio.sleep(0.01)
        await self.close(code, reason)
