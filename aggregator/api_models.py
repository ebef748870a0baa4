"""The operator REST API's request and response models: what it takes, what it answers.

Requests are validated strictly (``strict=True``): ``"50"`` or ``true`` is not a number, and a
time is an ISO 8601 string with a UTC offset, never a number or a numeric string; free text
holds no control characters (PostgreSQL refuses NUL). Responses are built from these models, so
the OpenAPI document (``aggregator/openapi.py``) describes exactly what is sent.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from aggregator.negotiation import EventRequest, StoreProblem
from aggregator.participants import OutsideShare
from aggregator.records import AwardRecord, EventRecord, HomeRecord, HomeStatus, RoundRecord
from aggregator.settlement.baselines import BaselineMethod
from jeisson.common.protocol import EventDirection, EventKind, Load, utc_now

MAX_EVENT_DURATION: Final = timedelta(hours=24)
MAX_EVENT_LEAD: Final = timedelta(days=366)
"""An event starts at most this far ahead."""
KW_DIGITS: Final = 3
"""kW figures in answers are rounded to watts (sums of floats carry binary noise otherwise)."""
_ISO_DATETIME: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def _iso_text(value: Any) -> datetime:
    if isinstance(value, datetime):  # built in code (python mode); JSON always has text
        return value
    if isinstance(value, str) and _ISO_DATETIME.match(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(
        "must be an ISO 8601 date and time with a UTC offset, e.g. 2026-12-01T18:00:00Z"
    )


def _in_utc_range(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_utc_range)]
"""A request time: an ISO 8601 string with an offset, representable in UTC."""
Text = Annotated[str, AfterValidator(_no_control)]
"""Free text in a request: no control characters."""
IsoTime = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str)]
"""A time in an answer, as ``datetime.isoformat()`` writes it."""


def kw(value: float) -> float:
    """Return a kW figure rounded to watts."""
    return round(value, KW_DIGITS)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- requests ---------------------------------------------------------------------------------


class EnrollBody(_Body):
    """``POST /api/v1/enroll``."""

    code: str = Field(min_length=4, max_length=64)


class HomeBody(_Body):
    """``POST /api/v1/homes``."""

    name: Text = Field(min_length=1, max_length=100)


class EventBody(_Body):
    """``POST /api/v1/events``: what the operator asks for."""

    name: Text = Field(default="DR event", min_length=1, max_length=200)
    kind: EventKind = EventKind.MARKET
    target_kw: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
    price_cap: Annotated[float, Field(ge=0, le=1_000, allow_inf_nan=False)]
    """Market: the highest price per kWh accepted. Direct: the flat incentive per kWh."""
    start: IsoDatetime
    end: IsoDatetime
    bid_window_s: Annotated[float, Field(ge=1, le=3600, allow_inf_nan=False)] = 30.0
    restore_stagger_s: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 300.0
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    baseline: BaselineMethod = BaselineMethod.RESIDENTIAL
    """How settlement computes each home's baseline (``x_of_y`` needs X and Y: program only)."""
    direction: EventDirection = EventDirection.DOWN
    """``down``: homes shed load; ``up``: a power-up event, homes add load (offered only to
    homes that speak protocol schema 3)."""

    @model_validator(mode="after")
    def _check_window(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start > MAX_EVENT_DURATION:
            raise ValueError("an event lasts at most 24 hours")
        now = utc_now()
        if self.start > now + MAX_EVENT_LEAD:
            raise ValueError("an event starts at most 366 days ahead")
        if self.baseline is BaselineMethod.X_OF_Y:
            raise ValueError(
                "baseline x_of_y needs X and Y, which an event does not carry: choose one of "
                "residential, high_5_of_10, high_3_of_5, caiso_10_of_10, pre_event_average"
            )
        if self.kind is EventKind.MARKET:
            if self.target_kw <= 0:
                raise ValueError("a market event needs target_kw > 0")
            if self.start < now + timedelta(seconds=self.bid_window_s):
                raise ValueError("start must leave time for the bid window (now + bid_window_s)")
        elif self.end <= now:
            raise ValueError("end must be in the future")
        return self

    def to_request(self) -> EventRequest:
        """Return the negotiation's view of this request."""
        return EventRequest(
            name=self.name,
            kind=self.kind,
            target_kw=self.target_kw,
            price_cap=self.price_cap,
            start=self.start,
            end=self.end,
            bid_window_s=self.bid_window_s,
            restore_stagger_s=self.restore_stagger_s,
            currency=self.currency,
            baseline_method=self.baseline.value,
            direction=self.direction,
        )


class CancelBody(_Body):
    """``POST /api/v1/events/{id}/cancel`` (the body is optional)."""

    reason: Text = Field(default="", max_length=200)


# --- answers ----------------------------------------------------------------------------------


class ErrorAnswer(_Answer):
    """Every refusal: a machine-readable code and a sentence for people."""

    error: str
    message: str


class Enrolled(_Answer):
    """A home's token, shown once (the aggregator keeps only its hash)."""

    home_id: str
    token: str
    aggregator_id: str
    name: str
    """The name the operator gave the home."""


class HomeView(_Answer):
    """A home as the operator sees it (no secrets)."""

    home_id: str
    name: str
    created_at: IsoTime
    enrolled: bool
    """The home holds a valid token (false again once it is revoked or the home removed)."""
    connected: bool
    participating: bool
    flexible_kw: float
    loads: list[Load]
    last_seen_at: IsoTime | None
    software_version: str | None
    status: HomeStatus = HomeStatus.ACTIVE
    """``active``, ``suspended`` (may not connect) or ``removed``."""

    @classmethod
    def of(cls, home: HomeRecord, *, connected: bool) -> Self:
        """Return the view of ``home``."""
        return cls(
            home_id=home.home_id,
            name=home.name,
            created_at=home.created_at,
            enrolled=home.enrolled_at is not None,
            connected=connected,
            participating=home.participating,
            flexible_kw=kw(home.flexible_kw),
            loads=list(home.loads),
            last_seen_at=home.last_seen_at,
            software_version=home.software_version,
            status=home.status,
        )


class HomeCreated(HomeView):
    """A new home and its one-time enrolment code."""

    code: str


class CodeIssued(_Answer):
    """A new one-time enrolment code for a home."""

    home_id: str
    code: str


class RoundView(_Answer):
    """One negotiation round."""

    round: int
    status: str
    target_kw: float
    opened_at: IsoTime
    deadline: IsoTime
    offered_homes: int
    bids: int
    steps: int
    offered_kw: float
    accepted_kw: float
    clearing_price: float | None
    shortfall_kw: float

    @classmethod
    def of(cls, record: RoundRecord, offered: int) -> Self:
        """Return the view of a round (``offered``: how many homes were offered it)."""
        return cls(
            round=record.round,
            status=record.status.value,
            target_kw=kw(record.target_kw),
            opened_at=record.opened_at,
            deadline=record.deadline,
            offered_homes=offered,
            bids=record.bids,
            steps=record.steps,
            offered_kw=kw(record.offered_kw),
            accepted_kw=kw(record.accepted_kw),
            clearing_price=record.clearing_price,
            shortfall_kw=kw(record.shortfall_kw),
        )


class AwardView(_Answer):
    """One award to one home."""

    award_id: str
    home_id: str
    round: int
    status: str
    loads: list[str]
    kw: float
    committed_kw: float
    price: float
    opted_out_loads: list[str]
    sent_at: IsoTime
    acked_at: IsoTime | None
    load_levels: dict[str, float] = Field(default_factory=dict)
    """The power each load awarded by partial steps runs at (others: off)."""

    @classmethod
    def of(cls, award: AwardRecord) -> Self:
        """Return the view of an award."""
        return cls(
            award_id=award.award_id,
            home_id=award.home_id,
            round=award.round,
            status=award.status.value,
            loads=list(award.loads),
            kw=kw(award.kw),
            committed_kw=kw(award.committed_kw),
            price=award.price,
            opted_out_loads=list(award.opted_out_loads),
            load_levels=dict(award.load_levels),
            sent_at=award.sent_at,
            acked_at=award.acked_at,
        )


class EventSummary(_Answer):
    """An event in a list."""

    id: str
    name: str
    kind: str
    status: str
    target_kw: float
    price_cap: float
    currency: str
    start: IsoTime
    end: IsoTime
    bid_window_s: float
    restore_stagger_s: float
    clearing_price: float | None
    created_at: IsoTime
    cancel_reason: str | None
    baseline_method: str
    direction: str = EventDirection.DOWN.value

    @classmethod
    def fields_of(cls, record: EventRecord) -> dict[str, Any]:
        """Return the fields of ``record`` that every event view has."""
        return {
            "id": record.event_id,
            "name": record.name,
            "kind": record.kind.value,
            "status": record.status.value,
            "target_kw": record.target_kw,
            "price_cap": record.price_cap,
            "currency": record.currency,
            "start": record.start,
            "end": record.end,
            "bid_window_s": record.bid_window_s,
            "restore_stagger_s": record.restore_stagger_s,
            "clearing_price": record.clearing_price,
            "created_at": record.created_at,
            "cancel_reason": record.cancel_reason,
            # NULL: the program's default, which settlement applies (residential).
            "baseline_method": record.baseline_method or BaselineMethod.RESIDENTIAL.value,
            "direction": record.direction.value,
        }


class EventList(_Answer):
    """Recent events, newest first."""

    events: list[EventSummary]


class StoreProblemView(_Answer):
    """Why an event's steps are not being stored now (the database refuses them)."""

    since: IsoTime
    attempts: int
    step: str
    error: str
    retrying: bool
    retry_at: IsoTime | None

    @classmethod
    def of(cls, problem: StoreProblem) -> Self:
        """Return the view of ``problem``."""
        return cls(
            since=problem.since,
            attempts=problem.attempts,
            step=problem.step,
            error=problem.error,
            retrying=problem.retry_at is not None,
            retry_at=problem.retry_at,
        )


class VenShareView(_Answer):
    """A third-party OpenADR VEN's part in an event (docs/openadr.md)."""

    client_id: str
    ven_name: str
    committed_kw: float
    """What it was dispatched to shed."""
    delivered_kw: float
    """What its latest reports say it sheds now."""

    @classmethod
    def of(cls, share: OutsideShare) -> Self:
        """Return the view of a VEN's share."""
        return cls(
            client_id=share.participant_id,
            ven_name=share.name,
            committed_kw=kw(share.committed_kw),
            delivered_kw=kw(share.delivered_kw),
        )


class EventDetail(EventSummary):
    """An event with its figures, rounds and awards (live while it runs).

    Committed and delivered kW count the homes and the third-party VENs (``vens``) together.
    """

    committed_kw: float
    delivered_kw: float
    shortfall_kw: float
    rounds: list[RoundView]
    awards: list[AwardView]
    vens: list[VenShareView] = Field(default_factory=list)
    store_error: StoreProblemView | None = None
    """Set while the event's steps cannot be stored (None: they are)."""


class Health(_Answer):
    """Liveness and whether the store answers."""

    status: str
    homes_connected: int | None = None
    store: str | None = None
    """The store's error when it does not answer."""


RESPONSE_MODELS: Final[tuple[type[BaseModel], ...]] = (
    ErrorAnswer,
    Enrolled,
    HomeView,
    HomeCreated,
    CodeIssued,
    RoundView,
    AwardView,
    EventSummary,
    EventList,
    StoreProblemView,
    VenShareView,
    EventDetail,
    Health,
)
REQUEST_MODELS: Final[tuple[type[BaseModel], ...]] = (EnrollBody, HomeBody, EventBody, CancelBody)
