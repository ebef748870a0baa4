"""Stored events and their rounds, offers, bids, awards and opt-outs.

Writes go through a :class:`~aggregator.store.unit.Unit` (the negotiation commits each step's
changes in one); the single-row methods here are conveniences for tools and tests, each its own
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select

from aggregator import tables
from aggregator.records import (
    AwardRecord,
    BidRecord,
    EventRecord,
    EventStatus,
    RoundRecord,
)
from aggregator.store.base import StoreBase
from aggregator.store.changes import (
    AWARDS,
    BIDS,
    EVENTS,
    OPT_OUTS,
    ROUNDS,
    Change,
    Insert,
    OptOutRecord,
    Update,
    Upsert,
)
from jeisson.common.protocol import utc_now


class EventStore(StoreBase):
    """Events, rounds, offers, bids, awards and opt-outs."""

    async def write(self, changes: Iterable[Change]) -> None:
        """Write changes in one transaction of their own."""
        async with self.transaction() as unit:
            await unit.apply(changes)

    # --- events and rounds ----------------------------------------------------------------

    async def insert_event(self, event: EventRecord) -> None:
        """Persist a new event."""
        await self.write([Insert(event)])

    async def update_event(self, event: EventRecord) -> None:
        """Persist every field of an event."""
        await self.write([Update(event)])

    async def get_event(self, event_id: str) -> EventRecord | None:
        """Return one event, or None."""
        query = select(tables.events).where(tables.events.c.event_id == event_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else EVENTS.from_row(row)

    async def list_events(self, limit: int = 100) -> list[EventRecord]:
        """Return the most recent events, newest first."""
        query = select(tables.events).order_by(tables.events.c.created_at.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [EVENTS.from_row(row) for row in await conn.execute(query)]

    async def unfinished_events(self) -> list[EventRecord]:
        """Return events that are neither completed nor cancelled (resumed after a restart)."""
        finished = [EventStatus.COMPLETED.value, EventStatus.CANCELLED.value]
        query = select(tables.events).where(tables.events.c.status.not_in(finished))
        async with self._engine.connect() as conn:
            return [EVENTS.from_row(row) for row in await conn.execute(query)]

    async def insert_round(self, record: RoundRecord) -> None:
        """Persist a newly opened round."""
        await self.write([Insert(record)])

    async def update_round(self, record: RoundRecord) -> None:
        """Persist a round's progress."""
        await self.write([Update(record)])

    async def rounds_for(self, event_id: str) -> list[RoundRecord]:
        """Return an event's rounds in order."""
        query = (
            select(tables.rounds)
            .where(tables.rounds.c.event_id == event_id)
            .order_by(tables.rounds.c.round)
        )
        async with self._engine.connect() as conn:
            return [ROUNDS.from_row(row) for row in await conn.execute(query)]

    async def offered_homes(self, event_id: str) -> dict[int, set[str]]:
        """Return the homes offered each round of an event."""
        offers = tables.round_offers
        query = select(offers.c.round, offers.c.home_id).where(offers.c.event_id == event_id)
        found: dict[int, set[str]] = {}
        async with self._engine.connect() as conn:
            for row in await conn.execute(query):
                found.setdefault(row.round, set()).add(row.home_id)
        return found

    async def offered_counts(self, event_id: str) -> dict[int, int]:
        """Return how many homes were offered each round of an event."""
        offers = tables.round_offers
        query = (
            select(offers.c.round, func.count())
            .where(offers.c.event_id == event_id)
            .group_by(offers.c.round)
        )
        async with self._engine.connect() as conn:
            return {int(row[0]): int(row[1]) for row in await conn.execute(query)}

    # --- bids, awards, opt-outs -----------------------------------------------------------

    async def save_bid(self, bid: BidRecord) -> None:
        """Persist a bid, replacing an earlier bid of the same home in the same round."""
        await self.write([Upsert(bid)])

    async def bids_for(self, event_id: str, round_number: int) -> list[BidRecord]:
        """Return the bids of one round."""
        query = select(tables.bids).where(
            tables.bids.c.event_id == event_id, tables.bids.c.round == round_number
        )
        async with self._engine.connect() as conn:
            return [BIDS.from_row(row) for row in await conn.execute(query)]

    async def bid_message_id(self, event_id: str, round_number: int, home_id: str) -> str | None:
        """Return the message id of a home's stored bid in a round, or None."""
        query = select(tables.bids.c.message_id).where(
            tables.bids.c.event_id == event_id,
            tables.bids.c.round == round_number,
            tables.bids.c.home_id == home_id,
        )
        async with self._engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return None if value is None else str(value)

    async def insert_awards(self, records: Iterable[AwardRecord]) -> None:
        """Persist new awards in one transaction."""
        await self.write([Insert(record) for record in records])

    async def update_award(self, record: AwardRecord) -> None:
        """Persist an award's new status, loads or opt-outs."""
        await self.write([Update(record)])

    async def awards_for(self, event_id: str) -> list[AwardRecord]:
        """Return an event's awards, in the order they were made."""
        query = (
            select(tables.awards)
            .where(tables.awards.c.event_id == event_id)
            .order_by(tables.awards.c.round, tables.awards.c.sent_at, tables.awards.c.award_id)
        )
        async with self._engine.connect() as conn:
            return [AWARDS.from_row(row) for row in await conn.execute(query)]

    async def home_acked_in(self, event_id: str, home_id: str, *, acked: bool = True) -> bool:
        """Return True when the home acknowledged an award of the event (whatever became of it).

        With ``acked=False``: when the home was awarded anything in the event at all.
        """
        awards = tables.awards
        query = select(awards.c.award_id).where(
            awards.c.event_id == event_id, awards.c.home_id == home_id
        )
        if acked:
            query = query.where(awards.c.acked_at.is_not(None))
        query = query.limit(1)
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def homes_opted_out(self, event_id: str) -> set[str]:
        """Return the homes that opted out of a whole event."""
        opt_outs = tables.opt_outs
        query = select(opt_outs.c.home_id).where(
            opt_outs.c.event_id == event_id, opt_outs.c.load_id == ""
        )
        async with self._engine.connect() as conn:
            return {str(row.home_id) for row in await conn.execute(query)}

    async def record_opt_out(
        self, event_id: str, home_id: str, load_id: str | None, reason: str, message_id: str
    ) -> bool:
        """Persist an opt-out; return False when the same opt-out was already recorded."""
        opt_outs = tables.opt_outs
        record = OptOutRecord(event_id, home_id, load_id or "", reason, message_id, utc_now())
        statement = self._insert(opt_outs).on_conflict_do_nothing(
            index_elements=[opt_outs.c.event_id, opt_outs.c.home_id, opt_outs.c.load_id]
        )
        async with self._begin() as conn:
            inserted = await conn.execute(statement.values(OPT_OUTS.to_row(record)))
        return inserted.rowcount == 1

    async def event_windows(self, since: datetime) -> list[tuple[datetime, datetime]]:
        """Return ``(start, end)`` of every event not cancelled that ends after ``since``.

        Oldest first; settlement leaves these periods out of baselines.
        """
        events = tables.events
        query = (
            select(events.c.start, events.c.end)
            .where(events.c.status != EventStatus.CANCELLED.value, events.c.end > since)
            .order_by(events.c.start, events.c.end)
        )
        async with self._engine.connect() as conn:
            return [(row.start, row.end) for row in await conn.execute(query)]
