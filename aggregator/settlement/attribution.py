"""Who is paid for a home's shed when events overlap: each interval's energy is paid once.

A home may be committed to two events at once (a market event and a direct event, or two
events whose windows overlap). Its meter measures one home, so the energy it did not use in an
interval is one quantity, whatever the number of events. The rule (``docs/settlement.md``):

* **Events settled together.** Events whose windows overlap, or where one starts within the
  pre-event span (:func:`aggregator.settlement.grid.lead_time`, 4 h) of the other's window, form
  one *group*; they are settled in one run over one span, so each home gets one baseline for
  the whole group (the first event's method) and no event's pre-event data is another
  event's curtailment.
* **One shed per interval.** A home's delivered energy in an interval is
  ``max(0, baseline - measured) x hours x covered``, where ``covered`` is the part of the
  interval inside any event of the group (an event starting at 18:05 covers two thirds of the
  18:00 interval).
* **Shared by commitment.** That energy is split between the events in which the home had an
  acknowledged commitment covering the interval, in proportion to ``committed kW x the part of
  the interval the event covers``; each share is paid at that event's price. The shares add up
  to at most the whole, so the sum paid for an interval never exceeds the measured shed.

The same idea applies live: a telemetry batch names one event but reports the home's whole
shed, so :func:`live_shed_by_event` credits each event with the shed of *its* awarded loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

LOAD_OFF_KW: Final = 0.05
"""A held load measured below this (50 W: standby of a relay or a charger) counts as off."""


class TimedEvent(Protocol):
    """An event's id and window, as grouping needs them (an ``EventRecord`` is one)."""

    @property
    def event_id(self) -> str:
        """The event's id."""

    @property
    def start(self) -> datetime:
        """When the event starts."""

    @property
    def end(self) -> datetime:
        """When the event ends."""


def overlap_groups[E: TimedEvent](events: Sequence[E], lead: timedelta) -> list[list[E]]:
    """Group events whose windows overlap or start within ``lead`` of another's window.

    Groups are returned oldest first; within a group events are ordered by start, then id.
    """
    ordered = sorted(events, key=lambda event: (event.start, event.event_id))
    groups: list[list[E]] = []
    reach: datetime | None = None
    for event in ordered:
        if reach is not None and event.start - lead < reach:
            groups[-1].append(event)
            reach = max(reach, event.end)
        else:
            groups.append([event])
            reach = event.end
    return groups


def interval_shares(
    committed_kw: npt.NDArray[np.float64], coverage: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Return each event's share of each home's interval energy.

    Args:
        committed_kw: ``(events, homes)`` acknowledged kW of each home in each event (0: none).
        coverage: ``(events, intervals)`` part of each interval inside each event (0..1).

    Returns:
        ``(events, homes, intervals)`` shares; for a home and interval they add up to 1 where
        the home had a commitment covering the interval, else to 0.

    """
    weight = committed_kw[:, :, None] * coverage[:, None, :]
    total = weight.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(total > 0, weight / np.where(total > 0, total, 1.0), 0.0)
    result: npt.NDArray[np.float64] = shares
    return result


def merge_windows(windows: Sequence[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Return the union of ``[start, end)`` windows as disjoint windows, oldest first."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


LEVEL_TOLERANCE: Final = 0.1
"""A load held at a level (a partial step) may read this fraction above it and still deliver."""


def level_ceiling(levels: Mapping[str, float] | None, load_id: str) -> float:
    """Return the power below which a held load delivers: off, or its awarded level."""
    level = (levels or {}).get(load_id, 0.0)
    return level * (1 + LEVEL_TOLERANCE) + LOAD_OFF_KW


def live_shed_by_event(
    total_shed_kw: float,
    load_kw: Mapping[str, float],
    awards: Mapping[str, Mapping[str, float]],
    levels: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Credit each event with the live shed of its own awarded loads.

    Args:
        total_shed_kw: the home's whole reported shed (``Sample.shed_kw``).
        load_kw: the sample's per-load power (``Sample.loads``); a load not reported is
            assumed off (held).
        awards: per event, its awarded loads and their kW (``AwardRecord.load_kw``, less
            loads opted out). A load awarded in several events counts for the first one in
            ``awards``' order.
        levels: the power a load held by partial steps may run at (absent: off).

    Returns:
        kW per event, each at most its awarded kW, together at most ``total_shed_kw``.

    """
    credited: dict[str, float] = {}
    seen: set[str] = set()
    budget = max(total_shed_kw, 0.0)
    for event_id, loads in awards.items():
        kw = 0.0
        for load_id, awarded in loads.items():
            if load_id in seen:
                continue
            seen.add(load_id)
            if load_kw.get(load_id, 0.0) < level_ceiling(levels, load_id):
                kw += awarded
        kw = min(kw, budget)
        budget -= kw
        credited[event_id] = kw
    return credited
