"""Measurement & verification baselines: what each home would have drawn without the event.

Settlement pays a home for the energy it did *not* use, so it needs a counterfactual: the
baseline. This module computes it for a whole fleet at once, with numpy array operations only
(no Python loop over homes). ``docs/settlement.md`` ("Baselines") explains the methods with a
worked example; in short:

* **X-of-Y like-days** (the default): from the last ``Y`` valid days of the event's day type
  (weekdays for a weekday event, weekend days and holidays for a weekend event) pick the ``X``
  with the highest average load over the event window and average them interval by interval.
  Ties go to the more recent day. Presets: :attr:`BaselineMethod.RESIDENTIAL` (high 5 of 10
  weekdays / high 3 of 5 weekend days), :attr:`BaselineMethod.CAISO_10_OF_10` (10 of 10
  weekdays / 4 of 4 weekend days), fixed :attr:`~BaselineMethod.HIGH_5_OF_10` and
  :attr:`~BaselineMethod.HIGH_3_OF_5`, or any ``X``/``Y`` with :attr:`BaselineMethod.X_OF_Y`.
* **Day-of adjustment**: the X-of-Y baseline is multiplied by the ratio of the event day's
  actual average load to the baseline's average in an adjustment window before the event
  (default: the 3 hours ending 1 hour before the start), capped to ``[1 - cap, 1 + cap]``
  (default cap 20 %). No adjustment when the baseline there is ~0 kW or event-day data is missing.
* **Pre-event average** (fallback, or chosen outright): when fewer than ``X`` valid like-days
  exist, the baseline is flat at the event day's average load over the 2 hours ending 1 hour
  before the start. When that data is missing too, the home has **no baseline** (NaN) and is
  never paid by guesswork.

Inputs are interval power in kW on a fixed grid (default 15 min, 96 intervals a day). History
is ``(homes, days, intervals)``, oldest day first, the last day being the day before the event.
A day is valid when the caller's mask says so (not an event day, ...) and none of its intervals
is missing (NaN) or infinite. The result keeps the input's float dtype (pass float32 for large
fleets: half the memory, same answers to ~7 significant digits) and says, per home, which method
it got and why (:meth:`BaselineResult.reason`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]
"""An array of kW (float32 or float64)."""

MINUTES_PER_HOUR: Final = 60
MINUTES_PER_DAY: Final = 24 * MINUTES_PER_HOUR
SATURDAY: Final = 5
"""``date.weekday()`` of Saturday; Saturday and Sunday are weekend days."""

DEFAULT_INTERVAL_MINUTES: Final = 15
DEFAULT_ADJUSTMENT_CAP: Final = 0.20
"""The day-of adjustment factor is capped to ``[1 - cap, 1 + cap]``."""
DEFAULT_ADJUSTMENT_HOURS: Final = 3.0
"""Length of the day-of adjustment window."""
DEFAULT_ADJUSTMENT_GAP_HOURS: Final = 1.0
"""Hours between the end of the adjustment window and the event start (pre-cooling is excluded)."""
DEFAULT_FALLBACK_HOURS: Final = 2.0
"""Length of the pre-event averaging window used when history is too short."""
DEFAULT_FALLBACK_GAP_HOURS: Final = 1.0
"""Hours between the end of the pre-event averaging window and the event start."""

MIN_ADJUSTMENT_BASELINE_KW: Final = 1e-3
"""Below this average baseline (1 W) in the adjustment window the ratio is meaningless: no
adjustment is made."""

PERCENT: Final = 100.0
_NO_DAY: Final = -1
"""Filler in :attr:`BaselineResult.chosen_days` for homes that did not get an X-of-Y baseline."""


class DayType(StrEnum):
    """Which like-days a day belongs to."""

    WEEKDAY = "weekday"
    WEEKEND = "weekend"
    """Saturdays, Sundays and holidays."""

    @property
    def plural(self) -> str:
        """How the day type reads in reasons: "weekdays" or "weekend days"."""
        return "weekdays" if self is DayType.WEEKDAY else "weekend days"

    def describe_count(self, days: int) -> str:
        """Say how many days of this type there are: "1 weekday", "3 weekend days"."""
        if days == 1:
            return "1 weekday" if self is DayType.WEEKDAY else "1 weekend day"
        return f"{days} {self.plural}"


def day_type_of(day: date, holidays: Container[date] = frozenset()) -> DayType:
    """Return the day type of ``day``: weekend on Saturday, Sunday or a listed holiday."""
    if day.weekday() >= SATURDAY or day in holidays:
        return DayType.WEEKEND
    return DayType.WEEKDAY


class BaselineMethod(StrEnum):
    """The baseline a program or event asks for."""

    RESIDENTIAL = "residential"
    """High 5 of 10 weekdays for a weekday event, high 3 of 5 weekend days for a weekend event."""
    HIGH_5_OF_10 = "high_5_of_10"
    """High 5 of the last 10 like-days."""
    HIGH_3_OF_5 = "high_3_of_5"
    """High 3 of the last 5 like-days."""
    CAISO_10_OF_10 = "caiso_10_of_10"
    """CAISO style: 10 of 10 weekdays for a weekday event, 4 of 4 weekend days otherwise."""
    X_OF_Y = "x_of_y"
    """High X of the last Y like-days with ``BaselineConfig.x`` and ``BaselineConfig.y``."""
    PRE_EVENT_AVERAGE = "pre_event_average"
    """Always the flat pre-event average (no history needed)."""


_PRESETS: Final[dict[BaselineMethod, dict[DayType, tuple[int, int]]]] = {
    BaselineMethod.RESIDENTIAL: {DayType.WEEKDAY: (5, 10), DayType.WEEKEND: (3, 5)},
    BaselineMethod.HIGH_5_OF_10: {DayType.WEEKDAY: (5, 10), DayType.WEEKEND: (5, 10)},
    BaselineMethod.HIGH_3_OF_5: {DayType.WEEKDAY: (3, 5), DayType.WEEKEND: (3, 5)},
    BaselineMethod.CAISO_10_OF_10: {DayType.WEEKDAY: (10, 10), DayType.WEEKEND: (4, 4)},
}
"""(X, Y) of each preset by the event's day type."""


