"""Pure settlement pieces: the span grid, grouping and sharing of overlapping events, the
comparison-group fallback, reliability scores, and the property that no interval is paid twice.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.records import EventRecord, EventStatus
from aggregator.settlement.attribution import (
    interval_shares,
    live_shed_by_event,
    merge_windows,
    overlap_groups,
)
from aggregator.settlement.baselines import (
    BaselineConfig,
    BaselineOutcome,
    DayType,
    EventWindow,
    compute_baselines,
)
from aggregator.settlement.calendar import CalendarError, ProgramCalendar
from aggregator.settlement.fallback import MIN_GROUP_HOMES, with_comparison_groups
from aggregator.settlement.grid import SampleColumns, span_grid
from aggregator.settlement.program import ProgramSettings
from aggregator.settlement.reliability import PRIOR_SCORE, reliability_of, score
from aggregator.settlement.service import Commitment, GroupInputs, HomeProfile, compute_group
from jeisson.common.protocol import EventKind

CONFIG = BaselineConfig()
DAY = datetime(2026, 11, 18, tzinfo=UTC)  # a Wednesday


def event(event_id: str, start: datetime, end: datetime) -> EventRecord:
    return EventRecord(
        event_id=event_id,
        name=event_id,
        kind=EventKind.MARKET,
        status=EventStatus.COMPLETED,
        target_kw=1.0,
        price_cap=1.0,
        start=start,
        end=end,
        bid_window_s=30,
        restore_stagger_s=0,
        currency="EUR",
        created_at=start - timedelta(hours=1),
    )


def test_calendar_knows_local_dates_holidays_and_refuses_unknown_places() -> None:
    chile = ProgramCalendar("America/Santiago", holiday_country="CL")
    late = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)  # 23:00 the evening before in Santiago
    assert chile.local_date(late) == date(2026, 12, 2)
    assert chile.holiday_name(date(2026, 9, 18)) == "Día de la Independencia"
    assert chile.day_type(date(2026, 9, 18)) is DayType.WEEKEND  # a Friday, but a holiday
    assert chile.day_type(date(2026, 9, 17)) is DayType.WEEKDAY
    assert ProgramCalendar("UTC").day_type(date(2026, 9, 18)) is DayType.WEEKDAY
    assert chile.describe() == "America/Santiago, holidays of CL"
    with pytest.raises(CalendarError, match="unknown time zone"):
        ProgramCalendar("Mars/Olympus")
    with pytest.raises(CalendarError, match="no holiday calendar"):
        ProgramCalendar(holiday_country="ZZ")
    with pytest.raises(CalendarError, match="no subdivision"):
        ProgramCalendar(holiday_country="US", holiday_subdivision="XX")


def test_a_span_reaches_back_to_the_pre_event_windows_on_each_like_day() -> None:
    calendar = ProgramCalendar("America/New_York")
    start = datetime(2026, 11, 3, 18, tzinfo=ZoneInfo("America/New_York"))
    grid = span_grid(calendar, start, start + timedelta(hours=1), CONFIG, history_days=3)
    assert grid.window == EventWindow(16, 20)  # 4 h of pre-event intervals, then the hour
    assert grid.history_dates == (date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2))
    assert grid.history_day_types == (DayType.WEEKEND, DayType.WEEKEND, DayType.WEEKDAY)
    # Same local wall clock each day: 14:00 local is 19:00 UTC after the change, 18:00 before.
    firsts = [datetime.fromtimestamp(int(row[0]) * 900, UTC).hour for row in grid.index]
    assert firsts == [18, 19, 19, 19]
    part = grid.part(start + timedelta(minutes=5), start + timedelta(minutes=50))
    assert part.window == EventWindow(16, 20)
    assert part.coverage.tolist() == pytest.approx([2 / 3, 1, 1, 1 / 3])


def test_events_are_grouped_when_windows_overlap_or_follow_within_the_lead() -> None:
    lead = timedelta(hours=4)
    a = event("a", DAY.replace(hour=10), DAY.replace(hour=12))
    b = event("b", DAY.replace(hour=11), DAY.replace(hour=13))
    c = event("c", DAY.replace(hour=16), DAY.replace(hour=17))  # starts 3 h after b ends
    d = event("d", DAY.replace(hour=22), DAY.replace(hour=23))  # 5 h after c: alone
    groups = overlap_groups([d, c, b, a], lead)
    assert [[item.event_id for item in group] for group in groups] == [["a", "b", "c"], ["d"]]
    assert merge_windows([(a.start, a.end), (b.start, b.end), (d.start, d.end)]) == [
        (a.start, b.end),
        (d.start, d.end),
    ]


def test_interval_shares_follow_commitment_and_coverage() -> None:
    committed = np.array([[2.0, 1.0], [2.0, 0.0]])  # 2 events x 2 homes
    coverage = np.array([[1.0, 1.0, 0.0], [0.0, 0.5, 1.0]])  # 2 events x 3 intervals
    shares = interval_shares(committed, coverage)
    np.testing.assert_allclose(shares[:, 0, :], [[1.0, 2 / 3, 0.0], [0.0, 1 / 3, 1.0]])
    np.testing.assert_allclose(shares[:, 1, :], [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])


def test_live_shed_is_credited_per_award_not_per_batch() -> None:
    # The home reports 10 kW shed in a batch naming A; A awarded the water heater (3 kW),
    # B the EV charger (7 kW). Each event gets its own loads' kW, never the batch's total.
    credited = live_shed_by_event(
        10.0, {"wh": 0.0, "ev": 0.01, "pool": 1.2}, {"A": {"wh": 3.0}, "B": {"ev": 7.0}}
    )
    assert credited == {"A": 3.0, "B": 7.0}
    # A load back on delivers nothing; the total never exceeds what the home reports.
    assert live_shed_by_event(
        2.0, {"wh": 3.0, "ev": 0.0}, {"A": {"wh": 3.0}, "B": {"ev": 7.0}}
    ) == {
        "A": 0.0,
        "B": 2.0,
    }


def test_the_comparison_group_is_the_median_per_declared_kw_scaled() -> None:
    homes = MIN_GROUP_HOMES + 2
    history = np.full((homes, 10, 96), np.nan)
    history[: homes - 2] = np.arange(1, homes - 1)[:, None, None]  # 1..5 kW, declared 2 kW
    event_day = np.full((homes, 96), np.nan)
    base = compute_baselines(
        history,
        valid_days=np.ones(10, dtype=bool),
        history_day_types=[DayType.WEEKDAY] * 10,
        event_day_type=DayType.WEEKDAY,
        event_day_kw=event_day,
        window=EventWindow(72, 76),
        config=BaselineConfig(adjust=False),
    )
    kinds = ["water heater"] * (homes - 1) + ["pool pump"]
    result = with_comparison_groups(base, kinds, [2.0] * (homes - 2) + [4.0, 0.0])
    assert result.outcome(homes - 2) is BaselineOutcome.COMPARISON_GROUP
    assert result.baseline_kw[homes - 2].tolist() == pytest.approx([6.0] * 4)  # 4 x median 1.5
    assert "median of 5 similar homes (water heater)" in result.reason(homes - 2)
    assert result.outcome(homes - 1) is BaselineOutcome.NO_BASELINE  # nothing declared


def test_reliability_starts_at_the_prior_and_moves_with_each_event() -> None:
    assert score([]) == PRIOR_SCORE == 1.0  # new homes are trusted ...
    assert score([1.0] * 5) == 1.0  # ... and homes that deliver stay there
    assert score([0.0]) == pytest.approx(0.8)
    assert score([0.0] * 5) == pytest.approx(4 / 9)
    found = reliability_of("h", [(5.0, 2.0), (0.0, 0.0), (1.0, 2.0)])  # capped; skipped; half
    assert (found.events, found.score) == (2, pytest.approx((4 + 1 + 0.5) / 6))


# --- Property: no interval is paid more than its measured shed ---------------------------------

MINUTE = timedelta(minutes=1)


@st.composite
def overlapping_groups(draw: st.DrawFn) -> GroupInputs:
    """Two or three events off the grid, 1-4 homes with random commitments and telemetry."""
    count = draw(st.integers(min_value=2, max_value=3))
    events = []
    for index in range(count):
        start = DAY.replace(hour=18) + draw(st.integers(0, 90)) * MINUTE
        length = draw(st.integers(5, 120)) * MINUTE
        events.append(event(f"e{index}", start, start + length))
    events.sort(key=lambda item: item.start)
    homes = draw(st.integers(min_value=1, max_value=4))
    home_ids = [f"h{index}" for index in range(homes)]
    program = ProgramSettings(history_days=3)
    grid = span_grid(program.calendar, events[0].start, max(e.end for e in events), CONFIG, 3)
    committed = [
        {
            home_id: Commitment(kw=draw(st.floats(0.5, 5)), price=draw(st.floats(0, 1)))
            for home_id in home_ids
            if draw(st.booleans())
        }
        for _ in events
    ]
    slots = np.unique(grid.index)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offsets = np.array([60.0, 360.0, 660.0])  # three samples in each interval
    stamps = (slots[:, None] * 900.0 + offsets).ravel()
    columns = SampleColumns(
        homes=np.repeat(np.arange(homes), len(stamps)),
        stamps=np.tile(stamps, homes),
        power_kw=rng.uniform(0, 6, homes * len(stamps)),
        estimated=rng.random(homes * len(stamps)) < 0.2,
    )
    return GroupInputs(
        program=program,
        events=events,
        config=CONFIG,
        grid=grid,
        home_ids=home_ids,
        committed=committed,
        profiles=[HomeProfile("water heater", 3.0)] * homes,
        telemetry=columns,
        valid_days=np.ones(3, dtype=bool),
    )


@settings(max_examples=60, deadline=None)
@given(inputs=overlapping_groups())
def test_the_sum_paid_per_interval_never_exceeds_the_measured_shed(inputs: GroupInputs) -> None:
    reports = compute_group(inputs)
    first = int(inputs.grid.index[-1, 0])
    paid: dict[tuple[str, int], float] = {}
    shed: dict[tuple[str, int], float] = {}
    for report in reports:
        for home in report.homes:
            for position, kwh in enumerate(home.delivered_kwh_by_interval):
                slot = report.window_start_interval + position
                key = (home.home_id, first + slot)
                paid[key] = paid.get(key, 0.0) + kwh
                baseline, measured = home.baseline_kw[position], home.measured_kw[position]
                if np.isfinite(baseline) and np.isfinite(measured):
                    shed[key] = max(0.0, baseline - measured) * 0.25
                else:
                    shed.setdefault(key, 0.0)
            assert home.paid_kwh <= home.delivered_kwh + 1e-12
            assert home.payment == pytest.approx(home.paid_kwh * home.price_per_kwh)
    for key, kwh in paid.items():
        assert kwh <= shed[key] + 1e-9, key
