"""The settlement grid: which absolute intervals make up an event's span and its like-day spans.

Settlement works on a fixed grid of ``interval_minutes`` (15) intervals counted from the Unix
epoch, so an interval is the same instant everywhere (every time zone in use today is offset
from UTC by a multiple of 15 minutes, so the grid is also the local quarter-hour grid).

An event (or a group of overlapping events) is settled over its **span**: the intervals from
the start of the pre-event windows (adjustment and fallback, 4 h by default) to the end of the
last event, on the event day. Each earlier day ``d`` contributes a like-day span: the same local
wall-clock times ``d`` days earlier, converted back to absolute intervals in the program's time
zone. On a day when the clocks change, a wall-clock time that does not exist (spring forward)
is read from the interval the clock jumped to, and one that happens twice (fall back) from its
first occurrence; on the event day itself every interval is a real, distinct instant (an event
across a clock change is settled over the intervals that really happened). Spans may cross
local and UTC midnight: an evening event in Santiago is one span, not two days.

:class:`SpanGrid` holds that layout; :func:`grid_samples` averages stored samples onto it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

from aggregator.settlement.baselines import BaselineConfig, DayType, EventWindow
from aggregator.settlement.calendar import ProgramCalendar

SECONDS_PER_MINUTE: Final = 60


class GridError(ValueError):
    """The span cannot be laid on the grid (e.g. a zone offset off the interval grid)."""


@dataclass(frozen=True, slots=True)
class WindowPart:
    """One event's part of a span: its intervals and how much of each it covers."""

    window: EventWindow
    """The event's intervals within the span (``start`` included, ``end`` excluded)."""
    coverage: npt.NDArray[np.float64]
    """``(window.length,)``: the fraction of each interval inside the event (0 < c <= 1)."""


@dataclass(frozen=True, slots=True, eq=False)
class SpanGrid:
    """The absolute intervals of an event span and of its like-day spans."""

    config: BaselineConfig
    start: datetime
    """The first event's start (the window may begin in the middle of an interval)."""
    end: datetime
    """The last event's end."""
    window: EventWindow
    """The events' intervals within the span (the lead intervals come first)."""
    event_date: date
    """The program's local date of ``start``: the event day whose like-days are compared."""
    event_day_type: DayType
    history_dates: tuple[date, ...]
    """The like-day candidates' local dates, oldest first."""
    history_day_types: tuple[DayType, ...]
    index: npt.NDArray[np.int64]
    """``(days + 1, span)`` absolute interval numbers: history rows oldest first, then the
    event day's row."""

    @property
    def seconds(self) -> int:
        """Return the interval length in seconds."""
        return self.config.interval_minutes * SECONDS_PER_MINUTE

    @property
    def history_days(self) -> int:
        """Return the number of like-day candidates."""
        return len(self.history_dates)

    @property
    def span(self) -> int:
        """Return the number of intervals in a span."""
        return int(self.index.shape[1])

    def interval_start(self, position: int) -> datetime:
        """Return the start (UTC) of the event day's span interval at ``position``."""
        return datetime.fromtimestamp(int(self.index[-1, position]) * self.seconds, UTC)

    def part(self, start: datetime, end: datetime) -> WindowPart:
        """Return the intervals of ``[start, end)`` (inside this span's window) and coverage."""
        seconds = self.seconds
        first_abs = int(self.index[-1, 0])
        first = math.floor(start.timestamp() / seconds) - first_abs
        last = math.ceil(end.timestamp() / seconds) - first_abs
        if first < self.window.start or last > self.window.end or last <= first:
            raise GridError(f"[{start}, {end}) lies outside the span's window")
        edges = (first_abs + np.arange(first, last + 1, dtype=np.float64)) * seconds
        lo = np.maximum(edges[:-1], start.timestamp())
        hi = np.minimum(edges[1:], end.timestamp())
        coverage = np.clip((hi - lo) / seconds, 0.0, 1.0)
        return WindowPart(EventWindow(first, last), coverage)

    def time_ranges(self) -> list[tuple[datetime, datetime]]:
        """Return the disjoint ``[start, end)`` time ranges covering every span (oldest first)."""
        seconds = self.seconds
        spans = sorted(
            (int(row.min()), int(row.max()) + 1) for row in self.index
        )  # DST may stretch or squeeze a row by an hour; min/max still bound it
        merged: list[list[int]] = []
        for first, stop in spans:
            if merged and first <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], stop)
            else:
                merged.append([first, stop])
        return [
            (datetime.fromtimestamp(a * seconds, UTC), datetime.fromtimestamp(b * seconds, UTC))
            for a, b in merged
        ]


def lead_intervals(config: BaselineConfig) -> int:
    """Return how many intervals before the start the pre-event windows reach."""
    return max(
        config.intervals(config.adjustment_hours + config.adjustment_gap_hours),
        config.intervals(config.fallback_hours + config.fallback_gap_hours),
    )


def lead_time(config: BaselineConfig) -> timedelta:
    """Return how far before an event's start its pre-event windows reach."""
    return timedelta(minutes=lead_intervals(config) * config.interval_minutes)


def _check_offset(moment: datetime, seconds: int) -> None:
    offset = moment.utcoffset()
    if offset is not None and offset.total_seconds() % seconds:
        raise GridError(
            f"the time zone's UTC offset {offset} is not a whole number of "
            f"{seconds // SECONDS_PER_MINUTE}-minute intervals"
        )


