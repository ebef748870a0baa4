"""Tests of the merit-order clearing engine (aggregator.clearing).

Example tests pin down each rule of the product brief; property tests compare :func:`clear`
with a plain-Python reference implementation on random rounds (many ties on purpose) and check
the invariants every clearing result must hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.clearing import (
    NEVER_CURTAILED,
    TARGET_TOLERANCE_KW,
    ClearingResult,
    StepTable,
    clear,
)

Row = tuple[int, int, float, float, float | None]

DAY = 86_400.0
NOW = 1_750_000_000.0


# --- reference implementation -------------------------------------------------------------


def _curtailed_key(value: float | None) -> float:
    """Never curtailed (None / NaN / -inf) sorts before any real time."""
    if value is None or math.isnan(value):
        return -math.inf
    return value


def _merit_key(rows: Sequence[Row], index: int) -> tuple[float, float, int, int, int]:
    home, step, _kw, price, last_curtailed = rows[index]
    return (price, _curtailed_key(last_curtailed), home, step, index)


def reference_clear(rows: Sequence[Row], target_kw: float, price_cap: float) -> dict[str, Any]:
    """The brief's rules written as plainly as possible, one step at a time."""
    eligible = [i for i, row in enumerate(rows) if row[3] <= price_cap]
    order = sorted(eligible, key=lambda i: _merit_key(rows, i))
    accepted: list[int] = []
    total = 0.0
    for index in order:
        accepted.append(index)
        total += rows[index][2]
        if total >= target_kw - TARGET_TOLERANCE_KW:
            break
    met = total >= target_kw - TARGET_TOLERANCE_KW
    return {
        "accepted": accepted,
        "clearing_price": rows[accepted[-1]][3] if accepted else None,
        "accepted_kw": total,
        "shortfall_kw": 0.0 if met else target_kw - total,
        "offered_kw": math.fsum(rows[i][2] for i in eligible),
    }


def assert_matches_reference(rows: Sequence[Row], target_kw: float, price_cap: float) -> None:
    result = clear(StepTable.from_rows(rows), target_kw, price_cap)
    expected = reference_clear(rows, target_kw, price_cap)
    assert result.accepted.tolist() == expected["accepted"]
    assert result.clearing_price == expected["clearing_price"]
    assert result.accepted_kw == expected["accepted_kw"]
    assert result.shortfall_kw == pytest.approx(expected["shortfall_kw"], abs=1e-9)
    assert result.offered_kw == pytest.approx(expected["offered_kw"], rel=1e-12, abs=1e-12)


# --- the rules, one example each ----------------------------------------------------------


def test_no_bids_reports_full_shortfall() -> None:
    result = clear(StepTable.from_rows([]), target_kw=50.0, price_cap=0.40)

    assert result.accepted.tolist() == []
    assert result.clearing_price is None
    assert result.accepted_kw == 0.0
    assert result.shortfall_kw == 50.0
    assert result.offered_kw == 0.0


def test_all_bids_above_cap_report_full_shortfall() -> None:
    rows: list[Row] = [(0, 0, 3.0, 0.50, None), (1, 0, 2.0, 0.41, None)]

    result = clear(StepTable.from_rows(rows), target_kw=4.0, price_cap=0.40)

    assert result.accepted.tolist() == []
    assert result.clearing_price is None
    assert result.shortfall_kw == 4.0
    assert result.offered_kw == 0.0


def test_exact_target_stops_at_that_step() -> None:
    rows: list[Row] = [
        (0, 0, 2.0, 0.10, None),
        (1, 0, 3.0, 0.20, None),
        (2, 0, 4.0, 0.30, None),
    ]

    result = clear(StepTable.from_rows(rows), target_kw=5.0, price_cap=1.0)

    assert result.accepted.tolist() == [0, 1]
    assert result.accepted_kw == 5.0
    assert result.shortfall_kw == 0.0
    assert result.clearing_price == 0.20


def test_target_met_within_float_round_off_stops_there() -> None:
    # 0.1 + 0.7 == 0.7999999999999999 in floats: that still meets a 0.8 kW target.
    rows: list[Row] = [
        (0, 0, 0.1, 0.10, None),
        (1, 0, 0.7, 0.20, None),
        (2, 0, 1.0, 0.30, None),
    ]
    assert 0.1 + 0.7 < 0.8

    result = clear(StepTable.from_rows(rows), target_kw=0.8, price_cap=1.0)

    assert result.accepted.tolist() == [0, 1]
    assert result.shortfall_kw == 0.0
    assert result.clearing_price == 0.20


