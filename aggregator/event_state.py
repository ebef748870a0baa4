"""The live, in-memory picture of one event: its rounds, bids, awards and delivery numbers.

:class:`EventState` holds what the negotiation needs between persisted steps and computes the
figures the operator sees (committed kW, delivered kW, shortfall). It never talks to the store or
to homes; :mod:`aggregator.negotiation` does, and keeps this state in step with the database.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from aggregator.records import (
    AwardRecord,
    AwardStatus,
    BidRecord,
    EventRecord,
    EventStatus,
    RoundRecord,
    RoundStatus,
)
from jeisson.common.protocol import EventKind

KW_EPSILON: Final = 1e-6
"""kW differences smaller than this are treated as zero."""


@dataclass(frozen=True, slots=True)
class DeliverySample:
    """The latest reduction a home reported during an event."""

    ts: datetime
    shed_kw: float


@dataclass
class EventState:
    """One unfinished event as the negotiation tracks it."""

    record: EventRecord
    rounds: dict[int, RoundRecord] = field(default_factory=dict)
    awards: dict[str, AwardRecord] = field(default_factory=dict)
    offered: dict[int, set[str]] = field(default_factory=dict)
    """The homes offered each round."""
    open_bids: dict[str, BidRecord] = field(default_factory=dict)
    """Bids of the open round, by home."""
    ack_deadlines: dict[int, datetime] = field(default_factory=dict)
    """When unacknowledged awards of each round expire."""
    opted_out_homes: set[str] = field(default_factory=set)
    delivery: dict[str, DeliverySample] = field(default_factory=dict)
    award_ids_by_home: dict[str, list[str]] = field(default_factory=dict)
    """Index of ``awards`` by home, so per-home lookups stay cheap with thousands of homes."""
    needs_round: bool = False
    """Set when commitment was lost and a re-negotiation round should be tried."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def event_id(self) -> str:
        """Return the event's id."""
        return self.record.event_id

    @property
    def is_market(self) -> bool:
        """Return True for a bidding (market) event."""
        return self.record.kind is EventKind.MARKET

    @property
    def open_round(self) -> RoundRecord | None:
        """Return the round currently taking bids, if any."""
        current = self.rounds.get(self.record.current_round)
        return current if current is not None and current.status is RoundStatus.OPEN else None

    def add_award(self, award: AwardRecord) -> None:
        """Track a new award."""
        self.awards[award.award_id] = award
        self.award_ids_by_home.setdefault(award.home_id, []).append(award.award_id)

    def awards_of(self, home_id: str) -> list[AwardRecord]:
        """Return one home's awards in this event."""
        return [self.awards[award_id] for award_id in self.award_ids_by_home.get(home_id, ())]

    def unavailable_loads(self, home_id: str) -> set[str]:
        """Return the loads of a home this event must not ask for again.

        Loads under a live (sent or acknowledged) award, and loads the home gave back: opted
        out of, overridden, or declined. A homeowner who switched a load back on is not asked to
        switch it off again in the same event.
        """
        return {
            load
            for award in self.awards_of(home_id)
            if award.status
            in (AwardStatus.SENT, AwardStatus.ACKED, AwardStatus.OPTED_OUT, AwardStatus.DECLINED)
            for load in award.loads
        }

    @property
    def committed_kw(self) -> float:
        """Return the kW of acknowledged awards, less opted-out loads."""
        return sum(award.committed_kw for award in self.awards.values())

    @property
    def pending_kw(self) -> float:
        """Return the kW of awards sent but not yet acknowledged."""
        return sum(award.kw for award in self.awards.values() if award.status is AwardStatus.SENT)

    @property
    def shortfall_kw(self) -> float:
        """Return how far acknowledged and pending awards fall short of the target."""
        return max(0.0, self.record.target_kw - self.committed_kw - self.pending_kw)

    def delivered_kw(self, now: datetime, stale_after: timedelta) -> float:
        """Return the reduction homes report now (fresh samples only, active events only)."""
        if self.record.status is not EventStatus.ACTIVE:
            return 0.0
        return sum(
            sample.shed_kw for sample in self.delivery.values() if now - sample.ts <= stale_after
        )

    def set_award(self, award: AwardRecord, **changes: Any) -> AwardRecord:
        """Replace an award with a changed copy and return it."""
        updated = replace(award, **changes)
        self.awards[award.award_id] = updated
        return updated

    def set_round(self, record: RoundRecord, **changes: Any) -> RoundRecord:
        """Replace a round with a changed copy and return it."""
        updated = replace(record, **changes)
        self.rounds[record.round] = updated
        return updated

    def set_record(self, **changes: Any) -> EventRecord:
        """Replace the event record with a changed copy and return it."""
        self.record = replace(self.record, **changes)
        return self.record
