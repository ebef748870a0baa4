"""Jeisson's own events as OpenADR events for third-party VENs: who sheds what, what they report.

Pure functions, no I/O (the publisher, ``publisher.py``, does the reading and writing).

A VEN takes part when the operator gave its client a capacity (kW) and it registered a VEN
object (its ``venName`` is the target of the events it gets). VENs do not bid — OpenADR 3 has no
bidding — they are dispatched:

- **direct event**: each VEN sheds its whole capacity, at the event's flat incentive, as a home
  sheds all that its owner's terms allow;
- **market event**: once the homes' negotiation has an outcome (a round cleared, none open),
  the VENs cover what the homes left short of the target (target - committed - pending kW),
  pro rata to their capacities and each at most its capacity, paid the event's price cap. When
  re-negotiation among homes closes the gap, their share falls back (to 0).

Each VEN gets one OpenADR event (program :data:`PROGRAM_NAME`) targeted at its venName, with one
interval over the Jeisson event's window carrying ``DISPATCH_SETPOINT_RELATIVE`` = -share kW (the
change of its consumption, per the OpenADR definitions) and ``PRICE``, and asking for
``DELTA_USAGE`` reports (kW, negative when load is shed). What a VEN reports counts toward the
Jeisson event's delivered kW.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from aggregator.openadr.mapping import NotMappable, interval_windows
from aggregator.openadr.vtn_store import Participant
from aggregator.records import EventRecord, EventStatus
from jeisson.common.protocol import EventKind

PROGRAM_NAME: Final = "jeisson-dr"
SETPOINT: Final = "DISPATCH_SETPOINT_RELATIVE"
PRICE: Final = "PRICE"
DELIVERED: Final = "DELTA_USAGE"
SHARE_STEP_KW: Final = 0.05
"""A share that changed by less is not published again (no flapping on float noise)."""
_OUTCOME: Final = frozenset({EventStatus.COMMITTED, EventStatus.ACTIVE})


@dataclass(frozen=True, slots=True)
class EventView:
    """What dispatching a Jeisson event to VENs needs to know of it."""

    record: EventRecord
    homes_kw: float
    """kW the homes committed or were awarded and may still acknowledge."""
    round_open: bool


def shares(event: EventView, participants: Sequence[Participant]) -> dict[str, float] | None:
    """Return each VEN client's kW to shed, or None while the negotiation has no outcome yet."""
    record = event.record
    if record.kind is EventKind.DIRECT:
        return {item.client_id: item.capacity_kw for item in participants}
    if record.status not in _OUTCOME or event.round_open:
        return None
    need = max(0.0, record.target_kw - event.homes_kw)
    capacity = sum(item.capacity_kw for item in participants)
    ratio = min(1.0, need / capacity) if capacity > 0 else 0.0
    return {item.client_id: round(item.capacity_kw * ratio, 3) for item in participants}


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_request(
    program_id: str, record: EventRecord, participant: Participant, share_kw: float
) -> dict[str, Any]:
    """Return the OpenADR ``eventRequest`` dispatching one VEN for a Jeisson event."""
    seconds = max(0, round((record.end - record.start).total_seconds()))
    return {
        "programID": program_id,
        "eventName": f"{record.name} ({record.event_id})"[:128],
        "priority": 0,
        "targets": [participant.ven_name],
        "payloadDescriptors": [
            {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": SETPOINT, "units": "KW"},
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": PRICE,
                "units": "KWH",
                "currency": record.currency,
            },
        ],
        "reportDescriptors": [{"payloadType": DELIVERED, "units": "KW"}],
        "intervalPeriod": {"start": _stamp(record.start), "duration": f"PT{seconds}S"},
        "intervals": [
            {
                "id": 0,
                "payloads": [
                    {"type": SETPOINT, "values": [-round(share_kw, 3)]},
                    {"type": PRICE, "values": [record.price_cap]},
                ],
            }
        ],
    }


def published_share(body: dict[str, Any]) -> float:
    """Return the kW a published event asks its VEN to shed."""
    for payload in body["intervals"][0]["payloads"]:
        if payload["type"] == SETPOINT:
            return max(0.0, -float(payload["values"][0]))
    return 0.0


@dataclass(frozen=True, slots=True)
class Reading:
    """What a VEN reported for one span: the kW it shed (>= 0)."""

    start: datetime
    end: datetime
    shed_kw: float


def readings(reports: Iterable[dict[str, Any]], event: dict[str, Any]) -> list[Reading]:
    """Return a VEN's readings from its reports on a published event.

    A report interval is placed by its own ``intervalPeriod``, else by its resource's (start,
    duration; what is missing comes from the event's), one after the other. Only
    ``DELTA_USAGE`` counts (shed = -value, never below 0); resources add up; a later report of
    the same resource and span replaces an earlier one (a correction).
    """
    latest: dict[tuple[str, datetime, datetime], float] = {}
    for report in reports:
        for resource in report.get("resources", []):
            period = {**event.get("intervalPeriod", {}), **resource.get("intervalPeriod", {})}
            intervals = resource.get("intervals", [])
            try:
                placed = interval_windows({"intervalPeriod": period, "intervals": intervals})
            except NotMappable:
                continue
            for window in placed:
                values = window.payloads.get(DELIVERED)
                if not values or not isinstance(values[0], int | float):
                    continue
                key = (resource["resourceName"], window.start, window.end)
                latest[key] = max(0.0, -float(values[0]))
    return [Reading(start, end, kw) for (_name, start, end), kw in latest.items()]


def delivered_now(items: Sequence[Reading], now: datetime) -> float:
    """Return the kW a VEN sheds now by its reports: its latest reading that still holds.

    A reading holds from its start until as long again after its end (a VEN reports a span once
    it is over; the next report is due a span later). Readings of the same span add up.
    """
    holding = [item for item in items if item.start <= now < item.end + (item.end - item.start)]
    if not holding:
        return 0.0
    newest = max(item.start for item in holding)
    return sum(item.shed_kw for item in holding if item.start == newest)


def delivered_over(items: Sequence[Reading], start: datetime, end: datetime) -> float:
    """Return the mean kW a VEN's readings say it shed over ``[start, end)``."""
    span = (end - start).total_seconds()
    if span <= 0:
        return 0.0
    energy = sum(
        item.shed_kw
        * max(timedelta(0), min(item.end, end) - max(item.start, start)).total_seconds()
        for item in items
    )
    return energy / span
