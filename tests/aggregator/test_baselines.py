"""Baselines: hand-computed fixtures for every method and path, and hypothesis properties.

Most fixtures use an hourly grid (24 intervals a day) so the numbers can be checked by hand.
With the event window at 17:00-19:00 (intervals 17 and 18):

* the day-of adjustment window is the 3 hours ending 1 hour before the start: 13, 14, 15;
* the pre-event average window is the 2 hours ending 1 hour before the start: 14, 15;
* interval 16 (the hour just before the event) is never read.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aggregator.settlement.baselines import (
    DEFAULT_CONFIG,
    AdjustmentStatus,
    BaselineConfig,
    BaselineMethod,
    BaselineOutcome,
    BaselineResult,
    DayType,
    EventWindow,
    LikeDaysRule,
    compute_baselines,
    day_type_of,
)
from aggregator.settlement.report import delivered_kwh

WD, WE = DayType.WEEKDAY, DayType.WEEKEND
HOURLY = BaselineConfig(interval_minutes=60)
WINDOW = EventWindow(17, 19)
ADJ = slice(13, 16)
PRE = slice(14, 16)


def flat_days(*levels: float) -> np.ndarray:
    """One home's history: day d is flat at levels[d] kW (hourly grid)."""
    return np.repeat(np.asarray(levels, dtype=np.float64)[:, None], 24, axis=1)


def run(
    history: np.ndarray,
    day_types: list[DayType],
    event_type: DayType,
    event_day: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    config: BaselineConfig = HOURLY,
    window: EventWindow = WINDOW,
) -> BaselineResult:
    """compute_baselines with every day valid unless told otherwise."""
    if history.ndim == 2:
        history = history[None]
    if event_day.ndim == 1:
        event_day = event_day[None]
    if valid is None:
        valid = np.ones(history.shape[1], dtype=bool)
    return compute_baselines(
        history,
        valid_days=valid,
        history_day_types=day_types,
        event_day_type=event_type,
        event_day_kw=event_day,
        window=window,
        config=config,
    )


def event_day_with(adjustment: list[float] | None = None, pre: list[float] | None = None):
    """An hourly event day: NaN except the given adjustment (13-15) or pre-event (14-15) kW."""
    day = np.full(24, np.nan)
    if adjustment is not None:
        day[ADJ] = adjustment
    if pre is not None:
        day[PRE] = pre
    day[16] = 99.0  # the hour before the event: must never influence a baseline
    return day


# --- X-of-Y ------------------------------------------------------------------------------------


def test_high_3_of_5_weekend_with_adjustment_by_hand():
    # Six weekend days, oldest first. Event window (17, 18) and adjustment window (13, 14, 15):
    #   day 0: window [9, 9] avg 9  -> the highest, but older than the last 5: not a candidate
    #   day 1: window [2, 4] avg 3, adjustment [1, 2, 3]
    #   day 2: window [1, 1] avg 1
    #   day 3: window [4, 6] avg 5, adjustment [2, 2, 2]
    #   day 4: window [2, 2] avg 2
    #   day 5: window [3, 5] avg 4, adjustment [3, 2, 1]
    # High 3 of days 1..5 by window average: days 3 (5), 5 (4), 1 (3).
    # Unadjusted baseline: hour 17 = (4+3+2)/3 = 3, hour 18 = (6+5+4)/3 = 5.
    # Baseline in the adjustment window: per hour (2,2,2), (2,2,2), (2,2,2) -> average 2.0.
    # Event day actual in the adjustment window: (2.0, 2.2, 2.4) -> average 2.2.
    # Factor 2.2 / 2.0 = 1.1 (inside +/-20 %) -> baseline (3.3, 5.5).
    history = flat_days(1, 1, 1, 1, 1, 1)
    windows = [(9, 9), (2, 4), (1, 1), (4, 6), (2, 2), (3, 5)]
    for day, (first, second) in enumerate(windows):
        history[day, 17:19] = (first, second)
    history[1, ADJ] = (1, 2, 3)
    history[3, ADJ] = (2, 2, 2)
    history[5, ADJ] = (3, 2, 1)
    config = BaselineConfig(method=BaselineMethod.HIGH_3_OF_5, interval_minutes=60)
    result = run(history, [WE] * 6, WE, event_day_with([2.0, 2.2, 2.4]), config=config)

    assert result.outcome(0) is BaselineOutcome.X_OF_Y
    assert sorted(result.chosen_days[0].tolist()) == [1, 3, 5]
    assert result.baseline_kw[0] == pytest.approx([3.3, 5.5])
    assert result.adjustment_factor[0] == pytest.approx(1.1)
    assert result.adjustment(0) is AdjustmentStatus.APPLIED
    assert result.reason(0) == "high-3-of-5 weekend days, adjustment +10.0%"