def test_indivisible_step_may_overshoot_target() -> None:
    rows: list[Row] = [(0, 0, 2.0, 0.10, None), (1, 0, 4.5, 0.20, None), (2, 0, 1.0, 0.30, None)]

    result = clear(StepTable.from_rows(rows), target_kw=3.0, price_cap=1.0)

    assert result.accepted.tolist() == [0, 1]
    assert result.accepted_kw == 6.5
    assert result.shortfall_kw == 0.0


def test_shortfall_accepts_everything_under_cap() -> None:
    rows: list[Row] = [
        (0, 0, 2.0, 0.30, None),
        (0, 1, 1.0, 0.45, None),  # above the cap
        (1, 0, 1.5, 0.10, None),
        (2, 0, 0.5, 0.40, None),  # exactly at the cap: eligible
    ]

    result = clear(StepTable.from_rows(rows), target_kw=10.0, price_cap=0.40)

    assert result.accepted.tolist() == [2, 0, 3]
    assert result.accepted_kw == 4.0
    assert result.offered_kw == 4.0
    assert result.shortfall_kw == 6.0
    assert result.clearing_price == 0.40


def test_steps_above_cap_are_excluded() -> None:
    rows: list[Row] = [(0, 0, 10.0, 0.41, None), (1, 0, 1.0, 0.20, None)]

    result = clear(StepTable.from_rows(rows), target_kw=5.0, price_cap=0.40)

    assert result.accepted.tolist() == [1]
    assert result.offered_kw == 1.0
    assert result.shortfall_kw == 4.0


def test_step_priced_at_cap_is_eligible() -> None:
    rows: list[Row] = [(0, 0, 5.0, 0.40, None)]

    result = clear(StepTable.from_rows(rows), target_kw=5.0, price_cap=0.40)

    assert result.accepted.tolist() == [0]
    assert result.clearing_price == 0.40


def test_clearing_price_is_last_accepted_step() -> None:
    rows: list[Row] = [
        (0, 0, 1.0, 0.35, None),
        (1, 0, 1.0, 0.05, None),
        (2, 0, 1.0, 0.20, None),
        (3, 0, 1.0, 0.25, None),
    ]

    result = clear(StepTable.from_rows(rows), target_kw=2.5, price_cap=0.40)

    assert result.accepted.tolist() == [1, 2, 3]
    assert result.clearing_price == 0.25


def test_cheapest_steps_go_first_regardless_of_table_order() -> None:
    rows: list[Row] = [(0, 0, 1.0, 0.30, None), (1, 0, 1.0, 0.10, None), (2, 0, 1.0, 0.20, None)]

    result = clear(StepTable.from_rows(rows), target_kw=3.0, price_cap=1.0)

    assert result.accepted.tolist() == [1, 2, 0]


def test_ties_go_to_home_curtailed_least_recently() -> None:
    rows: list[Row] = [
        (0, 0, 3.0, 0.20, NOW - 1 * DAY),
        (1, 0, 3.0, 0.20, NOW - 9 * DAY),
        (2, 0, 3.0, 0.20, NOW - 4 * DAY),
    ]

    result = clear(StepTable.from_rows(rows), target_kw=5.0, price_cap=0.40)

    assert result.accepted.tolist() == [1, 2]


def test_never_curtailed_home_wins_tie() -> None:
    rows: list[Row] = [
        (0, 0, 3.0, 0.20, NOW - 30 * DAY),
        (1, 0, 3.0, 0.20, None),
    ]

    result = clear(StepTable.from_rows(rows), target_kw=3.0, price_cap=0.40)

    assert result.accepted.tolist() == [1]


def test_nan_and_minus_inf_both_mean_never_curtailed() -> None:
    rows: list[Row] = [
        (0, 0, 1.0, 0.20, NOW - 365 * DAY),
        (1, 0, 1.0, 0.20, math.nan),
        (2, 0, 1.0, 0.20, -math.inf),
    ]

    table = StepTable.from_rows(rows)
    result = clear(table, target_kw=2.0, price_cap=0.40)

    assert result.accepted.tolist() == [1, 2]  # both "never", then home index
    assert table.last_curtailed.tolist() == [NOW - 365 * DAY, NEVER_CURTAILED, NEVER_CURTAILED]


