"""A process's NATS connection, and the subjects the processes of one cluster talk on.

Everything between processes is JSON over core NATS: fire-and-forget publishes for what the next
message makes good again (presence, heartbeats, delivery figures) and request-reply for what must
arrive (frames for homes, home messages for a coordinator, operator actions), retried by the
caller. The connection reconnects by itself for as long as the process runs; subscriptions come
back with it, and :meth:`Bus.on_reconnected` callbacks let the directory catch up on what it
missed meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError as NatsNoResponders
from nats.errors import TimeoutError as NatsTimeout

from aggregator.cluster.settings import ClusterSettings

_LOGGER = logging.getLogger(__name__)

RECONNECT_WAIT_S: Final = 0.5
CONNECT_TIMEOUT_S: Final = 2
PING_INTERVAL_S: Final = 5
MAX_OUTSTANDING_PINGS: Final = 2
FLUSH_TIMEOUT_S: Final = 2
MAX_PAYLOAD_BYTES: Final = 512 * 1024
"""Callers keep each message under this (NATS refuses more than max_payload, 1 MB by default)."""
_TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

type Json = dict[str, Any]
type Handler = Callable[[Json], Awaitable[Json | None]]


class BusUnavailableError(RuntimeError):
    """NATS did not carry a request (not connected, or no answer in time)."""


class NoRespondersError(BusUnavailableError):
    """Nobody listens on the subject (e.g. an event between two coordinators)."""


def subject_token(value: str) -> str:
    """Return ``value`` if it can be one token of a subject, else raise ValueError."""
    if not _TOKEN.match(value):
        raise ValueError(f"{value!r} cannot be part of a NATS subject")
    return value


class Subjects:
    """The subjects of one cluster (all under its prefix)."""

    def __init__(self, prefix: str) -> None:
        """Build subjects under ``prefix``."""
        self.prefix = prefix
        self.presence = f"{prefix}.dir.presence"
        """Homes arriving, changing and leaving, from every process (published)."""
        self.heartbeat = f"{prefix}.dir.heartbeat"
        """Every process, every heartbeat: alive, and how far its presence stream is."""
        self.figures = f"{prefix}.figures"
        """Every process's live figures of the events it coordinates (published each second)."""
        self.close_home = f"{prefix}.homes.close"
        """Close a home's sessions wherever they are (suspended, revoked, removed; published)."""

    def sync(self, node_id: str) -> str:
        """Return where a process answers for the homes it holds (request)."""
        return f"{self.prefix}.dir.sync.{subject_token(node_id)}"

    def deliver(self, node_id: str) -> str:
        """Return where a process takes frames for the homes it holds (request)."""
        return f"{self.prefix}.node.{subject_token(node_id)}.deliver"

    def inbox(self, event_id: str) -> str:
        """Return where an event's coordinator takes home messages (request)."""
        return f"{self.prefix}.event.{subject_token(event_id)}.inbox"

    def ops(self, event_id: str) -> str:
        """Return where an event's coordinator takes operator actions (request)."""
        return f"{self.prefix}.event.{subject_token(event_id)}.ops"

    def delivery(self, event_id: str) -> str:
        """Return where an event's coordinator takes homes' latest shed kW (published)."""
        return f"{self.prefix}.event.{subject_token(event_id)}.delivery"


def encode(payload: Json) -> bytes:
    """Return ``payload`` as compact JSON bytes."""
    return json.dumps(payload, separators=(",", ":")).encode()


def decode(data: bytes) -> Json:
    """Return the JSON object in ``data`` (an empty payload is an empty object)."""
    if not data:
        return {}
    value = json.loads(data)
    if not isinstance(value, dict):
        raise TypeError("expected a JSON object")
    return value