class BaselineOutcome(StrEnum):
    """Which baseline a home actually got."""

    X_OF_Y = "x_of_y"
    PRE_EVENT_AVERAGE = "pre_event_average"
    NO_BASELINE = "no_baseline"
    COMPARISON_GROUP = "comparison_group"
    """Too little data of its own: similar homes' baselines, scaled to its size
    (:mod:`aggregator.settlement.fallback`)."""


class AdjustmentStatus(StrEnum):
    """What happened to a home's day-of adjustment."""

    APPLIED = "applied"
    CAPPED = "capped"
    DISABLED = "disabled"
    """The configuration turned the adjustment off."""
    NOT_APPLICABLE = "not_applicable"
    """The home has no X-of-Y baseline (pre-event average or none)."""
    OUTSIDE_DAY = "outside_day"
    """The adjustment window lies entirely before midnight of the event day."""
    MISSING_DATA = "missing_data"
    """Event-day data is missing in the adjustment window."""
    ZERO_BASELINE = "zero_baseline"
    """The baseline averages ~0 kW in the adjustment window."""


_OUTCOMES: Final = tuple(BaselineOutcome)
_ADJUSTMENTS: Final = tuple(AdjustmentStatus)


def _code[E: StrEnum](members: tuple[E, ...], member: E) -> np.int8:
    """Return the int8 code of ``member`` (its position in ``members``)."""
    return np.int8(members.index(member))


@dataclass(frozen=True, slots=True)
class LikeDaysRule:
    """A resolved X-of-Y rule: the ``x`` highest of the last ``y`` valid ``day_type`` days."""

    x: int
    y: int
    day_type: DayType

    def label(self, available: int | None = None) -> str:
        """Describe the rule, e.g. "high-5-of-10 weekdays", for ``available`` days if fewer."""
        y = self.y if available is None else min(available, self.y)
        prefix = "" if self.x == y else "high-"
        text = f"{prefix}{self.x}-of-{y} {self.day_type.plural}"
        if y < self.y:
            text += f" (only {y} valid of {self.y} wanted)"
        return text


