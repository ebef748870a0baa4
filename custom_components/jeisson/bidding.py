"""Turn the homeowner's loads and terms into a bid step curve (pure; no HA imports).

Decisions (documented in docs/home-assistant.md):

* **One step per load.** Steps are indivisible on the aggregator, so a step per load lets it
  accept exactly what it needs. Steps are sorted by asked price (then larger kW first, then
  load id, so the curve is deterministic). Only when a home has more eligible loads than the
  protocol allows steps are loads with the same price merged into one step, and if that is still
  too many the most expensive steps are left out.
* **A step's kW is the load's rated power**: the bid is a promise about the window, when the
  load may well be running even if it is idle at the time of the offer.
* **A step's price is the homeowner's minimum price** for that load. A load asking more than the
  offer's price cap does not bid (it could never be accepted).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from itertools import groupby

from jeisson.common.protocol import MAX_STEPS_PER_BID, BidStep

from .models import LoadConfig, Terms

type AvailabilityFn = Callable[[LoadConfig], bool]

_ONE_DAY = timedelta(days=1)
_SECONDS_PER_MINUTE = 60


class Ineligible(StrEnum):
    """Why a load does not take part in an event."""

    NEVER_CURTAIL = "never_curtail"
    UNAVAILABLE = "unavailable"
    WINDOW_TOO_LONG = "window_too_long"
    OFF_LIMITS = "off_limits"
    PRICE_TOO_LOW = "price_too_low"


def _daily_intervals(
    start: time, end: time, first_day: date, last_day: date, tz: tzinfo
) -> Iterable[tuple[datetime, datetime]]:
    """Yield the off-limits interval of every local day from ``first_day`` to ``last_day``."""
    day = first_day
    while day <= last_day:
        begin = datetime.combine(day, start, tzinfo=tz)
        finish = datetime.combine(day, end, tzinfo=tz)
        if finish <= begin:  # wraps past midnight, e.g. 22:00-06:00
            finish = datetime.combine(day + _ONE_DAY, end, tzinfo=tz)
        yield begin, finish
        day += _ONE_DAY


def overlaps_off_limits(terms: Terms, start: datetime, end: datetime, tz: tzinfo) -> bool:
    """Return True when ``[start, end)`` touches the load's daily off-limits hours (local time)."""
    if terms.off_limits_start is None or terms.off_limits_end is None:
        return False
    if terms.off_limits_start == terms.off_limits_end:
        return False
    first_day = start.astimezone(tz).date() - _ONE_DAY  # an interval from the day before may wrap
    last_day = end.astimezone(tz).date()
    return any(
        begin < end and start < finish
        for begin, finish in _daily_intervals(
            terms.off_limits_start, terms.off_limits_end, first_day, last_day, tz
        )
    )


def ineligible_reason(
    load: LoadConfig,
    *,
    window_start: datetime,
    window_end: datetime,
    tz: tzinfo,
    available: bool,
    price: float | None = None,
) -> Ineligible | None:
    """Return why ``load`` may not be shed in this window (None when it may).

    ``price`` is the price on offer: the cap of an offer, or the flat incentive of a direct award.
    """
    terms = load.terms
    if terms.never_curtail:
        return Ineligible.NEVER_CURTAIL
    if not available:
        return Ineligible.UNAVAILABLE
    window_minutes = (window_end - window_start).total_seconds() / _SECONDS_PER_MINUTE
    if window_minutes > terms.max_off_minutes:
        return Ineligible.WINDOW_TOO_LONG
    if overlaps_off_limits(terms, window_start, window_end, tz):
        return Ineligible.OFF_LIMITS
    if price is not None and terms.min_price > price:
        return Ineligible.PRICE_TOO_LOW
    return None


def eligible_loads(
    loads: Iterable[LoadConfig],
    *,
    window_start: datetime,
    window_end: datetime,
    price: float,
    tz: tzinfo,
    is_available: AvailabilityFn,
) -> list[LoadConfig]:
    """Return the loads whose terms allow shedding them in this window at this price."""
    return [
        load
        for load in loads
        if ineligible_reason(
            load,
            window_start=window_start,
            window_end=window_end,
            tz=tz,
            available=is_available(load),
            price=price,
        )
        is None
    ]


def _step_order(load: LoadConfig) -> tuple[float, float, str]:
    return (load.terms.min_price, -load.rated_kw, load.load_id)


def build_steps(
    loads: Iterable[LoadConfig],
    *,
    window_start: datetime,
    window_end: datetime,
    price_cap: float,
    tz: tzinfo,
    is_available: AvailabilityFn,
    max_steps: int = MAX_STEPS_PER_BID,
) -> list[BidStep]:
    """Return the bid step curve for an offer (empty when no load may bid)."""
    candidates = sorted(
        (
            load
            for load in eligible_loads(
                loads,
                window_start=window_start,
                window_end=window_end,
                price=price_cap,
                tz=tz,
                is_available=is_available,
            )
            if load.rated_kw > 0
        ),
        key=_step_order,
    )
    steps = [
        BidStep(kw=load.rated_kw, price=load.terms.min_price, loads=[load.load_id])
        for load in candidates
    ]
    if len(steps) > max_steps:
        steps = [
            BidStep(
                kw=sum(step.kw for step in group_steps),
                price=price,
                loads=[load_id for step in group_steps for load_id in step.loads],
            )
            for price, group in groupby(steps, key=lambda step: step.price)
            if (group_steps := list(group))
        ][:max_steps]
    return steps


def bid_kw(steps: Iterable[BidStep]) -> float:
    """Return the kW of a whole curve."""
    return sum(step.kw for step in steps)


def loads_kw(loads: Mapping[str, LoadConfig], load_ids: Iterable[str]) -> float:
    """Return the rated kW of the given loads (unknown ids count zero)."""
    return sum(loads[load_id].rated_kw for load_id in load_ids if load_id in loads)
