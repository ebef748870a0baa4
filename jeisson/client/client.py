"""The connection a home keeps to its aggregator (used by the HA integration and the simulator).

No Home Assistant imports. One :class:`HomeClient` per home:

* :meth:`HomeClient.connect` opens one connection (HTTP upgrade with ``Authorization: Bearer``),
  reads ``server_hello``, checks the schema version, sends ``home_hello`` (with
  ``held_awards_provider()``) and the inventory (``inventory_provider()``), and waits for
  their acks.
* :meth:`HomeClient.run` keeps the connection: it listens, dispatches server messages to
  subscribers, and after a drop reconnects with exponential backoff and full jitter
  (``delay = uniform(0, min(backoff_max, backoff_base * 2**attempt))``). It returns when
  :meth:`close` is called and raises :class:`AuthenticationFailed` /
  :class:`UnsupportedSchemaVersion`, which no retry can fix.
* Requests (:meth:`send_bid`, :meth:`ack_award`, :meth:`send_telemetry`, :meth:`opt_out`,
  :meth:`send_inventory`) send a message and wait for the ``ack``/``error`` whose ``reply_to``
  is its id. Opt-outs, award acks and telemetry made while disconnected wait in an outbox and are
  re-sent, with the same message id, after the next successful connect; one the aggregator
  answers with a retryable error (``internal_error``: it could not store it; ``rate_limited``:
  the home sent more than its quota) is re-sent after a
  growing, jittered delay (``backoff_base`` doubling up to ``backoff_max``) until it is settled.
* Server messages are de-duplicated by id before reaching subscribers, but for an offer whose
  bid was not acknowledged: the aggregator re-sends it on the next connection only when it holds
  no bid from the home (the bid was lost with the connection), and it is delivered again.

Liveness uses WebSocket ping frames sent by aiohttp (``ws_connect(heartbeat=...)``): the
``heartbeat_interval`` keyword (30 s by default) for the first connection, then the smaller of it
and the interval the server announced in its last ``server_hello``. A server that stops answering
pings is detected within 1.5 intervals and the connection is re-opened.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from yarl import URL

from jeisson.common.const import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_REPLACED,
    CLOSE_UNSUPPORTED_VERSION,
    ENROLL_PATH,
    WS_PATH,
)
from jeisson.common.errors import (
    AuthenticationFailed,
    CannotConnect,
    InvalidEnrollmentCode,
    NotConnected,
    RequestRejected,
    RequestTimeout,
    UnsupportedSchemaVersion,
)
from jeisson.common.protocol import (
    MAX_FRAME_BYTES,
    MAX_HOME_NAME,
    MIN_SUPPORTED_SCHEMA_VERSION,
    SCHEMA_VERSION,
    SERVER_MESSAGE_TYPES,
    Ack,
    Award,
    AwardAck,
    Bid,
    BidStep,
    Cancel,
    ErrorCode,
    ErrorMessage,
    EventEnd,
    HeldAward,
    HomeHello,
    HomeMessage,
    Identifier,
    Inventory,
    Offer,
    OptOut,
    OptOutReason,
    ProtocolError,
    Sample,
    ServerHello,
    ServerMessage,
    Statement,
    StatementAck,
    Telemetry,
    Text,
    dump_message,
    for_schema,
    new_message_id,
    parse_message,
)

_LOGGER = logging.getLogger(__name__)

type MessageCallback = Callable[[ServerMessage], Awaitable[None] | None]
type ConnectionCallback = Callable[[bool], None]
type QueuedMessage = AwardAck | Telemetry | OptOut | StatementAck
"""Messages kept in the outbox until acknowledged."""

DEFAULT_HEARTBEAT_INTERVAL: Final = 30.0
"""Seconds between WebSocket pings until the server announces its own interval."""
ENROLL_TIMEOUT: Final = 10.0
DEDUP_WINDOW: Final = 1024
"""How many server message ids are remembered to drop duplicates."""
UNBID_OFFERS_KEPT: Final = 64
"""How many offers without an acknowledged bid are remembered (to deliver a re-sent one)."""
OUTBOX_TELEMETRY_LIMIT: Final = 1000
"""Telemetry batches kept while offline; older ones are dropped first (acks/opt-outs never)."""
CLOSE_TIMEOUT: Final = 5.0
"""Seconds to wait for the server's closing handshake before giving up on it."""

