"""The Jeisson wire protocol: every message a home and the aggregator exchange.

This module is the single definition of the websocket protocol (JSON text frames) and is
imported by both sides: the server, the home client (``jeisson.client``), the fleet simulator
and the Home Assistant integration. It has no Home Assistant and no server-only imports.

Every frame is one JSON object with a ``type`` (which message it is) and an ``id`` (unique per
sender; a re-sent message keeps its id, so receivers can drop duplicates). Replies carry
``reply_to`` with the id they answer. Messages are validated on receipt with :func:`parse_message`;
anything unknown or invalid raises :class:`ProtocolError` carrying an :class:`ErrorCode`, which
the receiver answers with an :class:`ErrorMessage` instead of crashing.

See ``docs/protocol.md`` for the integrator reference and ``docs/examples/`` for golden messages.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

SCHEMA_VERSION: Final = 3
"""The protocol version this code speaks (3: partial steps, load kinds, power-up events)."""

MIN_SUPPORTED_SCHEMA_VERSION: Final = 1
"""The oldest protocol version the server still accepts from a home (and a home from a server)."""
STATEMENT_SCHEMA_VERSION: Final = 2
"""The first version with ``statement`` / ``statement_ack`` and ``Sample.measured``: the
aggregator sends statements only to homes that said at least this in ``home_hello``, and a home
sends ``measured`` only to an aggregator that announced at least this."""

FLEX_SCHEMA_VERSION: Final = 3
"""The first version with partial steps (``BidStep.level_kw``, ``Award.levels``), the load kinds
``thermostat`` and ``battery`` and power-up events (``direction``): the aggregator offers power-up
events and awards levels only to homes that said at least this in ``home_hello``, and a home
declares the new kinds and bids partial steps only to an aggregator that announced at least this
(:func:`for_schema`)."""

MAX_FRAME_BYTES: Final = 256 * 1024
"""Largest text frame either side accepts; larger frames are refused with ``frame_too_large``."""

MAX_STEPS_PER_BID: Final = 32
MAX_LOADS_PER_HOME: Final = 64
MAX_SAMPLES_PER_TELEMETRY: Final = 512

IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9_.:-]+$"
MAX_IDENTIFIER_LENGTH: Final = 64
Identifier = Annotated[
    str, Field(min_length=1, max_length=MAX_IDENTIFIER_LENGTH, pattern=IDENTIFIER_PATTERN)
]
"""Ids of messages, homes, loads, events and awards: short, printable, no spaces."""
Text = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$")]
"""Free text from the other side: no control characters (PostgreSQL refuses NUL, logs and
dashboards are no place for escape sequences)."""
MAX_HOME_NAME: Final = 100
"""Longest home name (the operator's ``POST /api/v1/homes`` takes as much)."""
MAX_ERROR_TEXT: Final = 1000
"""Longest ``error.message``; longer texts are cut (ending with an ellipsis)."""
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)

Kilowatts = Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)]
Price = Annotated[float, Field(ge=0, le=1_000, allow_inf_nan=False)]
"""A price per kWh in the aggregator's currency."""
KilowattHours = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
Money = Annotated[float, Field(ge=-1_000_000_000, le=1_000_000_000, allow_inf_nan=False)]
"""An amount in the aggregator's currency (a correction may be negative)."""


def new_message_id() -> str:
    """Return a fresh, unique message id."""
    return uuid.uuid4().hex


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class ErrorCode(StrEnum):
    """Why a message was refused; sent in :class:`ErrorMessage`."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    FRAME_TOO_LARGE = "frame_too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    NOT_HELLOED = "not_helloed"
    UNKNOWN_EVENT = "unknown_event"
    UNKNOWN_AWARD = "unknown_award"
    UNKNOWN_LOAD = "unknown_load"
    INVALID_STATE = "invalid_state"
    DEADLINE_PASSED = "deadline_passed"
    INTERNAL_ERROR = "internal_error"
    RATE_LIMITED = "rate_limited"
    """The home sent more than its quota; nothing was stored: send it again later."""


def is_identifier(value: object) -> bool:
    """Return True for a valid :data:`Identifier` (an id a reply may name)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_IDENTIFIER_LENGTH
        and _IDENTIFIER.match(value) is not None
    )


