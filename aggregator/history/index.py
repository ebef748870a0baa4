"""The homes as the dashboard searches them: an in-memory index, refreshed from the database.

With 10,000 homes an operator needs search, filters, sorting and paging; "online" lives in the
session registry and "flexible kW" and "reliability" are derived from JSON and from awards, so
none of them is a plain column to sort on in SQL. :class:`FleetIndex` keeps one light entry per
home (reading 10,000 homes costs ~0.4 s on SQLite, so it is read in chunks of
:data:`CHUNK` rows, giving the event loop back between them) and answers a page in
milliseconds. It is refreshed when it is older than ``max_age_s``, or at once when the number of
homes changed (a home was added). Homes' names and their loads' names come from here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select

from aggregator import tables
from aggregator.history.models import HomeSort, HomesPage, HomesQuery, HomeView
from aggregator.records import AwardStatus, EventStatus
from aggregator.store import Store
from jeisson.common.protocol import Load, utc_now

_LOGGER = logging.getLogger(__name__)

CHUNK: Final = 250
"""Homes read per query while refreshing (each chunk holds the event loop ~40 ms at most)."""
RELIABILITY_WINDOW: Final = timedelta(days=90)
"""Awards of events that started this long ago at most count towards reliability."""
KW_DIGITS: Final = 3
_FINISHED_EVENTS: Final = (EventStatus.COMPLETED.value, EventStatus.CANCELLED.value)
_NOT_COUNTED: Final = (AwardStatus.SENT.value, AwardStatus.CANCELLED.value)
"""Awards that say nothing about a home's reliability (pending, or the operator cancelled)."""


@dataclass(frozen=True, slots=True)
class HomeEntry:
    """What the index keeps of one home."""

    home_id: str
    name: str
    created_at: datetime
    enrolled: bool
    participating: bool
    loads: tuple[dict[str, Any], ...]
    """The declared loads as stored (JSON objects of :class:`~jeisson.common.protocol.Load`)."""
    last_seen_at: datetime | None
    software_version: str | None
    flexible_kw: float
    load_names: dict[str, str]
    search_text: str
    suspended: bool = False


@dataclass(slots=True)
class Reliability:
    """kW a home was awarded in finished events, and the kW it kept."""

    awarded_kw: float = 0.0
    kept_kw: float = 0.0
    awards: int = 0

    @property
    def share(self) -> float | None:
        """Return kept / awarded, or None without awards."""
        if self.awards == 0 or self.awarded_kw <= 0:
            return None
        return round(self.kept_kw / self.awarded_kw, KW_DIGITS)


def _entry(row: Any) -> HomeEntry:
    loads = tuple(item for item in (row.loads or []) if isinstance(item, dict))
    flexible = sum(
        float(item.get("rated_kw", 0.0)) for item in loads if item.get("curtailable", True)
    )
    return HomeEntry(
        home_id=row.home_id,
        name=row.name,
        created_at=row.created_at,
        enrolled=bool(row.enrolled),
        participating=bool(row.participating),
        loads=loads,
        last_seen_at=row.last_seen_at,
        software_version=row.software_version,
        flexible_kw=round(flexible, KW_DIGITS),
        load_names={str(item.get("load_id")): str(item.get("name")) for item in loads},
        search_text=f"{row.name}\n{row.home_id}".casefold(),
        suspended=row.suspended_at is not None,
    )