_AUTH_FAILED_STATUSES: Final = frozenset({401, 403})
_INVALID_CODE_STATUSES: Final = frozenset({400, 404, 409, 410})
_RETRYABLE_ERRORS: Final = frozenset(
    {ErrorCode.INTERNAL_ERROR, ErrorCode.NOT_HELLOED, ErrorCode.RATE_LIMITED}
)
"""Errors after which a queued message stays in the outbox to be re-sent."""
_MAX_BACKOFF_EXPONENT: Final = 64
_TASK_PREFIX: Final = "jeisson-client"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What enrolment returns: the home's id, its long-lived token and the aggregator's id."""

    home_id: str
    token: str = field(repr=False)
    aggregator_id: str
    name: str | None = None
    """The name the operator gave the home (None from older aggregators)."""


class _EnrollmentResponse(BaseModel):
    """The body of a successful enrolment answer."""

    model_config = ConfigDict(extra="ignore")

    home_id: Identifier
    token: str = Field(min_length=1)
    aggregator_id: Identifier
    name: Text | None = Field(default=None, min_length=1, max_length=MAX_HOME_NAME)


def backoff_delay(attempt: int, base: float, maximum: float, rng: random.Random) -> float:
    """Return a full-jitter reconnect delay: uniform in ``[0, min(maximum, base * 2**attempt)]``."""
    if attempt < 0 or base < 0 or maximum < 0:
        raise ValueError("attempt, base and maximum must not be negative")
    ceiling = min(maximum, base * 2.0 ** min(attempt, _MAX_BACKOFF_EXPONENT))
    return rng.uniform(0.0, ceiling)


def _describe(err: BaseException) -> str:
    """Return a short description of a network error (never request headers)."""
    return str(err) or type(err).__name__


async def enroll(
    session: aiohttp.ClientSession,
    base_url: str,
    code: str,
    *,
    request_timeout: float = ENROLL_TIMEOUT,
) -> Enrollment:
    """Exchange a one-time enrolment code for a home token.

    Raises InvalidEnrollmentCode (HTTP 400/404/409 from the aggregator; also 410 and an empty
    code) or CannotConnect (network errors, timeouts, 5xx and malformed answers).
    """
    code = code.strip()
    if not code:
        raise InvalidEnrollmentCode("the enrolment code is empty")
    url = base_url.rstrip("/") + ENROLL_PATH
    try:
        async with session.post(
            url, json={"code": code}, timeout=aiohttp.ClientTimeout(total=request_timeout)
        ) as response:
            if response.status in _INVALID_CODE_STATUSES:
                raise InvalidEnrollmentCode(
                    f"the aggregator refused the enrolment code (HTTP {response.status})"
                )
            if not 200 <= response.status < 300:
                raise CannotConnect(f"enrolment failed with HTTP {response.status}")
            body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as err:
        raise CannotConnect(f"cannot reach the aggregator to enrol: {_describe(err)}") from err
    try:
        answer = _EnrollmentResponse.model_validate_json(body)
    except ValidationError as err:
        raise CannotConnect("the aggregator sent a malformed enrolment answer") from err
    return Enrollment(answer.home_id, answer.token, answer.aggregator_id, answer.name)


class HomeClient:
    """A home's connection to the aggregator."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session: aiohttp.ClientSession,
        software_version: str,
        inventory_provider: Callable[[], Inventory],
        held_awards_provider: Callable[[], Sequence[HeldAward]] = tuple,
        request_timeout: float = 10.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        connect_timeout: float = 10.0,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        rng: random.Random | None = None,
        outbox: Sequence[QueuedMessage] = (),
        max_queued_telemetry: int = OUTBOX_TELEMETRY_LIMIT,
    ) -> None:
        """Prepare a client; nothing is sent until :meth:`connect` or :meth:`run`.

        ``heartbeat_interval`` is the WebSocket ping interval until the server announces one;
        ``rng`` draws the reconnect jitter; ``outbox`` restores messages saved from
        :attr:`queued_messages` before a restart (they are re-sent with their ids; ValueError
        if one is too large to send); at most ``max_queued_telemetry`` telemetry batches wait
        in the outbox, the oldest are dropped first.
        """
        self._ws_url = base_url.rstrip("/") + WS_PATH
        self._log_url = str(URL(base_url).with_user(None))
        self._token = token
        self._session = session
        self._software_version = software_version
        self._inventory_provider = inventory_provider
        self._held_awards_provider = held_awards_provider
        self._request_timeout = request_timeout
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._connect_timeout = connect_timeout
        self._heartbeat_interval = heartbeat_interval
        self._rng = rng or random.Random()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._server_hello: ServerHello | None = None
        self._close_code: int | None = None
        self._connected = False
        self._ever_connected = False
        self._unavailable_logged = False
        self._telemetry_dropped = False
        self._closed_event = asyncio.Event()
        self._connect_lock = asyncio.Lock()
        self._send_lock = asyncio.Lock()
        self._run_task: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[Ack]] = {}
        for message in outbox:
            self._encode(message)
        self._outbox: OrderedDict[str, QueuedMessage] = OrderedDict((m.id, m) for m in outbox)
        self._max_queued_telemetry = max_queued_telemetry
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._unbid_offers: OrderedDict[str, None] = OrderedDict()
        """Offers delivered whose bid was not acknowledged (yet): re-delivered if re-sent."""
        self._subscribers: list[MessageCallback] = []
        self._connection_subscribers: list[ConnectionCallback] = []
        self._callback_tasks: set[asyncio.Future[None]] = set()
        self._retries: dict[str, int] = {}
        """Tries so far of queued messages the aggregator asked to re-send."""

    @property
    def connected(self) -> bool:
        """Return True while a connection is open and its hello was acknowledged.

        It turns True only after the inventory was acknowledged and the outbox re-sent.
        """
        return self._connected

    @property
    def server_hello(self) -> ServerHello | None:
        """Return the hello of the current (or last) connection."""
        return self._server_hello

    @property
    def queued_messages(self) -> tuple[QueuedMessage, ...]:
        """Return the messages waiting for an ack, oldest first (to persist across restarts)."""
        return tuple(self._outbox.values())

    def subscribe(self, callback: MessageCallback) -> Callable[[], None]:
        """Call ``callback`` for every new server message; return a function that unsubscribes.

        Coroutine callbacks run as tasks (concurrently; serialise in the callback if order
        matters); they are cancelled by :meth:`close`. Exceptions are logged, never raised.
        """
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def subscribe_connection(self, callback: ConnectionCallback) -> Callable[[], None]:
        """Call ``callback(True/False)`` when the connection opens or drops; return unsubscribe."""
        self._connection_subscribers.append(callback)

        def unsubscribe() -> None:
            with suppress(ValueError):
                self._connection_subscribers.remove(callback)

        return unsubscribe

    # --- Connecting -----------------------------------------------------------------------

    async def connect(self) -> ServerHello:
        """Open one connection (no retry). Raises CannotConnect, AuthenticationFailed,
        UnsupportedSchemaVersion.

        Returns the current hello at once when already connected.
        """  # noqa: D205
        async with self._connect_lock:
            if self._closed_event.is_set():
                raise CannotConnect("the client is closed")
            if self._connected and self._server_hello is not None:
                return self._server_hello
            ws = await self._open()
            try:
                return await self._handshake(ws)
            except BaseException:
                await self._drop(ws)
                raise

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        """Upgrade to a websocket, mapping HTTP and network failures to client errors."""
        heartbeat = self._heartbeat_interval
        if self._server_hello is not None:
            heartbeat = min(heartbeat, self._server_hello.heartbeat_interval)
        try:
            async with asyncio.timeout(self._connect_timeout):
                return await self._session.ws_connect(
                    self._ws_url,
                    headers={aiohttp.hdrs.AUTHORIZATION: f"Bearer {self._token}"},
                    heartbeat=heartbeat,
                    max_msg_size=MAX_FRAME_BYTES,
                )
        except aiohttp.WSServerHandshakeError as err:
            if err.status in _AUTH_FAILED_STATUSES:
                raise AuthenticationFailed(
                    f"the aggregator rejected the home token (HTTP {err.status})"
                ) from err
            raise CannotConnect(f"websocket upgrade refused (HTTP {err.status})") from err
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise CannotConnect(f"cannot reach {self._log_url}: {_describe(err)}") from err

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> ServerHello:
        """Read the server hello, check versions, send hello + inventory, re-send the outbox."""
        hello = await self._receive_server_hello(ws)
        self._server_hello = hello
        # The aggregator re-sends an open round's offer to a home it holds no bid from (its bid
        # was lost with the last connection, or never made): deliver it again so it is bid on.
        for offer_id in self._unbid_offers:
            self._seen.pop(offer_id, None)
        self._close_code = None
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws), name=f"{_TASK_PREFIX}-reader")
        home_hello = HomeHello(
            schema_version=SCHEMA_VERSION,
            software_version=self._software_version,
            held_awards=list(self._held_awards_provider()),
        )
        try:
            await self._request(ws, home_hello)
            await self._request(ws, self._fresh_inventory())
            await self._flush_outbox(ws)
            self._check_still_open(ws)
        except RequestRejected as err:
            if err.code is ErrorCode.UNSUPPORTED_VERSION:
                raise self._version_error(hello) from err
            raise CannotConnect(f"the aggregator refused the session: {err}") from err
        except RequestTimeout as err:
            raise CannotConnect(f"session set-up timed out: {err}") from err
        except CannotConnect:
            if self._close_code == CLOSE_UNSUPPORTED_VERSION:
                raise self._version_error(hello) from None
            raise
        self._set_connected(True)
        return hello

    def _check_still_open(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Raise CannotConnect when ``ws`` closed while the session was being set up."""
        if self._ws is not ws:
            reason = self._close_reason(self._close_code)
            raise CannotConnect(f"connection lost during set-up: {reason}")

    async def _receive_server_hello(self, ws: aiohttp.ClientWebSocketResponse) -> ServerHello:
        """Return the first frame as a :class:`ServerHello` whose versions this client speaks."""
        try:
            frame = await ws.receive(timeout=self._connect_timeout)
        except TimeoutError as err:
            raise CannotConnect("no server_hello received in time") from err
        if frame.type is not aiohttp.WSMsgType.TEXT:
            raise CannotConnect(f"connection closed before server_hello (code {ws.close_code})")
        try:
            hello = parse_message(frame.data, allowed=SERVER_MESSAGE_TYPES)
        except ProtocolError as err:
            raise CannotConnect(f"invalid server_hello ({err.code}): {err.message}") from err
        if not isinstance(hello, ServerHello):
            raise CannotConnect(f"expected server_hello first, got {hello.type}")
        if (
            hello.min_supported_schema_version > SCHEMA_VERSION
            or hello.schema_version < MIN_SUPPORTED_SCHEMA_VERSION
        ):
            with suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await ws.close(code=CLOSE_UNSUPPORTED_VERSION, message=b"unsupported version")
            raise self._version_error(hello)
        return hello

    @staticmethod
    def _version_error(hello: ServerHello) -> UnsupportedSchemaVersion:
        """Return the error describing a version mismatch with ``hello``'s server."""
        return UnsupportedSchemaVersion(
            hello.schema_version, hello.min_supported_schema_version, SCHEMA_VERSION
        )

    def _fresh_inventory(self) -> Inventory:
        """Return the current inventory under a new message id (it is state, not a re-send)."""
        return self._inventory_provider().model_copy(update={"id": new_message_id()})

    async def _flush_outbox(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Re-send every queued message in order, including ones queued while flushing."""
        sent: set[str] = set()
        while todo := [message for key, message in self._outbox.items() if key not in sent]:
            for message in todo:
                if message.id in self._outbox:
                    await self._send(ws, dump_message(message))
                sent.add(message.id)
        if sent:
            _LOGGER.debug("Re-sent %d queued messages", len(sent))

    async def _drop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Stop reading ``ws`` and close it (bounded wait for the closing handshake)."""
        reader = self._reader
        if reader is not None and self._ws is ws and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.wait({reader})
        with suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await ws.close()
        if self._ws is ws:
            self._connection_closed(ws)

    # --- Running and closing --------------------------------------------------------------

    async def run(self) -> None:
        """Listen and keep reconnecting until :meth:`close`; connects first if needed."""
        self._run_task = asyncio.current_task()
        attempt = 0
        while not self._closed_event.is_set():
            if not self._connected:
                try:
                    connecting = await self._until_closed(self.connect())
                except CannotConnect as err:
                    self._log_unavailable(str(err))
                    await self._sleep(self._next_delay(attempt))
                    attempt += 1
                    continue
                if connecting is None:
                    break
                attempt = 0
            reader = self._reader
            if reader is not None:
                await self._until_closed(asyncio.shield(reader))
            if self._closed_event.is_set():
                break
            if self._close_code == CLOSE_UNSUPPORTED_VERSION and self._server_hello is not None:
                raise self._version_error(self._server_hello)
            await self._sleep(self._next_delay(attempt))
            attempt += 1

    async def close(self) -> None:
        """Close the connection and stop :meth:`run`; pending requests fail with CannotConnect.

        The client cannot be reused afterwards. Subscriber tasks still running are cancelled.
        """
        self._closed_event.set()
        self._fail_pending(CannotConnect("the client was closed"))
        ws = self._ws
        if ws is not None:
            await self._drop(ws)
        run_task = self._run_task
        if run_task is not None and run_task is not asyncio.current_task():
            await asyncio.wait({run_task})
        tasks = {task for task in self._callback_tasks if task is not asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _next_delay(self, attempt: int) -> float:
        """Return the backoff delay before reconnect attempt number ``attempt``."""
        return backoff_delay(attempt, self._backoff_base, self._backoff_max, self._rng)

    async def _sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds, waking early when the client is closed."""
        with suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closed_event.wait()

    async def _until_closed[T](self, awaitable: Awaitable[T]) -> T | None:
        """Await ``awaitable`` unless the client is closed first (then cancel it, return None)."""
        work = asyncio.ensure_future(awaitable)
        if isinstance(work, asyncio.Task):
            work.set_name(f"{_TASK_PREFIX}-work")
        closing = asyncio.create_task(self._closed_event.wait(), name=f"{_TASK_PREFIX}-closing")
        try:
            await asyncio.wait({work, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, closing):
                if not task.done():
                    task.cancel()
            await asyncio.wait({work, closing})
        if work.cancelled():
            return None
        return work.result()

    def _log_unavailable(self, reason: str) -> None:
        """Log once per outage that the aggregator cannot be reached; later failures at debug."""
        if self._unavailable_logged:
            _LOGGER.debug("Reconnect to %s failed: %s", self._log_url, reason)
            return
        self._unavailable_logged = True
        _LOGGER.info("Cannot reach aggregator %s (%s); retrying", self._log_url, reason)

    def _set_connected(self, connected: bool, reason: str = "") -> None:
        """Record a connection state change: log it once and notify subscribers."""
        if connected == self._connected:
            return
        self._connected = connected
        if connected:
            if self._ever_connected:
                _LOGGER.info("Connection to aggregator %s restored", self._log_url)
            else:
                _LOGGER.info("Connected to aggregator %s", self._log_url)
            self._ever_connected = True
            self._unavailable_logged = False
            self._telemetry_dropped = False
        elif self._closed_event.is_set():
            _LOGGER.debug("Connection to aggregator %s closed", self._log_url)
        else:
            _LOGGER.info("Connection to aggregator %s lost: %s", self._log_url, reason)
            self._unavailable_logged = True
        for callback in list(self._connection_subscribers):
            try:
                callback(connected)
            except Exception:
                _LOGGER.exception("Error in a connection state callback")

    # --- Reading --------------------------------------------------------------------------

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Handle frames until the connection ends, then record why it ended."""
        try:
            while True:
                frame = await ws.receive()
                if frame.type is aiohttp.WSMsgType.TEXT:
                    self._handle_frame(frame.data)
                elif frame.type is aiohttp.WSMsgType.BINARY:
                    _LOGGER.warning("Ignoring a binary frame from the aggregator")
                else:
                    break
        finally:
            self._connection_closed(ws)

    def _connection_closed(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Forget ``ws``, fail its pending requests and report the drop (once)."""
        if self._ws is not ws:
            return
        self._ws = None
        self._close_code = ws.close_code
        reason = self._close_reason(ws.close_code)
        self._fail_pending(CannotConnect(f"connection lost: {reason}"))
        self._set_connected(False, reason)

    @staticmethod
    def _close_reason(code: int | None) -> str:
        """Describe a websocket close code for logs and errors."""
        if code == CLOSE_REPLACED:
            return "replaced by a newer connection of this home (4002)"
        if code == CLOSE_UNSUPPORTED_VERSION:
            return "unsupported protocol version (4001)"
        if code == CLOSE_MESSAGE_TOO_BIG:
            return "a frame exceeded the size limit (1009)"
        return f"closed with code {code}"

    def _fail_pending(self, error: CannotConnect) -> None:
        """Fail every request still waiting for a reply."""
        pending = list(self._pending.values())
        self._pending.clear()
        for future in pending:
            if not future.done():
                future.set_exception(error)

    def _handle_frame(self, data: str) -> None:
        """Parse one frame and route it: replies to requests, the rest to subscribers."""
        try:
            message = parse_message(data, allowed=SERVER_MESSAGE_TYPES)
        except ProtocolError as err:
            _LOGGER.warning(
                "Ignoring an invalid frame from the aggregator (%s): %s", err.code, err.message
            )
            return
        match message:
            case Ack():
                self._resolve(message.reply_to, message)
            case ErrorMessage():
                self._handle_error(message)
            case Offer() | Award() | Cancel() | EventEnd() | Statement():
                self._dispatch(message)
            case _:
                _LOGGER.warning("Ignoring an unexpected %s from the aggregator", message.type)

    def _resolve(self, reply_to: str, reply: Ack | RequestRejected) -> None:
        """Complete the request ``reply_to`` and drop it from the outbox if it is settled.

        A queued message refused with a retryable error (the aggregator could not store it)
        stays in the outbox and is sent again after a growing, jittered delay while connected.
        """
        retryable = isinstance(reply, RequestRejected) and reply.code in _RETRYABLE_ERRORS
        if retryable and reply_to in self._outbox:
            self._retry_queued(reply_to)
        if not retryable:
            self._retries.pop(reply_to, None)
            queued = self._outbox.pop(reply_to, None)
            if queued is not None and isinstance(reply, RequestRejected):
                _LOGGER.warning("The aggregator refused queued %s: %s", queued.type, reply)
        future = self._pending.pop(reply_to, None)
        if future is None or future.done():
            return
        if isinstance(reply, Ack):
            future.set_result(reply)
        else:
            future.set_exception(reply)

    def _retry_queued(self, message_id: str) -> None:
        """Send a queued message again later, unless it is settled or the connection changed."""
        attempt = self._retries.get(message_id, 0)
        self._retries[message_id] = attempt + 1
        ceiling = min(self._backoff_max, self._backoff_base * 2.0 ** min(attempt, 16))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        ws = self._ws

        async def resend() -> None:
            await asyncio.sleep(delay)
            message = self._outbox.get(message_id)
            if message is None or ws is None or ws is not self._ws or not self._connected:
                return  # settled, or the next connection re-sends the whole outbox
            with suppress(CannotConnect):
                await self._send(ws, dump_message(message))

        self._track(resend(), "retry")

    def _handle_error(self, message: ErrorMessage) -> None:
        """Turn an error into a rejected request, or log it when it answers nothing of ours."""
        rejected = RequestRejected(message.code, message.message)
        if message.reply_to is not None and (
            message.reply_to in self._pending or message.reply_to in self._outbox
        ):
            self._resolve(message.reply_to, rejected)
        else:
            _LOGGER.warning("The aggregator reported an error: %s", rejected)

    def _dispatch(self, message: ServerMessage) -> None:
        """Pass a new (not yet seen) server message to every subscriber."""
        if message.id in self._seen:
            self._seen.move_to_end(message.id)
            _LOGGER.debug("Dropping duplicate %s %s", message.type, message.id)
            return
        self._seen[message.id] = None
        if len(self._seen) > DEDUP_WINDOW:
            self._seen.popitem(last=False)
        if isinstance(message, Offer):
            self._unbid_offers[message.id] = None
            if len(self._unbid_offers) > UNBID_OFFERS_KEPT:
                self._unbid_offers.popitem(last=False)
        for callback in list(self._subscribers):
            try:
                result = callback(message)
            except Exception:
                _LOGGER.exception("Error in a subscriber handling %s", message.type)
                continue
            if inspect.isawaitable(result):
                self._track(result, message.type)

    def _track(self, awaitable: Awaitable[None], message_type: str) -> None:
        """Run a coroutine callback as a task that :meth:`close` can cancel."""
        task = asyncio.ensure_future(awaitable)
        if isinstance(task, asyncio.Task):
            task.set_name(f"{_TASK_PREFIX}-callback-{message_type}")
        self._callback_tasks.add(task)

        def finished(done: asyncio.Future[None]) -> None:
            self._callback_tasks.discard(done)
            if not done.cancelled() and (error := done.exception()) is not None:
                _LOGGER.error("Error in a subscriber handling %s", message_type, exc_info=error)

        task.add_done_callback(finished)

    # --- Sending --------------------------------------------------------------------------

    @staticmethod
    def _encode(message: HomeMessage) -> str:
        """Serialise ``message``; raise ValueError when it would exceed the frame limit."""
        frame = dump_message(message)
        if len(frame.encode()) > MAX_FRAME_BYTES:
            raise ValueError(
                f"{message.type} is larger than {MAX_FRAME_BYTES} bytes; send it in smaller parts"
            )
        return frame

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, frame: str) -> None:
        """Write one frame, in order with other writers."""
        try:
            async with self._send_lock:
                await ws.send_str(frame)
        except (aiohttp.ClientError, ConnectionError) as err:
            raise CannotConnect(f"connection lost while sending: {_describe(err)}") from err

    async def _request(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        message: HomeMessage,
        frame: str | None = None,
    ) -> Ack:
        """Send ``message`` (already encoded as ``frame``, if given) and wait for its reply."""
        spoken = self._for_server(message)
        if frame is None or spoken is not message:
            frame = self._encode(spoken)
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[message.id] = future
        try:
            await self._send(ws, frame)
            async with asyncio.timeout(self._request_timeout):
                return await future
        except TimeoutError:
            raise RequestTimeout(
                f"no reply to {message.type} {message.id} within {self._request_timeout} s"
            ) from None
        finally:
            if self._pending.get(message.id) is future:
                del self._pending[message.id]

    def _for_server(self, message: HomeMessage) -> HomeMessage:
        """Return ``message`` as the connected aggregator's schema version reads it.

        An older aggregator refuses unknown fields and values (:func:`for_schema`).
        """
        hello = self._server_hello
        if hello is None:
            return message
        return for_schema(message, hello.schema_version)

    def _live_ws(self) -> aiohttp.ClientWebSocketResponse:
        """Return the open websocket or raise NotConnected."""
        if not self._connected or self._ws is None:
            raise NotConnected(f"not connected to aggregator {self._log_url}")
        return self._ws

    async def _request_queued(self, message: QueuedMessage) -> Ack:
        """Queue ``message`` in the outbox, then send it if connected (else NotConnected)."""
        frame = self._encode(message)
        self._outbox[message.id] = message
        self._limit_outbox_telemetry()
        if not self._connected or self._ws is None:
            raise NotConnected(
                f"not connected; {message.type} {message.id} is queued and will be re-sent"
            )
        return await self._request(self._ws, message, frame)

    def _limit_outbox_telemetry(self) -> None:
        """Drop the oldest queued telemetry beyond the ``max_queued_telemetry`` limit."""
        telemetry = [key for key, queued in self._outbox.items() if isinstance(queued, Telemetry)]
        for key in telemetry[: max(0, len(telemetry) - self._max_queued_telemetry)]:
            del self._outbox[key]
            if not self._telemetry_dropped:
                self._telemetry_dropped = True
                _LOGGER.warning("Outbox full while offline: dropping the oldest telemetry")

    async def send_bid(self, offer: Offer, steps: Sequence[BidStep]) -> Ack:
        """Answer ``offer`` with a step curve (empty = no bid).

        Not queued: raises NotConnected when offline (a late bid is useless), ValueError when the
        steps are inconsistent, RequestRejected (e.g. ``deadline_passed``) or RequestTimeout.
        A bid the aggregator could not store (``internal_error``) is sent again, with the same
        id, after a growing, jittered delay while the deadline allows.
        """
        bid = Bid(reply_to=offer.id, event_id=offer.event_id, round=offer.round, steps=list(steps))
        attempt = 0
        while True:
            try:
                ack = await self._request(self._live_ws(), bid)
            except RequestRejected as err:
                if err.code not in _RETRYABLE_ERRORS:
                    raise
                ceiling = min(self._backoff_max, self._backoff_base * 2.0 ** min(attempt, 16))
                delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
                left = (offer.bid_deadline - datetime.now(UTC)).total_seconds()
                if delay >= left:
                    raise
                attempt += 1
                await asyncio.sleep(delay)
            else:
                self._unbid_offers.pop(offer.id, None)
                return ack

    async def ack_award(
        self,
        award: Award,
        *,
        accepted: bool = True,
        loads: Sequence[str] = (),
        kw: float = 0.0,
    ) -> Ack:
        """Acknowledge ``award`` (queued and re-sent if disconnected)."""
        return await self._request_queued(
            AwardAck(
                reply_to=award.id,
                event_id=award.event_id,
                award_id=award.award_id,
                accepted=accepted,
                loads=list(loads),
                kw=kw,
            )
        )

    async def send_telemetry(self, samples: Sequence[Sample], event_id: str | None = None) -> Ack:
        """Send a batch of samples (queued and re-sent if disconnected)."""
        return await self._request_queued(Telemetry(event_id=event_id, samples=list(samples)))

    async def opt_out(
        self,
        event_id: str,
        load_id: str | None = None,
        reason: OptOutReason = OptOutReason.USER,
    ) -> Ack:
        """Opt out of a whole event or one load (queued and re-sent if disconnected)."""
        return await self._request_queued(OptOut(event_id=event_id, load_id=load_id, reason=reason))

    async def ack_statement(self, statement: Statement) -> Ack:
        """Tell the aggregator ``statement`` is stored (queued and re-sent if disconnected)."""
        return await self._request_queued(
            StatementAck(
                reply_to=statement.id, event_id=statement.event_id, version=statement.version
            )
        )

    async def send_inventory(self) -> Ack:
        """Send the current inventory from ``inventory_provider`` (e.g. after loads changed)."""
        return await self._request(self._live_ws(), self._fresh_inventory())