def span_grid(
    calendar: ProgramCalendar,
    start: datetime,
    end: datetime,
    config: BaselineConfig,
    history_days: int,
) -> SpanGrid:
    """Lay the span of events running ``[start, end)`` and its ``history_days`` like-days."""
    if end <= start:
        raise GridError("an event must end after it starts")
    seconds = config.interval_minutes * SECONDS_PER_MINUTE
    first_window = math.floor(start.timestamp() / seconds)
    stop_window = math.ceil(end.timestamp() / seconds)
    lead = lead_intervals(config)
    event_row = np.arange(first_window - lead, stop_window, dtype=np.int64)
    zone = calendar.zone
    walls = [datetime.fromtimestamp(int(k) * seconds, zone) for k in event_row]
    for wall in walls:
        _check_offset(wall, seconds)
    index = np.empty((history_days + 1, len(event_row)), dtype=np.int64)
    index[-1] = event_row
    for back in range(1, history_days + 1):
        row = index[history_days - back]
        for position, wall in enumerate(walls):
            earlier = (wall.replace(tzinfo=None) - timedelta(days=back)).replace(
                tzinfo=zone, fold=wall.fold
            )
            row[position] = math.floor(earlier.timestamp() / seconds)
    event_date = calendar.local_date(start)
    history_dates = tuple(event_date - timedelta(days=back) for back in range(history_days, 0, -1))
    return SpanGrid(
        config=config,
        start=start,
        end=end,
        window=EventWindow(lead, len(event_row)),
        event_date=event_date,
        event_day_type=calendar.day_type(event_date),
        history_dates=history_dates,
        history_day_types=tuple(calendar.day_type(day) for day in history_dates),
        index=index,
    )


@dataclass(frozen=True, slots=True, eq=False)
class GriddedSamples:
    """Samples averaged onto a span grid, per home."""

    power_kw: npt.NDArray[np.float32]
    """``(homes, days + 1, span)`` mean kW per interval (NaN: no sample)."""
    estimated: npt.NDArray[np.bool_]
    """``(homes, days + 1, span)``: True where any sample of the interval was an estimate."""


@dataclass(frozen=True, slots=True, eq=False)
class SampleColumns:
    """Stored samples as columns: home position, epoch seconds, kW, estimated flag."""

    homes: npt.NDArray[np.int64]
    stamps: npt.NDArray[np.float64]
    power_kw: npt.NDArray[np.float64]
    estimated: npt.NDArray[np.bool_]

    @classmethod
    def from_rows(
        cls, rows: Sequence[tuple[str, datetime, float, bool]], home_ids: Sequence[str]
    ) -> SampleColumns:
        """Build the columns from ``(home_id, ts, kW, estimated)`` rows."""
        index = {home_id: position for position, home_id in enumerate(home_ids)}
        count = len(rows)
        return cls(
            homes=np.fromiter((index[row[0]] for row in rows), dtype=np.int64, count=count),
            stamps=np.fromiter((row[1].timestamp() for row in rows), np.float64, count),
            power_kw=np.fromiter((row[2] for row in rows), dtype=np.float64, count=count),
            estimated=np.fromiter((row[3] for row in rows), dtype=bool, count=count),
        )


def _mean_per_slot(
    samples: SampleColumns, keep: npt.NDArray[np.bool_], flat: npt.NDArray[np.int64], size: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Mean kW and "any estimate" of the kept samples per flat (home, slot) position."""
    sums = np.bincount(flat, weights=samples.power_kw[keep], minlength=size)
    counts = np.bincount(flat, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
    guessed = np.bincount(flat, weights=samples.estimated[keep], minlength=size) > 0
    return mean, guessed


def grid_samples(grid: SpanGrid, home_count: int, samples: SampleColumns) -> GriddedSamples:
    """Average samples onto ``grid``'s rows (every span, history and event day).

    A sample counts in the interval it falls in; an interval's power is the mean of its
    samples. Rows that share an interval (spans longer than a day) read the same value.
    """
    unique, inverse = np.unique(grid.index, return_inverse=True)
    width = len(unique)
    slots = np.floor(samples.stamps / grid.seconds).astype(np.int64)
    position = np.searchsorted(unique, slots)
    keep = position < width
    keep[keep] = unique[position[keep]] == slots[keep]
    flat = samples.homes[keep] * width + position[keep]
    mean, guessed = _mean_per_slot(samples, keep, flat, home_count * width)
    shape = (home_count, *grid.index.shape)
    take = inverse.reshape(-1)
    return GriddedSamples(
        power_kw=mean.reshape(home_count, width)[:, take].reshape(shape),
        estimated=guessed.reshape(home_count, width)[:, take].reshape(shape),
    )


def grid_window_samples(
    grid: SpanGrid,
    windows: Sequence[tuple[datetime, datetime]],
    home_count: int,
    samples: SampleColumns,
) -> GriddedSamples:
    """Average the samples taken inside ``windows`` onto the event day's span intervals.

    Only samples inside an event count, so an interval the event covers in part is measured
    over that part. Returns ``(homes, span)`` arrays (the event day's row only).
    """
    keep = np.zeros(len(samples.stamps), dtype=bool)
    for start, end in windows:
        keep |= (samples.stamps >= start.timestamp()) & (samples.stamps < end.timestamp())
    span = grid.span
    slots = np.floor(samples.stamps / grid.seconds).astype(np.int64) - int(grid.index[-1, 0])
    keep &= (slots >= 0) & (slots < span)
    flat = samples.homes[keep] * span + slots[keep]
    mean, guessed = _mean_per_slot(samples, keep, flat, home_count * span)
    return GriddedSamples(
        power_kw=mean.reshape(home_count, span), estimated=guessed.reshape(home_count, span)
    )
