"""Taking, keeping and handing over the leases of events: exactly one coordinator per event.

:class:`Leadership` renews the leases this process holds (every third of their lifetime) and
looks for events that need a coordinator (:meth:`LeaseStore.orphans`: a lease that ran out, an
event that never had one). It takes such an event's lease, has the negotiation load it from the
database and drive it, and only then opens the event's inbox for home messages. A lease it
finds taken over (its renewal did not come back) is given up at once: inbox closed, driver
stopped; any write the stale driver still tries is refused by the database (the fence). On a
clean stop the leases are handed over (set to run out now), so the others take over within one
sweep instead of one lease lifetime: a rolling restart drops no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Protocol

from aggregator.cluster.forwarding import EventInbox
from aggregator.cluster.leases import LeaseStore
from aggregator.cluster.settings import ClusterSettings
from aggregator.store import ClaimLease, Fence

_LOGGER = logging.getLogger(__name__)


class Coordination(Protocol):
    """What this process does with the events it coordinates (the negotiation's manager)."""

    async def adopt(self, event_id: str, fence: Fence) -> bool:
        """Load an event and drive it under ``fence``; False when it is over (nothing to drive)."""

    async def relinquish(self, event_id: str) -> None:
        """Stop driving an event whose lease is no longer ours (what is stored stays)."""


class Leadership:
    """The leases of this process, and the loops that keep and find them."""

    def __init__(self, leases: LeaseStore, settings: ClusterSettings, inbox: EventInbox) -> None:
        """Keep leases in ``leases``; open ``inbox`` for the events coordinated here."""
        self._leases = leases
        self._settings = settings
        self._inbox = inbox
        self._coordination: Coordination | None = None
        self._held: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    @property
    def node_id(self) -> str:
        """Return this process's node id (the leases' holder)."""
        return self._leases.holder

    @property
    def held(self) -> dict[str, int]:
        """Return the events coordinated here and their tokens."""
        return dict(self._held)

    def leads(self, event_id: str) -> bool:
        """Return True when this process coordinates the event."""
        return event_id in self._held

    def claim(self, event_id: str) -> ClaimLease:
        """Return the change that makes this process a new event's coordinator (token 1)."""
        return ClaimLease(event_id, self.node_id, self._settings.lease_ttl_s)

    async def claimed(self, event_id: str) -> Fence:
        """Note a new event stored with :meth:`claim`; open its inbox; return its fence."""
        self._held[event_id] = 1
        await self._inbox.open(event_id)
        return Fence(event_id, 1)

    async def finished(self, event_id: str) -> None:
        """Give up a finished event's lease once its end or cancel was sent."""
        token = self._held.pop(event_id, None)
        await self._inbox.close(event_id)
        if token is None:
            return
        try:
            await self._leases.release(event_id, token)
        except Exception as err:  # it runs out by itself; whoever takes it re-sends the end
            _LOGGER.info("Lease of finished event %s not released: %s", event_id, err)

    async def start(self, coordination: Coordination) -> None:
        """Start keeping leases and looking for events without a coordinator."""
        self._coordination = coordination
        self._tasks = [
            asyncio.create_task(self._renew_loop(), name="leases-renew"),
            asyncio.create_task(self._sweep_loop(), name="leases-sweep"),
        ]

    async def pause(self) -> None:
        """Stop renewing and taking leases, and stop taking home messages (before a stop)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._inbox.close_all()

    async def hand_over(self) -> None:
        """Let every held lease run out now, so the other processes take the events over."""
        held, self._held = self._held, {}
        if not held:
            return
        try:
            await self._leases.hand_over(held)
            _LOGGER.info("Handed %d events over to the other processes", len(held))
        except Exception as err:
            _LOGGER.warning("Leases not handed over (%s); they run out by themselves", err)

    async def sweep(self) -> None:
        """Take over every event that needs a coordinator (one pass)."""
        coordination = self._coordination
        if coordination is None:
            return
        async with self._lock:
            for event_id in await self._leases.orphans():
                if event_id in self._held:
                    continue  # ours: renewal will say whether it still is
                token = await self._leases.acquire(event_id)
                if token is not None:
                    await self._adopt(coordination, event_id, token)

    async def renew(self) -> None:
        """Renew held leases; give up at once the ones another process took over."""
        held = dict(self._held)
        kept = await self._leases.renew(held)
        for event_id in held.keys() - kept:
            if self._held.get(event_id) != held[event_id]:
                continue  # finished or re-taken meanwhile
            del self._held[event_id]
            _LOGGER.warning(
                "Event %s: another process took the lease over; this one stops driving it",
                event_id,
                extra={"event_id": event_id},
            )
            await self._inbox.close(event_id)
            if self._coordination is not None:
                await self._coordination.relinquish(event_id)

    async def _adopt(self, coordination: Coordination, event_id: str, token: int) -> None:
        self._held[event_id] = token
        try:
            driving = await coordination.adopt(event_id, Fence(event_id, token))
        except Exception:
            _LOGGER.exception("Event %s: could not take it over; handing it back", event_id)
            self._held.pop(event_id, None)
            with contextlib.suppress(Exception):
                await self._leases.hand_over({event_id: token})
            return
        if not driving:
            await self.finished(event_id)
            return
        await self._inbox.open(event_id)
        _LOGGER.info(
            "Event %s: coordinated here now (token %d)",
            event_id,
            token,
            extra={"event_id": event_id},
        )

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.renew_interval_s)
            try:
                await self.renew()
            except Exception as err:
                _LOGGER.warning("Leases not renewed: %s: %s", type(err).__name__, err)

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as err:
                _LOGGER.warning("Looking for events to take over failed: %s", err)
            interval = self._settings.sweep_interval_s
            await asyncio.sleep(interval * random.uniform(0.5, 1.5))
