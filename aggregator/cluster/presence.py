"""The sessions of one process, answering "is this home connected?" for the whole cluster.

:class:`ClusterRegistry` is the :class:`~aggregator.sessions.SessionRegistry` of a clustered
process: sessions, sending and broadcasting stay this process's own, but the operator views
that ask which homes are online (the dashboard, the fleet list and history, ``/metrics``,
``/healthz``) count every home connected to any process of the cluster, as the negotiation
knows them (:meth:`aggregator.cluster.node.ClusterManager.online`). So they read the same
whichever process answers. Closing a home's sessions (suspended, revoked, removed through any
process) closes them on every process: the request is published to all of them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, KeysView, Mapping

from nats.aio.subscription import Subscription

from aggregator.cluster.bus import Bus, BusUnavailableError, Json
from aggregator.metrics import Metrics
from aggregator.sessions import SessionRegistry

_LOGGER = logging.getLogger(__name__)

type Online = Callable[[], Mapping[str, object]]


class ClusterRegistry(SessionRegistry):
    """The sessions held here; "connected" means connected to any process of the cluster."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        """Start with no sessions; :meth:`count_cluster` tells where the cluster's homes are."""
        super().__init__(metrics)
        self._online: Online | None = None
        self._bus: Bus | None = None
        self._node_id = ""
        self._subscription: Subscription | None = None

    def count_cluster(self, online: Online) -> None:
        """Answer presence from ``online()``: the homes connected to the cluster, by id."""
        self._online = online

    async def join(self, bus: Bus, node_id: str) -> None:
        """Close sessions here when another process is asked to close a home's sessions."""
        self._bus, self._node_id = bus, node_id
        self._subscription = await bus.subscribe(bus.subjects.close_home, self._on_close)

    async def leave(self) -> None:
        """Stop hearing the other processes."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def close_home(self, home_id: str, reason: str) -> int:
        """Close the home's sessions here, and ask every other process to close theirs."""
        closed = await super().close_home(home_id, reason)
        if self._bus is not None:
            message = {"node": self._node_id, "home_id": home_id, "reason": reason}
            try:
                await self._bus.publish(self._bus.subjects.close_home, message)
            except BusUnavailableError as err:  # its token is refused at the next connect
                _LOGGER.warning("Sessions of home %s elsewhere not closed: %s", home_id, err)
        return closed

    async def _on_close(self, message: Json) -> None:
        if message.get("node") == self._node_id:
            return
        await super().close_home(str(message.get("home_id", "")), str(message.get("reason", "")))

    @property
    def held_here(self) -> int:
        """Return how many homes have a ready session on this process."""
        return super().__len__()

    def __len__(self) -> int:
        """Return how many homes are connected to the cluster and ready."""
        return len(self._online()) if self._online is not None else super().__len__()

    def is_connected(self, home_id: str) -> bool:
        """Return True when the home is connected to some process of the cluster."""
        if self._online is None:
            return super().is_connected(home_id)
        return home_id in self._online()

    def home_ids(self) -> KeysView[str]:
        """Return the ids of the homes connected to the cluster (a live view)."""
        if self._online is None:
            return super().home_ids()
        return self._online().keys()
