"""From a utility's OpenADR event to a Jeisson event, and from delivery back to a report.

Pure functions, no I/O. Signals read from each interval (first found wins for the target):

- ``DISPATCH_SETPOINT_RELATIVE`` (kW): the change of consumption asked for; its size is the kW
  to shed (negative per the OpenADR definitions, positive in some programs: Jeisson only sheds);
- ``LOAD_SHED`` (kW; a private payload type some programs use): the same;
- ``IMPORT_CAPACITY_LIMIT`` (kW): shed what the fleet's import exceeds the limit by, which
  needs the program mapping's ``site_baseline_kw`` (Jeisson has no live fleet import figure);
- ``SIMPLE`` (level 0..3): the program mapping's ``simple_levels_kw[level]``;
- ``PRICE`` (per kWh, currency from the event's payload descriptor): the price cap.

One Jeisson event covers the intervals asking for a shed (from the first one's start to the
last one's end) with the largest kW asked, so every interval's request is met and the homes'
maximum-off-time terms see the whole window; a Jeisson event has one target and one window.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

RELATIVE_SIGNAL: Final = "DISPATCH_SETPOINT_RELATIVE"
SHED_SIGNAL: Final = "LOAD_SHED"
CAPACITY_SIGNAL: Final = "IMPORT_CAPACITY_LIMIT"
LEVEL_SIGNAL: Final = "SIMPLE"
PRICE_SIGNAL: Final = "PRICE"
COMMITTED_PAYLOAD: Final = "LOAD_SHED_DELTA_AVAILABLE"
DELIVERED_PAYLOAD: Final = "DELTA_USAGE"
REPORT_RESOURCE: Final = "AGGREGATED_REPORT"
_DATETIME: Final = TypeAdapter(datetime)
_DURATION: Final = TypeAdapter(timedelta)


class ProgramMapping(BaseModel):
    """How the events of one utility program become Jeisson events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    program: str = Field(min_length=1, max_length=128)
    """The utility's programName (or programID)."""
    kind: str = Field(default="market", pattern="^(market|direct)$")
    default_price_cap: float = Field(default=0.4, ge=0, le=1000)
    """Price cap per kWh when an event carries no PRICE."""
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    site_baseline_kw: float | None = Field(default=None, gt=0)
    """The fleet's usual import, to turn an IMPORT_CAPACITY_LIMIT into kW to shed."""
    simple_levels_kw: tuple[float, float, float, float] | None = None
    """kW to shed for SIMPLE levels 0, 1, 2, 3."""
    bid_window_s: float = Field(default=30.0, ge=1, le=3600)
    restore_stagger_s: float = Field(default=300.0, ge=0, le=3600)
    report_delay_s: float = Field(default=30.0, ge=0, le=3600)
    """How long after an interval's end its report waits, so the homes' last telemetry is in."""


@dataclass(frozen=True, slots=True)
class IntervalWindow:
    """One interval of an OpenADR event, placed in time, with its payloads by type."""

    interval_id: int
    start: datetime
    end: datetime
    payloads: dict[str, list[Any]]


@dataclass(frozen=True, slots=True)
class EventPlan:
    """The Jeisson event an OpenADR event asks for."""

    name: str
    target_kw: float
    price_cap: float
    currency: str
    start: datetime
    end: datetime
    intervals: tuple[IntervalWindow, ...]

    @property
    def fingerprint(self) -> str:
        """Return a digest of what the Jeisson event depends on (a change means re-plan)."""
        text = json.dumps(
            [self.target_kw, self.price_cap, self.start.isoformat(), self.end.isoformat()]
        )
        return hashlib.sha256(text.encode()).hexdigest()


class NotMappable(ValueError):
    """The event asks for nothing Jeisson can do (the reason says why)."""


def interval_windows(event: dict[str, Any]) -> list[IntervalWindow]:
    """Place every interval in time.

    An interval's own ``intervalPeriod`` wins; otherwise it follows the previous one, the first
    starting at the event's ``intervalPeriod.start``, each lasting the event's duration.
    """
    default = event.get("intervalPeriod") or {}
    cursor = _DATETIME.validate_python(default["start"]) if "start" in default else None
    default_length = _DURATION.validate_python(default.get("duration", "PT0S"))
    windows = []
    for interval in event.get("intervals") or []:
        period = interval.get("intervalPeriod") or {}
        start = _DATETIME.validate_python(period["start"]) if "start" in period else cursor
        if start is None:
            raise NotMappable(f"interval {interval['id']} has no start")
        length = _DURATION.validate_python(period["duration"]) if "duration" in period else None
        end = start + (length if length is not None else default_length)
        payloads = {item["type"]: list(item["values"]) for item in interval.get("payloads", [])}
        windows.append(IntervalWindow(int(interval["id"]), start, end, payloads))
        cursor = end
    return windows


