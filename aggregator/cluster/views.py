"""Events coordinated by another process, read from the database while operators look at them.

The dashboard and an event's detail read an unfinished event's live state. A process has that
state only for the events it coordinates; for the others :class:`RemoteViews` reads the event
back from the database (as a takeover would) every ``REMOTE_VIEW_S`` while someone looked at it
within ``REMOTE_INTEREST_S``. The first look may find nothing read yet (the view appears with
the next refresh); the figures are at most one refresh old.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Final

from aggregator.negotiation.state import EventState
from aggregator.records import EventRecord
from aggregator.store import Store

_LOGGER = logging.getLogger(__name__)

REMOTE_VIEW_S: Final = 2.0
"""How often the state of an event coordinated elsewhere is read again while operators look."""
REMOTE_INTEREST_S: Final = 30.0
"""How long after the last look an event coordinated elsewhere is still read again."""

type Restore = Callable[[EventRecord], Awaitable[EventState]]


class RemoteViews:
    """The last read states of events coordinated elsewhere that operators look at."""

    def __init__(
        self, store: Store, restore: Restore, elsewhere: Callable[[], Collection[str]]
    ) -> None:
        """Read events with ``restore``; ``elsewhere()`` names the events run by others."""
        self._store = store
        self._restore = restore
        self._elsewhere = elsewhere
        self._views: dict[str, EventState] = {}
        self._looked_at: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start refreshing."""
        self._task = asyncio.create_task(self._loop(), name="cluster-remote-views")

    async def stop(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def get(self, event_id: str) -> EventState | None:
        """Return the last read state of an event run elsewhere (None: not read yet, or over)."""
        if event_id not in self._elsewhere():
            return None
        self._looked_at[event_id] = time.monotonic()
        return self._views.get(event_id)

    def forget(self, event_id: str) -> None:
        """Drop an event's view (it changed through this process: read the database instead)."""
        self._views.pop(event_id, None)

    async def refresh(self) -> None:
        """Read every event looked at lately again."""
        now = time.monotonic()
        elsewhere = self._elsewhere()
        for event_id, looked in list(self._looked_at.items()):
            if now - looked > REMOTE_INTEREST_S or event_id not in elsewhere:
                del self._looked_at[event_id]
                self._views.pop(event_id, None)
                continue
            record = await self._store.get_event(event_id)
            if record is None or record.status.is_terminal:
                self._views.pop(event_id, None)
                continue
            self._views[event_id] = await self._restore(record)

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as err:  # the database is down: keep the last views
                _LOGGER.debug("Views of events run elsewhere not refreshed: %s", err)
            await asyncio.sleep(REMOTE_VIEW_S)
