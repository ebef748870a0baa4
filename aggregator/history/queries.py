"""Reads behind the dashboard's history routes, from stored records with their own timestamps.

An event's chart and activity, a round's bid curve, an event's homes, the fleet over time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import func, select

from aggregator import tables
from aggregator.history import tables as history_tables
from aggregator.history.index import FleetIndex
from aggregator.history.models import (
    ActivityItem,
    ActivityKind,
    BidCurveStep,
    EventHistory,
    EventHome,
    EventHomes,
    EventPoint,
    EventsOnDay,
    FleetHistory,
    FleetPoint,
    LoadRef,
    RoundBids,
)
from aggregator.metrics import EventFigures
from aggregator.records import AwardStatus, EventRecord, EventStatus, RoundStatus
from aggregator.store import Store

KW_DIGITS: Final = 3
MAX_ACTIVITY: Final = 200
"""Activity items returned (the newest); ``activity_total`` says how many there are."""
MAX_CHART_POINTS: Final = 1500
"""Fleet points returned at most: longer ranges are thinned to this many."""
_AWARD_WORDS: Final = {
    AwardStatus.ACKED.value: "accepted",
    AwardStatus.DECLINED.value: "declined",
    AwardStatus.OPTED_OUT.value: "opted out of",
    AwardStatus.LOST.value: "lost",
}


def _kw(value: float) -> str:
    return f"{value:.1f} kW"


# --- an event's chart and activity ------------------------------------------------------------


async def event_points(store: Store, event_id: str) -> list[EventPoint]:
    """Return the stored samples of an event, oldest first."""
    samples = history_tables.event_samples
    query = select(samples).where(samples.c.event_id == event_id).order_by(samples.c.ts)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        EventPoint(
            ts=row.ts,
            status=row.status,
            target_kw=row.target_kw,
            committed_kw=row.committed_kw,
            delivered_kw=row.delivered_kw,
        )
        for row in rows
    ]


async def event_history(
    store: Store,
    index: FleetIndex,
    record: EventRecord,
    live: EventFigures | None,
    now: datetime,
) -> EventHistory:
    """Return an event's chart points (plus a live one) and what happened, newest first."""
    points = await event_points(store, record.event_id)
    if live is not None:
        points.append(
            EventPoint(
                ts=now,
                status=live.status,
                target_kw=round(live.target_kw, KW_DIGITS),
                committed_kw=round(live.committed_kw, KW_DIGITS),
                delivered_kw=round(live.delivered_kw, KW_DIGITS),
            )
        )
    activity = [
        ActivityItem(ts=record.created_at, kind=ActivityKind.CREATED, text="Event created"),
        *_status_changes(points),
        *await _round_activity(store, record),
        *await _award_activity(store, index, record.event_id),
        *await _opt_out_activity(store, index, record.event_id),
    ]
    activity.sort(key=lambda item: item.ts, reverse=True)
    return EventHistory(
        event_id=record.event_id,
        points=points,
        activity=activity[:MAX_ACTIVITY],
        activity_total=len(activity),
    )


def _status_changes(points: Sequence[EventPoint]) -> list[ActivityItem]:
    """Return when the event's status changed, as sampled ("negotiating": see round opened)."""
    changes: list[ActivityItem] = []
    status = None
    for point in points:
        if point.status != status:
            status = point.status
            if status == EventStatus.NEGOTIATING.value:
                continue
            changes.append(
                ActivityItem(
                    ts=point.ts, kind=ActivityKind.STATUS, text=f"Event {status.replace('_', ' ')}"
                )
            )
    return changes


async def _round_activity(store: Store, record: EventRecord) -> list[ActivityItem]:
    items: list[ActivityItem] = []
    offered = await store.offered_counts(record.event_id)
    for item in await store.rounds_for(record.event_id):
        items.append(
            ActivityItem(
                ts=item.opened_at,
                kind=ActivityKind.ROUND_OPENED,
                round=item.round,
                text=f"Round {item.round} opened: {_kw(item.target_kw)} asked of "
                f"{offered.get(item.round, 0)} homes",
            )
        )
        if item.status is RoundStatus.CLEARED and item.cleared_at is not None:
            at = (
                ""
                if item.clearing_price is None
                else f" at {item.clearing_price:.3f} {record.currency}/kWh"
            )
            short = f", {_kw(item.shortfall_kw)} short" if item.shortfall_kw > 0 else ""
            items.append(
                ActivityItem(
                    ts=item.cleared_at,
                    kind=ActivityKind.ROUND_CLEARED,
                    round=item.round,
                    text=f"Round {item.round} cleared: {item.bids} bids, "
                    f"{_kw(item.accepted_kw)} accepted{at}{short}",
                )
            )
    return items