class Bus:
    """One NATS connection: publish, request, subscribe with JSON payloads."""

    def __init__(self, settings: ClusterSettings) -> None:
        """Prepare a connection for ``settings`` (see :meth:`connect`)."""
        self._settings = settings
        self.subjects = Subjects(settings.subject_prefix)
        self._nc: Client | None = None
        self._on_reconnected: list[Callable[[], Awaitable[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def connected(self) -> bool:
        """Return True while the connection to NATS is up."""
        return self._nc is not None and self._nc.is_connected

    def on_reconnected(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` after every reconnection (to catch up on what was missed)."""
        self._on_reconnected.append(callback)

    async def connect(self) -> None:
        """Connect; raises BusUnavailableError when no NATS server answers."""
        try:
            self._nc = await nats.connect(
                servers=self._settings.servers,
                name=f"jeisson-aggregator {self._settings.node_id}",
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=RECONNECT_WAIT_S,
                connect_timeout=CONNECT_TIMEOUT_S,
                ping_interval=PING_INTERVAL_S,
                max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                disconnected_cb=self._disconnected,
                reconnected_cb=self._reconnected,
                error_cb=self._error,
            )
        except (NatsError, OSError, TimeoutError) as err:
            raise BusUnavailableError(
                f"cannot reach NATS at {self._settings.nats_url}: {type(err).__name__} {err}"
            ) from err
        _LOGGER.info("Connected to NATS as %s", self._settings.node_id)

    async def close(self) -> None:
        """Flush what is queued and close the connection."""
        nc, self._nc = self._nc, None
        self._closing = True
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except (NatsError, TimeoutError, OSError):
                await nc.close()

    async def publish(self, subject: str, payload: Json) -> None:
        """Publish ``payload`` (at most once; buffered while reconnecting)."""
        try:
            await self._client().publish(subject, encode(payload))
        except (NatsError, OSError) as err:
            raise BusUnavailableError(f"publish to {subject}: {type(err).__name__}") from err

    async def request(self, subject: str, payload: Json, timeout: float) -> Json:  # noqa: ASYNC109
        """Send a request and return its answer; BusUnavailableError when none came."""
        try:
            message = await self._client().request(subject, encode(payload), timeout=timeout)
        except NatsNoResponders as err:
            raise NoRespondersError(f"nobody answers on {subject}") from err
        except (NatsTimeout, TimeoutError) as err:
            raise BusUnavailableError(f"no answer on {subject} within {timeout} s") from err
        except (NatsError, OSError) as err:
            raise BusUnavailableError(f"request on {subject}: {type(err).__name__}") from err
        return decode(message.data)

    async def gather(self, subject: str, payload: Json, wait_s: float) -> list[Json]:
        """Send a request that many processes answer; return the answers within ``wait_s``."""
        nc = self._client()
        inbox = nc.new_inbox()
        answers: list[Json] = []

        async def collect(message: Msg) -> None:
            try:
                answers.append(decode(message.data))
            except (ValueError, TypeError):
                _LOGGER.warning("Ignored an undecodable answer on %s", subject)

        subscription = await nc.subscribe(inbox, cb=collect)
        try:
            await nc.publish(subject, encode(payload), reply=inbox)
            await nc.flush(timeout=max(1, int(wait_s)))
            await asyncio.sleep(wait_s)
        except (NatsError, OSError, TimeoutError) as err:
            raise BusUnavailableError(f"gather on {subject}: {type(err).__name__}") from err
        finally:
            await subscription.unsubscribe()
        return answers

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        """Call ``handler`` for each message on ``subject``; answer requests with its result.

        Messages of one subscription are handled one after another, in order.
        """

        async def receive(message: Msg) -> None:
            try:
                answer = await handler(decode(message.data))
            except Exception:
                _LOGGER.exception("Failed to handle a message on %s", message.subject)
                answer = {"error": "internal error"}
            if message.reply and answer is not None:
                try:
                    await message.respond(encode(answer))
                except (NatsError, OSError) as err:
                    _LOGGER.debug("Could not answer on %s: %s", message.subject, err)

        client = self._client()
        subscription = await client.subscribe(subject, cb=receive)
        try:  # the server knows the subscription once this returns
            await client.flush(timeout=FLUSH_TIMEOUT_S)
        except (NatsError, TimeoutError, OSError) as err:
            _LOGGER.debug("Subscribed to %s while NATS is away (%s)", subject, err)
        return subscription

    def _client(self) -> Client:
        if self._nc is None:
            raise BusUnavailableError("not connected to NATS")
        return self._nc

    async def _disconnected(self) -> None:
        if not self._closing:
            _LOGGER.warning("Lost the connection to NATS; reconnecting")

    async def _reconnected(self) -> None:
        _LOGGER.info("Reconnected to NATS")
        # In tasks of their own: they make requests, which need the client's reader running.
        for callback in self._on_reconnected:
            task = asyncio.create_task(self._catch_up(callback))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _catch_up(callback: Callable[[], Awaitable[None]]) -> None:
        try:
            await callback()
        except Exception:
            _LOGGER.exception("Catching up after a NATS reconnection failed")

    async def _error(self, err: Exception) -> None:
        _LOGGER.debug("NATS: %s: %s", type(err).__name__, err)