def test_residential_preset_picks_by_event_day_type():
    assert DEFAULT_CONFIG.method is BaselineMethod.RESIDENTIAL
    assert DEFAULT_CONFIG.rule_for(WD) == LikeDaysRule(5, 10, WD)
    assert DEFAULT_CONFIG.rule_for(WE) == LikeDaysRule(3, 5, WE)
    caiso = BaselineConfig(method=BaselineMethod.CAISO_10_OF_10)
    assert caiso.rule_for(WD) == LikeDaysRule(10, 10, WD)
    assert caiso.rule_for(WE) == LikeDaysRule(4, 4, WE)
    assert BaselineConfig(method=BaselineMethod.PRE_EVENT_AVERAGE).rule_for(WD) is None
    custom = BaselineConfig(method=BaselineMethod.X_OF_Y, x=2, y=7)
    assert custom.rule_for(WE) == LikeDaysRule(2, 7, WE)


def test_caiso_10_of_10_excludes_weekends_event_days_and_missing_data():
    # 16 days, day d flat at d + 1 kW. Days 5, 6 and 12 are weekend days (loaded at 100 kW),
    # day 10 was an event day (invalid by mask, 50 kW) and day 8 has one missing interval
    # (200 kW otherwise). Valid weekdays: 0 1 2 3 4 7 9 11 13 14 15 (11 days); the last ten are
    # 1 2 3 4 7 9 11 13 14 15 with loads 2 3 4 5 8 10 12 14 15 16 -> sum 89 -> baseline 8.9.
    levels = [float(day + 1) for day in range(16)]
    for weekend in (5, 6, 12):
        levels[weekend] = 100.0
    levels[10], levels[8] = 50.0, 200.0
    history = flat_days(*levels)
    history[8, 3] = np.nan
    day_types = [WE if day in {5, 6, 12} else WD for day in range(16)]
    valid = np.ones(16, dtype=bool)
    valid[10] = False
    config = BaselineConfig(method=BaselineMethod.CAISO_10_OF_10, interval_minutes=60, adjust=False)
    result = run(history, day_types, WD, event_day_with([1.0] * 3), valid=valid, config=config)

    assert sorted(result.chosen_days[0].tolist()) == [1, 2, 3, 4, 7, 9, 11, 13, 14, 15]
    assert result.baseline_kw[0] == pytest.approx([8.9, 8.9])
    assert result.valid_like_days[0] == 11
    assert result.adjustment(0) is AdjustmentStatus.DISABLED
    assert result.reason(0) == "10-of-10 weekdays, no day-of adjustment (disabled)"


def test_weekday_and_weekend_events_use_their_own_like_days():
    # Weekdays flat at 1 kW, weekend days flat at 5 kW; adjustment off to read the raw average.
    day_types = [WD, WD, WE, WE, WD, WD, WD, WE, WE, WD]
    history = flat_days(*[5.0 if kind is WE else 1.0 for kind in day_types])
    config = BaselineConfig(
        method=BaselineMethod.X_OF_Y, x=3, y=4, interval_minutes=60, adjust=False
    )
    weekday = run(history, day_types, WD, event_day_with([1.0] * 3), config=config)
    weekend = run(history, day_types, WE, event_day_with([1.0] * 3), config=config)

    assert weekday.baseline_kw[0] == pytest.approx([1.0, 1.0])
    assert set(weekday.chosen_days[0].tolist()) <= {0, 1, 4, 5, 6, 9}
    assert weekend.baseline_kw[0] == pytest.approx([5.0, 5.0])
    assert set(weekend.chosen_days[0].tolist()) <= {2, 3, 7, 8}
    assert weekend.reason(0) == "high-3-of-4 weekend days, no day-of adjustment (disabled)"


