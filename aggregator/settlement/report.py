"""Settlement of a demand-response event: delivered energy and payment of every home.

For each home and event interval the delivered energy is the baseline minus the measured power,
floored at zero, times the interval length and the home's *weight* in that interval:
``max(0, baseline_kw - measured_kw) * hours * weight``. The weight is the part of the interval
the event covers (events off the 15-minute grid are pro-rated) times the home's share of the
interval when it was committed to several overlapping events at once
(:mod:`aggregator.settlement.attribution`), so an interval's shed is paid once. A home is paid
``paid kWh x its award price``, where the energy of intervals measured from estimates (a load
without a power sensor reporting its rated power) counts at the program's
``estimated_pay_ratio``. Nothing is paid by guesswork: a home without a baseline delivers 0 kWh,
and an interval without a measurement is credited 0 kWh (and counted as missing).

:func:`settle_event` turns a :class:`~aggregator.settlement.baselines.BaselineResult` plus
the measured window into an :class:`EventSettlement` report with per-home rows and event
totals, which serialises to JSON (:meth:`EventSettlement.to_json_dict`) and CSV
(:meth:`EventSettlement.write_csv`: a header, one row per home and a totals row).
``docs/settlement.md`` documents the numbers.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, NamedTuple, TextIO

import numpy as np
import numpy.typing as npt

from aggregator.settlement.baselines import BaselineMethod, BaselineOutcome, BaselineResult

DEFAULT_CURRENCY: Final = "EUR"
TOTALS_ROW_ID: Final = "TOTAL"
"""``home_id`` cell of the CSV totals row."""

CSV_COLUMNS: Final = (
    "home_id",
    "status",
    "baseline_outcome",
    "baseline_reason",
    "adjustment_factor",
    "price_per_kwh",
    "currency",
    "baseline_kwh",
    "measured_kwh",
    "delivered_kwh",
    "payment",
    "missing_intervals",
    "committed_kw",
    "data_quality",
    "estimated_intervals",
    "estimated_kwh",
    "paid_kwh",
)
"""Header of the CSV export, in column order."""

CSV_SIGNIFICANT_DIGITS: Final = 12
"""CSV numbers keep 12 significant digits (1.5 x 0.30 reads 0.45, not 0.44999999999999996);
the JSON export carries full double precision."""

_OUTCOMES: Final = tuple(BaselineOutcome)
"""Baseline outcomes by their code in :attr:`BaselineResult.outcome_codes`."""

_FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
"""Text cells starting with these are read as formulas by spreadsheets (CSV injection)."""


class DataQuality(StrEnum):
    """Whether a home's event measurements were metered or estimated."""

    MEASURED = "measured"
    """Every interval came from power sensors (or the home did not say: schema 1 homes)."""
    PARTLY_ESTIMATED = "partly_estimated"
    """Some intervals held an estimate (a load without a power sensor at its rated power)."""
    ESTIMATED = "estimated"
    """Every measured interval held an estimate."""


class SettlementStatus(StrEnum):
    """How completely a home could be settled."""

    SETTLED = "settled"
    """Baseline and every interval's measurement known."""
    INCOMPLETE_TELEMETRY = "incomplete_telemetry"
    """Some intervals had no measurement; they were credited 0 kWh."""
    NO_TELEMETRY = "no_telemetry"
    """No interval had a measurement; nothing is paid."""
    NO_BASELINE = "no_baseline"
    """No baseline could be computed; nothing is paid."""


def delivered_kwh(
    baseline_kw: npt.ArrayLike, measured_kw: npt.ArrayLike, interval_hours: float
) -> npt.NDArray[np.float64]:
    """Return ``max(0, baseline - measured) * interval_hours`` per interval (float64 kWh).

    Intervals where the baseline or the measurement is NaN (or infinite) deliver 0 kWh.
    """
    if not interval_hours > 0:
        raise ValueError(f"interval_hours must be > 0, got {interval_hours}")
    baseline = np.asarray(baseline_kw, dtype=np.float64)
    measured = np.asarray(measured_kw, dtype=np.float64)
    known = np.isfinite(baseline) & np.isfinite(measured)
    shed = np.zeros(np.broadcast_shapes(baseline.shape, measured.shape))
    np.subtract(baseline, measured, out=shed, where=known)
    result: npt.NDArray[np.float64] = np.maximum(shed, 0.0) * interval_hours
    return result


