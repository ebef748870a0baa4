"""Bids, award acks and opt-outs travel from a home's process to its event's coordinator.

(Telemetry is stored where it arrives; its home's process publishes it to the inbox of one event
of each other coordinator, which credits it to its events' live figures.)

The home's session waits while :class:`Forwarder` carries its message to the coordinator (the
messages of one moment for one event travel as one request) and acknowledges it only once the
coordinator stored it, as in one process. While an event has no coordinator (its process died
and the lease has not run out yet) the forwarder keeps trying, within ``forward_patience_s``,
which stays below a home's request timeout; a message that still found nobody is refused as
retryable (``internal_error``), so the home sends it again. A message for an event that is over
is refused as such at once. :class:`EventInbox` is the coordinator's side: one subscription per
event it coordinates, each message handed to the negotiation in the order it came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Protocol, cast

from nats.aio.subscription import Subscription

from aggregator.cluster.bus import Bus, BusUnavailableError, Json
from aggregator.store import StoreUnavailableError
from jeisson.common.protocol import (
    HOME_MESSAGE_TYPES,
    AwardAck,
    Bid,
    ErrorCode,
    HomeMessage,
    OptOut,
    ProtocolError,
    Telemetry,
    dump_message,
    parse_message,
)

_LOGGER = logging.getLogger(__name__)

RETRY_BASE_S: Final = 0.05
RETRY_MAX_S: Final = 0.5
_OK: Final[Json] = {"ok": True}

type EventRunning = Callable[[str], Awaitable[bool]]
"""Whether an event is still running (read from the database), for messages nobody takes."""


class CoordinatorSide(Protocol):
    """What an event's coordinator does with home messages (the negotiation's manager)."""

    async def handle_bid(self, home_id: str, bid: Bid) -> None:
        """Store a bid."""

    async def handle_award_ack(self, home_id: str, ack: AwardAck) -> None:
        """Store an award's acknowledgement."""

    async def handle_opt_out(self, home_id: str, opt_out: OptOut) -> None:
        """Store an opt-out."""

    def credit_telemetry(self, home_id: str, telemetry: Telemetry) -> None:
        """Credit telemetry stored by the home's process to the events coordinated here."""


