"""What the dashboard's history and fleet routes answer: pydantic models with OpenAPI schemas.

The routes build these and send ``model_dump(mode="json")``; :mod:`aggregator.openapi` publishes
their JSON schemas, so the document describes exactly what is sent.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

from jeisson.common.protocol import Load

MAX_PAGE: Final = 500
DEFAULT_PAGE: Final = 50


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class HomeSort(StrEnum):
    """How ``GET /api/v1/homes`` orders homes (``-`` in front: descending)."""

    NAME = "name"
    NAME_DESC = "-name"
    FLEXIBLE = "flexible_kw"
    FLEXIBLE_DESC = "-flexible_kw"
    LAST_SEEN = "last_seen"
    LAST_SEEN_DESC = "-last_seen"
    RELIABILITY = "reliability"
    RELIABILITY_DESC = "-reliability"
    CREATED = "created"
    CREATED_DESC = "-created"


class HomesQuery(BaseModel):
    """The query string of ``GET /api/v1/homes``: search, filters, order and page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    q: Annotated[str, Field(max_length=100)] = ""
    """Part of the name or of the home id (case does not matter)."""
    online: bool | None = None
    participating: bool | None = None
    """Taking part in demand response (the homeowner's switch)."""
    min_reliability: Annotated[float, Field(ge=0, le=1)] | None = None
    max_reliability: Annotated[float, Field(ge=0, le=1)] | None = None
    sort: HomeSort = HomeSort.NAME
    offset: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE


class HomeView(_Answer):
    """One home as operators see it (no secrets)."""

    home_id: str
    name: str
    created_at: datetime
    enrolled: bool
    connected: bool
    participating: bool
    flexible_kw: float
    """Rated kW of the loads the homeowner lets Jeisson curtail."""
    loads: list[Load]
    last_seen_at: datetime | None
    """Now for a connected home; when it was last connected otherwise."""
    software_version: str | None
    reliability: float | None
    """Share (0 to 1) of the kW awarded to it in finished events that it kept; null without any."""
    finished_awards: int
    """Awards of finished events behind ``reliability``."""
    suspended: bool = False
    """The operator suspended it: it may not connect until resumed (removed homes are not
    listed)."""


class HomesPage(_Answer):
    """A page of homes and how many match the query in all."""

    homes: list[HomeView]
    total: int
    offset: int
    limit: int


class FleetNow(_Answer):
    """The fleet right now."""

    ts: datetime
    homes_total: int
    homes_enrolled: int
    homes_online: int
    homes_participating: int
    """Connected homes taking part."""
    flexible_kw: float
    """Curtailable kW of the connected homes taking part."""
    events_running: int


class FleetPoint(_Answer):
    """The fleet at one moment (one sample a minute)."""

    ts: datetime
    homes_total: int
    homes_online: int
    homes_participating: int
    flexible_kw: float


class EventsOnDay(_Answer):
    """How many events started on one (UTC) day, by final status."""

    day: date
    total: int
    by_status: dict[str, int]


class FleetHistory(_Answer):
    """The fleet over a time range: samples and events per day."""

    since: datetime
    until: datetime
    points: list[FleetPoint]
    events_per_day: list[EventsOnDay]


class EventPoint(_Answer):
    """An event's figures at one moment."""

    ts: datetime
    status: str
    target_kw: float
    committed_kw: float
    delivered_kw: float


class ActivityKind(StrEnum):
    """What an activity item is about."""

    CREATED = "created"
    STATUS = "status"
    ROUND_OPENED = "round_opened"
    ROUND_CLEARED = "round_cleared"
    AWARD = "award"
    OPT_OUT = "opt_out"


class ActivityItem(_Answer):
    """One thing that happened in an event, when it happened (from stored records)."""

    ts: datetime
    kind: ActivityKind
    text: str
    home_id: str | None = None
    home_name: str | None = None
    round: int | None = None


class EventHistory(_Answer):
    """An event's chart points and activity, oldest point first, newest activity first."""

    event_id: str
    points: list[EventPoint]
    activity: list[ActivityItem]
    activity_total: int
    """Items in all (``activity`` holds the newest of them)."""


class LoadRef(_Answer):
    """A load by id and by the name its home gave it."""

    load_id: str
    name: str
    kw: float | None = None


class BidCurveStep(_Answer):
    """One bid step in merit order (cheapest first), with the kW offered up to it."""

    home_id: str
    home_name: str
    kw: float
    price: float
    loads: list[LoadRef]
    cumulative_kw: float
    accepted: bool


class RoundBids(_Answer):
    """One round's bid curve: every step in merit order and where it was cleared."""

    event_id: str
    round: int
    status: str
    target_kw: float
    clearing_price: float | None
    currency: str
    accepted_kw: float
    offered_kw: float
    steps: list[BidCurveStep]


class EventHome(_Answer):
    """One home's part in an event: awarded, committed and delivered kW."""

    home_id: str
    home_name: str
    connected: bool
    status: str
    """The status of its latest award."""
    rounds: list[int]
    loads: list[LoadRef]
    awarded_kw: float
    committed_kw: float
    delivered_kw: float | None
    """Its average reported reduction over the event so far (null: no telemetry)."""
    last_delivered_kw: float | None
    price: float | None


class EventHomes(_Answer):
    """A page of an event's homes, most committed first, and where its settlement is."""

    event_id: str
    homes: list[EventHome]
    total: int
    offset: int
    limit: int
    committed_kw: float
    delivered_kw: float | None
    settlement_url: str