def test_fewer_than_y_but_at_least_x_days_uses_what_exists():
    # Four valid weekend days for high 3 of 5: days with window averages 1, 4, 2, 3 -> days
    # 1, 3, 2 are chosen -> (4 + 3 + 2) / 3 = 3.0 kW flat; adjustment off.
    history = flat_days(1, 4, 2, 3)
    config = BaselineConfig(method=BaselineMethod.HIGH_3_OF_5, interval_minutes=60, adjust=False)
    result = run(history, [WE] * 4, WE, event_day_with([1.0] * 3), config=config)

    assert result.baseline_kw[0] == pytest.approx([3.0, 3.0])
    assert result.reason(0) == (
        "high-3-of-4 weekend days (only 4 valid of 5 wanted), no day-of adjustment (disabled)"
    )


def test_ties_go_to_the_more_recent_day():
    # Days 0 and 1 have the same window average (2 kW) but differ outside the window.
    # High 1 of 2 must take the more recent day 1 (flat 2 kW outside the window too).
    history = flat_days(7, 2)
    history[0, 17:19] = 2.0
    config = BaselineConfig(method=BaselineMethod.X_OF_Y, x=1, y=2, interval_minutes=60)
    result = run(history, [WD, WD], WD, event_day_with([2.0, 2.0, 2.0]), config=config)

    assert result.chosen_days[0].tolist() == [1]
    assert result.adjustment_factor[0] == pytest.approx(1.0)


def test_validity_can_differ_per_home():
    # Same history for two homes (days flat at 1, 2, 3 kW); home 1 took part in an event on
    # day 2, so high 2 of 2 gives home 0 (2+3)/2 = 2.5 and home 1 (1+2)/2 = 1.5.
    history = np.stack([flat_days(1, 2, 3), flat_days(1, 2, 3)])
    valid = np.array([[True, True, True], [True, True, False]])
    config = BaselineConfig(
        method=BaselineMethod.X_OF_Y, x=2, y=2, interval_minutes=60, adjust=False
    )
    event_day = np.stack([event_day_with([1.0] * 3)] * 2)
    result = run(history, [WD] * 3, WD, event_day, valid=valid, config=config)

    assert result.baseline_kw[:, 0] == pytest.approx([2.5, 1.5])
    assert result.chosen_days.tolist() == [[2, 1], [1, 0]]


# --- Day-of adjustment --------------------------------------------------------------------------


def test_adjustment_is_capped_in_both_directions():
    # History flat at 2 kW (10 weekdays) -> unadjusted baseline 2.0 everywhere.
    # Event-day averages in the adjustment window and the resulting factors:
    #   3.0 -> 1.5, capped to 1.2 -> 2.4     1.0 -> 0.5, capped to 0.8 -> 1.6
    #   2.2 -> 1.1 (applied)      -> 2.2     2.4 -> 1.2 exactly at the cap: applied, not capped
    actual = [3.0, 1.0, 2.2, 2.4]
    history = np.stack([flat_days(*[2.0] * 10)] * 4)
    event_day = np.stack([event_day_with([kw] * 3) for kw in actual])
    result = run(history, [WD] * 10, WD, event_day)

    assert result.baseline_kw[:, 0] == pytest.approx([2.4, 1.6, 2.2, 2.4])
    assert result.adjustment_factor == pytest.approx([1.2, 0.8, 1.1, 1.2])
    assert result.raw_adjustment_factor == pytest.approx([1.5, 0.5, 1.1, 1.2])
    assert [result.adjustment(home) for home in range(4)] == [
        AdjustmentStatus.CAPPED,
        AdjustmentStatus.CAPPED,
        AdjustmentStatus.APPLIED,
        AdjustmentStatus.APPLIED,
    ]
    assert result.reason(0) == "high-5-of-10 weekdays, adjustment +20.0% (capped from +50.0%)"
    assert result.reason(1) == "high-5-of-10 weekdays, adjustment -20.0% (capped from -50.0%)"


def test_custom_cap():
    # Ratio 1.5 with a 10 % cap -> factor 1.1 -> 2.2 kW.
    config = BaselineConfig(interval_minutes=60, adjustment_cap=0.1)
    result = run(flat_days(*[2.0] * 10), [WD] * 10, WD, event_day_with([3.0] * 3), config=config)
    assert result.baseline_kw[0] == pytest.approx([2.2, 2.2])
    assert result.reason(0) == "high-5-of-10 weekdays, adjustment +10.0% (capped from +50.0%)"


