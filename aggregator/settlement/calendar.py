"""The program's calendar: its time zone, its holidays, and what kind of day a date is.

Settlement compares an event with earlier *like-days* of the same kind, so it needs to know
which local day a moment belongs to and whether that day is a weekday, a weekend day or a
holiday. Programs are local: a Chilean program's evening peak crosses midnight UTC, so days are
counted in the program's IANA time zone (``zoneinfo``; the ``tzdata`` package supplies the
database where the system has none). Public holidays come from the ``holidays`` library (a
well-kept, per-country and per-subdivision calendar) and count as weekend days, so they are
never like-days of a weekday event (``docs/settlement.md``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import holidays

from aggregator.settlement.baselines import DayType, day_type_of

DEFAULT_TIMEZONE: Final = "UTC"
MAX_NAME_LENGTH: Final = 64


class CalendarError(ValueError):
    """A time zone, country or subdivision that does not exist; the message says which."""


@functools.cache
def _zone(name: str) -> ZoneInfo:
    """Return the time zone called ``name`` (cached: ZoneInfo reads a file)."""
    if not name or len(name) > MAX_NAME_LENGTH:
        raise CalendarError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        hint = "an IANA name such as America/Santiago or Europe/Madrid"
        raise CalendarError(f"unknown time zone {name!r} ({hint})") from err


@functools.cache
def _holiday_calendar(country: str, subdivision: str | None) -> holidays.HolidayBase:
    """Return the holiday calendar of ``country`` (ISO 3166-1 alpha-2) and ``subdivision``."""
    supported = holidays.list_supported_countries()
    if country not in supported:
        raise CalendarError(f"no holiday calendar for country {country!r} (ISO 3166-1 alpha-2)")
    if subdivision is not None and subdivision not in supported[country]:
        raise CalendarError(f"country {country} has no subdivision {subdivision!r}")
    return holidays.country_holidays(country, subdiv=subdivision)


def known_timezones() -> frozenset[str]:
    """Return every IANA time zone name this system knows."""
    return frozenset(available_timezones())


@dataclass(frozen=True, slots=True)
class ProgramCalendar:
    """Where a program's days start and end, and which of them are holidays."""

    timezone: str = DEFAULT_TIMEZONE
    """IANA name, e.g. ``America/Santiago``."""
    holiday_country: str | None = None
    """ISO 3166-1 alpha-2 code (``CL``, ``US``, ``ES``); None: no holidays."""
    holiday_subdivision: str | None = None
    """A subdivision of the country as the ``holidays`` library names it (``CA``, ``MD``)."""

    def __post_init__(self) -> None:
        """Refuse unknown zones, countries and subdivisions (CalendarError)."""
        _zone(self.timezone)
        if self.holiday_country is not None:
            _holiday_calendar(self.holiday_country, self.holiday_subdivision)
        elif self.holiday_subdivision is not None:
            raise CalendarError("a holiday subdivision needs a holiday country")

    @property
    def zone(self) -> tzinfo:
        """Return the program's time zone."""
        return _zone(self.timezone)

    def local(self, moment: datetime) -> datetime:
        """Return an aware ``moment`` as the program's local time."""
        return moment.astimezone(self.zone)

    def local_date(self, moment: datetime) -> date:
        """Return the program's local date of an aware ``moment``."""
        return self.local(moment).date()

    def holiday_name(self, day: date) -> str | None:
        """Return the name of the holiday on ``day``, or None."""
        if self.holiday_country is None:
            return None
        name = _holiday_calendar(self.holiday_country, self.holiday_subdivision).get(day)
        return None if name is None else str(name)

    def is_holiday(self, day: date) -> bool:
        """Return True when ``day`` is a public holiday of the program's country."""
        return self.holiday_name(day) is not None

    def day_type(self, day: date) -> DayType:
        """Return ``weekend`` for Saturdays, Sundays and holidays, else ``weekday``."""
        return DayType.WEEKEND if self.is_holiday(day) else day_type_of(day)

    def describe(self) -> str:
        """Say the calendar in words, e.g. "America/Santiago, holidays of CL"."""
        if self.holiday_country is None:
            return f"{self.timezone}, no holidays"
        where = self.holiday_country
        if self.holiday_subdivision:
            where += f"-{self.holiday_subdivision}"
        return f"{self.timezone}, holidays of {where}"
