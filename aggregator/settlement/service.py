"""Settling stored events: telemetry onto the span grid, baselines, attribution, payments.

Bridges the stored records and the pure math of :mod:`~aggregator.settlement.grid`,
:mod:`~aggregator.settlement.baselines`, :mod:`~aggregator.settlement.fallback`,
:mod:`~aggregator.settlement.attribution` and :mod:`~aggregator.settlement.report`. A *group*
of overlapping events (see :func:`~aggregator.settlement.attribution.overlap_groups`) is
settled in one run and yields one :class:`EventSettlement` per event. Choices (all in
``docs/settlement.md``):

* Days, weekdays, weekends and holidays are the program's (:class:`ProgramCalendar`).
* Like-day candidates are the :data:`~aggregator.settlement.program.HISTORY_DAYS` local days
  before the event day; days that touch any (not cancelled) event are excluded for every home.
* Settled homes are those that committed (an award acknowledged, later opted out or lost),
  each paid at the kW-weighted average price of its acknowledged awards in the event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt

from aggregator.records import AwardRecord, AwardStatus, EventRecord, HomeRecord
from aggregator.settlement.attribution import interval_shares, merge_windows
from aggregator.settlement.baselines import BaselineConfig, BaselineMethod, compute_baselines
from aggregator.settlement.calendar import ProgramCalendar
from aggregator.settlement.fallback import with_comparison_groups
from aggregator.settlement.grid import (
    GridError,
    SampleColumns,
    SpanGrid,
    grid_samples,
    grid_window_samples,
    span_grid,
)
from aggregator.settlement.program import ProgramSettings
from aggregator.settlement.report import EventSettlement, SettlementTerms, settle_event

SETTLED_STATUSES = frozenset({AwardStatus.ACKED, AwardStatus.OPTED_OUT, AwardStatus.LOST})
"""Awards of homes that committed, whatever happened later (delivery decides the payment)."""


class SettlementUnavailableError(Exception):
    """The event cannot be settled (yet); the message says why."""


@dataclass(frozen=True, slots=True)
class Commitment:
    """What one home committed to in one event: kW and the kW-weighted price."""

    kw: float
    price: float


def commitments(awards: Sequence[AwardRecord]) -> dict[str, Commitment]:
    """Return each settled home's committed kW and kW-weighted average award price."""
    weighted: dict[str, float] = {}
    weights: dict[str, float] = {}
    kw: dict[str, float] = {}
    for award in awards:
        if award.status not in SETTLED_STATUSES or award.acked_at is None:
            continue
        weight = award.kw if award.kw > 0 else 1.0
        weighted[award.home_id] = weighted.get(award.home_id, 0.0) + award.price * weight
        weights[award.home_id] = weights.get(award.home_id, 0.0) + weight
        kw[award.home_id] = kw.get(award.home_id, 0.0) + max(award.kw, 0.0)
    return {
        home_id: Commitment(kw=kw[home_id], price=weighted[home_id] / weights[home_id])
        for home_id in weighted
    }


def home_prices(awards: Sequence[AwardRecord]) -> dict[str, float]:
    """Return each settled home's kW-weighted average award price."""
    return {home_id: held.price for home_id, held in commitments(awards).items()}


def event_dates(calendar: ProgramCalendar, start: datetime, end: datetime) -> set[date]:
    """Return the program's local dates that the window ``[start, end)`` touches."""
    first = calendar.local_date(start)
    last = calendar.local_date(end - timedelta(microseconds=1))
    return {first + timedelta(days=offset) for offset in range((last - first).days + 1)}


def valid_history(
    grid: SpanGrid, calendar: ProgramCalendar, other_events: Sequence[tuple[datetime, datetime]]
) -> npt.NDArray[np.bool_]:
    """Return ``(days,)``: False for like-day candidates that touch another event."""
    excluded: set[date] = set()
    for start, end in other_events:
        excluded |= event_dates(calendar, start, end)
    return np.array([day not in excluded for day in grid.history_dates], dtype=bool)


@dataclass(frozen=True, slots=True)
class HomeProfile:
    """What the comparison-group fallback needs to know of a home's inventory."""

    kinds: str
    declared_kw: float


def home_profile(home: HomeRecord | None) -> HomeProfile:
    """Return a home's load kinds (label) and declared kW."""
    if home is None or not home.loads:
        return HomeProfile(kinds="no declared loads", declared_kw=0.0)
    kinds = sorted({load.kind.value.replace("_", " ") for load in home.loads})
    return HomeProfile(
        kinds=" + ".join(kinds), declared_kw=sum(load.rated_kw for load in home.loads)
    )


@dataclass(frozen=True, slots=True, eq=False)
class GroupInputs:
    """Everything the settlement math of one group of events needs, loaded from the store."""

    program: ProgramSettings
    events: list[EventRecord]
    config: BaselineConfig
    grid: SpanGrid
    home_ids: list[str]
    committed: list[dict[str, Commitment]]
    """Per event (in ``events`` order): each settled home's commitment."""
    profiles: list[HomeProfile]
    telemetry: SampleColumns
    valid_days: npt.NDArray[np.bool_]