def test_no_adjustment_when_baseline_is_zero_in_the_window():
    # History 0 kW in the adjustment window, 3 kW in the event window; the event day draws
    # 1 kW in the adjustment window: the ratio would be infinite, so the factor stays 1.
    history = flat_days(*[3.0] * 10)
    history[:, ADJ] = 0.0
    result = run(history, [WD] * 10, WD, event_day_with([1.0] * 3))
    assert result.baseline_kw[0] == pytest.approx([3.0, 3.0])
    assert result.adjustment(0) is AdjustmentStatus.ZERO_BASELINE
    assert np.isnan(result.raw_adjustment_factor[0])
    assert result.reason(0) == (
        "high-5-of-10 weekdays, no day-of adjustment (baseline ~0 kW in window)"
    )


def test_no_adjustment_when_event_day_data_is_missing():
    event_day = event_day_with([3.0, np.nan, 3.0])
    result = run(flat_days(*[2.0] * 10), [WD] * 10, WD, event_day)
    assert result.baseline_kw[0] == pytest.approx([2.0, 2.0])
    assert result.adjustment(0) is AdjustmentStatus.MISSING_DATA


def test_adjustment_window_before_midnight():
    # An event at 01:00: the adjustment window (-3..0) lies in the previous day.
    day = np.ones(24)
    result = run(flat_days(*[2.0] * 10), [WD] * 10, WD, day, window=EventWindow(1, 3))
    assert result.outcome(0) is BaselineOutcome.X_OF_Y
    assert result.adjustment(0) is AdjustmentStatus.OUTSIDE_DAY
    assert result.baseline_kw[0] == pytest.approx([2.0, 2.0])


def test_adjustment_window_on_the_15_minute_grid():
    # Event 18:00-19:00 on the default grid is intervals 72..75; the adjustment window is
    # 14:00-17:00 (intervals 56..67) and the pre-event window 15:00-17:00 (60..67).
    window = EventWindow(72, 76)
    assert DEFAULT_CONFIG.intervals_per_day == 96
    assert DEFAULT_CONFIG.before_start(window, 3.0, 1.0) == slice(56, 68)
    assert DEFAULT_CONFIG.before_start(window, 2.0, 1.0) == slice(60, 68)
    # Ten weekdays flat at 4 kW; the event day draws 4 kW from 14:00 to 15:00 and 5 kW from
    # 15:00 to 17:00 -> average (4*4 + 8*5) / 12 = 56/12 -> factor 56/48 = 1.1667 -> 4.6667 kW.
    history = np.full((1, 10, 96), 4.0, dtype=np.float32)
    event_day = np.full((1, 96), np.nan, dtype=np.float32)
    event_day[0, 56:60] = 4.0
    event_day[0, 60:68] = 5.0
    result = compute_baselines(
        history,
        valid_days=np.ones(10, dtype=bool),
        history_day_types=[WD] * 10,
        event_day_type=WD,
        event_day_kw=event_day,
        window=window,
    )
    assert result.baseline_kw.dtype == np.float32
    assert result.baseline_kw[0] == pytest.approx([56 / 12] * 4, rel=1e-6)
    assert result.reason(0) == "high-5-of-10 weekdays, adjustment +16.7%"


# --- Fallbacks ----------------------------------------------------------------------------------


def test_pre_event_average_fallback_by_hand():
    # High 3 of 5 weekend days needs 3; only 2 weekend days are valid (the weekday does not
    # count). Pre-event window 14, 15 on the event day: (1.5 + 2.5) / 2 = 2.0 kW, flat.
    # Hour 13 (4.0) and hour 16 (99) are outside it.
    history = flat_days(9, 9, 9)
    event_day = event_day_with(pre=[1.5, 2.5])
    event_day[13] = 4.0
    result = run(history, [WE, WD, WE], WE, event_day)

    assert result.outcome(0) is BaselineOutcome.PRE_EVENT_AVERAGE
    assert result.baseline_kw[0] == pytest.approx([2.0, 2.0])
    assert result.adjustment(0) is AdjustmentStatus.NOT_APPLICABLE
    assert result.adjustment_factor[0] == 1.0
    assert result.chosen_days[0].tolist() == [-1, -1, -1]
    assert result.reason(0) == (
        "pre-event average (2 h ending 1 h before start): only 2 weekend days valid of 3 needed"
    )


