"""Limits of the aggregator's HTTP server: a header/idle timeout and a connection cap.

Anyone can open a TCP connection to the aggregator before proving anything, so:

* **Header and idle timeout.** A connection that has not sent a complete request head within
  ``header_timeout_s`` of opening, or stays idle that long between keep-alive requests, is
  closed. This is aiohttp's keep-alive timer (``keepalive_timeout``), which starts when the
  connection opens and is not extended by a request head trickling in. A home's websocket is
  upgraded (after its token is checked) within its first request, and from then on its liveness
  is the heartbeat's business.
* **Connection cap.** At most ``max_connections`` connections are open at once; by default the
  process's file-descriptor limit minus :data:`FD_RESERVE` (the database, the log, the listening
  socket and the refusals themselves need descriptors too), so the cap is met before the limit.
  A connection over the cap is answered ``503 Service Unavailable`` with ``Retry-After`` (after
  reading its request head for at most :data:`REFUSAL_READ_TIMEOUT_S`, so the client sees the
  answer rather than a reset) and closed. At most :data:`MAX_REFUSING` refusals are in flight;
  past that a connection is closed at once.

* **Out of descriptors anyway** (the cap set too high, or other files open): the
  :class:`Listener` accepts connections itself rather than through ``loop.create_server``,
  whose accept loop (CPython 3.12/3.13, ``selector_events._accept_connection``) schedules another
  retry for every failed ``accept()`` of a batch, so the retries multiply into thousands of
  logged errors a second (measured: 412,538 in 60 s with 300 connections over a 96-descriptor
  limit). The listener keeps one spare descriptor: when ``accept()`` fails with EMFILE it frees
  the spare, accepts the waiting connection, writes the 503 and closes it, and takes the spare
  back, so waiting clients get an answer instead of a hang; when even that fails it stops
  accepting for :data:`ACCEPT_RETRY_DELAY_S` and logs once.

The cap is applied by the protocol factory the listener hands each connection to
(:class:`CappedProtocolFactory`), in front of aiohttp's own :class:`aiohttp.web.Server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

from aiohttp import web

_LOGGER = logging.getLogger(__name__)

FD_RESERVE: Final = 256
"""Descriptors kept free below the process limit (database, log files, refusals, listener)."""
MIN_CONNECTIONS: Final = 16
"""The smallest default cap, whatever the descriptor limit."""
UNLIMITED_FD_CONNECTIONS: Final = 65_536
"""The default cap when the descriptor limit is unlimited."""
DEFAULT_HEADER_TIMEOUT_S: Final = 15.0
DEFAULT_RETRY_AFTER_S: Final = 5
REFUSAL_READ_TIMEOUT_S: Final = 2.0
"""How long a refused connection's request head is read before the 503 is sent anyway."""
MAX_REFUSAL_HEAD_BYTES: Final = 8192
MAX_REFUSING: Final = FD_RESERVE // 4
"""Refusals in flight (each holds a descriptor until it is answered)."""
REFUSAL_BODY: Final = b'{"error": "busy", "message": "too many connections; retry later"}'
ACCEPT_BATCH: Final = 128
"""Connections accepted per wake-up of the listening socket."""
ACCEPT_RETRY_DELAY_S: Final = 1.0
"""Pause of the listener when no descriptor is left at all."""
OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def default_max_connections() -> int:
    """Return the cap that fits this process's file-descriptor limit (see FD_RESERVE)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED_FD_CONNECTIONS
    return max(MIN_CONNECTIONS, soft - FD_RESERVE)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """How long an idle connection may stay and how many may be open."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_connections: int | None = None
    """None: :func:`default_max_connections`."""
    retry_after_s: int = DEFAULT_RETRY_AFTER_S

    def connection_cap(self) -> int:
        """Return the cap in force."""
        return self.max_connections or default_max_connections()


def refusal_response(retry_after_s: int) -> bytes:
    """Return the raw HTTP response sent to a connection over the cap."""
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(REFUSAL_BODY)}\r\n"
        f"Retry-After: {retry_after_s}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + REFUSAL_BODY


