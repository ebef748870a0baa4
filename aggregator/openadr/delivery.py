"""What a Jeisson event committed and delivered over a span of time, read from the database.

Reports to a utility are computed from what is stored, not from figures sampled in memory, so an
interval that ended while the aggregator was down is reported with what the homes measured once
it is back (their telemetry is stored as it arrives, and homes re-send what was not stored).

Delivered kW over a span is the time-weighted mean of the reductions the homes reported
(``Sample.shed_kw``) summed over homes: each sample holds until the home's next one, or for the
negotiation's ``telemetry_stale_s`` at most — the rule the live delivered figure follows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter

from aiohttp import web

from aggregator.api import event_detail
from aggregator.app_keys import MANAGER, STORE
from aggregator.participants import outside_delivered_over


@dataclass(frozen=True, slots=True)
class SpanFigures:
    """Committed and delivered kW of one event over one span."""

    committed_kw: float
    delivered_kw: float


def mean_shed_kw(
    samples: Iterable[tuple[str, datetime, float]],
    start: datetime,
    end: datetime,
    hold: timedelta,
) -> float:
    """Return the summed, time-weighted mean reduction of many homes over ``[start, end)``.

    ``samples`` are ``(home_id, ts, shed_kw)`` ordered by home then time; a sample counts from
    its time until the home's next sample, or ``hold`` later at most, within the span.
    """
    span = (end - start).total_seconds()
    if span <= 0:
        return 0.0
    energy = 0.0
    for _home, group in groupby(samples, key=itemgetter(0)):
        rows = list(group)
        for index, (_, ts, shed_kw) in enumerate(rows):
            until = ts + hold
            if index + 1 < len(rows):
                until = min(until, rows[index + 1][1])
            overlap = (min(until, end) - max(ts, start)).total_seconds()
            if overlap > 0:
                energy += shed_kw * overlap
    return energy / span


async def span_figures(
    app: web.Application, event_id: str, start: datetime, end: datetime
) -> SpanFigures | None:
    """Return what a Jeisson event committed and delivered over ``[start, end)`` (None: no event).

    Committed is the event's commitment as stored now (acknowledged awards less opted-out loads,
    plus what third-party VENs were dispatched): an award lost or opted out of during the span
    no longer counts. Delivered adds what those VENs reported for the span.
    """
    detail = await event_detail(app, event_id)
    if detail is None:
        return None
    hold = timedelta(seconds=app[MANAGER].settings.telemetry_stale_s)
    samples = await app[STORE].event_shed(event_id, start - hold, end)
    vens = await outside_delivered_over(app, event_id, start, end)
    return SpanFigures(
        committed_kw=float(detail["committed_kw"]),
        delivered_kw=mean_shed_kw(samples, start, end, hold) + vens,
    )