async def _award_activity(store: Store, index: FleetIndex, event_id: str) -> list[ActivityItem]:
    awards = tables.awards
    query = select(
        awards.c.home_id, awards.c.round, awards.c.status, awards.c.kw, awards.c.acked_at
    ).where(awards.c.event_id == event_id, awards.c.acked_at.is_not(None))
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        ActivityItem(
            ts=row.acked_at,
            kind=ActivityKind.AWARD,
            round=row.round,
            home_id=row.home_id,
            home_name=index.name_of(row.home_id),
            text=f"{index.name_of(row.home_id)} "
            f"{_AWARD_WORDS.get(row.status, 'acknowledged')} its award ({_kw(row.kw)})",
        )
        for row in rows
    ]


async def _opt_out_activity(store: Store, index: FleetIndex, event_id: str) -> list[ActivityItem]:
    opt_outs = tables.opt_outs
    query = select(opt_outs).where(opt_outs.c.event_id == event_id)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    items = []
    for row in rows:
        name = index.name_of(row.home_id)
        what = (
            f"{index.load_name(row.home_id, row.load_id)} out"
            if row.load_id
            else "out of the event"
        )
        items.append(
            ActivityItem(
                ts=row.at,
                kind=ActivityKind.OPT_OUT,
                home_id=row.home_id,
                home_name=name,
                text=f"{name} took {what} ({row.reason.replace('_', ' ')})",
            )
        )
    return items


# --- a round's bid curve ----------------------------------------------------------------------


async def round_bids(
    store: Store, index: FleetIndex, record: EventRecord, number: int
) -> RoundBids | None:
    """Return a round's bid steps in merit order, marking the steps that were accepted."""
    rounds = {item.round: item for item in await store.rounds_for(record.event_id)}
    round_record = rounds.get(number)
    if round_record is None:
        return None
    awarded: dict[str, set[str]] = {}
    awards = tables.awards
    query = select(awards.c.home_id, awards.c.load_kw).where(
        awards.c.event_id == record.event_id, awards.c.round == number
    )
    async with store.engine.connect() as conn:
        for row in await conn.execute(query):
            awarded.setdefault(row.home_id, set()).update(row.load_kw or {})
    steps = [
        (bid.home_id, step, set(step.loads) <= awarded.get(bid.home_id, set()))
        for bid in await store.bids_for(record.event_id, number)
        for step in bid.steps
    ]
    # Merit order: cheapest first; of equal prices, the accepted ones came first.
    steps.sort(key=lambda item: (item[1].price, not item[2], item[0]))
    curve: list[BidCurveStep] = []
    cumulative = 0.0
    for home_id, step, accepted in steps:
        cumulative += step.kw
        curve.append(
            BidCurveStep(
                home_id=home_id,
                home_name=index.name_of(home_id),
                kw=round(step.kw, KW_DIGITS),
                price=step.price,
                loads=[
                    LoadRef(load_id=load, name=index.load_name(home_id, load))
                    for load in step.loads
                ],
                cumulative_kw=round(cumulative, KW_DIGITS),
                accepted=accepted,
            )
        )
    return RoundBids(
        event_id=record.event_id,
        round=number,
        status=round_record.status.value,
        target_kw=round(round_record.target_kw, KW_DIGITS),
        clearing_price=round_record.clearing_price,
        currency=record.currency,
        accepted_kw=round(round_record.accepted_kw, KW_DIGITS),
        offered_kw=round(round_record.offered_kw, KW_DIGITS),
        steps=curve,
    )


# --- an event's homes: committed vs delivered -------------------------------------------------


@dataclass(slots=True)
class _HomePart:
    rounds: list[int] = field(default_factory=list)
    status: str = ""
    loads: dict[str, float] = field(default_factory=dict)
    awarded_kw: float = 0.0
    committed_kw: float = 0.0
    price: float | None = None


def _parts(rows: Sequence[Any]) -> dict[str, _HomePart]:
    parts: dict[str, _HomePart] = {}
    for row in rows:
        part = parts.setdefault(row.home_id, _HomePart())
        part.rounds.append(row.round)
        part.status = row.status
        load_kw = {str(key): float(value) for key, value in (row.load_kw or {}).items()}
        part.loads.update(load_kw)
        part.awarded_kw += float(row.kw)
        part.price = float(row.price)
        if row.status == AwardStatus.ACKED.value:
            dropped = sum(load_kw.get(load, 0.0) for load in row.opted_out_loads or ())
            part.committed_kw += max(0.0, float(row.kw) - dropped)
    return parts