def test_no_baseline_when_pre_event_data_is_missing_too():
    history = flat_days(9, 9, 9)
    history[0, 5] = np.nan  # one weekend day is incomplete: only 1 valid weekend day remains
    event_day = event_day_with(pre=[1.5, np.nan])
    result = run(history, [WE, WD, WE], WE, event_day)

    assert result.outcome(0) is BaselineOutcome.NO_BASELINE
    assert np.isnan(result.baseline_kw[0]).all()
    assert result.valid_like_days[0] == 1
    assert result.reason(0) == (
        "no baseline: only 1 weekend day valid of 3 needed and 1 of 2 pre-event intervals missing"
    )


def test_infinite_pre_event_data_counts_as_missing():
    config = BaselineConfig(method=BaselineMethod.PRE_EVENT_AVERAGE, interval_minutes=60)
    result = run(np.zeros((0, 24)), [], WD, event_day_with(pre=[np.inf, 5.0]), config=config)
    assert result.outcome(0) is BaselineOutcome.NO_BASELINE
    assert np.isnan(result.baseline_kw[0]).all()


def test_pre_event_average_method_needs_no_history():
    config = BaselineConfig(method=BaselineMethod.PRE_EVENT_AVERAGE, interval_minutes=60)
    history = np.zeros((2, 0, 24))
    event_day = np.stack([event_day_with(pre=[3.0, 5.0]), event_day_with(pre=[np.nan, 5.0])])
    result = run(history, [], WD, event_day, config=config)

    assert result.baseline_kw[0] == pytest.approx([4.0, 4.0])
    assert result.reason(0) == "pre-event average (2 h ending 1 h before start)"
    assert result.outcome(1) is BaselineOutcome.NO_BASELINE
    assert result.reason(1) == "no baseline: 1 of 2 pre-event intervals missing"


def test_no_baseline_when_the_pre_event_window_is_before_midnight():
    result = run(flat_days(1.0), [WD], WD, np.ones(24), window=EventWindow(1, 3))
    assert result.outcome(0) is BaselineOutcome.NO_BASELINE
    assert result.reason(0) == (
        "no baseline: only 1 weekday valid of 5 needed and the pre-event window lies before "
        "midnight"
    )


def test_fallback_configuration_changes_the_window():
    # 3 h ending right at the start: hours 14, 15, 16 -> (1 + 2 + 6) / 3 = 3.0 kW.
    config = BaselineConfig(
        method=BaselineMethod.PRE_EVENT_AVERAGE,
        interval_minutes=60,
        fallback_hours=3,
        fallback_gap_hours=0,
    )
    event_day = np.full(24, np.nan)
    event_day[14:17] = (1.0, 2.0, 6.0)
    result = run(np.zeros((0, 24)), [], WD, event_day, config=config)
    assert result.baseline_kw[0] == pytest.approx([3.0, 3.0])
    assert result.reason(0) == "pre-event average (3 h ending 0 h before start)"


# --- Day types and input validation -------------------------------------------------------------


def test_day_type_of():
    assert day_type_of(date(2024, 7, 5)) is WD  # Friday
    assert day_type_of(date(2024, 7, 6)) is WE  # Saturday
    assert day_type_of(date(2024, 7, 7)) is WE  # Sunday
    assert day_type_of(date(2024, 7, 4), holidays={date(2024, 7, 4)}) is WE


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval_minutes": 7}, "interval_minutes must divide a day"),
        ({"method": BaselineMethod.X_OF_Y}, "needs both x and y"),
        ({"method": BaselineMethod.X_OF_Y, "x": 6, "y": 5}, "1 <= x <= y"),
        ({"method": BaselineMethod.X_OF_Y, "x": 0, "y": 5}, "1 <= x <= y"),
        ({"x": 3, "y": 5}, "only used with method x_of_y"),
        ({"adjustment_cap": 1.0}, "adjustment_cap"),
        ({"adjustment_cap": -0.1}, "adjustment_cap"),
        ({"adjustment_hours": 0.1}, "whole number of 15-minute intervals"),
        ({"fallback_hours": 0}, "fallback_hours must be > 0"),
        ({"fallback_gap_hours": -1}, "fallback_gap_hours must be >= 0"),
    ],
)
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BaselineConfig(**kwargs)