def test_price_beats_rotation() -> None:
    # A home curtailed yesterday still wins when it is cheaper.
    rows: list[Row] = [(0, 0, 3.0, 0.25, None), (1, 0, 3.0, 0.20, NOW - DAY)]

    result = clear(StepTable.from_rows(rows), target_kw=3.0, price_cap=0.40)

    assert result.accepted.tolist() == [1]


def test_full_tie_breaks_by_home_then_step() -> None:
    rows: list[Row] = [
        (7, 1, 1.0, 0.20, None),
        (7, 0, 1.0, 0.20, None),
        (3, 2, 1.0, 0.20, None),
        (9, 0, 1.0, 0.20, None),
    ]

    result = clear(StepTable.from_rows(rows), target_kw=3.0, price_cap=0.40)

    assert result.accepted.tolist() == [2, 1, 0]


def test_burden_rotates_between_rounds() -> None:
    def round_with(last_curtailed: dict[int, float | None]) -> list[int]:
        rows: list[Row] = [(home, 0, 4.0, 0.20, last_curtailed[home]) for home in (0, 1, 2)]
        result = clear(StepTable.from_rows(rows), target_kw=4.0, price_cap=0.40)
        return [rows[i][0] for i in result.accepted.tolist()]

    history: dict[int, float | None] = {0: None, 1: None, 2: None}
    winners = []
    for event in range(3):
        (winner,) = round_with(history)
        winners.append(winner)
        history[winner] = NOW + event * DAY

    assert winners == [0, 1, 2]


def test_infinite_cap_means_no_cap() -> None:
    rows: list[Row] = [(0, 0, 1.0, 999.0, None), (1, 0, 1.0, 0.10, None)]

    result = clear(StepTable.from_rows(rows), target_kw=2.0, price_cap=math.inf)

    assert result.accepted.tolist() == [1, 0]
    assert result.clearing_price == 999.0


def test_large_round_matches_reference() -> None:
    # Big enough that only part of the offer needs the full merit-order sort.
    rng = np.random.default_rng(20240601)
    size = 30_000
    prices = np.round(rng.uniform(0.05, 0.60, size), 2)
    curtailed = np.where(rng.random(size) < 0.3, math.nan, NOW - rng.integers(0, 60, size) * DAY)
    rows: list[Row] = [
        (int(h), int(s), float(k), float(p), float(c))
        for h, s, k, p, c in zip(
            rng.integers(0, 6_000, size),
            rng.integers(0, 5, size),
            np.round(rng.uniform(0.2, 7.0, size), 1),
            prices,
            curtailed,
            strict=True,
        )
    ]
    offered = math.fsum(row[2] for row in rows if row[3] <= 0.40)

    for share in (0.01, 0.3, 0.99, 1.2):
        assert_matches_reference(rows, target_kw=share * offered, price_cap=0.40)


def test_candidate_margin_covers_summation_order_round_off() -> None:
    # The engine first sums kW in price order only (equal prices in any order) to decide which
    # steps need the full merit-order sort. 1 + 1 + 1e16 == 1e16 + 2, but in merit order
    # (1e16 first: its home was never curtailed) 1e16 + 1 + 1 == 1e16: the 5 kW step at the
    # next price is still needed, and the margin must keep it among the candidates.
    rows: list[Row] = [
        (0, 0, 1.0, 0.10, NOW),
        (1, 0, 1.0, 0.10, NOW),
        (2, 0, 1e16, 0.10, None),
        (3, 0, 5.0, 0.20, None),
    ]

    result = clear(StepTable.from_rows(rows), target_kw=1e16 + 2, price_cap=1.0)

    assert result.accepted.tolist() == [2, 0, 1, 3]
    assert result.shortfall_kw == 0.0
    assert_matches_reference(rows, target_kw=1e16 + 2, price_cap=1.0)


# --- the tables and results -----------------------------------------------------------------


def test_table_copies_its_columns_and_is_read_only() -> None:
    kw = np.array([1.0, 2.0])
    table = StepTable(
        home=np.array([0, 1]),
        step=np.array([0, 0]),
        kw=kw,
        price=np.array([0.1, 0.2]),
        last_curtailed=np.array([math.nan, NOW]),
    )
    kw[0] = 50.0

    assert table.kw.tolist() == [1.0, 2.0]
    assert len(table) == 2
    with pytest.raises(ValueError, match="read-only"):
        table.kw[0] = 3.0