class ProtocolError(Exception):
    """A received frame could not be accepted; ``code`` says why."""

    def __init__(self, code: ErrorCode, message: str, reply_to: str | None = None) -> None:
        """Store the error code, a human-readable message and the id it answers."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.reply_to = reply_to

    def to_message(self) -> ErrorMessage:
        """Return the ``error`` frame for this refusal: always valid, whatever it carries.

        The text is cut to :data:`MAX_ERROR_TEXT` characters and ``reply_to`` is kept only when it
        is a valid identifier (a frame's own ``id`` may be anything).
        """
        text = self.message
        if len(text) > MAX_ERROR_TEXT:
            text = text[: MAX_ERROR_TEXT - 1] + "…"
        reply_to = self.reply_to if is_identifier(self.reply_to) else None
        return ErrorMessage(reply_to=reply_to, code=self.code, message=text)


class LoadKind(StrEnum):
    """What kind of appliance a load is."""

    WATER_HEATER = "water_heater"
    HVAC = "hvac"
    EV_CHARGER = "ev_charger"
    POOL_PUMP = "pool_pump"
    OTHER = "other"
    THERMOSTAT = "thermostat"
    """Schema 3: a thermostat whose setpoint is offset (heating or cooling)."""
    BATTERY = "battery"
    """Schema 3: a home battery (discharges to cover the home, or stops charging)."""


LEGACY_LOAD_KINDS: Final[dict[LoadKind, LoadKind]] = {
    LoadKind.THERMOSTAT: LoadKind.HVAC,
    LoadKind.BATTERY: LoadKind.OTHER,
}
"""The schema 3 kinds, and what a home declares instead to an older aggregator."""


class EventDirection(StrEnum):
    """Which way an event moves the homes' load (schema 3)."""

    DOWN = "down"
    """Shed: use less (every event before schema 3)."""
    UP = "up"
    """Power up: use more, e.g. to absorb surplus renewable generation."""


class EventKind(StrEnum):
    """How an event allocates load: by bidding, or a direct call at a flat incentive."""

    MARKET = "market"
    DIRECT = "direct"


class OptOutReason(StrEnum):
    """Why a home stopped curtailing."""

    USER = "user"
    """The homeowner opted out (button, service action, participation switched off)."""
    OVERRIDE = "override"
    """The homeowner switched a held load back on."""
    UNAVAILABLE = "unavailable"
    """The load's actuator became unreachable."""
    SHORTFALL = "shortfall"
    """Set by the aggregator (schema 2), never sent by homes: the held load was reported on for
    a sustained period, so the aggregator released it and re-negotiated its kW."""


class DataQuality(StrEnum):
    """Whether the measurements a statement pays for were metered or estimated."""

    MEASURED = "measured"
    PARTLY_ESTIMATED = "partly_estimated"
    ESTIMATED = "estimated"


class HomeEventStatus(StrEnum):
    """Where a home is in an event, as it reports in its hello."""

    AWARDED = "awarded"
    ACTIVE = "active"
    RESTORING = "restoring"
    DONE = "done"


class _Model(BaseModel):
    """Base of every protocol model: strict about unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Message(_Model):
    """Fields every message carries."""

    id: Identifier = Field(default_factory=new_message_id)


class _Reply(_Message):
    """A message that answers another one."""

    reply_to: Identifier


# --- Building blocks ------------------------------------------------------------------------


class Load(_Model):
    """One curtailable appliance of a home, as declared in its inventory."""

    load_id: Identifier
    name: Text = Field(min_length=1, max_length=100)
    kind: LoadKind
    rated_kw: Kilowatts
    curtailable: bool = True
    """False when the homeowner marked it "never curtail"; it is listed but never bid."""


class BidStep(_Model):
    """One indivisible step of a bid curve: move ``kw`` by acting on ``loads`` at ``price``.

    A whole step switches its loads off (in a power-up event: on at full power). A partial step
    (schema 3, ``level_kw`` set) names one load and the power it runs at once the step is taken:
    an 11 kW charger bids 11 -> 6 kW and 6 -> 1.4 kW as two partial steps, the second dearer. A
    load's steps are taken in the order they appear in the bid.
    """

    kw: Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)]
    price: Price
    loads: list[Identifier] = Field(min_length=1, max_length=MAX_LOADS_PER_HOME)
    level_kw: Kilowatts | None = None
    """Schema 3: the power (kW) the step's one load runs at once this step is taken."""

    @model_validator(mode="after")
    def _partial_step_names_one_load(self) -> Self:
        if self.level_kw is not None and len(self.loads) != 1:
            raise ValueError("a partial step (level_kw) names exactly one load")
        return self


class Sample(_Model):
    """One telemetry sample: measured power and the reduction the home believes it delivers."""

    ts: AwareDatetime
    power_kw: Kilowatts
    """Measured power of the home's declared loads."""
    shed_kw: Kilowatts = 0.0
    """Power currently held off by Jeisson (measured before switch-off, else rated); in a
    power-up event, the power added."""
    loads: dict[Identifier, Kilowatts] = Field(default_factory=dict, max_length=MAX_LOADS_PER_HOME)
    """Per-load measured power, where known."""
    measured: bool | None = None
    """Schema 2: True when every figure came from a power sensor; False when some load's figure
    is an estimate (its rated power while switched on); absent: not said (schema 1)."""


class HeldAward(_Model):
    """An award a home is still executing, reported in its hello so the server can reconcile."""

    event_id: Identifier
    award_id: Identifier
    status: HomeEventStatus
    loads: list[Identifier] = Field(default_factory=list, max_length=MAX_LOADS_PER_HOME)


# --- Server to home ---------------------------------------------------------------------------


class ServerHello(_Message):
    """First frame on every connection: who the server is and which versions it speaks."""

    type: Literal["server_hello"] = "server_hello"
    schema_version: int = SCHEMA_VERSION
    min_supported_schema_version: int = MIN_SUPPORTED_SCHEMA_VERSION
    server_version: str
    aggregator_id: Identifier
    home_id: Identifier
    heartbeat_interval: float = Field(gt=0)
    """Seconds between WebSocket pings the home should send; silence for 3 intervals drops it."""
    server_time: AwareDatetime
    home_name: Text | None = Field(default=None, min_length=1, max_length=MAX_HOME_NAME)
    """The name the operator gave the home (absent from older aggregators)."""


class Offer(_Message):
    """A call for bids: the event window, a price cap and a deadline for the bid."""

    type: Literal["offer"] = "offer"
    event_id: Identifier
    round: int = Field(ge=1)
    """1 for the first negotiation, higher for re-negotiations of a shortfall."""
    kind: EventKind = EventKind.MARKET
    window_start: AwareDatetime
    window_end: AwareDatetime
    price_cap: Price
    bid_deadline: AwareDatetime
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    direction: EventDirection | None = None
    """Schema 3: ``up`` for a power-up event (bid the kW you can add); absent means ``down``."""

    @model_validator(mode="after")
    def _window_is_ordered(self) -> Self:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self

    @property
    def is_power_up(self) -> bool:
        """Return True for a power-up event."""
        return self.direction is EventDirection.UP


class Award(_Message):
    """What a home committed to: shed these loads for this window at this price.

    In a direct event ``loads`` is empty: the home sheds every load its terms allow at ``price``
    (the flat incentive) and says which in its :class:`AwardAck`.
    """

    type: Literal["award"] = "award"
    event_id: Identifier
    award_id: Identifier
    round: int = Field(ge=1)
    kind: EventKind = EventKind.MARKET
    loads: list[Identifier] = Field(default_factory=list, max_length=MAX_LOADS_PER_HOME)
    kw: Kilowatts
    price: Price
    window_start: AwareDatetime
    window_end: AwareDatetime
    restore_stagger_s: float = Field(ge=0, le=3600)
    """Each load is restored after a random delay in ``[0, restore_stagger_s]``."""
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    direction: EventDirection | None = None
    """Schema 3: ``up`` for a power-up event; absent means ``down``."""
    levels: dict[Identifier, Kilowatts] | None = Field(default=None, max_length=MAX_LOADS_PER_HOME)
    """Schema 3: the power (kW) each named load runs at during the event (its partial steps
    awarded); a load in ``loads`` not named here goes off (power-up: runs at full power)."""

    @model_validator(mode="after")
    def _window_is_ordered(self) -> Self:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if self.levels and not set(self.levels) <= set(self.loads):
            raise ValueError("levels may only name awarded loads")
        return self

    @property
    def is_power_up(self) -> bool:
        """Return True for a power-up event."""
        return self.direction is EventDirection.UP

    def level(self, load_id: str) -> float | None:
        """Return the power an awarded load runs at (None: off, or full power when powering up)."""
        return (self.levels or {}).get(load_id)


class Cancel(_Message):
    """The operator cancelled the event: restore what was switched off (staggered)."""

    type: Literal["cancel"] = "cancel"
    event_id: Identifier
    reason: str = Field(default="", max_length=200)


class EventEnd(_Message):
    """The event window is over (homes also end it on their own clock)."""

    type: Literal["event_end"] = "event_end"
    event_id: Identifier


class Statement(_Message):
    """What the home is paid for an event: a final, settled statement line (schema 2).

    Sent after the program's late-telemetry window (and again for a correction, with a higher
    ``version``) to homes that speak schema 2; the home answers :class:`StatementAck` once it has
    stored it. ``id`` is stable (``statement-<event_id>-v<version>``), so a re-send is recognised.
    """

    type: Literal["statement"] = "statement"
    event_id: Identifier
    version: int = Field(ge=1, le=10_000)
    """1 for the first statement; higher for corrections (each replaces the one before)."""
    settled_at: AwareDatetime
    window_start: AwareDatetime
    window_end: AwareDatetime
    status: str = Field(min_length=1, max_length=32)
    """``settled``, ``incomplete_telemetry``, ``no_telemetry``, ``no_baseline`` or ``withdrawn``."""
    committed_kw: Kilowatts
    delivered_kwh: KilowattHours
    """Energy not used against the baseline (this event's share where events overlapped)."""
    paid_kwh: KilowattHours
    """Delivered energy with estimated intervals counted at the program's ratio."""
    estimated_kwh: KilowattHours = 0.0
    data_quality: DataQuality = DataQuality.MEASURED
    price: Price
    payment: Money
    previous_payment: Money | None = None
    """The payment of the version before (absent in version 1)."""
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    baseline: str = Field(min_length=1, max_length=32)
    """Which baseline was used: ``x_of_y``, ``pre_event_average``, ``comparison_group``, ..."""
    baseline_reason: str = Field(default="", max_length=500)
    reliability: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    """The home's reliability score after this statement (delivered / committed)."""

    @property
    def correction(self) -> float:
        """Return what this version adds to what the home is owed."""
        return self.payment - (self.previous_payment or 0.0)


class Ack(_Reply):
    """The message ``reply_to`` was received, validated and persisted."""

    type: Literal["ack"] = "ack"


class ErrorMessage(_Message):
    """A message was refused. ``reply_to`` is set when the refused frame had a readable id."""

    type: Literal["error"] = "error"
    reply_to: Identifier | None = None
    code: ErrorCode
    message: str = Field(max_length=MAX_ERROR_TEXT)


# --- Home to server ---------------------------------------------------------------------------


class HomeHello(_Message):
    """First frame a home sends: its versions and the awards it is still executing."""

    type: Literal["home_hello"] = "home_hello"
    schema_version: int = Field(ge=1)
    software_version: Text = Field(min_length=1, max_length=64)
    held_awards: list[HeldAward] = Field(default_factory=list, max_length=16)


class Inventory(_Message):
    """The home's loads (replaces any earlier inventory)."""

    type: Literal["inventory"] = "inventory"
    loads: list[Load] = Field(max_length=MAX_LOADS_PER_HOME)
    participating: bool = True
    """False when the homeowner switched participation off: no offers are sent."""

    @model_validator(mode="after")
    def _load_ids_are_unique(self) -> Self:
        ids = [load.load_id for load in self.loads]
        if len(ids) != len(set(ids)):
            raise ValueError("load_id values must be unique")
        return self


class Bid(_Reply):
    """A step curve answering an offer (``reply_to`` is the offer's id). No steps = no bid."""

    type: Literal["bid"] = "bid"
    event_id: Identifier
    round: int = Field(ge=1)
    steps: list[BidStep] = Field(default_factory=list, max_length=MAX_STEPS_PER_BID)

    @model_validator(mode="after")
    def _steps_are_consistent(self) -> Self:
        levels: dict[str, list[float]] = {}
        whole: set[str] = set()
        for step in self.steps:
            for load in step.loads:
                if load in whole:
                    raise ValueError(f"load {load!r} has a step after its whole step")
                if step.level_kw is None:
                    whole.add(load)
                else:
                    levels.setdefault(load, []).append(step.level_kw)
        for load, seq in levels.items():
            pairs = list(itertools.pairwise(seq))
            if not (all(a > b for a, b in pairs) or all(a < b for a, b in pairs)):
                raise ValueError(f"the levels of load {load!r} must all fall or all rise")
        prices = [step.price for step in self.steps]
        if prices != sorted(prices):
            raise ValueError("step prices must not decrease")
        return self

    @property
    def total_kw(self) -> float:
        """Return the kW of all steps together."""
        return sum(step.kw for step in self.steps)


class AwardAck(_Reply):
    """A home's answer to an award (``reply_to`` is the award message's id).

    ``accepted`` False means the home cannot carry it out (e.g. a load went away); for a direct
    event ``loads`` and ``kw`` say what the home took on.
    """

    type: Literal["award_ack"] = "award_ack"
    event_id: Identifier
    award_id: Identifier
    accepted: bool = True
    loads: list[Identifier] = Field(default_factory=list, max_length=MAX_LOADS_PER_HOME)
    kw: Kilowatts = 0.0


class Telemetry(_Message):
    """A batch of samples, oldest first; ``event_id`` set while the home is in an event."""

    type: Literal["telemetry"] = "telemetry"
    event_id: Identifier | None = None
    samples: list[Sample] = Field(min_length=1, max_length=MAX_SAMPLES_PER_TELEMETRY)


class StatementAck(_Reply):
    """The home stored a :class:`Statement` (``reply_to`` is the statement's id; schema 2)."""

    type: Literal["statement_ack"] = "statement_ack"
    event_id: Identifier
    version: int = Field(ge=1, le=10_000)


class OptOut(_Message):
    """The home stops curtailing one load (``load_id``) or the whole event (``load_id`` None)."""

    type: Literal["opt_out"] = "opt_out"
    event_id: Identifier
    load_id: Identifier | None = None
    reason: OptOutReason = OptOutReason.USER


# --- Parsing ----------------------------------------------------------------------------------

type ServerMessage = (
    ServerHello | Offer | Award | Cancel | EventEnd | Statement | Ack | ErrorMessage
)
type HomeMessage = HomeHello | Inventory | Bid | AwardAck | Telemetry | OptOut | StatementAck
type Message = ServerMessage | HomeMessage

_SERVER_TYPES: Final = (ServerHello, Offer, Award, Cancel, EventEnd, Statement, Ack, ErrorMessage)
_HOME_TYPES: Final = (HomeHello, Inventory, Bid, AwardAck, Telemetry, OptOut, StatementAck)

MESSAGE_TYPES: Final[dict[str, type[_Message]]] = {
    cls.model_fields["type"].default: cls for cls in (*_SERVER_TYPES, *_HOME_TYPES)
}
"""Every message class by its ``type`` value."""

SERVER_MESSAGE_TYPES: Final = frozenset(cls.model_fields["type"].default for cls in _SERVER_TYPES)
HOME_MESSAGE_TYPES: Final = frozenset(cls.model_fields["type"].default for cls in _HOME_TYPES)

_ANY_MESSAGE: TypeAdapter[Message] = TypeAdapter(
    Annotated[
        ServerHello
        | Offer
        | Award
        | Cancel
        | EventEnd
        | Statement
        | Ack
        | ErrorMessage
        | HomeHello
        | Inventory
        | Bid
        | AwardAck
        | Telemetry
        | OptOut
        | StatementAck,
        Field(discriminator="type"),
    ]
)
_JSON_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def parse_message(frame: str | bytes, *, allowed: frozenset[str] | None = None) -> Message:
    """Parse and validate one text frame.

    ``allowed`` restricts the accepted ``type`` values (a server passes
    :data:`HOME_MESSAGE_TYPES`). Raises :class:`ProtocolError` with the matching code for
    oversized frames, invalid JSON, unknown types and invalid fields.
    """
    if _exceeds_frame_limit(frame):
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"frame exceeds {MAX_FRAME_BYTES} bytes")
    # The common case in one pass; a frame that fails is parsed again to say exactly why.
    with contextlib.suppress(ValidationError):
        message: Message = _ANY_MESSAGE.validate_json(frame, strict=True)
        if allowed is not None and message.type not in allowed:
            raise ProtocolError(
                ErrorCode.UNKNOWN_TYPE,
                f"message type {message.type!r} is not accepted here",
                message.id,
            )
        return message
    try:
        raw = _JSON_OBJECT.validate_json(frame)
    except ValidationError as err:
        raise ProtocolError(ErrorCode.INVALID_JSON, "frame is not a JSON object") from err
    reply_to = raw["id"] if is_identifier(raw.get("id")) else None
    message_type = raw.get("type")
    if not isinstance(message_type, str) or message_type not in MESSAGE_TYPES:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown message type {message_type!r}", reply_to
        )
    if allowed is not None and message_type not in allowed:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"message type {message_type!r} is not accepted here", reply_to
        )
    try:
        # Strict: "1.5" is not a number and true is not a round; ISO strings are datetimes.
        return _ANY_MESSAGE.validate_json(frame, strict=True)
    except ValidationError as err:
        details = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'message'}: {error['msg']}"
            for error in err.errors(include_url=False)
        )
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, details, reply_to) from err


