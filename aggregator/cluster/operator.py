"""Operator actions reaching any process are carried out by the event's coordinator.

An operator's cancel may reach any process of the cluster (the load balancer picks one). The
process coordinating the event carries it out itself; any other sends it to the coordinator on
the event's ``ops`` subject (request-reply) and answers the operator with what the coordinator
answered. While the event has no coordinator (a takeover) it tries again within
``forward_patience_s``, then answers "try again" (503); an event that is over or unknown is
answered as such from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Final

from nats.aio.subscription import Subscription

from aggregator.cluster.bus import Bus, BusUnavailableError, Json
from aggregator.cluster.settings import ClusterSettings
from aggregator.negotiation.model import EventNotFoundError, InvalidTransitionError
from aggregator.records import EventRecord
from aggregator.store import Store, StoreUnavailableError

OPS_RETRY_S: Final = 0.2
"""Wait between tries of an operator action while an event has no coordinator."""

type Cancel = Callable[[str, str], Awaitable[EventRecord]]


class OperatorDesk:
    """Sends operator actions to coordinators; takes them for the events coordinated here."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        settings: ClusterSettings,
        *,
        drives: Callable[[str], bool],
        cancel_here: Cancel,
    ) -> None:
        """Carry actions out with ``cancel_here`` for the events ``drives`` says run here."""
        self._bus = bus
        self._store = store
        self._settings = settings
        self._drives = drives
        self._cancel_here = cancel_here
        self._subscriptions: dict[str, Subscription] = {}

    async def cancel(self, event_id: str, reason: str) -> EventRecord:
        """Have the event's coordinator cancel it; return the stored event."""
        try:
            subject = self._bus.subjects.ops(event_id)
        except ValueError:
            raise EventNotFoundError(event_id) from None
        deadline = time.monotonic() + self._settings.forward_patience_s
        while True:
            try:
                answer = await self._bus.request(
                    subject,
                    {"action": "cancel", "reason": reason},
                    timeout=self._settings.request_timeout_s,
                )
            except BusUnavailableError as err:
                answer = {"retry": str(err)}
            if answer.get("ok"):
                record = await self._store.get_event(event_id)
                if record is None:
                    raise EventNotFoundError(event_id)
                return record
            if answer.get("error") == "invalid":
                raise InvalidTransitionError(str(answer.get("message", "")))
            record = await self._store.get_event(event_id)
            if record is None:
                raise EventNotFoundError(event_id)
            if record.status.is_terminal:
                raise InvalidTransitionError(f"event {event_id} is already {record.status}")
            if time.monotonic() >= deadline:
                raise StoreUnavailableError(f"no coordinator answered for event {event_id}")
            await asyncio.sleep(OPS_RETRY_S)

    async def open(self, event_id: str) -> None:
        """Take operator actions for an event coordinated here."""
        if event_id in self._subscriptions:
            return

        async def handle(request: Json) -> Json:
            return await self._take(event_id, request)

        self._subscriptions[event_id] = await self._bus.subscribe(
            self._bus.subjects.ops(event_id), handle
        )

    async def close(self, event_id: str) -> None:
        """Stop taking operator actions for an event."""
        subscription = self._subscriptions.pop(event_id, None)
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def close_all(self) -> None:
        """Stop taking operator actions for every event."""
        for event_id in list(self._subscriptions):
            await self.close(event_id)

    async def _take(self, event_id: str, request: Json) -> Json:
        if request.get("action") != "cancel":
            return {"error": "invalid", "message": "unknown operator action"}
        if not self._drives(event_id):
            return {"retry": "not coordinated here"}
        try:
            await self._cancel_here(event_id, str(request.get("reason", "")))
        except InvalidTransitionError as err:
            return {"error": "invalid", "message": str(err)}
        except (StoreUnavailableError, EventNotFoundError) as err:
            return {"retry": str(err)}
        return {"ok": True}