def test_result_is_read_only() -> None:
    result = clear(StepTable.from_rows([(0, 0, 1.0, 0.1, None)]), 1.0, 1.0)

    assert isinstance(result, ClearingResult)
    assert result.accepted.dtype == np.int64
    with pytest.raises(ValueError, match="read-only"):
        result.accepted[0] = 5


# --- bad input ------------------------------------------------------------------------------


def _table(**overrides: object) -> StepTable:
    columns: dict[str, object] = {
        "home": np.array([0, 1]),
        "step": np.array([0, 0]),
        "kw": np.array([1.0, 2.0]),
        "price": np.array([0.1, 0.2]),
        "last_curtailed": np.array([math.nan, NOW]),
    }
    columns.update(overrides)
    return StepTable(**columns)  # type: ignore[arg-type]


def test_valid_table_helper_builds() -> None:
    assert len(_table()) == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kw": np.array([1.0])}, "same length"),
        ({"last_curtailed": np.array([1.0, 2.0, 3.0])}, "same length"),
        ({"kw": np.array([1.0, math.nan])}, r"step 1: kw must be finite"),
        ({"kw": np.array([math.inf, 1.0])}, r"step 0: kw must be finite"),
        ({"kw": np.array([1.0, 0.0])}, r"step 1: kw must be > 0"),
        ({"kw": np.array([-1.0, 1.0])}, r"step 0: kw must be > 0"),
        ({"price": np.array([math.nan, 0.1])}, r"step 0: price must be finite"),
        ({"price": np.array([0.1, -math.inf])}, r"step 1: price must be finite"),
        ({"price": np.array([0.1, -0.01])}, r"step 1: price must be >= 0"),
        ({"last_curtailed": np.array([math.inf, NOW])}, "last_curtailed must be a time"),
        ({"home": np.array([0.0, 1.5])}, "home must hold integers"),
        ({"step": np.array([True, False])}, "step must hold integers"),
        ({"kw": np.array(["1", "2"])}, "kw must hold real numbers"),
        ({"last_curtailed": [None, NOW]}, "last_curtailed must hold real numbers"),
        ({"price": np.array([[0.1, 0.2]])}, "price must be one-dimensional"),
        ({"home": np.array([[0], [1]])}, "home must be one-dimensional"),
    ],
)
def test_bad_table_is_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _table(**overrides)


@pytest.mark.parametrize("row", [(0, 0, 1.0, 0.1), (0, 0, 1.0, 0.1, None, 5), 3])
def test_bad_row_is_refused(row: object) -> None:
    with pytest.raises(ValueError, match="row 1: expected"):
        StepTable.from_rows([(0, 0, 1.0, 0.1, None), row])  # type: ignore[list-item]


@pytest.mark.parametrize("target", [0.0, -5.0, math.nan, math.inf])
def test_non_positive_or_non_finite_target_is_refused(target: float) -> None:
    with pytest.raises(ValueError, match="target_kw must be a finite number > 0"):
        clear(_table(), target_kw=target, price_cap=0.4)


@pytest.mark.parametrize("cap", [-0.01, math.nan])
def test_negative_or_nan_cap_is_refused(cap: float) -> None:
    with pytest.raises(ValueError, match="price_cap must be a number >= 0"):
        clear(_table(), target_kw=1.0, price_cap=cap)


def test_zero_cap_accepts_only_free_steps() -> None:
    rows: list[Row] = [(0, 0, 1.0, 0.0, None), (1, 0, 1.0, 0.01, None)]

    result = clear(StepTable.from_rows(rows), target_kw=2.0, price_cap=0.0)

    assert result.accepted.tolist() == [0]
    assert result.clearing_price == 0.0
    assert result.shortfall_kw == 1.0


# --- properties -----------------------------------------------------------------------------

