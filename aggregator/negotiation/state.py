"""The picture of one unfinished event, as immutable values.

An :class:`EventState` is never changed in place: each step of :mod:`.machine` returns a new one
(the persistent maps and sets of ``rpds`` share everything a step did not touch, so adding one
bid to a round of 10,000 homes copies a few nodes, not the round). The driver swaps the new state
in only after the step's writes are committed, so a failed write leaves memory as it was by
construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from rpds import HashTrieMap, HashTrieSet

from aggregator.records import (
    AwardRecord,
    AwardStatus,
    BidRecord,
    EventRecord,
    EventStatus,
    RoundRecord,
    RoundStatus,
)
from jeisson.common.protocol import EventDirection, EventKind

KW_EPSILON: Final = 1e-6
"""kW differences smaller than this are treated as zero."""
LIVE_AWARD: Final = frozenset({AwardStatus.SENT, AwardStatus.ACKED})
"""Awards a home may still curtail for."""
_GIVES_LOADS_BACK: Final = frozenset(
    {AwardStatus.SENT, AwardStatus.ACKED, AwardStatus.OPTED_OUT, AwardStatus.DECLINED}
)


@dataclass(frozen=True, slots=True)
class DeliverySample:
    """The latest reduction a home reported during an event."""

    ts: datetime
    shed_kw: float


def _empty_map() -> HashTrieMap[Any, Any]:
    return HashTrieMap()


def _empty_set() -> HashTrieSet[Any]:
    return HashTrieSet()


@dataclass(frozen=True, slots=True)
class EventState:
    """One unfinished event: its record, rounds, offers, open bids and awards."""

    record: EventRecord
    rounds: HashTrieMap[int, RoundRecord] = field(default_factory=_empty_map)
    offered: HashTrieMap[int, HashTrieSet[str]] = field(default_factory=_empty_map)
    """The homes offered each round."""
    open_bids: HashTrieMap[str, BidRecord] = field(default_factory=_empty_map)
    """Bids of the open round, by home."""
    awards: HashTrieMap[str, AwardRecord] = field(default_factory=_empty_map)
    awards_by_home: HashTrieMap[str, tuple[str, ...]] = field(default_factory=_empty_map)
    """Index of ``awards`` by home (award ids in the order they were made)."""
    ack_deadlines: HashTrieMap[int, datetime] = field(default_factory=_empty_map)
    """When unacknowledged awards of each round expire."""
    opted_out: HashTrieSet[str] = field(default_factory=_empty_set)
    """Homes that opted out of the whole event."""
    needs_round: bool = False
    """Commitment was lost: a re-negotiation round should be tried."""

    # --- reading ----------------------------------------------------------------------------

    @property
    def event_id(self) -> str:
        """Return the event's id."""
        return self.record.event_id

    @property
    def is_market(self) -> bool:
        """Return True for a bidding (market) event."""
        return self.record.kind is EventKind.MARKET

    @property
    def is_power_up(self) -> bool:
        """Return True for a power-up event (homes add load)."""
        return self.record.direction is EventDirection.UP

    @property
    def open_round(self) -> RoundRecord | None:
        """Return the round currently taking bids, if any."""
        current = self.rounds.get(self.record.current_round)
        return current if current is not None and current.status is RoundStatus.OPEN else None

    def offered_in(self, round_number: int) -> HashTrieSet[str]:
        """Return the homes offered a round."""
        return self.offered.get(round_number) or HashTrieSet()

    @property
    def all_bids_in(self) -> bool:
        """Return True when every home offered the open round has bid (and some were)."""
        open_round = self.open_round
        if open_round is None:
            return False
        offered = self.offered_in(open_round.round)
        return bool(offered) and len(self.open_bids) >= len(offered)

    def awards_of(self, home_id: str) -> list[AwardRecord]:
        """Return one home's awards in this event."""
        return [self.awards[award_id] for award_id in self.awards_by_home.get(home_id, ())]

    def unavailable_loads(self, home_id: str) -> set[str]:
        """Return the loads of a home this event must not ask for again.

        Loads under a live (sent or acknowledged) award, and loads the home gave back: opted
        out of, overridden, or declined. A homeowner who switched a load back on is not asked to
        switch it off again in the same event.
        """
        return {
            load
            for award in self.awards_of(home_id)
            if award.status in _GIVES_LOADS_BACK
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

    def delivered_kw(
        self, samples: dict[str, DeliverySample], now: datetime, stale_after: timedelta
    ) -> float:
        """Return the reduction homes report now (fresh samples, active events, not opted out)."""
        if self.record.status is not EventStatus.ACTIVE:
            return 0.0
        return sum(
            sample.shed_kw
            for home_id, sample in samples.items()
            if now - sample.ts <= stale_after and home_id not in self.opted_out
        )

    # --- new states -------------------------------------------------------------------------

    def with_bid(self, bid: BidRecord) -> EventState:
        """Return the state with a bid of the open round added or replaced (the hot path)."""
        return EventState(
            self.record,
            self.rounds,
            self.offered,
            self.open_bids.insert(bid.home_id, bid),
            self.awards,
            self.awards_by_home,
            self.ack_deadlines,
            self.opted_out,
            self.needs_round,
        )

    def with_record(self, **changes: Any) -> EventState:
        """Return the state with the event record changed."""
        return replace(self, record=replace(self.record, **changes))

    def with_round(self, record: RoundRecord) -> EventState:
        """Return the state with a round added or replaced."""
        return replace(self, rounds=self.rounds.insert(record.round, record))

    def with_award(self, award: AwardRecord) -> EventState:
        """Return the state with an award added or replaced."""
        by_home = self.awards_by_home
        if award.award_id not in self.awards:
            known = by_home.get(award.home_id, ())
            by_home = by_home.insert(award.home_id, (*known, award.award_id))
        return EventState(
            self.record,
            self.rounds,
            self.offered,
            self.open_bids,
            self.awards.insert(award.award_id, award),
            by_home,
            self.ack_deadlines,
            self.opted_out,
            self.needs_round,
        )

    def with_awards(self, awards: list[AwardRecord]) -> EventState:
        """Return the state with many awards added or replaced (one new state, not one each)."""
        by_home = self.awards_by_home
        for award in awards:
            if award.award_id not in self.awards:
                by_home = by_home.insert(
                    award.home_id, (*by_home.get(award.home_id, ()), award.award_id)
                )
        updated = self.awards.update({award.award_id: award for award in awards})
        return replace(self, awards=updated, awards_by_home=by_home)