async def _delivery(
    store: Store, record: EventRecord, home_ids: Sequence[str]
) -> dict[str, tuple[float, float]]:
    """Return (average, last) reported reduction per home during the event."""
    if not home_ids:
        return {}
    telemetry = tables.telemetry
    scope = (
        telemetry.c.event_id == record.event_id,
        telemetry.c.home_id.in_(home_ids),
        telemetry.c.ts >= record.start,
        telemetry.c.ts <= record.end,
    )
    averages = select(telemetry.c.home_id, func.avg(telemetry.c.shed_kw)).where(*scope)
    latest = (
        select(telemetry.c.home_id, telemetry.c.shed_kw, telemetry.c.ts)
        .where(*scope)
        .order_by(telemetry.c.home_id, telemetry.c.ts)
    )
    found: dict[str, tuple[float, float]] = {}
    async with store.engine.connect() as conn:
        mean = {
            row[0]: float(row[1])
            for row in await conn.execute(averages.group_by(telemetry.c.home_id))
        }
        last: dict[str, float] = {}
        for row in await conn.execute(latest):
            last[row.home_id] = float(row.shed_kw)
    for home_id, value in mean.items():
        found[home_id] = (round(value, KW_DIGITS), round(last.get(home_id, 0.0), KW_DIGITS))
    return found


async def event_homes(
    store: Store,
    index: FleetIndex,
    record: EventRecord,
    *,
    offset: int,
    limit: int,
    settlement_url: str,
) -> EventHomes:
    """Return a page of an event's homes, most committed (then most awarded) first."""
    awards = tables.awards
    query = (
        select(
            awards.c.home_id,
            awards.c.round,
            awards.c.status,
            awards.c.kw,
            awards.c.price,
            awards.c.load_kw,
            awards.c.opted_out_loads,
        )
        .where(awards.c.event_id == record.event_id)
        .order_by(awards.c.round, awards.c.sent_at)
    )
    async with store.engine.connect() as conn:
        parts = _parts((await conn.execute(query)).all())
    ordered = sorted(
        parts.items(),
        key=lambda item: (-item[1].committed_kw, -item[1].awarded_kw, index.name_of(item[0])),
    )
    page = ordered[offset : offset + limit]
    delivery = await _delivery(store, record, [home_id for home_id, _ in page])
    homes = [
        EventHome(
            home_id=home_id,
            home_name=index.name_of(home_id),
            connected=index.is_connected(home_id),
            status=part.status,
            rounds=part.rounds,
            loads=[
                LoadRef(load_id=load, name=index.load_name(home_id, load), kw=round(kw, KW_DIGITS))
                for load, kw in part.loads.items()
            ],
            awarded_kw=round(part.awarded_kw, KW_DIGITS),
            committed_kw=round(part.committed_kw, KW_DIGITS),
            delivered_kw=delivery[home_id][0] if home_id in delivery else None,
            last_delivered_kw=delivery[home_id][1] if home_id in delivery else None,
            price=part.price,
        )
        for home_id, part in page
    ]
    delivered = [item.delivered_kw for item in homes if item.delivered_kw is not None]
    return EventHomes(
        event_id=record.event_id,
        homes=homes,
        total=len(ordered),
        offset=offset,
        limit=limit,
        committed_kw=round(sum(part.committed_kw for part in parts.values()), KW_DIGITS),
        delivered_kw=round(sum(delivered), KW_DIGITS) if delivered else None,
        settlement_url=settlement_url,
    )


# --- the fleet over time ----------------------------------------------------------------------


def _thin[T](items: list[T], most: int) -> list[T]:
    """Return at most ``most`` items, evenly spread, keeping the last one."""
    if len(items) <= most:
        return items
    step = len(items) / most
    kept = [items[int(index * step)] for index in range(most - 1)]
    return [*kept, items[-1]]


async def fleet_history(
    store: Store, since: datetime, until: datetime, now_point: FleetPoint | None
) -> FleetHistory:
    """Return the fleet samples between ``since`` and ``until`` and the events per (UTC) day."""
    samples, events = history_tables.fleet_samples, tables.events
    points_query = (
        select(samples).where(samples.c.ts >= since, samples.c.ts <= until).order_by(samples.c.ts)
    )
    # Whole days: events later on ``until``'s day (scheduled, not started yet) count too.
    day_end = datetime.combine(until.date() + timedelta(days=1), time(), tzinfo=UTC)
    events_query = select(events.c.start, events.c.status).where(
        events.c.start >= since, events.c.start < day_end
    )
    async with store.engine.connect() as conn:
        points = [
            FleetPoint(
                ts=row.ts,
                homes_total=row.homes_total,
                homes_online=row.homes_online,
                homes_participating=row.homes_participating,
                flexible_kw=row.flexible_kw,
            )
            for row in await conn.execute(points_query)
        ]
        days: dict[Any, Counter[str]] = {}
        for row in await conn.execute(events_query):
            days.setdefault(row.start.date(), Counter())[row.status] += 1
    if now_point is not None and since <= now_point.ts <= until + timedelta(minutes=1):
        points.append(now_point)
    return FleetHistory(
        since=since,
        until=until,
        points=_thin(points, MAX_CHART_POINTS),
        events_per_day=[
            EventsOnDay(day=day, total=sum(counts.values()), by_status=dict(counts))
            for day, counts in sorted(days.items())
        ],
    )
