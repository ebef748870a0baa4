"""Clearing with reliability: expected kW = bid kW x the home's reliability.

A fleet of unreliable homes must be over-procured by *just enough* bid kW: the accepted steps'
expected kW meet the target, and without the last accepted step they would not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.clearing import TARGET_TOLERANCE_KW, StepTable, clear

Row = tuple[int, int, float, float, float | None]


def table(rows: Sequence[Row], reliability: Sequence[float]) -> StepTable:
    return StepTable.from_rows(rows, reliability)


def test_unreliable_homes_are_over_procured_just_enough() -> None:
    # Ten cheap homes that deliver half of what they bid, ten dearer ones that deliver all.
    rows: list[Row] = [(home, 0, 2.0, 0.10, None) for home in range(10)]
    rows += [(home, 0, 2.0, 0.30, None) for home in range(10, 20)]
    reliability = [0.5] * 10 + [1.0] * 10

    result = clear(table(rows, reliability), target_kw=6.0, price_cap=1.0)

    # 6 expected kW from homes expected to deliver 1 kW each: six homes, 12 kW of bids.
    assert sorted(result.accepted.tolist()) == list(range(6))
    assert result.accepted_kw == pytest.approx(12.0)
    assert result.expected_kw == pytest.approx(6.0)
    assert result.shortfall_kw == 0.0
    assert result.clearing_price == 0.10
    # Counting bid kW instead would have stopped at three homes and delivered about 3 kW.
    assert len(clear(StepTable.from_rows(rows), 6.0, 1.0).accepted) == 3


def test_at_equal_prices_the_more_reliable_home_goes_first() -> None:
    rows: list[Row] = [(0, 0, 3.0, 0.2, None), (1, 0, 3.0, 0.2, None)]
    # Home 0 was curtailed longer ago, which would win the tie on rotation alone.
    rows[1] = (1, 0, 3.0, 0.2, 1_750_000_000.0)
    result = clear(table(rows, [0.6, 0.9]), target_kw=2.5, price_cap=1.0)
    assert result.accepted.tolist() == [1]
    assert result.expected_kw == pytest.approx(2.7)


def test_a_short_fleet_reports_the_expected_shortfall() -> None:
    rows: list[Row] = [(0, 0, 4.0, 0.2, None), (1, 0, 4.0, 0.2, None)]
    result = clear(table(rows, [0.5, 0.5]), target_kw=6.0, price_cap=1.0)
    assert result.accepted_kw == pytest.approx(8.0)
    assert result.expected_kw == pytest.approx(4.0)
    assert result.shortfall_kw == pytest.approx(2.0)


def test_without_reliability_every_home_counts_in_full() -> None:
    rows: list[Row] = [(0, 0, 4.0, 0.2, None), (1, 0, 4.0, 0.3, None)]
    result = clear(StepTable.from_rows(rows), target_kw=4.0, price_cap=1.0)
    assert result.accepted.tolist() == [0]
    assert result.expected_kw == result.accepted_kw == 4.0


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf])
def test_reliability_outside_zero_to_one_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="reliability must lie in"):
        table([(0, 0, 1.0, 0.1, None)], [bad])


rows_with_reliability = st.lists(
    st.tuples(
        st.integers(0, 15),
        st.integers(0, 3),
        st.floats(0.5, 20, allow_nan=False),
        st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5]),
        st.sampled_from([None, 1.0, 2.0, 3.0]),
        st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.0]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    rows=rows_with_reliability,
    target_kw=st.floats(0.5, 200, allow_nan=False),
    cap=st.sampled_from([0.1, 0.3, 1.0]),
)
def test_clearing_procures_just_enough_expected_kw(
    rows: list[tuple[int, int, float, float, float | None, float]], target_kw: float, cap: float
) -> None:
    steps = [row[:5] for row in rows]
    reliability = [row[5] for row in rows]
    result = clear(table(steps, reliability), target_kw, cap)
    expected = [rows[i][2] * rows[i][5] for i in result.accepted.tolist()]
    assert result.expected_kw == pytest.approx(math.fsum(expected), abs=1e-9)
    assert all(rows[i][3] <= cap for i in result.accepted.tolist())
    if result.shortfall_kw == 0.0:
        assert result.expected_kw >= target_kw - TARGET_TOLERANCE_KW - 1e-9
        # Just enough: without the last accepted step the target would not be met.
        assert math.fsum(expected[:-1]) < target_kw - TARGET_TOLERANCE_KW + 1e-9
    else:
        eligible = [i for i, row in enumerate(rows) if row[3] <= cap]
        assert sorted(result.accepted.tolist()) == eligible
        assert result.shortfall_kw == pytest.approx(target_kw - result.expected_kw, abs=1e-9)
    prices = [rows[i][3] for i in result.accepted.tolist()]
    assert prices == sorted(prices)  # merit order: cheapest first