@dataclass(frozen=True, slots=True)
class EventWindow:
    """The event's intervals on the event day: ``start`` included, ``end`` excluded."""

    start: int
    end: int

    def __post_init__(self) -> None:
        """Reject an empty or negative window."""
        if self.start < 0 or self.end <= self.start:
            raise ValueError(
                f"event window must satisfy 0 <= start < end, got [{self.start}, {self.end})"
            )

    @property
    def length(self) -> int:
        """Number of intervals in the window."""
        return self.end - self.start

    @property
    def slice(self) -> slice:
        """The window as a slice over the interval axis."""
        return slice(self.start, self.end)


def _check_hours(name: str, hours: float, interval_minutes: int, *, positive: bool) -> None:
    """Raise ValueError unless ``hours`` is a whole number of intervals (and > 0 if asked)."""
    minutes = hours * MINUTES_PER_HOUR
    if hours < 0 or (positive and hours == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {hours}")
    if not float(minutes / interval_minutes).is_integer():
        raise ValueError(
            f"{name} ({hours} h) must be a whole number of {interval_minutes}-minute intervals"
        )


@dataclass(frozen=True, slots=True)
class BaselineConfig:
    """How baselines are computed for one event (usually set per program)."""

    method: BaselineMethod = BaselineMethod.RESIDENTIAL
    x: int | None = None
    """X of a custom :attr:`BaselineMethod.X_OF_Y` rule (only with that method)."""
    y: int | None = None
    """Y of a custom :attr:`BaselineMethod.X_OF_Y` rule (only with that method)."""
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES
    adjust: bool = True
    """Apply the day-of adjustment to X-of-Y baselines."""
    adjustment_cap: float = DEFAULT_ADJUSTMENT_CAP
    adjustment_hours: float = DEFAULT_ADJUSTMENT_HOURS
    adjustment_gap_hours: float = DEFAULT_ADJUSTMENT_GAP_HOURS
    fallback_hours: float = DEFAULT_FALLBACK_HOURS
    fallback_gap_hours: float = DEFAULT_FALLBACK_GAP_HOURS

    def __post_init__(self) -> None:
        """Validate the configuration; raise ValueError with the reason."""
        if self.interval_minutes <= 0 or MINUTES_PER_DAY % self.interval_minutes:
            raise ValueError(
                f"interval_minutes must divide a day ({MINUTES_PER_DAY} min), "
                f"got {self.interval_minutes}"
            )
        if self.method is BaselineMethod.X_OF_Y:
            if self.x is None or self.y is None:
                raise ValueError("method x_of_y needs both x and y")
            if not 1 <= self.x <= self.y:
                raise ValueError(f"x_of_y needs 1 <= x <= y, got x={self.x}, y={self.y}")
        elif self.x is not None or self.y is not None:
            raise ValueError(f"x and y are only used with method x_of_y, not {self.method}")
        if not 0 <= self.adjustment_cap < 1:
            raise ValueError(f"adjustment_cap must be in [0, 1), got {self.adjustment_cap}")
        minutes = self.interval_minutes
        _check_hours("adjustment_hours", self.adjustment_hours, minutes, positive=True)
        _check_hours("adjustment_gap_hours", self.adjustment_gap_hours, minutes, positive=False)
        _check_hours("fallback_hours", self.fallback_hours, minutes, positive=True)
        _check_hours("fallback_gap_hours", self.fallback_gap_hours, minutes, positive=False)

    @property
    def intervals_per_day(self) -> int:
        """Number of intervals in a day on this grid (96 for 15 minutes)."""
        return MINUTES_PER_DAY // self.interval_minutes

    @property
    def interval_hours(self) -> float:
        """Length of one interval in hours (0.25 for 15 minutes)."""
        return self.interval_minutes / MINUTES_PER_HOUR

    def intervals(self, hours: float) -> int:
        """Return ``hours`` as a whole number of intervals."""
        return round(hours * MINUTES_PER_HOUR / self.interval_minutes)

    def rule_for(self, event_day_type: DayType) -> LikeDaysRule | None:
        """Return the X-of-Y rule for an event on ``event_day_type``; None for pre-event average."""
        if self.method is BaselineMethod.PRE_EVENT_AVERAGE:
            return None
        if self.method is BaselineMethod.X_OF_Y:
            if self.x is None or self.y is None:  # pragma: no cover - __post_init__ checks it
                raise ValueError("method x_of_y needs both x and y")
            return LikeDaysRule(self.x, self.y, event_day_type)
        x, y = _PRESETS[self.method][event_day_type]
        return LikeDaysRule(x, y, event_day_type)

    def before_start(self, window: EventWindow, hours: float, gap_hours: float) -> slice:
        """Return the ``hours`` ending ``gap_hours`` before the event start, clipped at midnight."""
        stop = max(window.start - self.intervals(gap_hours), 0)
        start = max(window.start - self.intervals(gap_hours + hours), 0)
        return slice(start, stop)

    def fallback_description(self) -> str:
        """Describe the pre-event window, e.g. "2 h ending 1 h before start"."""
        return f"{self.fallback_hours:g} h ending {self.fallback_gap_hours:g} h before start"


DEFAULT_CONFIG: Final = BaselineConfig()


@dataclass(frozen=True, slots=True, eq=False)
class BaselineResult:
    """Baselines of every home for one event, column by column (index = home).

    ``baseline_kw`` covers the event window only, shape ``(homes, window.length)``; it is NaN
    for homes with :attr:`BaselineOutcome.NO_BASELINE`. Codes index :class:`BaselineOutcome`
    and :class:`AdjustmentStatus` in declaration order; use :meth:`outcome` and
    :meth:`adjustment` rather than the raw codes.
    """

    config: BaselineConfig
    window: EventWindow
    event_day_type: DayType
    rule: LikeDaysRule | None
    """The X-of-Y rule tried first; None when the method is the pre-event average."""
    baseline_kw: FloatArray
    outcome_codes: npt.NDArray[np.int8]
    valid_like_days: npt.NDArray[np.int32]
    """Valid like-days each home had in the whole history given (not capped at Y)."""
    chosen_days: npt.NDArray[np.int16]
    """Day indices (into the history's day axis) averaged for each home, shape ``(homes, X)``;
    -1 for homes without an X-of-Y baseline."""
    adjustment_codes: npt.NDArray[np.int8]
    adjustment_factor: npt.NDArray[np.float64]
    """The factor applied (1.0 when there was no adjustment)."""
    raw_adjustment_factor: npt.NDArray[np.float64]
    """The ratio before capping; NaN when it could not be computed."""
    pre_event_missing: npt.NDArray[np.int32]
    """Missing event-day intervals in the pre-event averaging window."""
    pre_event_intervals: int
    """Intervals in the pre-event averaging window (0 when it lies before midnight)."""
    comparison: ComparisonGroups | None = None
    """Which comparison group each :attr:`BaselineOutcome.COMPARISON_GROUP` home got."""

    @property
    def homes(self) -> int:
        """Number of homes."""
        return int(self.outcome_codes.shape[0])

    def outcome(self, home: int) -> BaselineOutcome:
        """Return which baseline ``home`` got."""
        return _OUTCOMES[int(self.outcome_codes[home])]

    def adjustment(self, home: int) -> AdjustmentStatus:
        """Return what happened to ``home``'s day-of adjustment."""
        return _ADJUSTMENTS[int(self.adjustment_codes[home])]

    def reason(self, home: int) -> str:
        """Say which method ``home`` got and why ("high-5-of-10 weekdays, adjustment +12.0%")."""
        return self.subset(np.array([home]), self.window).reasons()[0]

    def reasons(self) -> list[str]:
        """Return :meth:`reason` for every home, in order (fast for large fleets)."""
        columns = zip(
            self.outcome_codes.tolist(),
            self.adjustment_codes.tolist(),
            self.valid_like_days.tolist(),
            self.adjustment_factor.tolist(),
            self.raw_adjustment_factor.tolist(),
            self.pre_event_missing.tolist(),
            strict=True,
        )
        texts = [self._reason(_HomeFacts._make(row)) for row in columns]
        if self.comparison is not None:
            for home in np.flatnonzero(self.comparison.group >= 0).tolist():
                texts[home] = self.comparison.reason(home, texts[home])
        return texts

    def subset(self, homes: npt.NDArray[np.intp], window: EventWindow) -> BaselineResult:
        """Return the result of the ``homes`` rows over ``window`` (a part of this window)."""
        if window.start < self.window.start or window.end > self.window.end:
            raise ValueError(f"window {window} is not inside {self.window}")
        columns = slice(window.start - self.window.start, window.end - self.window.start)
        return dataclasses.replace(
            self,
            window=window,
            baseline_kw=self.baseline_kw[homes, columns],
            outcome_codes=self.outcome_codes[homes],
            valid_like_days=self.valid_like_days[homes],
            chosen_days=self.chosen_days[homes],
            adjustment_codes=self.adjustment_codes[homes],
            adjustment_factor=self.adjustment_factor[homes],
            raw_adjustment_factor=self.raw_adjustment_factor[homes],
            pre_event_missing=self.pre_event_missing[homes],
            comparison=None if self.comparison is None else self.comparison.subset(homes),
        )

    def _reason(self, facts: _HomeFacts) -> str:
        """Build the reason text of one home from its facts."""
        outcome = _OUTCOMES[facts.outcome_code]
        if outcome is BaselineOutcome.COMPARISON_GROUP:
            outcome = BaselineOutcome.NO_BASELINE  # its own data: why it needed a group
        if outcome is BaselineOutcome.X_OF_Y and self.rule is not None:
            label = _rule_label(self.rule, facts.valid_like_days)
            return f"{label}, {_adjustment_text(facts)}"
        history_text = ""
        if self.rule is not None:
            days = self.rule.day_type.describe_count(facts.valid_like_days)
            history_text = f"only {days} valid of {self.rule.x} needed"
        if outcome is BaselineOutcome.PRE_EVENT_AVERAGE:
            text = f"pre-event average ({self.config.fallback_description()})"
            return f"{text}: {history_text}" if history_text else text
        if self.pre_event_intervals == 0:
            data_text = "the pre-event window lies before midnight"
        else:
            data_text = (
                f"{facts.pre_event_missing} of {self.pre_event_intervals} "
                "pre-event intervals missing"
            )
        if history_text:
            return f"no baseline: {history_text} and {data_text}"
        return f"no baseline: {data_text}"


@dataclass(frozen=True, slots=True, eq=False)
class ComparisonGroups:
    """The comparison groups that gave homes without data of their own a baseline."""

    group: npt.NDArray[np.int32]
    """Per home: its group's index in :attr:`labels`, or -1 when it got no group baseline."""
    labels: tuple[str, ...]
    """What the homes of each group have in common, e.g. "water heater + EV charger"."""
    members: tuple[int, ...]
    """How many homes each group's baseline was taken from."""
    scale_kw: npt.NDArray[np.float64]
    """Per home: the declared kW the group's per-kW baseline was scaled to."""

    def subset(self, homes: npt.NDArray[np.intp]) -> ComparisonGroups:
        """Return the rows of ``homes``."""
        return dataclasses.replace(self, group=self.group[homes], scale_kw=self.scale_kw[homes])

    def reason(self, home: int, own_data: str) -> str:
        """Say which group ``home`` was compared with, and why (``own_data``: its own lack)."""
        group = int(self.group[home])
        why = own_data.removeprefix("no baseline: ")
        return (
            f"comparison group: median of {self.members[group]} similar homes "
            f"({self.labels[group]}) per declared kW, scaled to "
            f"{float(self.scale_kw[home]):g} kW; own data: {why}"
        )


class _HomeFacts(NamedTuple):
    """One home's result columns as Python scalars (for building its reason)."""

    outcome_code: int
    adjustment_code: int
    valid_like_days: int
    factor: float
    raw_factor: float
    pre_event_missing: int


@functools.cache
def _rule_label(rule: LikeDaysRule, available: int) -> str:
    """Return ``rule.label(available)`` (cached: few distinct values in a fleet)."""
    return rule.label(available)


_FIXED_ADJUSTMENT_TEXTS: Final = {
    AdjustmentStatus.DISABLED: "no day-of adjustment (disabled)",
    AdjustmentStatus.NOT_APPLICABLE: "no day-of adjustment",
    AdjustmentStatus.OUTSIDE_DAY: "no day-of adjustment (window before midnight)",
    AdjustmentStatus.MISSING_DATA: "no day-of adjustment (event-day data missing)",
    AdjustmentStatus.ZERO_BASELINE: "no day-of adjustment (baseline ~0 kW in window)",
}


def _adjustment_text(facts: _HomeFacts) -> str:
    """Describe a home's day-of adjustment, e.g. "adjustment +20.0% (capped from +31.4%)"."""
    status = _ADJUSTMENTS[facts.adjustment_code]
    fixed = _FIXED_ADJUSTMENT_TEXTS.get(status)
    if fixed is not None:
        return fixed
    text = f"adjustment {(facts.factor - 1.0) * PERCENT:+.1f}%"
    if status is AdjustmentStatus.CAPPED:
        text += f" (capped from {(facts.raw_factor - 1.0) * PERCENT:+.1f}%)"
    return text


def _float_array(name: str, values: npt.ArrayLike, ndim: int) -> FloatArray:
    """Return ``values`` as a float array with ``ndim`` dimensions (no copy if already float)."""
    array = np.asarray(values)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if array.dtype.kind == "f":
        return array
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array.astype(np.float64)


def _valid_mask(valid_days: npt.ArrayLike, homes: int, days: int) -> npt.NDArray[np.bool_]:
    """Return the caller's validity mask broadcast to ``(homes, days)``."""
    mask = np.asarray(valid_days)
    if mask.dtype != np.bool_:
        raise ValueError(f"valid_days must be a boolean array, got dtype {mask.dtype}")
    if mask.shape not in {(days,), (homes, days)}:
        raise ValueError(
            f"valid_days must have shape ({days},) or ({homes}, {days}), got {mask.shape}"
        )
    return np.broadcast_to(mask, (homes, days))


def _pre_event_average(
    event_day: FloatArray, columns: slice
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]:
    """Mean event-day kW over ``columns`` (NaN if any is missing) and the missing counts."""
    data = event_day[:, columns]
    missing = np.count_nonzero(~np.isfinite(data), axis=1).astype(np.int32)
    if data.shape[1] == 0:
        return np.full(event_day.shape[0], np.nan), missing
    mean = data.mean(axis=1, dtype=np.float64)
    mean[missing > 0] = np.nan
    return mean, missing


def _top_days(
    history: FloatArray, eligible: npt.NDArray[np.bool_], rule: LikeDaysRule, window: EventWindow
) -> npt.NDArray[np.intp]:
    """Return the ``rule.x`` highest-load days among each home's last ``rule.y`` eligible days.

    Rows with fewer than ``x`` eligible days get filler indices; the caller discards them.
    """
    days = history.shape[1]
    newest_first = eligible[:, ::-1]
    recency_rank = np.cumsum(newest_first, axis=1, dtype=np.int32)
    candidate = newest_first & (recency_rank <= rule.y)
    score = history[:, ::-1, window.slice].mean(axis=2, dtype=np.float64)
    score = np.where(candidate, score, -np.inf)
    # A stable sort of the newest-first scores breaks ties in favour of the more recent day.
    order = np.argsort(-score, axis=1, kind="stable")[:, : rule.x]
    top: npt.NDArray[np.intp] = (days - 1) - order
    return top


def _mean_of_days(history: FloatArray, days: npt.NDArray[np.intp], columns: slice) -> FloatArray:
    """Interval-by-interval mean of ``history[home, days[home, k], columns]`` over ``k``."""
    rows = np.arange(history.shape[0])
    total = history[rows, days[:, 0], columns].copy()
    for k in range(1, days.shape[1]):  # loops over X (<= a few), never over homes
        total += history[rows, days[:, k], columns]
    total *= total.dtype.type(1.0 / days.shape[1])
    return total


def _day_of_adjustment(
    config: BaselineConfig,
    baseline_adj: FloatArray,
    actual_adj: FloatArray,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Status codes, applied factors and raw factors from the adjustment-window columns."""
    homes = baseline_adj.shape[0]
    base = baseline_adj.mean(axis=1, dtype=np.float64)
    actual = actual_adj.mean(axis=1, dtype=np.float64)
    usable_base = base >= MIN_ADJUSTMENT_BASELINE_KW
    usable = usable_base & np.isfinite(actual)
    raw = np.full(homes, np.nan)
    np.divide(actual, base, out=raw, where=usable)
    low, high = 1.0 - config.adjustment_cap, 1.0 + config.adjustment_cap
    factor = np.where(usable, np.clip(raw, low, high), 1.0)
    capped = usable & ((raw < low) | (raw > high))
    codes = np.full(homes, _code(_ADJUSTMENTS, AdjustmentStatus.APPLIED), dtype=np.int8)
    codes[capped] = _code(_ADJUSTMENTS, AdjustmentStatus.CAPPED)
    codes[~usable_base] = _code(_ADJUSTMENTS, AdjustmentStatus.ZERO_BASELINE)
    codes[usable_base & ~np.isfinite(actual)] = _code(_ADJUSTMENTS, AdjustmentStatus.MISSING_DATA)
    return codes, factor, raw


@dataclass(frozen=True, slots=True, eq=False)
class _XOfY:
    """The X-of-Y part of a result, for every home (used for homes with enough like-days)."""

    baseline_kw: FloatArray
    chosen_days: npt.NDArray[np.intp]
    adjustment_codes: npt.NDArray[np.int8]
    adjustment_factor: npt.NDArray[np.float64]
    raw_adjustment_factor: npt.NDArray[np.float64]


def _eligible_days(
    history: FloatArray,
    valid: npt.NDArray[np.bool_],
    history_day_types: Sequence[DayType],
    rule: LikeDaysRule | None,
) -> npt.NDArray[np.bool_]:
    """Return ``(homes, days)``: valid, complete like-days (none without a rule)."""
    if rule is None:
        return np.zeros(valid.shape, dtype=bool)
    like = np.array([day_type is rule.day_type for day_type in history_day_types], dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        complete = np.isfinite(history.sum(axis=2))
    eligible: npt.NDArray[np.bool_] = valid & complete & like
    return eligible


def _no_adjustment(
    homes: int, status: AdjustmentStatus
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Codes and factors for homes that all get no adjustment for the same ``status``."""
    codes = np.full(homes, _code(_ADJUSTMENTS, status), dtype=np.int8)
    return codes, np.ones(homes), np.full(homes, np.nan)


def _x_of_y(
    history: FloatArray,
    eligible: npt.NDArray[np.bool_],
    event_day: FloatArray,
    *,
    window: EventWindow,
    rule: LikeDaysRule,
    config: BaselineConfig,
) -> _XOfY:
    """Compute the adjusted X-of-Y baseline of every home from its ``eligible`` days.

    The history must hold at least ``rule.x`` days; rows of homes with fewer than ``rule.x``
    eligible days hold meaningless numbers, which the caller discards.
    """
    homes = history.shape[0]
    top = _top_days(history, eligible, rule, window)
    adj_columns = config.before_start(window, config.adjustment_hours, config.adjustment_gap_hours)
    span = slice(min(adj_columns.start, window.start), window.end)
    with np.errstate(invalid="ignore", over="ignore"):  # rows without history may hold NaN
        mean_kw = _mean_of_days(history, top, span)
    if not config.adjust:
        codes, factor, raw = _no_adjustment(homes, AdjustmentStatus.DISABLED)
    elif adj_columns.stop <= adj_columns.start:
        codes, factor, raw = _no_adjustment(homes, AdjustmentStatus.OUTSIDE_DAY)
    else:
        adj_in_span = slice(adj_columns.start - span.start, adj_columns.stop - span.start)
        codes, factor, raw = _day_of_adjustment(
            config, mean_kw[:, adj_in_span], event_day[:, adj_columns]
        )
    baseline = mean_kw[:, window.start - span.start :]
    baseline *= factor.astype(baseline.dtype)[:, None]
    return _XOfY(
        baseline_kw=baseline,
        chosen_days=top,
        adjustment_codes=codes,
        adjustment_factor=factor,
        raw_adjustment_factor=raw,
    )


def _check_inputs(
    history: FloatArray,
    event_day: FloatArray,
    history_day_types: Sequence[DayType],
    window: EventWindow,
    config: BaselineConfig,
    *,
    whole_days: bool,
) -> None:
    """Raise ValueError unless the arrays, day types and window fit together and the grid."""
    homes, days, intervals = history.shape
    if whole_days and intervals != config.intervals_per_day:
        raise ValueError(
            f"history_kw has {intervals} intervals a day, the {config.interval_minutes}-minute "
            f"grid has {config.intervals_per_day}"
        )
    if event_day.shape != (homes, intervals):
        raise ValueError(
            f"event_day_kw must have shape ({homes}, {intervals}), got {event_day.shape}"
        )
    if window.end > intervals:
        raise ValueError(f"event window ends at {window.end}, after the day's {intervals}")
    if len(history_day_types) != days:
        raise ValueError(f"history_day_types has {len(history_day_types)} days, expected {days}")


def compute_baselines(
    history_kw: npt.ArrayLike,
    *,
    valid_days: npt.ArrayLike,
    history_day_types: Sequence[DayType],
    event_day_type: DayType,
    event_day_kw: npt.ArrayLike,
    window: EventWindow,
    config: BaselineConfig = DEFAULT_CONFIG,
    whole_days: bool = True,
) -> BaselineResult:
    """Compute every home's baseline over the event window.

    Args:
        history_kw: ``(homes, days, intervals)`` kW before the event day, oldest day first.
        valid_days: ``(days,)`` or ``(homes, days)`` booleans: False for event days and other
            days the program excludes. Days with any NaN/inf interval are excluded anyway.
        history_day_types: the :class:`DayType` of each history day.
        event_day_type: the :class:`DayType` of the event day.
        event_day_kw: ``(homes, intervals)`` measured kW on the event day, NaN where unknown;
            only the intervals before the event are read here.
        window: the event's intervals.
        config: method, adjustment and fallback settings.
        whole_days: True when each row is a whole day (``config.intervals_per_day``
            intervals from midnight); False when rows are *spans*: the same stretch of local
            time on each day, long enough to hold the window and the pre-event windows before
            it (:mod:`aggregator.settlement.grid`), which may cross midnight.

    Raises:
        ValueError: when shapes, dtypes or the window do not fit the configured grid.

    """
    history = _float_array("history_kw", history_kw, ndim=3)
    event_day = _float_array("event_day_kw", event_day_kw, ndim=2)
    _check_inputs(history, event_day, history_day_types, window, config, whole_days=whole_days)
    homes, days, _ = history.shape
    valid = _valid_mask(valid_days, homes, days)
    rule = config.rule_for(event_day_type)

    fallback_columns = config.before_start(window, config.fallback_hours, config.fallback_gap_hours)
    fallback_kw, fallback_missing = _pre_event_average(event_day, fallback_columns)
    outcome = np.where(
        np.isfinite(fallback_kw),
        _code(_OUTCOMES, BaselineOutcome.PRE_EVENT_AVERAGE),
        _code(_OUTCOMES, BaselineOutcome.NO_BASELINE),
    ).astype(np.int8)
    adjustment_codes, factor, raw_factor = _no_adjustment(homes, AdjustmentStatus.NOT_APPLICABLE)
    baseline = np.empty((homes, window.length), dtype=history.dtype)
    baseline[:] = fallback_kw[:, None]
    chosen = np.full((homes, rule.x if rule else 0), _NO_DAY, dtype=np.int16)
    eligible = _eligible_days(history, valid, history_day_types, rule)
    valid_like = np.count_nonzero(eligible, axis=1).astype(np.int32)
    use = valid_like >= (rule.x if rule else 1)
    if rule is not None and use.any():
        part = _x_of_y(history, eligible, event_day, window=window, rule=rule, config=config)
        baseline[use] = part.baseline_kw[use]
        outcome[use] = _code(_OUTCOMES, BaselineOutcome.X_OF_Y)
        adjustment_codes[use] = part.adjustment_codes[use]
        factor[use] = part.adjustment_factor[use]
        raw_factor[use] = part.raw_adjustment_factor[use]
        chosen[use] = part.chosen_days[use]

    return BaselineResult(
        config=config,
        window=window,
        event_day_type=event_day_type,
        rule=rule,
        baseline_kw=baseline,
        outcome_codes=outcome,
        valid_like_days=valid_like,
        chosen_days=chosen,
        adjustment_codes=adjustment_codes,
        adjustment_factor=factor,
        raw_adjustment_factor=raw_factor,
        pre_event_missing=fallback_missing,
        pre_event_intervals=fallback_columns.stop - fallback_columns.start,
    )
