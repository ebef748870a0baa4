"""What one step writes: rows to insert, update or upsert, described as data.

A negotiation step (or a home's message) returns its writes as a tuple of :data:`Change` values;
:meth:`aggregator.store.unit.Unit.apply` writes any number of them in one transaction, grouped
into one statement per table and kind (``executemany``), in an order that respects foreign keys.
Describing writes as data keeps the negotiation pure and lets the group-commit writer merge the
writes of many homes into one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from aggregator import tables
from aggregator.records import (
    AwardRecord,
    BidRecord,
    EventRecord,
    HomeRecord,
    RoundRecord,
)
from aggregator.store.mapping import RowMap
from jeisson.common.protocol import Load, Sample


@dataclass(frozen=True, slots=True)
class OfferRecord:
    """One home offered one round (``round_offers``)."""

    event_id: str
    round: int
    home_id: str


@dataclass(frozen=True, slots=True)
class OptOutRecord:
    """A home's opt-out of an event (``load_id`` "" for the whole event) or of one load."""

    event_id: str
    home_id: str
    load_id: str
    reason: str
    message_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class HomeSeen:
    """A home said hello: when, and with which software."""

    home_id: str
    last_seen_at: datetime
    software_version: str


@dataclass(frozen=True, slots=True)
class HomeInventory:
    """A home's declared loads and participation."""

    home_id: str
    loads: tuple[Load, ...]
    participating: bool


@dataclass(frozen=True, slots=True)
class HomeCurtailed:
    """When a home last committed to curtail (rotates the burden on ties)."""

    home_id: str
    last_curtailed_at: datetime


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """A home's telemetry message: stored once per ``(home_id, message_id)``."""

    home_id: str
    message_id: str
    event_id: str | None
    samples: tuple[Sample, ...]
    received_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        """Return what identifies the batch (a re-sent batch has the same key)."""
        return (self.home_id, self.message_id)


type Row = (
    EventRecord
    | RoundRecord
    | OfferRecord
    | BidRecord
    | AwardRecord
    | OptOutRecord
    | HomeSeen
    | HomeInventory
    | HomeCurtailed
)


@dataclass(frozen=True, slots=True)
class Insert:
    """Insert a new row; with ``if_absent`` an existing row with the same key is kept."""

    row: Row
    if_absent: bool = False


@dataclass(frozen=True, slots=True)
class Update:
    """Set every mapped column of the row with this key (the last update of a key wins)."""

    row: Row


@dataclass(frozen=True, slots=True)
class Upsert:
    """Insert the row, or replace the columns of the row with the same key."""

    row: Row


@dataclass(frozen=True, slots=True)
class Fence:
    """Store the transaction only while the event's lease still carries ``token`` (clusters).

    Checked first, under a share lock on the lease row, so a takeover waits for the transaction
    and a transaction after a takeover is refused (:class:`~aggregator.store.errors.FencedError`).
    """

    event_id: str
    token: int


@dataclass(frozen=True, slots=True)
class ClaimLease:
    """Make ``holder`` the first coordinator of a new event (token 1), as the event is stored."""

    event_id: str
    holder: str
    ttl_s: float


type Change = Insert | Update | Upsert | TelemetryBatch | Fence | ClaimLease


@dataclass(slots=True)
class Receipt:
    """What a committed unit of work reports back."""

    stored_telemetry: set[tuple[str, str]] = field(default_factory=set)
    """Keys of the telemetry batches stored now (a re-sent batch is not among them)."""


# One mapping per record type; the order is the order tables are written in (foreign keys).
EVENTS: Final = RowMap(EventRecord, tables.events, key=("event_id",))
ROUNDS: Final = RowMap(RoundRecord, tables.rounds, key=("event_id", "round"))
OFFERS: Final = RowMap(OfferRecord, tables.round_offers, key=("event_id", "round", "home_id"))
HOME_SEEN: Final = RowMap(HomeSeen, tables.homes, key=("home_id",))
HOME_INVENTORY: Final = RowMap(HomeInventory, tables.homes, key=("home_id",))
HOME_CURTAILED: Final = RowMap(HomeCurtailed, tables.homes, key=("home_id",))
BIDS: Final = RowMap(BidRecord, tables.bids, key=("event_id", "round", "home_id"))
AWARDS: Final = RowMap(AwardRecord, tables.awards, key=("award_id",))
OPT_OUTS: Final = RowMap(OptOutRecord, tables.opt_outs, key=("event_id", "home_id", "load_id"))
HOMES: Final = RowMap(HomeRecord, tables.homes, key=("home_id",))
WRITE_ORDER: Final[tuple[type[Row], ...]] = (
    EventRecord,
    RoundRecord,
    OfferRecord,
    HomeSeen,
    HomeInventory,
    HomeCurtailed,
    BidRecord,
    AwardRecord,
    OptOutRecord,
)