def test_bad_window_is_refused():
    with pytest.raises(ValueError, match="0 <= start < end"):
        EventWindow(5, 5)
    with pytest.raises(ValueError, match="0 <= start < end"):
        EventWindow(-1, 5)
    with pytest.raises(ValueError, match="event window ends at 25"):
        run(flat_days(1.0), [WD], WD, np.ones(24), window=EventWindow(20, 25))


@pytest.mark.parametrize(
    ("history", "valid", "day_types", "event_day", "message"),
    [
        (np.ones((1, 2, 96)), np.ones(2, bool), [WD] * 2, np.ones((1, 24)), "96 intervals a day"),
        (np.ones((2, 24)), np.ones(2, bool), [WD] * 2, np.ones((1, 24)), "3 dimensions"),
        (np.ones((1, 2, 24)), np.ones(2, bool), [WD] * 2, np.ones((2, 24)), "event_day_kw must"),
        (np.ones((1, 2, 24)), np.ones(3, bool), [WD] * 2, np.ones((1, 24)), "valid_days must"),
        (np.ones((1, 2, 24)), np.ones(2), [WD] * 2, np.ones((1, 24)), "boolean array"),
        (np.ones((1, 2, 24)), np.ones(2, bool), [WD], np.ones((1, 24)), "history_day_types"),
        (np.full((1, 2, 24), "x"), np.ones(2, bool), [WD] * 2, np.ones((1, 24)), "real numbers"),
    ],
)
def test_bad_inputs_are_refused(history, valid, day_types, event_day, message):
    with pytest.raises(ValueError, match=message):
        compute_baselines(
            history,
            valid_days=valid,
            history_day_types=day_types,
            event_day_type=WD,
            event_day_kw=event_day,
            window=WINDOW,
            config=HOURLY,
        )


def test_integer_input_is_accepted_as_float():
    history = np.full((1, 5, 24), 2, dtype=np.int64)
    event_day = np.full((1, 24), 2, dtype=np.int64)
    result = compute_baselines(
        history,
        valid_days=np.ones(5, bool),
        history_day_types=[WE] * 5,
        event_day_type=WE,
        event_day_kw=event_day,
        window=WINDOW,
        config=HOURLY,
    )
    assert result.baseline_kw.dtype == np.float64
    assert result.baseline_kw[0] == pytest.approx([2.0, 2.0])


# --- Properties ---------------------------------------------------------------------------------

# Loads on a 0.25 kW grid: sums are exact, so the properties test the method, not round-off.
quarter_kw = st.integers(min_value=0, max_value=40).map(lambda quarters: quarters / 4)
rarely = st.integers(min_value=0, max_value=19).map(lambda value: value == 0)
day_types = st.lists(st.sampled_from([WD, WE]), min_size=1, max_size=14)
methods = st.sampled_from(
    [
        BaselineMethod.RESIDENTIAL,
        BaselineMethod.CAISO_10_OF_10,
        BaselineMethod.HIGH_3_OF_5,
        BaselineMethod.PRE_EVENT_AVERAGE,
    ]
)


@st.composite
def fleets(draw):
    """Random small fleets: history with gaps, validity masks, day types and an event day."""
    types = draw(day_types)
    homes = draw(st.integers(min_value=1, max_value=6))
    days = len(types)
    history = draw(hnp.arrays(np.float64, (homes, days, 24), elements=quarter_kw))
    history[draw(hnp.arrays(np.bool_, (homes, days, 24), elements=rarely))] = np.nan
    valid = draw(hnp.arrays(np.bool_, (homes, days)))
    event_day = draw(hnp.arrays(np.float64, (homes, 24), elements=quarter_kw))
    event_day[draw(hnp.arrays(np.bool_, (homes, 24), elements=rarely))] = np.nan
    return history, valid, types, draw(st.sampled_from([WD, WE])), event_day