def _json_float(value: float) -> float | None:
    """Return ``value``, or None when it is NaN/infinite (JSON has no NaN)."""
    return value if math.isfinite(value) else None


def _json_floats(values: Sequence[float]) -> list[float | None]:
    """Return ``values`` with NaN/infinite entries replaced by None."""
    return [_json_float(value) for value in values]


def _csv_text(value: str) -> str:
    """Return a text cell that spreadsheets will not execute as a formula."""
    return f"'{value}" if value.startswith(_FORMULA_PREFIXES) else value


def _csv_number(value: float | None) -> str:
    """Return a number cell with :data:`CSV_SIGNIFICANT_DIGITS` digits, empty when unknown."""
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{CSV_SIGNIFICANT_DIGITS}g}"


class HomeSettlement(NamedTuple):
    """One home's settlement for one event (a named tuple: 100k of them are built quickly)."""

    home_id: str
    status: SettlementStatus
    baseline_outcome: BaselineOutcome
    baseline_reason: str
    adjustment_factor: float
    price_per_kwh: float
    baseline_kw: tuple[float, ...]
    """Baseline kW per event interval (NaN when there is no baseline)."""
    measured_kw: tuple[float, ...]
    """Measured kW per event interval (NaN where missing)."""
    delivered_kwh_by_interval: tuple[float, ...]
    baseline_kwh: float
    """Baseline energy over the window, weighted like the delivery (NaN without baseline)."""
    measured_kwh: float
    """Measured energy over the intervals that have a measurement, weighted likewise."""
    delivered_kwh: float
    payment: float
    missing_intervals: int
    committed_kw: float = 0.0
    """The kW the home committed to in the event (acknowledged awards)."""
    weight_by_interval: tuple[float, ...] = ()
    """Per interval: the part the event covers times the home's share (1.0: all of it)."""
    estimated_by_interval: tuple[bool, ...] = ()
    data_quality: DataQuality = DataQuality.MEASURED
    estimated_intervals: int = 0
    estimated_kwh: float = 0.0
    """Delivered energy of the estimated intervals (before the estimate discount)."""
    paid_kwh: float = 0.0
    """The energy paid: measured kWh plus estimated kWh times the program's ratio."""

    def to_json_dict(self) -> dict[str, Any]:
        """Return the row as JSON-ready data (unknown numbers become null)."""
        return {
            "home_id": self.home_id,
            "status": self.status.value,
            "baseline_outcome": self.baseline_outcome.value,
            "baseline_reason": self.baseline_reason,
            "adjustment_factor": self.adjustment_factor,
            "price_per_kwh": self.price_per_kwh,
            "committed_kw": self.committed_kw,
            "baseline_kw": _json_floats(self.baseline_kw),
            "measured_kw": _json_floats(self.measured_kw),
            "weight_by_interval": list(self.weight_by_interval),
            "estimated_by_interval": list(self.estimated_by_interval),
            "delivered_kwh_by_interval": list(self.delivered_kwh_by_interval),
            "baseline_kwh": _json_float(self.baseline_kwh),
            "measured_kwh": self.measured_kwh,
            "delivered_kwh": self.delivered_kwh,
            "data_quality": self.data_quality.value,
            "estimated_intervals": self.estimated_intervals,
            "estimated_kwh": self.estimated_kwh,
            "paid_kwh": self.paid_kwh,
            "payment": self.payment,
            "missing_intervals": self.missing_intervals,
        }

    def csv_row(self, currency: str) -> list[str]:
        """Return the row's CSV cells in :data:`CSV_COLUMNS` order."""
        return [
            _csv_text(self.home_id),
            self.status.value,
            self.baseline_outcome.value,
            _csv_text(self.baseline_reason),
            _csv_number(self.adjustment_factor),
            _csv_number(self.price_per_kwh),
            currency,
            _csv_number(self.baseline_kwh),
            _csv_number(self.measured_kwh),
            _csv_number(self.delivered_kwh),
            _csv_number(self.payment),
            str(self.missing_intervals),
            _csv_number(self.committed_kw),
            self.data_quality.value,
            str(self.estimated_intervals),
            _csv_number(self.estimated_kwh),
            _csv_number(self.paid_kwh),
        ]