@dataclass(slots=True)
class _Waiting:
    home_id: str
    frame: str
    message_id: str
    deadline: float
    future: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Forwarder:
    """Carries home messages to their event's coordinator and brings back its answer."""

    def __init__(
        self,
        bus: Bus,
        event_running: EventRunning,
        *,
        patience_s: float,
        timeout_s: float,
    ) -> None:
        """Forward over ``bus``; ask ``event_running`` about events nobody coordinates."""
        self._bus = bus
        self._event_running = event_running
        self._patience_s = patience_s
        self._timeout_s = timeout_s
        self._queues: dict[str, list[_Waiting]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}

    async def forward(self, event_id: str, home_id: str, message: HomeMessage) -> None:
        """Return once the coordinator stored ``message``.

        Raises ProtocolError when the coordinator refused it, StoreUnavailableError when no
        coordinator took it in time (nothing was stored; the home sends it again).
        """
        try:
            self._bus.subjects.inbox(event_id)
        except ValueError:
            raise ProtocolError(
                ErrorCode.UNKNOWN_EVENT, f"event {event_id!r} is not running", message.id
            ) from None
        waiting = _Waiting(
            home_id, dump_message(message), message.id, time.monotonic() + self._patience_s
        )
        self._queues.setdefault(event_id, []).append(waiting)
        if event_id not in self._senders:
            self._senders[event_id] = asyncio.create_task(
                self._send(event_id), name=f"forward-{event_id}"
            )
        await waiting.future

    async def close(self) -> None:
        """Stop forwarding; waiting messages are refused as retryable."""
        for task in self._senders.values():
            task.cancel()
        for task in list(self._senders.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in self._queues.values():
            for waiting in queue:
                _fail(waiting, StoreUnavailableError("the aggregator is stopping"))
        self._queues.clear()

    async def _send(self, event_id: str) -> None:
        """Send what is queued for one event, batch after batch, until nothing is left."""
        failures = 0
        try:
            await asyncio.sleep(0)  # let the messages of this moment join the batch
            while batch := self._queues.pop(event_id, []):
                batch = [waiting for waiting in batch if not waiting.future.done()]
                retry = await self._send_batch(event_id, batch)
                if retry:
                    failures += 1
                    retry = await self._give_up_or_keep(event_id, retry)
                    self._queues[event_id] = retry + self._queues.get(event_id, [])
                    await asyncio.sleep(min(RETRY_MAX_S, RETRY_BASE_S * 2 ** min(failures, 8)))
                else:
                    failures = 0
        finally:
            self._senders.pop(event_id, None)
            if self._queues.get(event_id):  # arrived while we were stopping: start again
                self._senders[event_id] = asyncio.create_task(self._send(event_id))

    async def _send_batch(self, event_id: str, batch: list[_Waiting]) -> list[_Waiting]:
        """Send one batch; settle what was answered, return what must be tried again."""
        if not batch:
            return []
        request = {"items": [{"home": w.home_id, "frame": w.frame} for w in batch]}
        try:
            answer = await self._bus.request(
                self._bus.subjects.inbox(event_id), request, timeout=self._timeout_s
            )
        except BusUnavailableError:
            return batch
        results = answer.get("results")
        if not isinstance(results, list) or len(results) != len(batch):
            return batch
        retry: list[_Waiting] = []
        for waiting, result in zip(batch, results, strict=True):
            if result.get("ok"):
                _settle(waiting)
            elif "code" in result:
                _fail(waiting, _protocol_error(result, waiting.message_id))
            else:  # the coordinator's store failed, or it is no longer the coordinator
                retry.append(waiting)
        return retry

    async def _give_up_or_keep(self, event_id: str, retry: list[_Waiting]) -> list[_Waiting]:
        """Refuse the messages nobody took: over when the event is, retryable past patience."""
        try:
            running = await self._event_running(event_id)
        except Exception:  # the database is down too: judge by patience alone
            running = True
        now = time.monotonic()
        kept: list[_Waiting] = []
        for waiting in retry:
            if not running:
                _fail(
                    waiting,
                    ProtocolError(
                        ErrorCode.UNKNOWN_EVENT,
                        f"event {event_id!r} is not running",
                        waiting.message_id,
                    ),
                )
            elif now >= waiting.deadline:
                _fail(waiting, StoreUnavailableError(f"no coordinator for event {event_id}"))
            else:
                kept.append(waiting)
        return kept


def _settle(waiting: _Waiting) -> None:
    if not waiting.future.done():
        waiting.future.set_result(None)


def _fail(waiting: _Waiting, error: Exception) -> None:
    if not waiting.future.done():
        waiting.future.set_exception(error)


def _protocol_error(result: Json, message_id: str) -> ProtocolError:
    try:
        code = ErrorCode(result["code"])
    except ValueError:
        code = ErrorCode.INTERNAL_ERROR
    return ProtocolError(code, str(result.get("message", "")), message_id)


class EventInbox:
    """The coordinator's side: takes home messages for the events this process coordinates."""

    def __init__(self, bus: Bus, coordinator: CoordinatorSide) -> None:
        """Hand the messages to ``coordinator``."""
        self._bus = bus
        self._coordinator = coordinator
        self._subscriptions: dict[str, Subscription] = {}

    @property
    def events(self) -> set[str]:
        """Return the events whose messages this process takes."""
        return set(self._subscriptions)

    async def open(self, event_id: str) -> None:
        """Start taking messages for ``event_id``."""
        if event_id not in self._subscriptions:
            self._subscriptions[event_id] = await self._bus.subscribe(
                self._bus.subjects.inbox(event_id), self._take
            )

    async def close(self, event_id: str) -> None:
        """Stop taking messages for ``event_id``."""
        subscription = self._subscriptions.pop(event_id, None)
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def close_all(self) -> None:
        """Stop taking messages for every event."""
        for event_id in list(self._subscriptions):
            await self.close(event_id)

    async def _take(self, request: Json) -> Json:
        """Hand every message of a request to the negotiation, in order; answer each."""
        items = request.get("items", [])
        # Started in order: each reaches its event's queue before the next one starts.
        tasks = [asyncio.ensure_future(self._handle(item)) for item in items]
        return {"results": list(await asyncio.gather(*tasks))}

    async def _handle(self, item: Json) -> Json:
        try:
            home_id = str(item["home"])
            message = cast(HomeMessage, parse_message(item["frame"], allowed=HOME_MESSAGE_TYPES))
            await self._dispatch(home_id, message)
        except ProtocolError as err:
            return {"code": err.code.value, "message": err.message}
        except (StoreUnavailableError, KeyError, TypeError) as err:
            return {"retry": str(err)}
        except Exception:
            _LOGGER.exception("Coordinator failed to handle a forwarded message")
            return {"retry": "internal error"}
        return _OK

    async def _dispatch(self, home_id: str, message: HomeMessage) -> None:
        match message:
            case Bid():
                await self._coordinator.handle_bid(home_id, message)
            case AwardAck():
                await self._coordinator.handle_award_ack(home_id, message)
            case OptOut():
                await self._coordinator.handle_opt_out(home_id, message)
            case Telemetry():  # published, never requested: stored already, credit it
                self._coordinator.credit_telemetry(home_id, message)
            case _:
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "not for a coordinator", message.id)
