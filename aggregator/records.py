"""The aggregator's domain records: homes, events, rounds, bids and awards as stored.

Plain frozen dataclasses shared by the store, the negotiation and the operator API, so none of
them depends on the others' internals.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from jeisson.common.protocol import BidStep, EventDirection, EventKind, Load


def new_id(prefix: str) -> str:
    """Return a fresh identifier such as ``evt_3f9a0c1d2b4e5f60``."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class EventStatus(StrEnum):
    """Where an event is in its lifecycle."""

    DRAFT = "draft"
    NEGOTIATING = "negotiating"
    COMMITTED = "committed"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Return True for statuses an event never leaves."""
        return self in (EventStatus.COMPLETED, EventStatus.CANCELLED)


class RoundStatus(StrEnum):
    """Whether a negotiation round still takes bids."""

    OPEN = "open"
    CLEARED = "cleared"
    ABANDONED = "abandoned"


class AwardStatus(StrEnum):
    """What became of an award."""

    SENT = "sent"
    """Sent, not yet acknowledged: not counted as committed."""
    ACKED = "acked"
    """Acknowledged: counted as committed."""
    DECLINED = "declined"
    """The home answered that it cannot carry it out."""
    EXPIRED = "expired"
    """No acknowledgement before the deadline."""
    OPTED_OUT = "opted_out"
    """The home opted out of the whole event."""
    LOST = "lost"
    """The home dropped off during the event and did not come back in time."""
    CANCELLED = "cancelled"
    """The event was cancelled."""

    @property
    def counts_as_committed(self) -> bool:
        """Return True when the award's kW count towards the event's commitment."""
        return self is AwardStatus.ACKED


class HomeStatus(StrEnum):
    """Where a home is in its lifecycle, as the operator set it."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    """It may not connect until resumed; its token and history are kept."""
    REMOVED = "removed"
    """Its token and codes are void; its history is kept for settlement."""


@dataclass(frozen=True, slots=True)
class HomeRecord:
    """An enrolled (or not yet enrolled) home."""

    home_id: str
    name: str
    created_at: datetime
    enrolled_at: datetime | None = None
    loads: tuple[Load, ...] = ()
    participating: bool = True
    last_curtailed_at: datetime | None = None
    last_seen_at: datetime | None = None
    software_version: str | None = None
    suspended_at: datetime | None = None
    """Set while the operator has suspended the home: it may not connect."""
    removed_at: datetime | None = None
    """Set once the operator removed the home (kept for its history and statements)."""

    @property
    def status(self) -> HomeStatus:
        """Return whether the home is active, suspended or removed."""
        if self.removed_at is not None:
            return HomeStatus.REMOVED
        if self.suspended_at is not None:
            return HomeStatus.SUSPENDED
        return HomeStatus.ACTIVE

    @property
    def flexible_kw(self) -> float:
        """Return the rated kW of the loads the homeowner lets Jeisson curtail."""
        return sum(load.rated_kw for load in self.loads if load.curtailable)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A demand-response event as the operator created it, plus its progress."""

    event_id: str
    name: str
    kind: EventKind
    status: EventStatus
    target_kw: float
    price_cap: float
    start: datetime
    end: datetime
    bid_window_s: float
    restore_stagger_s: float
    currency: str
    created_at: datetime
    clearing_price: float | None = None
    current_round: int = 0
    cancel_reason: str | None = None
    baseline_method: str | None = None
    """How settlement computes baselines (a ``settlement.baselines.BaselineMethod`` value)."""
    direction: EventDirection = EventDirection.DOWN
    """Shed (down) or power up (up: homes add load, e.g. to absorb surplus renewables)."""


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """One negotiation round of an event (1 = the first; higher = re-negotiation).

    The homes offered the round are rows of their own (``round_offers``), one per home.
    """

    event_id: str
    round: int
    status: RoundStatus
    target_kw: float
    opened_at: datetime
    deadline: datetime
    cleared_at: datetime | None = None
    clearing_price: float | None = None
    offered_kw: float = 0.0
    accepted_kw: float = 0.0
    shortfall_kw: float = 0.0
    bids: int = 0
    steps: int = 0


@dataclass(frozen=True, slots=True)
class BidRecord:
    """A home's bid in one round."""

    event_id: str
    round: int
    home_id: str
    message_id: str
    steps: tuple[BidStep, ...]
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AwardRecord:
    """What one home was awarded in one round, and what became of it."""

    award_id: str
    event_id: str
    round: int
    home_id: str
    kw: float
    price: float
    status: AwardStatus
    sent_at: datetime
    load_kw: dict[str, float] = field(default_factory=dict)
    """The kW behind each awarded load (a step's kW split by the loads' rated power)."""
    opted_out_loads: tuple[str, ...] = ()
    acked_at: datetime | None = None
    load_levels: dict[str, float] = field(default_factory=dict)
    """The power each load awarded by partial steps runs at (others: off, or full power up)."""

    @property
    def loads(self) -> tuple[str, ...]:
        """Return the awarded loads."""
        return tuple(self.load_kw)

    @property
    def committed_kw(self) -> float:
        """Return the kW still counted: the award less loads opted out, if acknowledged."""
        if not self.status.counts_as_committed:
            return 0.0
        return max(0.0, self.kw - sum(self.load_kw.get(load, 0.0) for load in self.opted_out_loads))