@dataclass(slots=True)
class FleetIndex:
    """Every home, kept in memory for the dashboard; connection state read live."""

    store: Store
    is_connected: Callable[[str], bool]
    max_age_s: float = 60.0
    _entries: dict[str, HomeEntry] = field(default_factory=dict)
    _reliability: dict[str, Reliability] = field(default_factory=dict)
    _loaded_at: float | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- reading the database -----------------------------------------------------------------

    def invalidate(self) -> None:
        """Read every home again on the next request (a home was suspended, resumed, removed)."""
        self._loaded_at = None

    async def ensure_fresh(self) -> None:
        """Refresh when too old or when homes were added or removed since the last refresh."""
        now = asyncio.get_running_loop().time()
        if self._loaded_at is not None and now - self._loaded_at < self.max_age_s:
            async with self.store.engine.connect() as conn:
                count = (
                    await conn.execute(
                        select(func.count())
                        .select_from(tables.homes)
                        .where(tables.homes.c.removed_at.is_(None))
                    )
                ).scalar()
            if count == len(self._entries):
                return
        await self.refresh()

    async def refresh(self) -> None:
        """Read every home (in chunks) and every home's reliability."""
        async with self._lock:
            started = asyncio.get_running_loop().time()
            homes = tables.homes
            columns = (
                homes.c.home_id,
                homes.c.name,
                homes.c.created_at,
                homes.c.token_hash.is_not(None).label("enrolled"),  # holds a valid token
                homes.c.participating,
                homes.c.loads,
                homes.c.last_seen_at,
                homes.c.software_version,
                homes.c.suspended_at,
            )
            entries: dict[str, HomeEntry] = {}
            after = ""
            while True:
                query = (
                    select(*columns)
                    .where(homes.c.home_id > after, homes.c.removed_at.is_(None))
                    .order_by(homes.c.home_id)
                    .limit(CHUNK)
                )
                async with self.store.engine.connect() as conn:
                    rows = (await conn.execute(query)).all()
                entries.update((row.home_id, _entry(row)) for row in rows)
                if len(rows) < CHUNK:
                    break
                after = rows[-1].home_id
                await asyncio.sleep(0)
            self._reliability = await self._read_reliability()
            self._entries = entries
            self._loaded_at = asyncio.get_running_loop().time()
            _LOGGER.debug(
                "Fleet index: %d homes in %.2f s",
                len(entries),
                self._loaded_at - started,
            )

    async def _read_reliability(self) -> dict[str, Reliability]:
        awards, events = tables.awards, tables.events
        query = (
            select(
                awards.c.home_id,
                awards.c.status,
                awards.c.kw,
                awards.c.load_kw,
                awards.c.opted_out_loads,
            )
            .join(events, events.c.event_id == awards.c.event_id)
            .where(
                events.c.status.in_(_FINISHED_EVENTS),
                events.c.start >= utc_now() - RELIABILITY_WINDOW,
                awards.c.status.not_in(_NOT_COUNTED),
            )
        )
        found: dict[str, Reliability] = {}
        async with self.store.engine.connect() as conn:
            for row in await conn.execute(query):
                item = found.setdefault(row.home_id, Reliability())
                item.awards += 1
                item.awarded_kw += float(row.kw)
                if row.status == AwardStatus.ACKED.value:
                    load_kw = row.load_kw or {}
                    dropped = sum(float(load_kw.get(load, 0.0)) for load in row.opted_out_loads)
                    item.kept_kw += max(0.0, float(row.kw) - dropped)
        return found

    def note_seen(self, home_ids: Iterable[str], at: datetime) -> None:
        """Record that homes were connected until ``at`` (they just went offline)."""
        for home_id in home_ids:
            entry = self._entries.get(home_id)
            if entry is not None:
                self._entries[home_id] = replace(entry, last_seen_at=at)

    # --- answering --------------------------------------------------------------------------

    @property
    def home_ids(self) -> list[str]:
        """Return the ids of every indexed home."""
        return list(self._entries)

    def name_of(self, home_id: str) -> str:
        """Return a home's name (its id when it is not indexed yet)."""
        entry = self._entries.get(home_id)
        return entry.name if entry else home_id

    def load_name(self, home_id: str, load_id: str) -> str:
        """Return the name a home gave a load (the id when unknown)."""
        entry = self._entries.get(home_id)
        return entry.load_names.get(load_id, load_id) if entry else load_id

    def entry(self, home_id: str) -> HomeEntry | None:
        """Return a home's entry, if indexed."""
        return self._entries.get(home_id)

    def reliability(self, home_id: str) -> Reliability:
        """Return a home's reliability figures (empty without finished awards)."""
        return self._reliability.get(home_id, Reliability())

    def counts(self) -> tuple[int, int]:
        """Return (homes, enrolled homes)."""
        return len(self._entries), sum(entry.enrolled for entry in self._entries.values())

    def view(self, entry: HomeEntry, now: datetime) -> HomeView:
        """Return the operator's view of one home."""
        connected = self.is_connected(entry.home_id)
        reliability = self.reliability(entry.home_id)
        return HomeView(
            home_id=entry.home_id,
            name=entry.name,
            created_at=entry.created_at,
            enrolled=entry.enrolled,
            connected=connected,
            participating=entry.participating,
            flexible_kw=entry.flexible_kw,
            loads=[Load.model_validate(item) for item in entry.loads],
            last_seen_at=now if connected else entry.last_seen_at,
            software_version=entry.software_version,
            reliability=reliability.share,
            finished_awards=reliability.awards,
            suspended=entry.suspended,
        )

    def page(self, query: HomesQuery) -> HomesPage:
        """Return the homes matching ``query``, ordered, one page of them."""
        needle = query.q.strip().casefold()
        matching = [
            entry
            for entry in self._entries.values()
            if (not needle or needle in entry.search_text)
            and (query.participating is None or entry.participating == query.participating)
            and (query.online is None or self.is_connected(entry.home_id) == query.online)
            and self._reliability_matches(entry.home_id, query)
        ]
        matching.sort(key=lambda entry: entry.name.casefold())
        descending = query.sort.value.startswith("-")
        key = self._sort_key(query.sort)
        if key is not None:
            # Homes without a value (never seen, no awards) go last either way.
            known = [entry for entry in matching if key(entry) is not None]
            unknown = [entry for entry in matching if key(entry) is None]
            known.sort(key=key, reverse=descending)
            matching = known + unknown
        elif descending:
            matching.reverse()
        now = utc_now()
        chosen = matching[query.offset : query.offset + query.limit]
        return HomesPage(
            homes=[self.view(entry, now) for entry in chosen],
            total=len(matching),
            offset=query.offset,
            limit=query.limit,
        )

    def _reliability_matches(self, home_id: str, query: HomesQuery) -> bool:
        if query.min_reliability is None and query.max_reliability is None:
            return True
        share = self.reliability(home_id).share
        if share is None:
            return False
        low = query.min_reliability if query.min_reliability is not None else 0.0
        high = query.max_reliability if query.max_reliability is not None else 1.0
        return low <= share <= high

    def _sort_key(self, sort: HomeSort) -> Callable[[HomeEntry], Any] | None:
        """Return the key of a sort order; None for the name (the base order)."""
        now = utc_now()
        match sort:
            case HomeSort.FLEXIBLE | HomeSort.FLEXIBLE_DESC:
                return lambda entry: entry.flexible_kw
            case HomeSort.LAST_SEEN | HomeSort.LAST_SEEN_DESC:
                return lambda entry: now if self.is_connected(entry.home_id) else entry.last_seen_at
            case HomeSort.RELIABILITY | HomeSort.RELIABILITY_DESC:
                return lambda entry: self.reliability(entry.home_id).share
            case HomeSort.CREATED | HomeSort.CREATED_DESC:
                return lambda entry: entry.created_at
            case _:
                return None
