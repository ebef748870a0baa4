"""The sessions of one process, answering "is this home connected?" for the whole cluster.

:class:`ClusterRegistry` is the :class:`~aggregator.sessions.SessionRegistry` of a clustered
process: sessions, sending and broadcasting stay this process's own, but the operator views
that ask which homes are online (the dashboard, the fleet list and history, ``/metrics``,
``/healthz``) count every home connected to any process of the cluster, as the negotiation
knows them (:meth:`aggregator.cluster.node.ClusterManager.online`). So they read the same
whichever process answers.
"""

from __future__ import annotations

from collections.abc import Callable, KeysView, Mapping

from aggregator.metrics import Metrics
from aggregator.sessions import SessionRegistry

type Online = Callable[[], Mapping[str, object]]


class ClusterRegistry(SessionRegistry):
    """The sessions held here; "connected" means connected to any process of the cluster."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        """Start with no sessions; :meth:`count_cluster` tells where the cluster's homes are."""
        super().__init__(metrics)
        self._online: Online | None = None

    def count_cluster(self, online: Online) -> None:
        """Answer presence from ``online()``: the homes connected to the cluster, by id."""
        self._online = online

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
