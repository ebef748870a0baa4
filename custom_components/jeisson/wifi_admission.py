"""Who may open the WiFi actuator endpoint, how many at once, how often they may fail.

The endpoint takes websockets without HTTP authentication (devices prove their key inside), so
every request passes :class:`Admission` before the upgrade:

* a peer outside the local network is refused (HTTP 403) unless a loaded home allows remote
  devices (options → Participation). "Local" is Home Assistant's own notion, the one its
  webhooks' local-only option uses (:func:`homeassistant.util.network.is_local`: loopback,
  private and link-local addresses; a request through Home Assistant Cloud is never local).
  Behind a reverse proxy the peer is the address Home Assistant's ``http`` integration takes
  from ``X-Forwarded-For`` (``use_x_forwarded_for`` with ``trusted_proxies``);
* at most ``max_unauthenticated`` connections that no home has accepted yet (handshake or
  pending), ``max_unauthenticated_per_peer`` of them per address: HTTP 503 with Retry-After;
* a peer whose connections failed too often in the last window (wrong proofs, refused frames,
  handshake timeouts) is refused (HTTP 429 with Retry-After) until the window has passed.

Warnings that peers cause go through :class:`ThrottledLog`: at most one per kind per interval,
the next one saying how many were held back, so a flood cannot flood the log too.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from ipaddress import ip_address
from typing import Any, Final

from aiohttp import hdrs, web
from homeassistant.core import HomeAssistant
from homeassistant.helpers.network import is_cloud_connection
from homeassistant.util import network as network_util

from jeisson.actuator import protocol

MAX_UNAUTHENTICATED: Final = 64
"""Connections no home has accepted yet (in the handshake or pending), all peers together."""
MAX_UNAUTHENTICATED_PER_PEER: Final = 8
"""The same, from one address (a real device needs one; a few reconnects may overlap)."""
MAX_FAILURES_PER_PEER: Final = 10
"""Failed connections (wrong proof, refused frame, handshake timeout) one address may have in
``FAILURE_WINDOW_S`` before it is refused for the rest of the window."""
FAILURE_WINDOW_S: Final = 60.0
MAX_TRACKED_PEERS: Final = 1024
"""Addresses whose failures are remembered (the oldest is forgotten first)."""
LOG_INTERVAL_S: Final = 60.0
"""At most one warning of each kind per this many seconds."""
RETRY_AFTER_BUSY_S: Final = 30
"""Retry-After of a refusal because too many connections are open."""


@dataclass(kw_only=True)
class EndpointLimits:
    """Timeouts and caps of the endpoint; tests shorten or lower them."""

    handshake_timeout_s: float = protocol.HANDSHAKE_TIMEOUT_S
    """Absolute: from the upgrade to the ``hello`` (pings do not extend it)."""
    silence_timeout_s: float = 45.0
    """A connection with no frame (report, ping) for this long is dropped: devices report every
    10 s and ping every 20 s."""
    pending_expiry_s: float = 30 * 60.0
    """A device waiting for the user is forgotten this long after its first ``hello`` (its flow
    is aborted and its connections closed; a real device reconnects and is offered again)."""
    max_pending_devices: int = 10
    """Devices waiting for the user at once: at most this many discovered flows."""
    max_hellos_per_device: int = 4
    """Kept ``hello`` messages per pending device id (different connections using the id)."""
    max_unauthenticated: int = MAX_UNAUTHENTICATED
    max_unauthenticated_per_peer: int = MAX_UNAUTHENTICATED_PER_PEER
    max_failures_per_peer: int = MAX_FAILURES_PER_PEER
    failure_window_s: float = FAILURE_WINDOW_S


class ThrottledLog:
    """Warnings caused by peers, at most one per kind per interval; the rest are counted."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Log to ``logger``."""
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held_back: dict[str, int] = {}

    def emit(self, kind: str, message: str, *args: Any) -> None:
        """Log ``message`` unless a warning of ``kind`` was logged within the interval."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval_s:
            self._held_back[kind] = self._held_back.get(kind, 0) + 1
            return
        self._last[kind] = now
        held_back = self._held_back.pop(kind, 0)
        if held_back and last is not None:
            message += " (%d more like this in the last %.0f s were not logged)"
            args = (*args, held_back, now - last)
        self._logger.warning(message, *args)


@dataclass
class _Peer:
    """What the endpoint remembers of one address."""

    open: int = 0
    failures: deque[float] = field(default_factory=deque)


class Ticket:
    """One admitted connection's place among the unauthenticated ones; released once."""

    def __init__(self, admission: Admission, peer: str) -> None:
        """Hold a place for ``peer``."""
        self._admission = admission
        self.peer = peer
        self._held = True

    def release(self) -> None:
        """Give the place back (a home accepted the device, or the connection ended)."""
        if self._held:
            self._held = False
            self._admission.release(self.peer)


