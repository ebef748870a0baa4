"""The dashboard's live feed: snapshots of homes and running events, shared by every viewer.

:class:`LiveFeed` runs one producer task while at least one viewer is subscribed. Every
``poll_s`` it builds a snapshot (homes online, flexible kW, each unfinished event with its
figures, rounds and awards) and publishes it when it changed, or at least every ``heartbeat_s``
so the dashboard's chart gets a point a second. Each published snapshot is encoded once as a
Server-Sent Events frame and handed to every viewer. The feed also keeps, per running event, the
chart history (target, committed and delivered kW over time) it has published, so a viewer that
joins mid-event sees the whole curve.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aggregator.api import award_view, event_summary, round_view
from aggregator.history.index import FleetIndex
from aggregator.negotiation import EventManager
from aggregator.participants import NOTHING, OutsideFigures
from aggregator.records import AwardRecord, EventRecord, EventStatus
from aggregator.sessions import SessionRegistry
from aggregator.store import Store
from jeisson.common.protocol import utc_now

_LOGGER = logging.getLogger(__name__)

KW_DECIMALS: Final = 3
_STATUS_ORDER: Final = {
    EventStatus.ACTIVE: 0,
    EventStatus.COMMITTED: 1,
    EventStatus.NEGOTIATING: 2,
    EventStatus.DRAFT: 3,
}
"""Which unfinished event matters most to an operator: the one shedding load now comes first."""

Snapshot = dict[str, Any]
SnapshotBuilder = Callable[[], Awaitable[Snapshot]]


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """How often the feed looks and publishes, and how much it keeps."""

    poll_s: float = 0.5
    """How often a snapshot is built (a change is published at the next poll)."""
    heartbeat_s: float = 1.0
    """The longest time between two published snapshots, changed or not."""
    history_points: int = 7200
    """Chart points kept per running event (two hours at one point a second)."""
    max_awards: int = 500
    """Awards listed per event in a snapshot (``awards_total`` gives the full count)."""


def sse_frame(event: str, data: Any) -> bytes:
    """Encode one Server-Sent Events frame (compact JSON has no newlines)."""
    payload = json.dumps(data, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


def _sort_key(record: EventRecord) -> tuple[int, datetime]:
    return (_STATUS_ORDER.get(record.status, len(_STATUS_ORDER)), record.start)


def named_award(award: AwardRecord, names: FleetIndex) -> dict[str, Any]:
    """Return an award's JSON view with its home's name and its loads' names."""
    return {
        **award_view(award),
        "home_name": names.name_of(award.home_id),
        "load_names": [names.load_name(award.home_id, load) for load in award.loads],
    }


async def build_snapshot(
    store: Store,
    manager: EventManager,
    registry: SessionRegistry,
    max_awards: int,
    names: FleetIndex,
    *,
    outside: Mapping[str, OutsideFigures] | None = None,
) -> Snapshot:
    """Return what the dashboard shows now: homes, flexible kW and every unfinished event.

    ``outside``: what third-party OpenADR VENs add to running events (their kW are counted).
    """
    records = await store.unfinished_events()
    # From here on nothing awaits: the event states are read in one consistent step.
    events = []
    for record in sorted(records, key=_sort_key):
        state = manager.live(record.event_id)
        if state is None:
            continue  # finished between the query and now
        awards = list(state.awards.values())
        extra = (outside or {}).get(record.event_id, NOTHING)
        committed = state.committed_kw + extra.committed_kw
        events.append(
            {
                **event_summary(state.record),
                "current_round": state.record.current_round,
                "committed_kw": round(committed, KW_DECIMALS),
                "pending_kw": round(state.pending_kw, KW_DECIMALS),
                "delivered_kw": round(
                    manager.delivered_kw(state) + extra.delivered_kw, KW_DECIMALS
                ),
                "shortfall_kw": round(max(0.0, state.record.target_kw - committed), KW_DECIMALS),
                "vens": [share.view(KW_DECIMALS) for share in extra.shares],
                "rounds": [
                    round_view(state.rounds[number], len(state.offered.get(number, ())))
                    for number in sorted(state.rounds)
                ],
                "awards": [named_award(award, names) for award in awards[:max_awards]],
                "awards_total": len(awards),
            }
        )
    return {
        "ts": utc_now().isoformat(),
        "homes_online": len(registry),
        "flexible_kw": round(manager.flexible_kw(), KW_DECIMALS),
        "events": events,
    }


def _chart_point(ts: str, event: Snapshot) -> list[Any]:
    return [ts, event["target_kw"], event["committed_kw"], event["delivered_kw"]]


class LiveFeed:
    """Builds snapshots while someone watches and hands each one to every viewer."""

    def __init__(self, build: SnapshotBuilder, settings: FeedSettings | None = None) -> None:
        """Create an idle feed; it starts building when the first viewer subscribes."""
        self._build = build
        self._settings = settings or FeedSettings()
        self._viewers = 0
        self._task: asyncio.Task[None] | None = None
        self._latest: bytes | None = None
        self._version = 0
        self._published = asyncio.Event()
        self._closed = False
        self._history: dict[str, deque[list[Any]]] = {}

    @property
    def settings(self) -> FeedSettings:
        """Return the feed's timing settings."""
        return self._settings

    @property
    def viewers(self) -> int:
        """Return how many viewers are subscribed."""
        return self._viewers

    def history(self) -> dict[str, list[list[Any]]]:
        """Return the chart points published so far, by running event.

        Each point is ``[ts, target_kw, committed_kw, delivered_kw]``.
        """
        return {event_id: list(points) for event_id, points in self._history.items()}

    async def frames(self) -> AsyncGenerator[bytes]:
        """Yield SSE frames for one viewer: the history, then every snapshot as it is published.

        The iteration ends when the feed is closed.
        """
        self._viewers += 1
        self._ensure_running()
        try:
            yield sse_frame("history", self.history())
            seen = 0
            while not self._closed:
                if self._version == seen:
                    await self._published.wait()
                    continue
                seen = self._version
                if self._latest is not None:
                    yield self._latest
        finally:
            self._viewers -= 1

    async def close(self) -> None:
        """End every viewer's iteration and stop the producer (on application shutdown)."""
        self._closed = True
        self._published.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _ensure_running(self) -> None:
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._produce(), name="dashboard-live-feed")

    async def _produce(self) -> None:
        """Build snapshots until the last viewer leaves; publish the changed ones."""
        loop = asyncio.get_running_loop()
        last_key: str | None = None
        last_sent = float("-inf")
        while self._viewers > 0 and not self._closed:
            try:
                snapshot = await self._build()
            except Exception:
                _LOGGER.exception("Dashboard snapshot failed; retrying")
            else:
                key = json.dumps({**snapshot, "ts": None}, sort_keys=True)
                now = loop.time()
                if key != last_key or now - last_sent >= self._settings.heartbeat_s:
                    self._publish(snapshot)
                    last_key, last_sent = key, now
            await asyncio.sleep(self._settings.poll_s)

    def _publish(self, snapshot: Snapshot) -> None:
        running = {event["id"] for event in snapshot["events"]}
        for event_id in set(self._history) - running:
            del self._history[event_id]
        for event in snapshot["events"]:
            points = self._history.setdefault(
                event["id"], deque(maxlen=self._settings.history_points)
            )
            points.append(_chart_point(snapshot["ts"], event))
        self._latest = sse_frame("snapshot", snapshot)
        self._version += 1
        published, self._published = self._published, asyncio.Event()
        published.set()
