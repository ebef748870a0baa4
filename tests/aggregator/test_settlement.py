"""Settlement: a hand-computed three-home event, JSON/CSV exports, validation and properties.

The fixture uses the default 15-minute grid (an interval is 0.25 h) and an event from 18:00 to
19:00 (intervals 72..75). Day-of adjustment window: 14:00-17:00 (56..67); pre-event average
window: 15:00-17:00 (60..67).
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aggregator.settlement.baselines import (
    BaselineConfig,
    BaselineMethod,
    BaselineOutcome,
    BaselineResult,
    DayType,
    EventWindow,
    compute_baselines,
)
from aggregator.settlement.report import (
    CSV_COLUMNS,
    TOTALS_ROW_ID,
    EventSettlement,
    SettlementStatus,
    delivered_kwh,
    settle_event,
)

WINDOW = EventWindow(72, 76)
NAN = math.nan


def three_home_baselines() -> BaselineResult:
    """Home a: 10 weekdays flat at 4 kW, event day 4 kW before the event -> 4.0 kW, factor 1.
    Home b: only 3 valid weekdays -> pre-event average of 2.0 kW.
    Home c: no valid day and no pre-event data -> no baseline.
    """
    history = np.full((3, 10, 96), 4.0)
    valid = np.ones((3, 10), dtype=bool)
    valid[1, 3:] = False
    valid[2, :] = False
    event_day = np.full((3, 96), NAN)
    event_day[0, 56:68] = 4.0
    event_day[1, 60:68] = 2.0
    return compute_baselines(
        history,
        valid_days=valid,
        history_day_types=[DayType.WEEKDAY] * 10,
        event_day_type=DayType.WEEKDAY,
        event_day_kw=event_day,
        window=WINDOW,
    )


MEASURED = np.array(
    [
        [1.0, 2.0, 5.0, 3.0],
        [0.5, NAN, 0.5, 2.5],
        [1.0, 1.0, 1.0, 1.0],
    ]
)
PRICES = [0.30, 0.40, 0.35]


@pytest.fixture
def report() -> EventSettlement:
    return settle_event(
        "evt-1", ["home-a", "home-b", "home-c"], three_home_baselines(), MEASURED, PRICES
    )


def test_three_homes_by_hand(report):
    a, b, c = report.homes
    # Home a: baseline 4.0; shed (3, 2, -1 -> 0, 1) kW x 0.25 h = (0.75, 0.5, 0, 0.25) = 1.5 kWh;
    # paid 1.5 x 0.30 = 0.45.
    assert a.status is SettlementStatus.SETTLED
    assert a.baseline_outcome is BaselineOutcome.X_OF_Y
    assert a.baseline_reason == "high-5-of-10 weekdays, adjustment +0.0%"
    assert a.baseline_kw == pytest.approx((4.0, 4.0, 4.0, 4.0))
    assert a.delivered_kwh_by_interval == pytest.approx((0.75, 0.5, 0.0, 0.25))
    assert a.delivered_kwh == pytest.approx(1.5)
    assert a.payment == pytest.approx(0.45)
    assert a.baseline_kwh == pytest.approx(4.0)  # 4 kW x 1 h
    assert a.measured_kwh == pytest.approx(2.75)  # (1 + 2 + 5 + 3) x 0.25
    # Home b: pre-event average 2.0; shed (1.5, missing -> 0, 1.5, -0.5 -> 0) x 0.25 = 0.75 kWh;
    # paid 0.75 x 0.40 = 0.30; one interval missing.
    assert b.status is SettlementStatus.INCOMPLETE_TELEMETRY
    assert b.baseline_outcome is BaselineOutcome.PRE_EVENT_AVERAGE
    assert b.baseline_reason.endswith("only 3 weekdays valid of 5 needed")
    assert b.delivered_kwh_by_interval == pytest.approx((0.375, 0.0, 0.375, 0.0))
    assert b.delivered_kwh == pytest.approx(0.75)
    assert b.payment == pytest.approx(0.30)
    assert b.missing_intervals == 1
    assert b.measured_kwh == pytest.approx(0.875)  # (0.5 + 0.5 + 2.5) x 0.25
    # Home c: no baseline, nothing paid whatever it measured.
    assert c.status is SettlementStatus.NO_BASELINE
    assert c.delivered_kwh == 0.0
    assert c.payment == 0.0
    assert math.isnan(c.baseline_kwh)

    totals = report.totals
    assert totals.homes == 3
    assert totals.homes_paid == 2
    assert totals.homes_without_baseline == 1
    assert totals.homes_with_missing_telemetry == 1
    assert totals.delivered_kwh == pytest.approx(2.25)
    assert totals.payment == pytest.approx(0.75)
    assert totals.baseline_kwh == pytest.approx(6.0)
    assert totals.measured_kwh == pytest.approx(4.625)
    assert totals.delivered_kwh_by_interval == pytest.approx((1.125, 0.5, 0.375, 0.25))


def test_json_export_is_strict_json(report):
    data = json.loads(json.dumps(report.to_json_dict(), allow_nan=False))
    assert data["event_id"] == "evt-1"
    assert data["baseline_method"] == "residential"
    assert data["currency"] == "EUR"
    assert data["interval_minutes"] == 15
    assert (data["window_start_interval"], data["window_end_interval"]) == (72, 76)
    homes = {home["home_id"]: home for home in data["homes"]}
    assert homes["home-a"]["payment"] == pytest.approx(0.45)
    assert homes["home-b"]["measured_kw"][1] is None
    assert homes["home-b"]["status"] == "incomplete_telemetry"
    assert homes["home-c"]["baseline_kw"] == [None] * 4
    assert homes["home-c"]["baseline_kwh"] is None
    assert homes["home-c"]["baseline_outcome"] == "no_baseline"
    assert data["totals"]["delivered_kwh"] == pytest.approx(2.25)
    assert data["totals"]["homes_paid"] == 2


def test_csv_export_has_header_homes_and_totals(report):
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row[0] for row in rows[1:]] == ["home-a", "home-b", "home-c", TOTALS_ROW_ID]
    column = {name: index for index, name in enumerate(CSV_COLUMNS)}
    home_a, home_b, home_c, totals = rows[1:]
    assert float(home_a[column["delivered_kwh"]]) == pytest.approx(1.5)
    assert home_a[column["payment"]] == "0.45"  # 1.5 x 0.30, not 0.44999999999999996
    assert float(home_a[column["price_per_kwh"]]) == 0.30
    assert home_b[column["missing_intervals"]] == "1"
    assert home_b[column["status"]] == "incomplete_telemetry"
    assert home_c[column["baseline_kwh"]] == ""
    assert home_c[column["baseline_reason"]].startswith("no baseline:")
    assert float(totals[column["payment"]]) == pytest.approx(0.75)
    assert float(totals[column["delivered_kwh"]]) == pytest.approx(2.25)
    assert totals[column["baseline_reason"]] == "3 homes, 2 paid, 1 without baseline"
    assert all(len(row) == len(CSV_COLUMNS) for row in rows)


def test_csv_written_to_a_file(report, tmp_path):
    path = tmp_path / "settlement.csv"
    with path.open("w", newline="", encoding="utf-8") as stream:
        report.write_csv(stream)
    assert path.read_bytes() == report.to_csv().encode()
    assert b"\r\n" in path.read_bytes()  # csv module's default dialect, as spreadsheets expect


def test_csv_text_cannot_become_a_formula():
    result = three_home_baselines()
    report = settle_event("evt", ["=cmd", "-x", "@y"], result, MEASURED, 0.1)
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert [row[0] for row in rows[1:4]] == ["'=cmd", "'-x", "'@y"]
    assert report.homes[0].home_id == "=cmd"  # the JSON keeps the id untouched


def test_one_price_for_every_home_and_currency():
    report = settle_event(
        "evt", ["a", "b", "c"], three_home_baselines(), MEASURED, 0.2, currency="USD"
    )
    assert [home.price_per_kwh for home in report.homes] == [0.2, 0.2, 0.2]
    assert report.totals.payment == pytest.approx((1.5 + 0.75) * 0.2)
    assert report.to_json_dict()["currency"] == "USD"


def test_a_home_without_any_telemetry_is_not_paid():
    measured = MEASURED.copy()
    measured[0] = NAN
    report = settle_event("evt", ["a", "b", "c"], three_home_baselines(), measured, PRICES)
    assert report.homes[0].status is SettlementStatus.NO_TELEMETRY
    assert report.homes[0].payment == 0.0
    assert report.homes[0].missing_intervals == 4


def test_delivered_energy_floors_at_zero_and_skips_unknowns():
    baseline = np.array([[2.0, 2.0, NAN, 2.0]])
    measured = np.array([[1.0, 3.0, 0.0, np.inf]])
    assert delivered_kwh(baseline, measured, 0.5).tolist() == [[0.5, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="interval_hours"):
        delivered_kwh(baseline, measured, 0.0)


@pytest.mark.parametrize(
    ("home_ids", "measured", "prices", "message"),
    [
        (["a", "b"], MEASURED, PRICES, "got 2 home ids for 3 baselines"),
        (["a", "a", "b"], MEASURED, PRICES, "unique"),
        (["a", "b", "c"], MEASURED[:, :3], PRICES, "measured_kw must have shape"),
        (["a", "b", "c"], MEASURED, [0.1, 0.2], "prices must be a scalar"),
        (["a", "b", "c"], MEASURED, [0.1, -0.2, 0.1], "home index 1"),
        (["a", "b", "c"], MEASURED, [0.1, 0.2, NAN], "home index 2"),
    ],
)
def test_bad_settlement_inputs_are_refused(home_ids, measured, prices, message):
    with pytest.raises(ValueError, match=message):
        settle_event("evt", home_ids, three_home_baselines(), measured, prices)


# --- Properties ---------------------------------------------------------------------------------

kw = st.floats(min_value=0, max_value=50, allow_nan=False) | st.just(NAN)


@st.composite
def events(draw):
    """A random fleet on an hourly grid with an event at 17:00-19:00 and random telemetry."""
    homes = draw(st.integers(min_value=1, max_value=5))
    days = draw(st.integers(min_value=0, max_value=6))
    history = draw(hnp.arrays(np.float64, (homes, days, 24), elements=kw))
    event_day = draw(hnp.arrays(np.float64, (homes, 24), elements=kw))
    config = BaselineConfig(
        method=draw(st.sampled_from([m for m in BaselineMethod if m is not BaselineMethod.X_OF_Y])),
        interval_minutes=60,
    )
    result = compute_baselines(
        history,
        valid_days=draw(hnp.arrays(np.bool_, days)),
        history_day_types=[DayType.WEEKDAY] * days,
        event_day_type=DayType.WEEKDAY,
        event_day_kw=event_day,
        window=EventWindow(17, 19),
        config=config,
    )
    measured = draw(hnp.arrays(np.float64, (homes, 2), elements=kw))
    prices = draw(hnp.arrays(np.float64, homes, elements=st.floats(min_value=0, max_value=5)))
    return result, measured, prices


@settings(max_examples=200, deadline=None)
@given(event=events())
def test_delivered_never_negative_and_payment_is_kwh_times_price(event):
    result, measured, prices = event
    ids = [f"h{index}" for index in range(result.homes)]
    report = settle_event("evt", ids, result, measured, prices)
    for home, price in zip(report.homes, prices.tolist(), strict=True):
        assert all(kwh >= 0 for kwh in home.delivered_kwh_by_interval)
        assert home.delivered_kwh >= 0
        assert home.payment == home.delivered_kwh * price
        assert home.delivered_kwh == pytest.approx(sum(home.delivered_kwh_by_interval))
        if home.status in {SettlementStatus.NO_BASELINE, SettlementStatus.NO_TELEMETRY}:
            assert home.payment == 0
    assert report.totals.delivered_kwh == pytest.approx(sum(h.delivered_kwh for h in report.homes))
    assert report.totals.payment == pytest.approx(sum(h.payment for h in report.homes))
    json.dumps(report.to_json_dict(), allow_nan=False)
    assert len(list(csv.reader(io.StringIO(report.to_csv())))) == result.homes + 2
