"""The connection a home keeps to its aggregator (used by the HA integration and the simulator).

CONTRACT STUB — the public API below is fixed; the bodies are being implemented.

No Home Assistant imports. One :class:`HomeClient` per home:

* :meth:`HomeClient.connect` opens one connection (HTTP upgrade with ``Authorization: Bearer``),
  reads ``server_hello``, checks the schema version, sends ``home_hello`` (with
  ``held_awards_provider()``) and the inventory (``inventory_provider()``), and waits for their acks.
* :meth:`HomeClient.run` keeps the connection: it listens, dispatches server messages to
  subscribers, and after a drop reconnects with exponential backoff and full jitter
  (``delay = uniform(0, min(backoff_max, backoff_base * 2**attempt))``). It returns when
  :meth:`close` is called and raises :class:`AuthenticationFailed` /
  :class:`UnsupportedSchemaVersion`, which no retry can fix.
* Requests (:meth:`send_bid`, :meth:`ack_award`, :meth:`send_telemetry`, :meth:`opt_out`,
  :meth:`send_inventory`) send a message and wait for the ``ack``/``error`` whose ``reply_to``
  is its id. Opt-outs, award acks and telemetry made while disconnected wait in an outbox and are
  re-sent, with the same message id, after the next successful connect.
* Server messages are de-duplicated by id before reaching subscribers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from aggregator.protocol import (
    Ack,
    Award,
    BidStep,
    HeldAward,
    Inventory,
    Offer,
    OptOutReason,
    Sample,
    ServerHello,
    ServerMessage,
)

type MessageCallback = Callable[[ServerMessage], Awaitable[None] | None]
type ConnectionCallback = Callable[[bool], None]

WS_PATH = "/api/v1/ws"
ENROLL_PATH = "/api/v1/enroll"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What enrolment returns: the home's id, its long-lived token and the aggregator's id."""

    home_id: str
    token: str
    aggregator_id: str


async def enroll(session: aiohttp.ClientSession, base_url: str, code: str) -> Enrollment:
    """Exchange a one-time enrolment code for a home token.

    Raises InvalidEnrollmentCode (HTTP 400/404/409 from the aggregator) or CannotConnect.
    """
    raise NotImplementedError


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
    ) -> None:
        """Prepare a client; nothing is sent until :meth:`connect` or :meth:`run`."""
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        """Return True while a connection is open and its hello was acknowledged."""
        raise NotImplementedError

    @property
    def server_hello(self) -> ServerHello | None:
        """Return the hello of the current (or last) connection."""
        raise NotImplementedError

    def subscribe(self, callback: MessageCallback) -> Callable[[], None]:
        """Call ``callback`` for every new server message; return a function that unsubscribes."""
        raise NotImplementedError

    def subscribe_connection(self, callback: ConnectionCallback) -> Callable[[], None]:
        """Call ``callback(True/False)`` when the connection opens or drops; return unsubscribe."""
        raise NotImplementedError

    async def connect(self) -> ServerHello:
        """Open one connection (no retry). Raises CannotConnect, AuthenticationFailed,
        UnsupportedSchemaVersion."""
        raise NotImplementedError

    async def run(self) -> None:
        """Listen and keep reconnecting until :meth:`close`; connects first if needed."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection and stop :meth:`run`; pending requests fail with CannotConnect."""
        raise NotImplementedError

    async def send_bid(self, offer: Offer, steps: Sequence[BidStep]) -> Ack:
        """Answer ``offer`` with a step curve (empty = no bid)."""
        raise NotImplementedError

    async def ack_award(
        self,
        award: Award,
        *,
        accepted: bool = True,
        loads: Sequence[str] = (),
        kw: float = 0.0,
    ) -> Ack:
        """Acknowledge ``award`` (queued and re-sent if disconnected)."""
        raise NotImplementedError

    async def send_telemetry(self, samples: Sequence[Sample], event_id: str | None = None) -> Ack:
        """Send a batch of samples (queued and re-sent if disconnected)."""
        raise NotImplementedError

    async def opt_out(
        self,
        event_id: str,
        load_id: str | None = None,
        reason: OptOutReason = OptOutReason.USER,
    ) -> Ack:
        """Opt out of a whole event or one load (queued and re-sent if disconnected)."""
        raise NotImplementedError

    async def send_inventory(self) -> Ack:
        """Send the current inventory from ``inventory_provider`` (e.g. after loads changed)."""
        raise NotImplementedError