class Admission:
    """Decides whether a request may open an actuator websocket (see the module docstring)."""

    def __init__(
        self,
        hass: HomeAssistant,
        limits: EndpointLimits,
        log: ThrottledLog,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Check requests against ``limits``."""
        self._hass = hass
        self._limits = limits
        self._log = log
        self._clock = clock
        self._peers: dict[str, _Peer] = {}
        self._open = 0

    @property
    def unauthenticated(self) -> int:
        """Return how many admitted connections no home has accepted yet."""
        return self._open

    def admit(self, request: web.Request, *, allow_remote: bool) -> Ticket | web.Response:
        """Return a ticket for an admitted request, or the response that refuses it."""
        peer = request.remote or ""
        if not allow_remote and not self._is_local(peer):
            self._log.emit(
                "refused_remote",
                "Refused a WiFi actuator connection from %s: not on the local network "
                "(allow remote devices in the Jeisson options to accept it)",
                peer or "an unknown address",
            )
            return web.Response(status=HTTPStatus.FORBIDDEN, text="Local devices only")
        state = self._peers.get(peer)
        if state is not None and (retry_after := self._blocked_for(state)) > 0:
            return _refusal(HTTPStatus.TOO_MANY_REQUESTS, retry_after, "Too many failures")
        limits = self._limits
        if self._open >= limits.max_unauthenticated or (
            state is not None and state.open >= limits.max_unauthenticated_per_peer
        ):
            self._log.emit(
                "refused_busy",
                "Refused a WiFi actuator connection from %s: %d connections wait for a "
                "handshake or for pairing",
                peer,
                self._open,
            )
            return _refusal(HTTPStatus.SERVICE_UNAVAILABLE, RETRY_AFTER_BUSY_S, "Too busy")
        self._peer(peer).open += 1
        self._open += 1
        return Ticket(self, peer)

    def release(self, peer: str) -> None:
        """Give back a place (called by :meth:`Ticket.release`)."""
        self._open -= 1
        if (state := self._peers.get(peer)) is not None:
            state.open -= 1
            self._forget_if_idle(peer, state)

    def record_failure(self, peer: str) -> None:
        """Count a failed connection against ``peer``."""
        state = self._peer(peer)
        state.failures.append(self._clock())
        while len(state.failures) > self._limits.max_failures_per_peer:
            state.failures.popleft()

    def _blocked_for(self, state: _Peer) -> int:
        """Return the seconds ``state``'s peer must still wait (0: not blocked)."""
        window = self._limits.failure_window_s
        now = self._clock()
        while state.failures and now - state.failures[0] >= window:
            state.failures.popleft()
        if len(state.failures) < self._limits.max_failures_per_peer:
            return 0
        return max(1, math.ceil(window - (now - state.failures[0])))

    def _peer(self, peer: str) -> _Peer:
        state = self._peers.get(peer)
        if state is None:
            if len(self._peers) >= MAX_TRACKED_PEERS:
                self._evict_one()
            state = self._peers[peer] = _Peer()
        return state

    def _evict_one(self) -> None:
        """Forget the oldest remembered address that has no open connection."""
        for peer, state in self._peers.items():
            if state.open == 0:
                del self._peers[peer]
                return

    def _forget_if_idle(self, peer: str, state: _Peer) -> None:
        if state.open == 0 and not state.failures:
            self._peers.pop(peer, None)

    def _is_local(self, peer: str) -> bool:
        if is_cloud_connection(self._hass):
            return False
        try:
            return network_util.is_local(ip_address(peer))
        except ValueError:
            return False


def _refusal(status: HTTPStatus, retry_after_s: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, headers={hdrs.RETRY_AFTER: str(retry_after_s)})