def _exceeds_frame_limit(frame: str | bytes) -> bool:
    """Return True when a frame is larger than MAX_FRAME_BYTES in UTF-8 bytes."""
    if isinstance(frame, bytes):
        return len(frame) > MAX_FRAME_BYTES
    # A character is at most 4 UTF-8 bytes: only frames that could be too large get encoded.
    return len(frame) * 4 > MAX_FRAME_BYTES and len(frame.encode()) > MAX_FRAME_BYTES


def dump_message(message: Message) -> str:
    """Serialise a message to the JSON text sent on the wire."""
    return message.model_dump_json(exclude_none=True)


def protocol_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of every message (used to build docs/protocol.schema.json)."""
    return _ANY_MESSAGE.json_schema()


def for_schema(message: HomeMessage, version: int) -> HomeMessage:
    """Return a home's ``message`` as an aggregator speaking schema ``version`` reads it.

    An older aggregator refuses unknown fields and values, so below schema 2 samples lose
    ``measured``; below :data:`FLEX_SCHEMA_VERSION` the schema 3 load kinds are declared as their
    older neighbours (:data:`LEGACY_LOAD_KINDS`) and partial steps are left out of bids (a load's
    whole step, if it bid one, still stands).
    """
    if isinstance(message, Telemetry) and version < STATEMENT_SCHEMA_VERSION:
        if all(sample.measured is None for sample in message.samples):
            return message
        samples = [sample.model_copy(update={"measured": None}) for sample in message.samples]
        return message.model_copy(update={"samples": samples})
    if version >= FLEX_SCHEMA_VERSION:
        return message
    if isinstance(message, Inventory) and any(
        load.kind in LEGACY_LOAD_KINDS for load in message.loads
    ):
        loads = [
            load.model_copy(update={"kind": LEGACY_LOAD_KINDS.get(load.kind, load.kind)})
            for load in message.loads
        ]
        return message.model_copy(update={"loads": loads})
    if isinstance(message, Bid) and any(step.level_kw is not None for step in message.steps):
        steps = [step for step in message.steps if step.level_kw is None]
        return message.model_copy(update={"steps": steps})
    return message