def baseline_config(event: EventRecord, method: BaselineMethod | None = None) -> BaselineConfig:
    """Return the baseline configuration of ``event`` (or of ``method`` when given)."""
    return BaselineConfig(
        method=method or BaselineMethod(event.baseline_method or BaselineMethod.RESIDENTIAL)
    )


def settlement_grid(
    program: ProgramSettings, events: Sequence[EventRecord], config: BaselineConfig
) -> SpanGrid:
    """Return the span grid of a group of events."""
    start = min(event.start for event in events)
    end = max(event.end for event in events)
    try:
        return span_grid(program.calendar, start, end, config, program.history_days)
    except GridError as err:
        raise SettlementUnavailableError(str(err)) from err


def compute_group(inputs: GroupInputs) -> list[EventSettlement]:
    """Compute the statements of every event of a group (pure; runs in a worker thread)."""
    grid, telemetry = inputs.grid, inputs.telemetry
    homes = len(inputs.home_ids)
    gridded = grid_samples(grid, homes, telemetry)
    days = grid.history_days
    baselines = compute_baselines(
        gridded.power_kw[:, :days, :],
        valid_days=inputs.valid_days,
        history_day_types=list(grid.history_day_types),
        event_day_type=grid.event_day_type,
        event_day_kw=gridded.power_kw[:, days, :],
        window=grid.window,
        config=inputs.config,
        whole_days=False,
    )
    baselines = with_comparison_groups(
        baselines,
        [profile.kinds for profile in inputs.profiles],
        [profile.declared_kw for profile in inputs.profiles],
    )
    windows = [(event.start, event.end) for event in inputs.events]
    measured = grid_window_samples(grid, windows, homes, telemetry)
    estimated = estimated_intervals(grid, gridded.estimated, measured.estimated)
    width, offset = grid.window.length, grid.window.start
    coverage = np.zeros((len(inputs.events), width))
    parts = []
    for position, event in enumerate(inputs.events):
        part = grid.part(event.start, event.end)
        parts.append(part)
        coverage[position, part.window.start - offset : part.window.end - offset] = part.coverage
    union = np.zeros(width)
    for start, end in merge_windows(windows):
        part = grid.part(start, end)
        union[part.window.start - offset : part.window.end - offset] += part.coverage
    union = np.minimum(union, 1.0)
    position_of = {home_id: position for position, home_id in enumerate(inputs.home_ids)}
    committed_kw = np.zeros((len(inputs.events), homes))
    for row, held in enumerate(inputs.committed):
        for home_id, commitment in held.items():
            # A home settled with no kW (a direct award acked with nothing) still gets a share.
            committed_kw[row, position_of[home_id]] = max(commitment.kw, 1e-9)
    shares = interval_shares(committed_kw, coverage)
    reports = []
    for row, (event, part) in enumerate(zip(inputs.events, parts, strict=True)):
        held = inputs.committed[row]
        ids = sorted(held)
        rows = np.array([position_of[home_id] for home_id in ids], dtype=np.intp)
        columns = slice(part.window.start, part.window.end)
        in_window = slice(part.window.start - offset, part.window.end - offset)
        weights = shares[row][rows][:, in_window] * union[None, in_window]
        reports.append(
            settle_event(
                event.event_id,
                ids,
                baselines.subset(rows, part.window),
                measured.power_kw[rows][:, columns],
                [held[home_id].price for home_id in ids],
                currency=event.currency,
                terms=SettlementTerms(
                    weights=weights,
                    estimated=estimated[rows][:, columns],
                    estimated_pay_ratio=inputs.program.estimated_pay_ratio,
                    committed_kw=[held[home_id].kw for home_id in ids],
                    interval_starts=[
                        grid.interval_start(position).isoformat()
                        for position in range(part.window.start, part.window.end)
                    ],
                ),
            )
        )
    return reports


def estimated_intervals(
    grid: SpanGrid, history: npt.NDArray[np.bool_], in_event: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Return ``(homes, span)``: True where an event interval's figures rest on estimates.

    An interval is estimated when its measurement holds an estimated sample, or when the data
    behind its baseline does: any like-day candidate at that time of day, or the pre-event
    hours of the event day. (A load without a power sensor reads 0 kW while held off, which is
    certain; its estimate is the rated power it reported while on, i.e. in the baseline.)
    """
    days, window = grid.history_days, grid.window
    result = in_event.copy()
    behind = history[:, :days, window.start : window.end].any(axis=1)
    behind |= history[:, days, : window.start].any(axis=1)[:, None]
    result[:, window.start : window.end] |= behind
    return result


async def compute_group_off_loop(inputs: GroupInputs) -> list[EventSettlement]:
    """Run :func:`compute_group` in a worker thread so homes stay served."""
    return await asyncio.to_thread(compute_group, inputs)


def ended(event: EventRecord, now: datetime | None = None) -> bool:
    """Return True once an event can no longer change (terminal, or past its end)."""
    return event.status.is_terminal or event.end <= (now or datetime.now(UTC))
