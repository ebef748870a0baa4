"""The homes the negotiation can reach now, and the grace timers of homes that left."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime

from aggregator.negotiation.model import HomeView
from aggregator.records import HomeRecord
from jeisson.common.protocol import SCHEMA_VERSION


def _fully_reliable(_home_id: str) -> float:
    return 1.0


class HomeRegistry:
    """Views of the connected, ready homes, and drop-off timers of the ones that went away."""

    def __init__(self, reliability: Callable[[str], float] | None = None) -> None:
        """Start with no homes; ``reliability`` gives a home's score (1.0 for all when None)."""
        self._views: dict[str, HomeView] = {}
        self._drop_timers: dict[str, asyncio.TimerHandle] = {}
        self._reliability = reliability or _fully_reliable

    @property
    def views(self) -> Mapping[str, HomeView]:
        """Return the connected homes' views, by home id."""
        return self._views

    def ready(self, home: HomeRecord, schema_version: int = SCHEMA_VERSION) -> HomeView:
        """Track a home that said hello and sent its inventory; stop its drop-off timer."""
        view = HomeView.of(home, self._reliability(home.home_id), schema_version)
        self._views[home.home_id] = view
        timer = self._drop_timers.pop(home.home_id, None)
        if timer is not None:
            timer.cancel()
        return view

    def changed(self, home: HomeRecord) -> None:
        """Refresh a connected home's loads and participation."""
        known = self._views.get(home.home_id)
        version = known.schema_version if known is not None else SCHEMA_VERSION
        self._views[home.home_id] = HomeView.of(home, self._reliability(home.home_id), version)

    def rescore(self, home_ids: Iterable[str]) -> None:
        """Read the reliability of connected homes again (a statement changed it)."""
        for home_id in home_ids:
            view = self._views.get(home_id)
            if view is not None:
                self._views[home_id] = replace(view, reliability=self._reliability(home_id))

    def gone(self, home_id: str) -> None:
        """Forget a home that disconnected."""
        self._views.pop(home_id, None)

    def curtailed(self, home_id: str, at: datetime) -> None:
        """Note when a connected home last committed to curtail."""
        view = self._views.get(home_id)
        if view is not None:
            self._views[home_id] = replace(view, last_curtailed_at=at)

    def flexible_kw(self) -> float:
        """Return the curtailable kW of the connected, participating homes."""
        return sum(
            sum(view.loads[load].rated_kw for load in view.curtailable)
            for view in self._views.values()
            if view.participating
        )

    def arm_drop_timer(self, home_id: str, delay_s: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` after ``delay_s`` unless the home comes back first."""
        if home_id in self._drop_timers:
            return
        loop = asyncio.get_running_loop()
        self._drop_timers[home_id] = loop.call_later(delay_s, self._fire, home_id, callback)

    def _fire(self, home_id: str, callback: Callable[[], None]) -> None:
        self._drop_timers.pop(home_id, None)
        callback()

    def cancel_timers(self) -> None:
        """Cancel every drop-off timer (the manager is stopping)."""
        for timer in self._drop_timers.values():
            timer.cancel()
        self._drop_timers.clear()