def _shed_kw(window: IntervalWindow, mapping: ProgramMapping) -> float:
    if RELATIVE_SIGNAL in window.payloads:
        # A relative change of consumption: the definitions' reduction is negative; programs
        # that send the kW to shed as a positive figure exist too. Jeisson only ever sheds.
        return abs(float(window.payloads[RELATIVE_SIGNAL][0]))
    if SHED_SIGNAL in window.payloads:
        return max(0.0, float(window.payloads[SHED_SIGNAL][0]))
    if CAPACITY_SIGNAL in window.payloads and mapping.site_baseline_kw is not None:
        limit = float(window.payloads[CAPACITY_SIGNAL][0])
        return max(0.0, mapping.site_baseline_kw - limit)
    if LEVEL_SIGNAL in window.payloads and mapping.simple_levels_kw is not None:
        level = int(window.payloads[LEVEL_SIGNAL][0])
        return mapping.simple_levels_kw[level] if 0 <= level <= 3 else 0.0
    return 0.0


def _currency(event: dict[str, Any], mapping: ProgramMapping) -> str:
    for descriptor in event.get("payloadDescriptors") or []:
        if descriptor.get("payloadType") == PRICE_SIGNAL and descriptor.get("currency"):
            return str(descriptor["currency"])
    return mapping.currency


def plan_event(event: dict[str, Any], mapping: ProgramMapping) -> EventPlan:
    """Return the Jeisson event an OpenADR event asks for; raise :class:`NotMappable`."""
    windows = interval_windows(event)
    asking = [window for window in windows if _shed_kw(window, mapping) > 0]
    if not asking:
        raise NotMappable("no interval asks for a shed Jeisson understands")
    prices = [
        float(window.payloads[PRICE_SIGNAL][0])
        for window in asking
        if PRICE_SIGNAL in window.payloads
    ]
    return EventPlan(
        name=str(event.get("eventName") or f"OpenADR {event['id']}")[:200],
        target_kw=round(max(_shed_kw(window, mapping) for window in asking), 3),
        price_cap=min(prices) if prices else mapping.default_price_cap,
        currency=_currency(event, mapping),
        start=min(window.start for window in asking),
        end=max(window.end for window in asking),
        intervals=tuple(windows),
    )


def report_body(
    event: dict[str, Any],
    client_name: str,
    interval: IntervalWindow,
    committed_kw: float,
    delivered_kw: float,
) -> dict[str, Any]:
    """Return the OpenADR ``reportRequest`` of one interval: committed and delivered kW.

    Committed is ``LOAD_SHED_DELTA_AVAILABLE`` (kW the aggregator committed to shed);
    delivered is ``DELTA_USAGE`` (mean change of consumption against the homes' own usual
    load, kW, negative when load was shed). Both in kW. No ``payloadDescriptors`` are sent:
    ElaadNL's openadr3-client 2.4.2 cannot read a report that has REPORT_PAYLOAD_DESCRIPTORs.
    """
    return {
        "eventID": event["id"],
        "clientName": client_name,
        "reportName": f"jeisson {event['id']} interval {interval.interval_id}",
        "resources": [
            {
                "resourceName": REPORT_RESOURCE,
                "intervals": [
                    {
                        "id": interval.interval_id,
                        "intervalPeriod": {
                            "start": interval.start.isoformat().replace("+00:00", "Z"),
                            "duration": _iso_duration(interval.end - interval.start),
                        },
                        "payloads": [
                            {"type": COMMITTED_PAYLOAD, "values": [round(committed_kw, 3)]},
                            {"type": DELIVERED_PAYLOAD, "values": [round(-delivered_kw, 3)]},
                        ],
                    }
                ],
            }
        ],
    }


def _iso_duration(length: timedelta) -> str:
    return f"PT{max(0, round(length.total_seconds()))}S"