class _Refusal(asyncio.Protocol):
    """Reads a request head (briefly), answers 503 and closes."""

    def __init__(self, response: bytes, on_done: Callable[[], None]) -> None:
        self._response = response
        self._on_done = on_done
        self._head = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(REFUSAL_READ_TIMEOUT_S, self._answer)

    def data_received(self, data: bytes) -> None:
        self._head += data[:MAX_REFUSAL_HEAD_BYTES]
        if b"\r\n\r\n" in self._head or len(self._head) >= MAX_REFUSAL_HEAD_BYTES:
            self._answer()

    def _answer(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None and not transport.is_closing():
            transport.write(self._response)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None
        self._on_done()


class _Drop(asyncio.Protocol):
    """Closes a connection at once (too many refusals in flight)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class CappedProtocolFactory:
    """aiohttp's protocol factory with a connection cap in front (see the module docstring)."""

    def __init__(
        self,
        server: web.Server,
        limits: HttpLimits,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        """Admit connections to ``server`` up to ``limits``' cap."""
        self._server = server
        self._cap = limits.connection_cap()
        self._response = refusal_response(limits.retry_after_s)
        self._on_refused = on_refused
        self.refusing = 0
        self.refused = 0
        self.in_flight: Callable[[], int] = lambda: 0
        """Connections accepted but not yet known to aiohttp (set by the :class:`Listener`)."""

    @property
    def cap(self) -> int:
        """Return the connection cap."""
        return self._cap

    @property
    def refusal(self) -> bytes:
        """Return the raw 503 response."""
        return self._response

    def count_refusal(self) -> None:
        """Count one refused connection."""
        self.refused += 1
        if self._on_refused is not None:
            self._on_refused()

    def __call__(self) -> asyncio.BaseProtocol:
        """Return aiohttp's handler, or a refusal when the cap is reached."""
        if len(self._server.connections) + self.in_flight() < self._cap:
            return self._server()
        self.count_refusal()
        if self.refusing >= MAX_REFUSING:
            return _Drop()
        self.refusing += 1
        return _Refusal(self._response, self._refusal_done)

    def _refusal_done(self) -> None:
        self.refusing -= 1


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """Return a non-blocking listening socket on the first address ``host`` resolves to."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Listener:
    """Accepts connections and hands them to a protocol factory (see the module docstring)."""

    def __init__(
        self,
        sock: socket.socket,
        factory: CappedProtocolFactory,
        *,
        tls: ssl.SSLContext | None = None,
        handshake_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    ) -> None:
        """Serve ``sock`` (listening, non-blocking); ``tls`` wraps every connection."""
        self._sock = sock
        self._factory = factory
        self._tls = tls
        self._handshake_timeout_s = handshake_timeout_s
        self._loop = asyncio.get_running_loop()
        self._spare: int | None = _open_spare()
        self._resume: asyncio.TimerHandle | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self.paused = 0
        factory.in_flight = lambda: len(self._connecting) - 1  # the others than the caller

    def start(self) -> None:
        """Start accepting."""
        self._loop.add_reader(self._sock.fileno(), self._accept)

    async def close(self) -> None:
        """Stop accepting and close the listening socket (open connections stay)."""
        if self._resume is not None:
            self._resume.cancel()
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for task in list(self._connecting):
            task.cancel()
        await asyncio.gather(*self._connecting, return_exceptions=True)
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as err:
                if err.errno not in OUT_OF_RESOURCES or not self._refuse_with_spare():
                    self._pause(err)
                    return
                continue
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self._factory,
                conn,
                ssl=self._tls,
                ssl_handshake_timeout=self._handshake_timeout_s if self._tls else None,
            )
        except (OSError, ssl.SSLError, TimeoutError) as err:  # e.g. a failed TLS handshake
            _LOGGER.debug("Connection dropped before HTTP: %s", err)
            conn.close()

    def _refuse_with_spare(self) -> bool:
        """Accept one waiting connection on the spare descriptor, answer 503, close it."""
        if self._spare is None:
            return False
        os.close(self._spare)
        self._spare = None
        try:
            conn, _address = self._sock.accept()
        except OSError:
            self._spare = _open_spare()
            return False
        with conn, contextlib.suppress(OSError):
            conn.setblocking(False)
            conn.send(self._factory.refusal)
        self._spare = _open_spare()  # after the close: the descriptor is free again
        self._factory.count_refusal()
        return self._spare is not None

    def _pause(self, err: OSError) -> None:
        self.paused += 1
        _LOGGER.error(
            "Cannot accept connections (%s); retrying in %.0f s", err, ACCEPT_RETRY_DELAY_S
        )
        self._loop.remove_reader(self._sock.fileno())
        if self._resume is None:
            self._resume = self._loop.call_later(ACCEPT_RETRY_DELAY_S, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        if self._spare is None:
            self._spare = _open_spare()
        if self._sock.fileno() >= 0:
            self._loop.add_reader(self._sock.fileno(), self._accept)


def _open_spare() -> int | None:
    """Return a spare descriptor (``/dev/null``), or None when none is left."""
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None