@dataclass(frozen=True, slots=True)
class SettlementTotals:
    """Event totals over every home."""

    homes: int
    homes_paid: int
    """Homes with a payment above zero."""
    homes_without_baseline: int
    homes_with_missing_telemetry: int
    baseline_kwh: float
    """Sum over homes that have a baseline."""
    measured_kwh: float
    delivered_kwh: float
    payment: float
    delivered_kwh_by_interval: tuple[float, ...]
    """Fleet delivered energy per event interval."""
    estimated_kwh: float = 0.0
    paid_kwh: float = 0.0
    committed_kw: float = 0.0

    def to_json_dict(self) -> dict[str, Any]:
        """Return the totals as JSON-ready data."""
        return {
            "homes": self.homes,
            "homes_paid": self.homes_paid,
            "homes_without_baseline": self.homes_without_baseline,
            "homes_with_missing_telemetry": self.homes_with_missing_telemetry,
            "baseline_kwh": self.baseline_kwh,
            "measured_kwh": self.measured_kwh,
            "delivered_kwh": self.delivered_kwh,
            "payment": self.payment,
            "delivered_kwh_by_interval": list(self.delivered_kwh_by_interval),
            "estimated_kwh": self.estimated_kwh,
            "paid_kwh": self.paid_kwh,
            "committed_kw": self.committed_kw,
        }

    def csv_row(self, currency: str) -> list[str]:
        """Return the totals row's CSV cells in :data:`CSV_COLUMNS` order."""
        summary = (
            f"{self.homes} homes, {self.homes_paid} paid, "
            f"{self.homes_without_baseline} without baseline"
        )
        return [
            TOTALS_ROW_ID,
            "",
            "",
            summary,
            "",
            "",
            currency,
            _csv_number(self.baseline_kwh),
            _csv_number(self.measured_kwh),
            _csv_number(self.delivered_kwh),
            _csv_number(self.payment),
            "",
            _csv_number(self.committed_kw),
            "",
            "",
            _csv_number(self.estimated_kwh),
            _csv_number(self.paid_kwh),
        ]


@dataclass(frozen=True, slots=True)
class EventSettlement:
    """The settlement report of one event: a row per home and the totals."""

    event_id: str
    baseline_method: BaselineMethod
    currency: str
    interval_minutes: int
    window_start_interval: int
    """First event interval of the rows given (0 = a whole day's row starting at midnight)."""
    window_end_interval: int
    """First interval after the event."""
    homes: tuple[HomeSettlement, ...]
    totals: SettlementTotals
    interval_starts: tuple[str, ...] = ()
    """ISO 8601 UTC start of each event interval, when the caller knows the times."""
    estimated_pay_ratio: float = 1.0
    """What a kWh measured from estimates is paid, relative to a metered kWh."""

    def to_json_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data (for ``GET /api/v1/events/{id}/settlement``)."""
        return {
            "event_id": self.event_id,
            "baseline_method": self.baseline_method.value,
            "currency": self.currency,
            "interval_minutes": self.interval_minutes,
            "window_start_interval": self.window_start_interval,
            "window_end_interval": self.window_end_interval,
            "interval_starts": list(self.interval_starts),
            "estimated_pay_ratio": self.estimated_pay_ratio,
            "homes": [home.to_json_dict() for home in self.homes],
            "totals": self.totals.to_json_dict(),
        }

    def write_csv(self, stream: TextIO) -> None:
        """Write the header, one row per home and the totals row to ``stream``.

        Open files with ``newline=""`` (as the csv module requires).
        """
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(home.csv_row(self.currency) for home in self.homes)
        writer.writerow(self.totals.csv_row(self.currency))

    def to_csv(self) -> str:
        """Return the CSV export as text."""
        buffer = io.StringIO(newline="")
        self.write_csv(buffer)
        return buffer.getvalue()


def _prices(prices: npt.ArrayLike, homes: int) -> npt.NDArray[np.float64]:
    """Return one finite, non-negative price per home (a scalar applies to every home)."""
    array = np.asarray(prices, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(homes, float(array))
    if array.shape != (homes,):
        raise ValueError(f"prices must be a scalar or have shape ({homes},), got {array.shape}")
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        home = int(np.argmax(bad))
        raise ValueError(f"price of home index {home} must be finite and >= 0, got {array[home]}")
    return array


def _statuses(
    has_baseline: npt.NDArray[np.bool_], missing: npt.NDArray[np.intp], intervals: int
) -> list[SettlementStatus]:
    """Return each home's :class:`SettlementStatus`."""
    return [
        SettlementStatus.NO_BASELINE
        if not baseline
        else SettlementStatus.NO_TELEMETRY
        if gaps == intervals
        else SettlementStatus.INCOMPLETE_TELEMETRY
        if gaps
        else SettlementStatus.SETTLED
        for baseline, gaps in zip(has_baseline.tolist(), missing.tolist(), strict=True)
    ]