# Small grids make ties (equal prices, equal last_curtailed, sums hitting the target exactly)
# common; the float ranges cover everything else.
kws = st.one_of(
    st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 4.5, 0.1, 0.7]),
    st.floats(min_value=0.001, max_value=50.0),
)
prices = st.one_of(
    st.sampled_from([0.0, 0.10, 0.20, 0.25, 0.40]),
    st.floats(min_value=0.0, max_value=1.0),
)
curtailed_times = st.one_of(
    st.sampled_from([None, math.nan, -math.inf, NOW - DAY, NOW - 2 * DAY]),
    st.floats(min_value=0.0, max_value=2e9),
)
rows_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6),
        st.integers(min_value=0, max_value=3),
        kws,
        prices,
        curtailed_times,
    ),
    max_size=40,
)
targets = st.one_of(
    st.sampled_from([0.8, 1.0, 2.0, 3.0, 4.5, 5.0, 10.0]),
    st.floats(min_value=0.001, max_value=200.0),
)
caps = st.one_of(
    st.sampled_from([0.0, 0.20, 0.25, 0.40, math.inf]),
    st.floats(min_value=0.0, max_value=1.2),
)


@given(rows=rows_strategy, target_kw=targets, price_cap=caps)
@settings(max_examples=400, deadline=None)
def test_clear_matches_reference(rows: list[Row], target_kw: float, price_cap: float) -> None:
    assert_matches_reference(rows, target_kw, price_cap)


@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    size=st.integers(min_value=1, max_value=3_000),
    share=st.floats(min_value=0.001, max_value=1.3),
    price_cap=caps,
)
@settings(max_examples=60, deadline=None)
def test_clear_matches_reference_on_larger_rounds(
    seed: int, size: int, share: float, price_cap: float
) -> None:
    rng = np.random.default_rng(seed)
    rows: list[Row] = [
        (int(h), int(s), float(k), float(p), None if c < 0 else float(c))
        for h, s, k, p, c in zip(
            rng.integers(0, max(1, size // 4), size),
            rng.integers(0, 5, size),
            np.round(rng.uniform(0.1, 7.0, size), 1),
            np.round(rng.uniform(0.0, 0.6, size), 2),
            rng.integers(-5, 20, size) * DAY,
            strict=True,
        )
    ]
    offered = math.fsum(row[2] for row in rows if row[3] <= price_cap)
    target_kw = max(share * offered, 0.1)

    assert_matches_reference(rows, target_kw, price_cap)


@given(rows=rows_strategy, target_kw=targets, price_cap=caps)
@settings(max_examples=400, deadline=None)
def test_clearing_invariants(rows: list[Row], target_kw: float, price_cap: float) -> None:
    table = StepTable.from_rows(rows)
    result = clear(table, target_kw, price_cap)
    accepted = result.accepted.tolist()
    eligible = [i for i, row in enumerate(rows) if row[3] <= price_cap]
    rejected = sorted(set(eligible) - set(accepted))

    # Only eligible steps, each once; offered kW is everything within the cap.
    assert set(accepted) <= set(eligible)
    assert len(set(accepted)) == len(accepted)
    assert result.offered_kw == pytest.approx(math.fsum(rows[i][2] for i in eligible), abs=1e-9)
    assert result.accepted_kw == pytest.approx(math.fsum(rows[i][2] for i in accepted), abs=1e-9)

    # Price: the last accepted step's, never above the cap.
    if accepted:
        price = result.clearing_price
        assert price is not None
        assert price == rows[accepted[-1]][3]
        assert price <= price_cap
        assert all(rows[i][3] <= price for i in accepted)
    else:
        assert result.clearing_price is None

    # Either the target is met, or everything within the cap is taken and the gap reported.
    assert result.shortfall_kw >= 0.0
    if result.shortfall_kw > 0:
        assert rejected == []
        assert result.shortfall_kw == pytest.approx(target_kw - result.accepted_kw)
        assert result.accepted_kw < target_kw - TARGET_TOLERANCE_KW
    else:
        assert result.accepted_kw >= target_kw - TARGET_TOLERANCE_KW
        # Nothing beyond the step that met the target.
        before_last = result.accepted_kw - rows[accepted[-1]][2]
        assert before_last < target_kw - TARGET_TOLERANCE_KW + 1e-9

    # The accepted steps are a merit-order prefix of the eligible ones.
    keys = [_merit_key(rows, i) for i in accepted]
    assert keys == sorted(keys)
    if accepted and rejected:
        assert keys[-1] < min(_merit_key(rows, i) for i in rejected)
        assert max(rows[i][3] for i in accepted) <= min(rows[i][3] for i in rejected)
