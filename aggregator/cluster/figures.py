"""Every running event's live figures, known to every process of a cluster.

Each process publishes the figures of the events it coordinates (target, committed, delivered
kW, whether its writes fail) on one subject every heartbeat, and keeps what the others
published. So /metrics, the dashboard's overview and an event's delivered kW read the same on
whichever process answers, and a process knows which process coordinates each running event (to
send it the telemetry of its homes). A process not heard from for ``ttl_s`` has no events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict

from nats.aio.subscription import Subscription

from aggregator.cluster.bus import Bus, BusUnavailableError, Json
from aggregator.metrics import EventFigures

_LOGGER = logging.getLogger(__name__)


def _figures_of(data: Json) -> EventFigures:
    return EventFigures(
        event_id=str(data["event_id"]),
        status=str(data["status"]),
        target_kw=float(data["target_kw"]),
        committed_kw=float(data["committed_kw"]),
        delivered_kw=float(data["delivered_kw"]),
        store_failing=bool(data.get("store_failing", False)),
    )


class ClusterFigures:
    """Publishes this process's event figures; keeps the other processes' latest."""

    def __init__(
        self,
        bus: Bus,
        node_id: str,
        own: Callable[[], list[EventFigures]],
        *,
        interval_s: float,
        ttl_s: float,
    ) -> None:
        """Publish ``own()`` every ``interval_s``; forget a process silent for ``ttl_s``."""
        self._bus = bus
        self._node_id = node_id
        self._own = own
        self._interval_s = interval_s
        self._ttl_s = ttl_s
        self._others: dict[str, tuple[float, list[EventFigures]]] = {}
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen to the others and start publishing."""
        self._subscription = await self._bus.subscribe(self._bus.subjects.figures, self._on_figures)
        self._task = asyncio.create_task(self._publish_loop(), name="cluster-figures")

    async def stop(self) -> None:
        """Stop publishing and listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def publish(self) -> None:
        """Publish this process's figures now (also after a change the others should see)."""
        payload: Json = {
            "node": self._node_id,
            "events": [asdict(item) for item in self._own()],
        }
        try:
            await self._bus.publish(self._bus.subjects.figures, payload)
        except BusUnavailableError as err:
            _LOGGER.debug("Event figures not published: %s", err)

    def remote(self) -> dict[str, list[EventFigures]]:
        """Return the figures each other live process published last, by process."""
        now = time.monotonic()
        return {
            node: figures
            for node, (heard, figures) in self._others.items()
            if now - heard <= self._ttl_s
        }

    def coordinators(self) -> dict[str, str]:
        """Return the process coordinating each event run elsewhere, as last published."""
        return {item.event_id: node for node, figures in self.remote().items() for item in figures}

    async def _on_figures(self, message: Json) -> None:
        node = str(message.get("node", ""))
        if not node or node == self._node_id:
            return
        try:
            figures = [_figures_of(item) for item in message.get("events", [])]
        except (KeyError, TypeError, ValueError) as err:
            _LOGGER.warning("Ignored event figures from %s: %s", node, err)
            return
        self._others[node] = (time.monotonic(), figures)

    async def _publish_loop(self) -> None:
        while True:
            await self.publish()
            now = time.monotonic()
            for node in [n for n, (heard, _) in self._others.items() if now - heard > self._ttl_s]:
                del self._others[node]
            await asyncio.sleep(self._interval_s)