def _window_array(
    name: str, values: npt.ArrayLike | None, shape: tuple[int, int], default: float | bool
) -> npt.NDArray[Any]:
    """Return a per-home, per-interval array (broadcast from ``(intervals,)`` if given so)."""
    if values is None:
        return np.full(shape, default)
    array = np.asarray(values)
    if array.shape not in {shape, shape[1:]}:
        raise ValueError(f"{name} must have shape {shape} or {shape[1:]}, got {array.shape}")
    return np.broadcast_to(array, shape)


def _qualities(estimated: npt.NDArray[np.intp], known: npt.NDArray[np.intp]) -> list[DataQuality]:
    """Return each home's :class:`DataQuality` from its estimated and measured interval counts."""
    return [
        DataQuality.MEASURED
        if not guessed
        else DataQuality.ESTIMATED
        if guessed == measured
        else DataQuality.PARTLY_ESTIMATED
        for guessed, measured in zip(estimated.tolist(), known.tolist(), strict=True)
    ]


def _row_tuples(array: npt.NDArray[Any]) -> Iterator[tuple[Any, ...]]:
    """Return one tuple per row; rows all alike share one tuple (the common case: no overlap)."""
    if array.shape[0] and (array == array[0]).all():
        return itertools.repeat(tuple(array[0].tolist()), array.shape[0])
    return map(tuple, array.tolist())


@dataclass(frozen=True, slots=True)
class SettlementTerms:
    """How a home's delivery is weighed and paid beyond the baseline (all optional)."""

    weights: npt.ArrayLike | None = None
    """``(homes, intervals)`` or ``(intervals,)`` factors in [0, 1]: the part of each
    interval the event covers times the home's share of it (default 1)."""
    estimated: npt.ArrayLike | None = None
    """``(homes, intervals)`` booleans: True where the measurement was an estimate."""
    estimated_pay_ratio: float = 1.0
    """What an estimated kWh is paid relative to a measured one (0: nothing, 1: the same)."""
    committed_kw: npt.ArrayLike | None = None
    """``(homes,)`` kW each home committed (shown in the report)."""
    interval_starts: Sequence[str] = ()
    """ISO 8601 start of each interval (shown in the report)."""


NO_TERMS: Final = SettlementTerms()