@settings(max_examples=150, deadline=None)
@given(fleet=fleets(), method=methods, exponent=st.integers(min_value=-3, max_value=5))
def test_scaling_all_load_scales_the_baseline(fleet, method, exponent):
    # k is a power of two so k * load is exact and the same days are chosen.
    history, valid, types, event_type, event_day = fleet
    k = 2.0**exponent
    config = BaselineConfig(method=method, interval_minutes=60)
    args = {"valid_days": valid, "history_day_types": types, "event_day_type": event_type}
    base = compute_baselines(history, event_day_kw=event_day, window=WINDOW, config=config, **args)
    scaled = compute_baselines(
        history * k, event_day_kw=event_day * k, window=WINDOW, config=config, **args
    )
    np.testing.assert_allclose(scaled.baseline_kw, base.baseline_kw * k, rtol=1e-12)
    np.testing.assert_array_equal(scaled.outcome_codes, base.outcome_codes)
    np.testing.assert_array_equal(scaled.adjustment_codes, base.adjustment_codes)
    np.testing.assert_allclose(scaled.adjustment_factor, base.adjustment_factor, rtol=1e-12)
    np.testing.assert_array_equal(scaled.chosen_days, base.chosen_days)
    assert scaled.reasons() == base.reasons()


@settings(max_examples=150, deadline=None)
@given(
    pattern=hnp.arrays(np.float64, 24, elements=quarter_kw),
    others=day_types,
    event_type=st.sampled_from([WD, WE]),
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_a_home_that_curtails_nothing_delivers_nothing(pattern, others, event_type, data, dtype):
    # Every valid day follows the same daily pattern and so does the event day. Days of random
    # type and validity are mixed with 5 valid like-days (enough for any preset) and one
    # like-day with a missing interval; invalid and incomplete days hold higher loads that
    # must not leak into the baseline.
    roles = ["random"] * len(others) + ["good"] * 5 + ["incomplete"]
    order = data.draw(st.permutations(range(len(roles))))
    roles = [roles[index] for index in order]
    kinds = [*others, *[event_type] * 6]
    types = [kinds[index] for index in order]
    days = len(roles)
    valid = np.array([role != "random" or data.draw(st.booleans()) for role in roles])
    history = np.tile(pattern, (1, days, 1))
    noise = data.draw(hnp.arrays(np.float64, (days, 24), elements=quarter_kw))
    history[0, ~valid] += 1.0 + noise[~valid]
    incomplete = roles.index("incomplete")
    history[0, incomplete] = 50.0
    history[0, incomplete, 0] = np.nan
    result = compute_baselines(
        history.astype(dtype),
        valid_days=valid,
        history_day_types=types,
        event_day_type=event_type,
        event_day_kw=pattern[None].astype(dtype),
        window=WINDOW,
        config=HOURLY,
    )
    assert result.outcome(0) is BaselineOutcome.X_OF_Y
    assert incomplete not in result.chosen_days[0]
    np.testing.assert_allclose(result.baseline_kw[0], pattern[WINDOW.slice], rtol=1e-6)
    measured = pattern[None, WINDOW.slice]
    assert delivered_kwh(result.baseline_kw, measured, 1.0).sum() == pytest.approx(0, abs=1e-5)


@settings(max_examples=100, deadline=None)
@given(fleet=fleets(), method=methods)
def test_baselines_are_finite_exactly_when_the_home_has_one(fleet, method):
    history, valid, types, event_type, event_day = fleet
    config = BaselineConfig(method=method, interval_minutes=60)
    result = compute_baselines(
        history,
        valid_days=valid,
        history_day_types=types,
        event_day_type=event_type,
        event_day_kw=event_day,
        window=WINDOW,
        config=config,
    )
    has_baseline = result.outcome_codes != list(BaselineOutcome).index(BaselineOutcome.NO_BASELINE)
    assert np.isfinite(result.baseline_kw[has_baseline]).all()
    assert np.isnan(result.baseline_kw[~has_baseline]).all()
    low, high = 1 - config.adjustment_cap, 1 + config.adjustment_cap
    assert ((result.adjustment_factor >= low) & (result.adjustment_factor <= high)).all()
    for home in range(result.homes):
        if result.outcome(home) is BaselineOutcome.X_OF_Y:
            days = result.chosen_days[home]
            assert valid[home, days].all()
            assert np.isfinite(history[home, days]).all()
            assert all(types[day] is event_type for day in days)
        assert result.reason(home)
