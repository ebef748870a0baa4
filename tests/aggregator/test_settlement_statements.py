"""Statements from stored telemetry on real SQLite and PostgreSQL: local days, DST, holidays,
overlapping events, partial intervals, late samples, new homes, estimates, reliability.

Every test runs twice (``db_url``): a fresh SQLite file and a fresh PostgreSQL database. The
telemetry is synthetic: one sample per 15-minute interval (7 minutes in) unless a test needs
finer samples, flat profiles so the expected figures can be checked by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aggregator.records import EventStatus
from aggregator.settlement.reliability import PRIOR_ALPHA, PRIOR_BETA
from aggregator.store import Store
from jeisson.common.protocol import Load, LoadKind

from .settlement_fleet import Clock, SyntheticProgram, during, water_heater

SANTIAGO = ZoneInfo("America/Santiago")
NEW_YORK = ZoneInfo("America/New_York")
HISTORY = timedelta(days=21)
HOUR = timedelta(hours=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'settle.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def program(db_url: str) -> AsyncIterator[SyntheticProgram]:
    """A stored program on a real database, its clock at 2027 (every test event is over)."""
    store = await Store.open(db_url)
    try:
        yield SyntheticProgram(store, Clock(datetime(2027, 1, 1, tzinfo=UTC)))
    finally:
        await store.close()


async def test_an_evening_event_across_local_and_utc_midnight_is_settled(
    program: SyntheticProgram,
) -> None:
    # Wednesday 20:30 to Thursday 01:30 in Santiago (UTC-3 in December): 23:30 to 04:30 UTC.
    await program.use("America/Santiago")
    start = datetime(2026, 12, 2, 20, 30, tzinfo=SANTIAGO)
    end = start + 5 * HOUR
    home = await program.home()
    await program.event("evt_night", start, end, currency="CLP")
    await program.award("evt_night", home, kw=2.0, price=150.0)
    await program.telemetry(home, start - HISTORY, end + HOUR, during((start, end), 1.0, 3.0))

    [statement] = await program.settler.settle_due()

    assert statement.event_id == "evt_night"
    assert statement.version == 1
    assert statement.timezone == "America/Santiago"
    starts = statement.detail["interval_starts"]
    assert len(starts) == 20
    assert starts[0] == "2026-12-02T23:30:00+00:00"
    assert starts[-1] == "2026-12-03T04:15:00+00:00"
    [line] = statement.lines
    assert line.baseline_reason == "high-5-of-10 weekdays, adjustment +0.0%"
    assert line.delivered_kwh == pytest.approx(10.0)  # 2 kW x 5 h
    assert line.payment == pytest.approx(1500.0)
    assert line.committed_kwh == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("local_start", "local_end", "real_hours"),
    [
        # Fall back: 01:00-02:00 happens twice, so 00:30-03:30 lasts four real hours.
        (datetime(2026, 11, 1, 0, 30), datetime(2026, 11, 1, 3, 30), 4),
        # Spring forward: 02:00-03:00 never happens, so 01:00-04:00 lasts two real hours.
        (datetime(2026, 3, 8, 1, 0), datetime(2026, 3, 8, 4, 0), 2),
    ],
)
async def test_an_event_across_a_clock_change_pays_the_hours_that_really_passed(
    program: SyntheticProgram, local_start: datetime, local_end: datetime, real_hours: int
) -> None:
    await program.use("America/New_York")
    start = local_start.replace(tzinfo=NEW_YORK).astimezone(UTC)
    end = local_end.replace(tzinfo=NEW_YORK).astimezone(UTC)
    assert end - start == real_hours * HOUR
    home = await program.home()
    await program.event("evt_dst", start, end)
    await program.award("evt_dst", home, kw=1.5, price=0.2)
    await program.telemetry(home, start - HISTORY, end + HOUR, during((start, end), 0.5, 2.0))

    [statement] = await program.settler.settle_due()

    [line] = statement.lines
    assert line.baseline_reason.startswith("high-3-of-5 weekend days")
    assert len(line.detail["baseline_kw"]) == 4 * real_hours
    assert line.delivered_kwh == pytest.approx(1.5 * real_hours)


async def test_like_days_are_aligned_on_local_time_across_a_clock_change(
    program: SyntheticProgram,
) -> None:
    # The home's load follows the local clock: 1 kW + 0.5 kW per local hour. The like-days
    # before 1 November were on summer time; read by UTC they would be an hour off (10.5 kW).
    await program.use("America/New_York")
    start = datetime(2026, 11, 3, 18, tzinfo=NEW_YORK)  # a Tuesday
    end = start + HOUR

    def by_local_hour(ts: datetime) -> float:
        return 2.0 if start <= ts < end else 1.0 + 0.5 * ts.astimezone(NEW_YORK).hour

    home = await program.home()
    await program.event("evt_local", start, end)
    await program.award("evt_local", home, kw=8.0, price=0.1)
    await program.telemetry(home, start - HISTORY, end + HOUR, by_local_hour)

    [statement] = await program.settler.settle_due()

    [line] = statement.lines
    assert line.detail["baseline_kw"] == pytest.approx([10.0] * 4)
    assert line.baseline_reason == "high-5-of-10 weekdays, adjustment +0.0%"
    assert line.delivered_kwh == pytest.approx(8.0)


@pytest.mark.parametrize(
    ("country", "baseline_kw", "reason"),
    [
        ("CL", 3.0, "high-5-of-10 weekdays, adjustment +0.0%"),
        # Without the holiday calendar Independence Day (9 kW all day) is a "weekday": it tops
        # the high-5 ((9 + 4 x 3) / 5 = 4.2 kW) and the day-of adjustment caps at -20 %.
        (None, 3.36, "high-5-of-10 weekdays, adjustment -20.0% (capped from -28.6%)"),
    ],
)
async def test_holidays_are_not_like_days_of_a_weekday_event(
    program: SyntheticProgram, country: str | None, baseline_kw: float, reason: str
) -> None:
    await program.use("America/Santiago", country=country)
    start = datetime(2026, 9, 23, 18, tzinfo=SANTIAGO)  # a Wednesday
    end = start + HOUR
    holiday = (datetime(2026, 9, 18, tzinfo=SANTIAGO), datetime(2026, 9, 19, tzinfo=SANTIAGO))

    def profile(ts: datetime) -> float:
        if start <= ts < end:
            return 1.0
        return 9.0 if holiday[0] <= ts < holiday[1] else 3.0

    home = await program.home()
    await program.event("evt_holiday", start, end)
    await program.award("evt_holiday", home, kw=2.0, price=100.0)
    await program.telemetry(home, start - HISTORY, end + HOUR, profile)

    [statement] = await program.settler.settle_due()

    [line] = statement.lines
    assert line.detail["baseline_kw"] == pytest.approx([baseline_kw] * 4)
    assert line.baseline_reason == reason


async def test_overlapping_events_share_each_interval_and_pay_it_once(
    program: SyntheticProgram,
) -> None:
    # A 18:00-20:00 and B 19:00-21:00; the home committed 2 kW to each and shed 3 kW from
    # 18:00 to 21:00 (9 kWh). 19:00-20:00 is shared half and half: A 3 + 1.5, B 1.5 + 3 kWh.
    await program.use("UTC", settle_after=HOUR)
    a_start = datetime(2026, 11, 18, 18, tzinfo=UTC)
    b_start = a_start + HOUR
    home = await program.home()
    only_b = await program.home()
    await program.event("evt_a", a_start, a_start + 2 * HOUR)
    await program.event("evt_b", b_start, b_start + 2 * HOUR)
    await program.award("evt_a", home, kw=2.0, price=0.30)
    await program.award("evt_b", home, kw=2.0, price=0.50)
    await program.award("evt_b", only_b, kw=2.0, price=0.50)
    curtailed = during((a_start, a_start + 3 * HOUR), 1.0, 4.0)
    for who in (home, only_b):
        await program.telemetry(who, a_start - HISTORY, a_start + 4 * HOUR, curtailed)

    program.clock.now = a_start + 2 * HOUR + HOUR  # A is due, B (which A overlaps) is not
    assert await program.settler.settle_due() == []
    program.clock.now = b_start + 2 * HOUR + HOUR
    statements = {item.event_id: item for item in await program.settler.settle_due()}

    a, b = statements["evt_a"], statements["evt_b"]
    assert a.group_events == b.group_events == ("evt_a", "evt_b")
    a_line = next(line for line in a.lines if line.home_id == home)
    b_line = next(line for line in b.lines if line.home_id == home)
    assert a_line.detail["delivered_kwh_by_interval"] == pytest.approx([0.75] * 4 + [0.375] * 4)
    assert b_line.detail["delivered_kwh_by_interval"] == pytest.approx([0.375] * 4 + [0.75] * 4)
    assert a_line.delivered_kwh + b_line.delivered_kwh == pytest.approx(9.0)
    assert a_line.payment == pytest.approx(4.5 * 0.30)
    assert b_line.payment == pytest.approx(4.5 * 0.50)
    other = next(line for line in b.lines if line.home_id == only_b)
    assert other.delivered_kwh == pytest.approx(6.0)  # alone in B: all of 19:00-21:00


async def test_an_event_off_the_grid_is_pro_rated(program: SyntheticProgram) -> None:
    # 18:05-18:50: two thirds of the 18:00 interval, a third of the 18:45 one. 2 kW x 45 min.
    await program.use("UTC")
    start = datetime(2026, 11, 18, 18, 5, tzinfo=UTC)
    end = datetime(2026, 11, 18, 18, 50, tzinfo=UTC)
    home = await program.home()
    await program.event("evt_odd", start, end)
    await program.award("evt_odd", home, kw=2.0, price=0.4)
    profile = during((start, end), 1.0, 3.0)
    day = datetime(2026, 11, 18, tzinfo=UTC)
    await program.telemetry(home, day - HISTORY, day + timedelta(hours=17), profile)
    await program.telemetry(
        home, day + timedelta(hours=17), day + timedelta(hours=20), profile,
        every=timedelta(minutes=1), offset=timedelta(seconds=30),
    )  # fmt: skip

    [statement] = await program.settler.settle_due()

    [line] = statement.lines
    assert line.detail["weight_by_interval"] == pytest.approx([2 / 3, 1.0, 1.0, 1 / 3])
    assert line.detail["measured_kw"] == pytest.approx([1.0] * 4)  # only in-event samples
    assert line.detail["delivered_kwh_by_interval"] == pytest.approx([1 / 3, 0.5, 0.5, 1 / 6])
    assert line.delivered_kwh == pytest.approx(1.5)
    assert line.payment == pytest.approx(0.6)


async def test_statements_wait_for_late_telemetry_and_are_never_recomputed_on_read(
    program: SyntheticProgram,
) -> None:
    await program.use("UTC", settle_after=timedelta(hours=24))
    start = datetime(2026, 11, 18, 18, tzinfo=UTC)
    end = start + HOUR
    home = await program.home()
    await program.event("evt_late", start, end)
    await program.award("evt_late", home, kw=2.0, price=0.4)
    profile = during((start, end), 1.0, 3.0)
    await program.telemetry(home, start - HISTORY, start + timedelta(minutes=45), profile)

    program.clock.now = end + timedelta(hours=23)
    assert await program.settler.settle_due() == []  # still inside the late-telemetry window
    program.clock.now = end + timedelta(hours=24)
    [first] = await program.settler.settle_due()
    assert first.lines[0].delivered_kwh == pytest.approx(1.5)  # 18:45 missing: credited 0
    assert first.lines[0].detail["missing_intervals"] == 1
    assert await program.settler.settle_due() == []  # settled once

    # The missing quarter hour arrives late: reading still shows the stored statement.
    await program.telemetry(home, start + timedelta(minutes=45), end + HOUR, profile)
    stored = await program.repository.statement("evt_late")
    assert stored == first

    # Settling again stores a correction showing the difference; v1 stays as it was.
    [second] = await program.settler.settle("evt_late", "late telemetry")
    assert (second.version, second.reason) == (2, "correction: late telemetry")
    [line] = second.lines
    assert line.payment == pytest.approx(0.8)
    assert line.previous_payment == pytest.approx(0.6)
    assert line.correction == pytest.approx(0.2)
    assert second.correction == pytest.approx(0.2)
    assert await program.repository.statement("evt_late", 1) == first
    assert await program.settler.settle("evt_late") == []  # nothing changed: no version 3

    ledger = await program.repository.ledger(home, (await program.repository.program()).calendar)
    assert [entry.amount for entry in ledger.entries] == pytest.approx([0.6, 0.2])
    assert ledger.to_json_dict()["balance"] == {"EUR": pytest.approx(0.8)}


async def test_new_homes_get_a_comparison_group_baseline(program: SyntheticProgram) -> None:
    # Six water-heater homes with history draw 0.5 kW per rated kW. A new home (rated 6 kW)
    # reports only from 30 minutes before the event: baseline 6 x 0.5 = 3 kW. An EV-charger home
    # has no like kind, so the whole event's group is used.
    await program.use("UTC")
    start = datetime(2026, 11, 18, 18, tzinfo=UTC)
    end = start + HOUR
    await program.event("evt_new", start, end)
    for _ in range(6):
        old = await program.home(water_heater(3.0))
        await program.award("evt_new", old, kw=1.0, price=0.5)
        await program.telemetry(old, start - HISTORY, end + HOUR, during((start, end), 0.5, 1.5))
    new = await program.home(water_heater(6.0))
    ev = await program.home([Load(load_id="ev", name="EV", kind=LoadKind.EV_CHARGER, rated_kw=4.0)])
    for joined, rated in ((new, 6.0), (ev, 4.0)):
        await program.award("evt_new", joined, kw=2.0, price=0.5)
        await program.telemetry(
            joined, start - timedelta(minutes=30), end + HOUR, during((start, end), 1.0, rated / 2)
        )

    [statement] = await program.settler.settle_due()

    lines = {line.home_id: line for line in statement.lines}
    assert lines[new].baseline_outcome == "comparison_group"
    assert lines[new].baseline_reason.startswith(
        "comparison group: median of 6 similar homes (water heater) per declared kW, "
        "scaled to 6 kW; own data: only 0 weekdays valid of 5 needed"
    )
    assert lines[new].detail["baseline_kw"] == pytest.approx([3.0] * 4)
    assert lines[new].delivered_kwh == pytest.approx(2.0)
    assert lines[ev].baseline_reason.startswith(
        "comparison group: median of 6 similar homes (all homes in the event)"
    )
    assert lines[ev].delivered_kwh == pytest.approx(1.0)  # 4 x 0.5 - 1 kW for 1 h


async def test_without_a_comparison_group_a_new_home_is_told_why_it_is_not_paid(
    program: SyntheticProgram,
) -> None:
    await program.use("UTC")
    start = datetime(2026, 11, 18, 18, tzinfo=UTC)
    end = start + HOUR
    await program.event("evt_alone", start, end)
    new = await program.home()
    await program.award("evt_alone", new, kw=2.0, price=0.5)
    await program.telemetry(new, start - timedelta(minutes=30), end, during((start, end), 1, 3))

    [statement] = await program.settler.settle_due()

    [line] = statement.lines
    assert line.baseline_outcome == "no_baseline"
    assert line.baseline_reason == (
        "no baseline: only 0 weekdays valid of 5 needed and 8 of 8 pre-event intervals missing"
    )
    assert line.payment == 0.0


async def test_estimated_samples_are_paid_at_the_program_ratio(
    program: SyntheticProgram,
) -> None:
    await program.use("UTC", estimated_pay_ratio=0.5)
    start = datetime(2026, 11, 18, 18, tzinfo=UTC)
    end = start + HOUR
    await program.event("evt_est", start, end)
    metered, guessed = await program.home(), await program.home()
    profile = during((start, end), 1.0, 3.0)
    for home, measured in ((metered, True), (guessed, False)):
        await program.award("evt_est", home, kw=2.0, price=0.4)
        await program.telemetry(home, start - HISTORY, end + HOUR, profile, measured=measured)
    # Held off, an unmetered load reads a certain 0 kW: its estimate is the baseline it made
    # while on (rated power), so the interval still counts as estimated.
    baseline_guessed = await program.home()
    await program.award("evt_est", baseline_guessed, kw=2.0, price=0.4)
    await program.telemetry(baseline_guessed, start - HISTORY, start, profile, measured=False)
    await program.telemetry(baseline_guessed, start, end + HOUR, profile, measured=True)

    [statement] = await program.settler.settle_due()

    lines = {line.home_id: line for line in statement.lines}
    assert lines[metered].data_quality == "measured"
    assert lines[metered].paid_kwh == pytest.approx(2.0)
    assert lines[guessed].data_quality == "estimated"
    assert lines[guessed].delivered_kwh == pytest.approx(2.0)
    assert lines[guessed].detail["estimated_kwh"] == pytest.approx(2.0)
    assert lines[guessed].paid_kwh == pytest.approx(1.0)
    assert lines[guessed].payment == pytest.approx(0.4)
    assert lines[baseline_guessed].data_quality == "estimated"
    assert lines[baseline_guessed].paid_kwh == pytest.approx(1.0)
    assert "estimated" in statement.to_csv()


async def test_reliability_is_scored_per_home_from_settled_events(
    program: SyntheticProgram,
) -> None:
    await program.use("UTC")
    home = await program.home()
    first = datetime(2026, 11, 18, 18, tzinfo=UTC)
    second = datetime(2026, 11, 25, 18, tzinfo=UTC)
    await program.event("evt_kept", first, first + HOUR)
    await program.event("evt_missed", second, second + HOUR)
    for event_id in ("evt_kept", "evt_missed"):
        await program.award(event_id, home, kw=2.0, price=0.4)
    # Shed its 2 kW in the first event, nothing in the second.
    profile = during((first, first + HOUR), 1.0, 3.0)
    await program.telemetry(home, first - HISTORY, second + 2 * HOUR, profile)

    await program.settler.settle("evt_kept")
    kept = (await program.repository.reliability([home]))[home]
    assert kept.score == pytest.approx((PRIOR_ALPHA + 1) / (PRIOR_ALPHA + PRIOR_BETA + 1))
    await program.settler.settle("evt_missed")
    both = (await program.repository.reliability([home]))[home]
    assert both.events == 2
    assert both.score == pytest.approx((PRIOR_ALPHA + 1) / (PRIOR_ALPHA + PRIOR_BETA + 2))
    statement = await program.repository.statement("evt_missed")
    assert statement is not None
    assert statement.lines[0].detail["reliability"] == pytest.approx(both.score)


async def test_an_unfinished_event_cannot_be_settled(program: SyntheticProgram) -> None:
    await program.use("UTC")
    start = datetime(2026, 11, 18, 18, tzinfo=UTC)
    await program.event("evt_running", start, start + HOUR, status=EventStatus.ACTIVE)
    with pytest.raises(Exception, match="has not finished yet"):
        await program.settler.settle("evt_running")
    assert await program.settler.settle_due() == []