def settle_event(
    event_id: str,
    home_ids: Sequence[str],
    baselines: BaselineResult,
    measured_kw: npt.ArrayLike,
    prices: npt.ArrayLike,
    *,
    currency: str = DEFAULT_CURRENCY,
    terms: SettlementTerms = NO_TERMS,
) -> EventSettlement:
    """Settle one event for every home of ``baselines``.

    Args:
        event_id: the event settled.
        home_ids: one id per home, in the order of the baseline arrays.
        baselines: the result of :func:`aggregator.settlement.baselines.compute_baselines`.
        measured_kw: ``(homes, window intervals)`` measured kW during the event, NaN where
            missing (e.g. ``event_day_kw[:, baselines.window.slice]``).
        prices: each home's award price per kWh, or one price for every home.
        currency: ISO 4217 code of the prices.
        terms: interval weights (pro-rating, shares of overlapping events), estimated
            intervals and their pay ratio, committed kW.

    Raises:
        ValueError: when ids, shapes, weights or prices do not fit the baselines.

    """
    homes, window = baselines.homes, baselines.window
    if len(home_ids) != homes:
        raise ValueError(f"got {len(home_ids)} home ids for {homes} baselines")
    if len(set(home_ids)) != homes:
        raise ValueError("home ids must be unique")
    measured = np.asarray(measured_kw, dtype=np.float64)
    shape = (homes, window.length)
    if measured.shape != shape:
        raise ValueError(f"measured_kw must have shape {shape}, got {measured.shape}")
    weights = _window_array("weights", terms.weights, shape, 1.0).astype(np.float64, copy=False)
    if not ((weights >= 0) & (weights <= 1)).all():
        raise ValueError("weights must lie in [0, 1]")
    estimated = _window_array("estimated", terms.estimated, shape, default=False).astype(bool)
    ratio = terms.estimated_pay_ratio
    if not 0 <= ratio <= 1:
        raise ValueError(f"estimated_pay_ratio must lie in [0, 1], got {ratio}")
    price = _prices(prices, homes)
    committed = (
        np.zeros(homes)
        if terms.committed_kw is None
        else np.asarray(terms.committed_kw, dtype=np.float64)
    )
    hours = baselines.config.interval_hours
    baseline = baselines.baseline_kw.astype(np.float64)

    has_baseline = np.isfinite(baseline).all(axis=1)
    measured_known = np.isfinite(measured)
    estimated &= measured_known
    missing = np.count_nonzero(~measured_known, axis=1)
    per_interval = delivered_kwh(baseline, measured, hours) * weights
    delivered = per_interval.sum(axis=1)
    estimated_kwh = np.where(estimated, per_interval, 0.0).sum(axis=1)
    paid = delivered - (1.0 - ratio) * estimated_kwh
    payment = paid * price
    baseline_kwh = np.where(has_baseline, (baseline * weights).sum(axis=1) * hours, np.nan)
    measured_kwh = np.where(measured_known, measured * weights, 0.0).sum(axis=1) * hours
    statuses = _statuses(has_baseline, missing, window.length)
    estimated_count = np.count_nonzero(estimated, axis=1)
    qualities = _qualities(estimated_count, np.count_nonzero(measured_known, axis=1))

    columns = zip(
        home_ids,
        statuses,
        [_OUTCOMES[code] for code in baselines.outcome_codes.tolist()],
        baselines.reasons(),
        baselines.adjustment_factor.tolist(),
        price.tolist(),
        map(tuple, baseline.tolist()),
        map(tuple, measured.tolist()),
        map(tuple, per_interval.tolist()),
        baseline_kwh.tolist(),
        measured_kwh.tolist(),
        delivered.tolist(),
        payment.tolist(),
        missing.tolist(),
        committed.tolist(),
        _row_tuples(weights),
        _row_tuples(estimated),
        qualities,
        estimated_count.tolist(),
        estimated_kwh.tolist(),
        paid.tolist(),
        strict=True,
    )
    # tuple.__new__ skips the named tuple's per-call argument handling (100k rows).
    rows = tuple(map(functools.partial(tuple.__new__, HomeSettlement), columns))
    has_data = has_baseline & (missing > 0)
    totals = SettlementTotals(
        homes=homes,
        homes_paid=int(np.count_nonzero(payment > 0)),
        homes_without_baseline=int(np.count_nonzero(~has_baseline)),
        homes_with_missing_telemetry=int(np.count_nonzero(has_data)),
        baseline_kwh=math.fsum(baseline_kwh[has_baseline].tolist()),
        measured_kwh=math.fsum(measured_kwh.tolist()),
        delivered_kwh=math.fsum(delivered.tolist()),
        payment=math.fsum(payment.tolist()),
        delivered_kwh_by_interval=tuple(math.fsum(column) for column in per_interval.T.tolist()),
        estimated_kwh=math.fsum(estimated_kwh.tolist()),
        paid_kwh=math.fsum(paid.tolist()),
        committed_kw=math.fsum(committed.tolist()),
    )
    return EventSettlement(
        event_id=event_id,
        baseline_method=baselines.config.method,
        currency=currency,
        interval_minutes=baselines.config.interval_minutes,
        window_start_interval=window.start,
        window_end_interval=window.end,
        homes=rows,
        totals=totals,
        interval_starts=tuple(terms.interval_starts),
        estimated_pay_ratio=ratio,
    )
