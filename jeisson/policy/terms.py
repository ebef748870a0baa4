"""The homeowner's terms for one load, and whether they let it take part in an event."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Final

DEFAULT_MIN_PRICE: Final = 0.0
DEFAULT_MAX_OFF_MINUTES: Final = 120
_ONE_DAY: Final = timedelta(days=1)
_SECONDS_PER_MINUTE: Final = 60


@dataclass(frozen=True, kw_only=True, slots=True)
class Terms:
    """When the homeowner lets Jeisson act on a load."""

    min_price: float = DEFAULT_MIN_PRICE
    """Minimum price per kWh the homeowner asks to move this load (its first step)."""
    max_off_minutes: int = DEFAULT_MAX_OFF_MINUTES
    """Longest the load may be held in one event."""
    off_limits_start: time | None = None
    off_limits_end: time | None = None
    """Daily local hours when the load must not be touched (may wrap past midnight)."""
    never_curtail: bool = False
    ready_by: time | None = None
    """Daily local time the load must be free by (an EV's "charged by"): a window containing it
    is refused."""

    @property
    def has_off_limits(self) -> bool:
        """Return True when off-limits hours are set (both ends, different)."""
        return (
            self.off_limits_start is not None
            and self.off_limits_end is not None
            and self.off_limits_start != self.off_limits_end
        )


class Ineligible(StrEnum):
    """Why a load does not take part in an event."""

    NEVER_CURTAIL = "never_curtail"
    UNAVAILABLE = "unavailable"
    WINDOW_TOO_LONG = "window_too_long"
    OFF_LIMITS = "off_limits"
    PRICE_TOO_LOW = "price_too_low"
    READY_BY = "ready_by"


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


def contains_daily_time(moment: time, start: datetime, end: datetime, tz: tzinfo) -> bool:
    """Return True when the local time ``moment`` of some day falls in ``[start, end]``."""
    day = start.astimezone(tz).date()
    last_day = end.astimezone(tz).date()
    while day <= last_day:
        if start <= datetime.combine(day, moment, tzinfo=tz) <= end:
            return True
        day += _ONE_DAY
    return False


def _clock_reason(
    terms: Terms, window_start: datetime, window_end: datetime, tz: tzinfo
) -> Ineligible | None:
    """Return why the window clashes with the owner's daily times (None: it does not)."""
    if overlaps_off_limits(terms, window_start, window_end, tz):
        return Ineligible.OFF_LIMITS
    if terms.ready_by is not None and contains_daily_time(
        terms.ready_by, window_start, window_end, tz
    ):
        return Ineligible.READY_BY
    return None


def ineligible_reason(
    terms: Terms,
    *,
    window_start: datetime,
    window_end: datetime,
    tz: tzinfo,
    available: bool,
    price: float | None = None,
) -> Ineligible | None:
    """Return why a load on these ``terms`` may not take part in this window (None: it may).

    ``price`` is the price on offer: the cap of an offer, or the flat incentive of a direct award.
    """
    if terms.never_curtail:
        return Ineligible.NEVER_CURTAIL
    if not available:
        return Ineligible.UNAVAILABLE
    window_minutes = (window_end - window_start).total_seconds() / _SECONDS_PER_MINUTE
    if window_minutes > terms.max_off_minutes:
        return Ineligible.WINDOW_TOO_LONG
    if (clash := _clock_reason(terms, window_start, window_end, tz)) is not None:
        return clash
    if price is not None and terms.min_price > price:
        return Ineligible.PRICE_TOO_LOW
    return None
