"""Settling a stored event: load telemetry onto the interval grid, compute baselines, pay homes.

Bridges the store and the pure math of :mod:`aggregator.settlement.baselines` and
:mod:`aggregator.settlement.report`. Choices (see docs/settlement.md):

* The grid is UTC calendar days of 15-minute intervals; a sample counts in the interval it falls
  in, and an interval's power is the mean of its samples (NaN when it has none).
* History is the :data:`HISTORY_DAYS` calendar days before the event day; days that overlap any
  (not cancelled) event are excluded for every home.
* Settled homes are those that committed at some point (an award acknowledged, later opted out
  or lost); each is paid at the kW-weighted average price of its acknowledged awards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

from aggregator.records import AwardRecord, AwardStatus, EventRecord
from aggregator.settlement.baselines import (
    BaselineConfig,
    BaselineMethod,
    EventWindow,
    compute_baselines,
    day_type_of,
)
from aggregator.settlement.report import EventSettlement, settle_event
from aggregator.store import Store

HISTORY_DAYS: Final = 20
"""Calendar days of history loaded: enough for 10 like weekdays around event days."""
SETTLED_STATUSES: Final = frozenset({AwardStatus.ACKED, AwardStatus.OPTED_OUT, AwardStatus.LOST})
"""Awards of homes that committed, whatever happened later (delivery decides the payment)."""


class SettlementUnavailableError(Exception):
    """The event cannot be settled (yet); the message says why."""


def interval_index(
    stamps: npt.NDArray[np.float64], origin: datetime, interval_minutes: int
) -> npt.NDArray[np.int64]:
    """Return the interval number of each epoch timestamp, counted from ``origin``."""
    seconds = interval_minutes * 60
    return np.floor((stamps - origin.timestamp()) / seconds).astype(np.int64)


def grid_power(
    rows: Sequence[tuple[str, datetime, float]],
    home_ids: Sequence[str],
    origin: datetime,
    intervals: int,
    interval_minutes: int,
) -> npt.NDArray[np.float32]:
    """Return ``(homes, intervals)`` mean kW per interval of ``(home, ts, kW)`` rows (NaN: none)."""
    index = {home_id: position for position, home_id in enumerate(home_ids)}
    sums = np.zeros((len(home_ids), intervals), dtype=np.float64)
    counts = np.zeros((len(home_ids), intervals), dtype=np.int64)
    if rows:
        homes = np.fromiter((index[row[0]] for row in rows), dtype=np.int64, count=len(rows))
        stamps = np.fromiter((row[1].timestamp() for row in rows), np.float64, len(rows))
        power = np.fromiter((row[2] for row in rows), dtype=np.float64, count=len(rows))
        slots = interval_index(stamps, origin, interval_minutes)
        inside = (slots >= 0) & (slots < intervals)
        np.add.at(sums, (homes[inside], slots[inside]), power[inside])
        np.add.at(counts, (homes[inside], slots[inside]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)


def home_prices(awards: Sequence[AwardRecord]) -> dict[str, float]:
    """Return each settled home's kW-weighted average award price."""
    weighted: dict[str, float] = {}
    kw: dict[str, float] = {}
    for award in awards:
        if award.status not in SETTLED_STATUSES or award.acked_at is None:
            continue
        weight = award.kw if award.kw > 0 else 1.0
        weighted[award.home_id] = weighted.get(award.home_id, 0.0) + award.price * weight
        kw[award.home_id] = kw.get(award.home_id, 0.0) + weight
    return {home_id: weighted[home_id] / kw[home_id] for home_id in weighted}


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _event_window(event: EventRecord, config: BaselineConfig) -> EventWindow:
    day_start = _midnight(event.start.astimezone(UTC).date())
    seconds = config.interval_minutes * 60
    first = int((event.start - day_start).total_seconds() // seconds)
    last = -int(-(event.end - day_start).total_seconds() // seconds)  # ceiling
    if last > config.intervals_per_day:
        raise SettlementUnavailableError(
            "events that cross midnight UTC cannot be settled yet (split them at midnight)"
        )
    return EventWindow(first, max(last, first + 1))


def _valid_days(
    days: Sequence[date], other_events: Sequence[tuple[datetime, datetime]]
) -> npt.NDArray[np.bool_]:
    valid = np.ones(len(days), dtype=bool)
    for position, day in enumerate(days):
        start, end = _midnight(day), _midnight(day) + timedelta(days=1)
        if any(ev_start < end and ev_end > start for ev_start, ev_end in other_events):
            valid[position] = False
    return valid


async def settle_stored_event(
    store: Store, event: EventRecord, method: BaselineMethod | None = None
) -> EventSettlement:
    """Settle one stored event from its awards and the stored telemetry."""
    if not event.status.is_terminal and event.end > datetime.now(UTC):
        raise SettlementUnavailableError("the event has not ended yet")
    config = BaselineConfig(
        method=method or BaselineMethod(event.baseline_method or BaselineMethod.RESIDENTIAL)
    )
    window = _event_window(event, config)
    prices = home_prices(await store.awards_for(event.event_id))
    home_ids = sorted(prices)
    event_day = event.start.astimezone(UTC).date()
    history_start = event_day - timedelta(days=HISTORY_DAYS)
    days = [history_start + timedelta(days=offset) for offset in range(HISTORY_DAYS)]
    per_day = config.intervals_per_day
    rows = await store.telemetry_between(
        home_ids, _midnight(history_start), _midnight(event_day) + timedelta(days=1)
    )
    power = grid_power(
        rows,
        home_ids,
        _midnight(history_start),
        (HISTORY_DAYS + 1) * per_day,
        config.interval_minutes,
    ).reshape(len(home_ids), HISTORY_DAYS + 1, per_day)
    others = await store.event_windows(_midnight(history_start))
    inputs = SettlementInputs(
        event=event,
        config=config,
        window=window,
        home_ids=home_ids,
        prices=[prices[home_id] for home_id in home_ids],
        power=power,
        days=days,
        valid_days=_valid_days(days, others),
    )
    # The math is pure numpy and Python: run it off the event loop so homes stay served.
    return await asyncio.to_thread(compute_settlement, inputs)


@dataclass(frozen=True, slots=True)
class SettlementInputs:
    """Everything the settlement math needs, loaded from the store."""

    event: EventRecord
    config: BaselineConfig
    window: EventWindow
    home_ids: list[str]
    prices: list[float]
    power: npt.NDArray[np.float32]
    """``(homes, days + 1, intervals)``: the history days, then the event day."""
    days: list[date]
    valid_days: npt.NDArray[np.bool_]


def compute_settlement(inputs: SettlementInputs) -> EventSettlement:
    """Compute baselines and the settlement report (pure; runs in a worker thread)."""
    history_days = len(inputs.days)
    baselines = compute_baselines(
        inputs.power[:, :history_days, :],
        valid_days=inputs.valid_days,
        history_day_types=[day_type_of(day) for day in inputs.days],
        event_day_type=day_type_of(inputs.event.start.astimezone(UTC).date()),
        event_day_kw=inputs.power[:, history_days, :],
        window=inputs.window,
        config=inputs.config,
    )
    return settle_event(
        inputs.event.event_id,
        inputs.home_ids,
        baselines,
        inputs.power[:, history_days, inputs.window.slice],
        inputs.prices,
        currency=inputs.event.currency,
    )
