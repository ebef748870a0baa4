"""What the negotiation's steps take and give: settings, requests, home views, step results."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from aggregator.negotiation.state import EventState
from aggregator.records import HomeRecord
from aggregator.store import Change
from jeisson.common.protocol import (
    FLEX_SCHEMA_VERSION,
    SCHEMA_VERSION,
    EventDirection,
    EventKind,
    Load,
    ServerMessage,
)


@dataclass(frozen=True, slots=True)
class NegotiationSettings:
    """Timing knobs of the negotiation (seconds)."""

    ack_timeout_s: float = 15.0
    """An award not acknowledged within this time is not committed."""
    drop_grace_s: float = 60.0
    """A home disconnected this long during an event has dropped off: its award is lost."""
    renegotiation_window_s: float = 10.0
    """Bid window of a re-negotiation round."""
    max_rounds: int = 10
    telemetry_stale_s: float = 30.0
    """A home's delivery figure older than this no longer counts as delivered."""
    min_offer_lead_s: float = 1.0
    """A home that connects later than this before a bid deadline gets no offer."""
    offer_lead_s: float = 0.1
    """Added to every bid window: the time the offers need to be stored and reach the homes."""
    offer_lead_per_home_s: float = 25e-6
    """Added to the bid window per home offered (fan-out: 0.25 s more for 10,000 homes)."""
    retry_base_s: float = 0.5
    """First wait before a step whose write failed is tried again (doubling, jittered)."""
    retry_max_s: float = 10.0
    """Longest wait between two tries of a failed step."""
    telemetry_linger_s: float = 0.25
    """A telemetry batch's write may wait this long to share a transaction (its ack waits)."""
    shortfall_grace_s: float = 60.0
    """After an event starts, held loads get this long to be switched off."""
    shortfall_sustained_s: float = 180.0
    """A held load reported on this long without a break is released (a shortfall)."""

    def offer_lead(self, homes: int) -> float:
        """Return the seconds a round's offers to ``homes`` homes are given to reach them."""
        return self.offer_lead_s + homes * self.offer_lead_per_home_s


class HomeLink(Protocol):
    """How the negotiation reaches connected homes (implemented by the session registry)."""

    def is_connected(self, home_id: str) -> bool:
        """Return True when the home has a live session."""

    def send(self, home_id: str, message: ServerMessage) -> bool:
        """Queue a message for a home; return False when it is not connected."""

    def broadcast(self, home_ids: Iterable[str], message: ServerMessage) -> int:
        """Queue one message for many homes (serialised once); return how many got it."""


@dataclass(frozen=True, slots=True)
class EventRequest:
    """A validated request to create an event."""

    name: str
    kind: EventKind
    target_kw: float
    price_cap: float
    start: datetime
    end: datetime
    bid_window_s: float
    restore_stagger_s: float
    currency: str
    baseline_method: str | None = None
    direction: EventDirection = EventDirection.DOWN


class EventNotFoundError(LookupError):
    """No event has that id."""


class InvalidTransitionError(RuntimeError):
    """The event cannot do that from its current status."""


@dataclass(frozen=True, slots=True)
class HomeView:
    """What the negotiation knows of a connected home."""

    home_id: str
    participating: bool
    loads: Mapping[str, Load]
    last_curtailed_at: datetime | None
    curtailable: frozenset[str]
    """Ids of the loads the homeowner lets Jeisson curtail."""
    reliability: float = 1.0
    """The home's reliability score: clearing counts its bid kW times this."""
    schema_version: int = SCHEMA_VERSION
    """The protocol version the home said in its hello."""

    @classmethod
    def of(
        cls, home: HomeRecord, reliability: float = 1.0, schema_version: int = SCHEMA_VERSION
    ) -> HomeView:
        """Build the view from a stored home (its reliability score, its protocol version)."""
        return cls(
            home_id=home.home_id,
            participating=home.participating,
            loads={load.load_id: load for load in home.loads},
            last_curtailed_at=home.last_curtailed_at,
            curtailable=frozenset(load.load_id for load in home.loads if load.curtailable),
            reliability=reliability,
            schema_version=schema_version,
        )

    @property
    def speaks_flex(self) -> bool:
        """Return True when the home understands partial steps and power-up events."""
        return self.schema_version >= FLEX_SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class Env:
    """What a step may look at besides the event's state: the time, settings, connected homes."""

    now: datetime
    settings: NegotiationSettings
    homes: Mapping[str, HomeView]


class StepKind(StrEnum):
    """Which step a result comes from (logs and metrics)."""

    CREATE = "create"
    BEGIN = "begin"
    OPEN_ROUND = "open_round"
    CLEAR = "clear"
    EXPIRE = "expire_unacked"
    ACTIVATE = "activate"
    COMPLETE = "complete"
    CANCEL = "cancel"
    SKIP_ROUND = "skip_round"
    DISPATCH = "dispatch"
    """A direct event awards more homes to cover a shortfall."""
    BID = "bid"
    AWARD_ACK = "award_ack"
    OPT_OUT = "opt_out"
    CATCH_UP = "catch_up"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Send:
    """One message for some homes (serialised once for all of them)."""

    home_ids: Collection[str]
    message: ServerMessage


@dataclass(frozen=True, slots=True)
class StepResult:
    """A step's outcome: the next state, the rows to write, the messages to send after."""

    kind: StepKind
    state: EventState
    changes: tuple[Change, ...] = ()
    sends: tuple[Send, ...] = ()
    note: str = ""
    """What happened, for the log (empty: nothing worth a line)."""
    round: int | None = None
    """The round the step concerns (logged with the note)."""
    home_id: str | None = None
    """The home the step concerns (logged with the note)."""
