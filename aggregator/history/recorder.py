"""Records the history the dashboard shows: fleet samples, event samples, when homes left.

:class:`HistoryRecorder` runs for the server's whole life (not only while someone watches). Every
``poll_s`` it reads the negotiation's live figures (no query) and writes, in one transaction:

* a row of ``event_samples`` per running event every ``event_every_s``, at once when its status
  changed, and a last one with its final status when it finished — the event chart and the
  status changes of the activity list;
* a row of ``fleet_samples`` every ``fleet_every_s`` — the fleet charts;
* ``homes.last_seen_at`` of the homes that went offline since the last poll, so "last seen" is
  when a home was last connected, not when it last said hello.

A failed write is logged and retried with the next poll (the samples are kept until written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import batched
from typing import Any, Final

from sqlalchemy import delete, update
from sqlalchemy.exc import SQLAlchemyError

from aggregator import tables
from aggregator.history import tables as history_tables
from aggregator.history.index import FleetIndex
from aggregator.metrics import EventFigures
from aggregator.negotiation import EventManager
from aggregator.sessions import SessionRegistry
from aggregator.store import Store
from aggregator.store.unit import KEYS_PER_QUERY, backend_insert
from jeisson.common.protocol import utc_now

_LOGGER = logging.getLogger(__name__)

KW_DIGITS: Final = 3
MAX_PENDING_ROWS: Final = 10_000
"""Samples kept while the database is unreachable (the oldest are dropped beyond this)."""


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """How often the recorder looks and writes, and how long fleet samples are kept."""

    poll_s: float = 1.0
    event_every_s: float = 1.0
    fleet_every_s: float = 60.0
    keep_fleet_samples: timedelta = timedelta(days=400)


@dataclass(slots=True)
class _Seen:
    ts: datetime
    figures: EventFigures


@dataclass(slots=True)
class _Pending:
    """Rows waiting to be written (kept across a failed write)."""

    event_rows: list[dict[str, Any]] = field(default_factory=list)
    fleet_rows: list[dict[str, Any]] = field(default_factory=list)
    departed: dict[str, datetime] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.event_rows or self.fleet_rows or self.departed)


def _event_row(figures: EventFigures, ts: datetime) -> dict[str, Any]:
    return {
        "event_id": figures.event_id,
        "ts": ts,
        "status": figures.status,
        "target_kw": round(figures.target_kw, KW_DIGITS),
        "committed_kw": round(figures.committed_kw, KW_DIGITS),
        "delivered_kw": round(figures.delivered_kw, KW_DIGITS),
    }


class HistoryRecorder:
    """Samples the fleet and the running events into the database."""

    def __init__(
        self,
        store: Store,
        manager: EventManager,
        registry: SessionRegistry,
        index: FleetIndex,
        settings: HistorySettings | None = None,
    ) -> None:
        """Prepare the recorder; :meth:`start` runs it."""
        self._store = store
        self._manager = manager
        self._registry = registry
        self._index = index
        self.settings = settings or HistorySettings()
        self._seen: dict[str, _Seen] = {}
        self._leaving: set[str] = set()
        """Homes whose session ended since the last tick (the registry tells, no polling)."""
        registry.on_departure(self._leaving.add)
        self._fleet_at: datetime | None = None
        self._pending = _Pending()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="history-recorder")

    async def stop(self) -> None:
        """Stop sampling (what is pending is written once more, if possible)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(SQLAlchemyError, OSError):
            await self._write()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                await self.tick(utc_now())
            except (SQLAlchemyError, OSError) as err:
                _LOGGER.warning("History not stored this time (%s); retrying", err)
            except Exception:
                _LOGGER.exception("History recorder failed; retrying")
            due += self.settings.poll_s
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def tick(self, now: datetime) -> None:
        """Sample once and write what is due (public for tests)."""
        await self._sample_events(now)
        self._sample_departures(now)
        every = timedelta(seconds=self.settings.fleet_every_s)
        if self._fleet_at is None or now - self._fleet_at >= every:
            await self._index.ensure_fresh()
            self._sample_fleet(now)
            self._fleet_at = now
        await self._write()

    async def _sample_events(self, now: datetime) -> None:
        every = timedelta(seconds=self.settings.event_every_s)
        running = {figures.event_id: figures for figures in self._manager.figures()}
        for event_id, figures in running.items():
            seen = self._seen.get(event_id)
            if seen is None or seen.figures.status != figures.status or now - seen.ts >= every:
                self._pending.event_rows.append(_event_row(figures, now))
                self._seen[event_id] = _Seen(now, figures)
        for event_id in set(self._seen) - set(running):
            last = self._seen.pop(event_id).figures
            record = await self._store.get_event(event_id)
            if record is not None:
                final = EventFigures(
                    event_id=event_id,
                    status=record.status.value,
                    target_kw=record.target_kw,
                    committed_kw=last.committed_kw,
                    delivered_kw=0.0,
                )
                self._pending.event_rows.append(_event_row(final, now))
        del self._pending.event_rows[:-MAX_PENDING_ROWS]

    def _sample_departures(self, now: datetime) -> None:
        """Note when homes that left since the last tick (and did not come back) were seen."""
        if not self._leaving:
            return
        departed = {
            home_id for home_id in self._leaving if not self._registry.is_connected(home_id)
        }
        self._leaving.clear()
        if departed:
            self._pending.departed.update(dict.fromkeys(departed, now))
            self._index.note_seen(departed, now)

    def _sample_fleet(self, now: datetime) -> None:
        total, _enrolled = self._index.counts()
        participating = 0
        for home_id in self._registry.home_ids():
            entry = self._index.entry(home_id)
            participating += bool(entry and entry.participating)
        self._pending.fleet_rows.append(
            {
                "ts": now,
                "homes_total": total,
                "homes_online": len(self._registry),
                "homes_participating": participating,
                "flexible_kw": round(self._manager.flexible_kw(), KW_DIGITS),
            }
        )
        del self._pending.fleet_rows[:-MAX_PENDING_ROWS]

    async def _write(self) -> None:
        """Write every pending row in one transaction; keep them if it fails."""
        pending = self._pending
        if not pending:
            return
        homes = tables.homes
        async with self._store.transaction() as unit:
            if pending.event_rows:
                insert = backend_insert(unit.dialect, history_tables.event_samples)
                await unit.connection.execute(insert.on_conflict_do_nothing(), pending.event_rows)
            if pending.fleet_rows:
                insert = backend_insert(unit.dialect, history_tables.fleet_samples)
                await unit.connection.execute(insert.on_conflict_do_nothing(), pending.fleet_rows)
                cutoff = pending.fleet_rows[-1]["ts"] - self.settings.keep_fleet_samples
                await unit.connection.execute(
                    delete(history_tables.fleet_samples).where(
                        history_tables.fleet_samples.c.ts < cutoff
                    )
                )
            by_time: dict[datetime, list[str]] = {}
            for home_id, at in pending.departed.items():
                by_time.setdefault(at, []).append(home_id)
            for at, home_ids in by_time.items():
                for chunk in batched(home_ids, KEYS_PER_QUERY):
                    await unit.connection.execute(
                        update(homes).where(homes.c.home_id.in_(chunk)).values(last_seen_at=at)
                    )
        self._pending = _Pending()
