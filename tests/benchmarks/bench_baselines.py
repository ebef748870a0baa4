"""Speed and memory of fleet baselines and settlement (run with ``scripts/bench``).

A seeded fleet of 100 000 homes is generated once per module: 10 weekdays of history on the
15-minute grid (96 intervals), each home a base load of 0.3 to 1.5 kW times an evening-peaked
daily shape, times a day factor of 0.8 to 1.2, plus noise. 3 % of the home-days are invalid
(event days) and 0.5 % miss one interval (NaN). The event runs 18:00-20:00 (intervals 72..79);
the event day is measured up to the start. Only the call under test is timed; peak memory is
measured on a separate untimed call with ``tracemalloc`` (numpy reports its buffers to it) and
stored in the benchmark's ``extra_info`` (``peak_mib``: memory allocated by the call on top of
its inputs).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from aggregator.settlement.baselines import (
    BaselineConfig,
    BaselineMethod,
    BaselineOutcome,
    BaselineResult,
    DayType,
    EventWindow,
    compute_baselines,
)
from aggregator.settlement.report import settle_event

SEED = 20_240_715
HOMES = 100_000
DAYS = 10
INTERVALS = 96
WINDOW = EventWindow(72, 80)
INVALID_DAY_SHARE = 0.03
INCOMPLETE_DAY_SHARE = 0.005
SMALLEST_BASE_KW, LARGEST_BASE_KW = 0.3, 1.5
DAY_FACTOR_LOW, DAY_FACTOR_HIGH = 0.8, 1.2
NOISE_KW = 0.3
CURTAILED_SHARE = 0.4
MIB = 2**20

pytestmark = pytest.mark.benchmark(group="baselines")


def daily_shape() -> np.ndarray:
    """An evening-peaked residential day shape, 1.0 on average (96 intervals)."""
    hours = np.arange(INTERVALS) / 4
    shape = (
        0.6 + 0.4 * np.exp(-(((hours - 8) / 1.5) ** 2)) + 1.2 * np.exp(-(((hours - 19) / 2.5) ** 2))
    )
    return shape / shape.mean()


def make_fleet(dtype: type[np.floating[Any]]) -> dict[str, Any]:
    """Return compute_baselines keyword arguments for the seeded 100k-home fleet."""
    rng = np.random.default_rng(SEED)
    base = rng.uniform(SMALLEST_BASE_KW, LARGEST_BASE_KW, HOMES).astype(dtype)
    day_factor = rng.uniform(DAY_FACTOR_LOW, DAY_FACTOR_HIGH, (HOMES, DAYS)).astype(dtype)
    history = rng.random((HOMES, DAYS, INTERVALS), dtype=np.float32).astype(dtype, copy=False)
    history *= dtype(NOISE_KW)
    history += (base[:, None] * day_factor)[:, :, None] * daily_shape().astype(dtype)
    incomplete = rng.random((HOMES, DAYS)) < INCOMPLETE_DAY_SHARE
    history[incomplete, rng.integers(0, INTERVALS, int(incomplete.sum()))] = np.nan
    valid = rng.random((HOMES, DAYS)) >= INVALID_DAY_SHARE
    event_day = (base[:, None] * daily_shape().astype(dtype)).astype(dtype)
    event_day += rng.random((HOMES, INTERVALS), dtype=np.float32).astype(dtype) * dtype(NOISE_KW)
    event_day[:, WINDOW.start :] = np.nan
    return {
        "history_kw": history,
        "valid_days": valid,
        "history_day_types": [DayType.WEEKDAY] * DAYS,
        "event_day_type": DayType.WEEKDAY,
        "event_day_kw": event_day,
        "window": WINDOW,
    }


@pytest.fixture(scope="module")
def fleet32() -> dict[str, Any]:
    return make_fleet(np.float32)


@pytest.fixture(scope="module")
def fleet64() -> dict[str, Any]:
    return make_fleet(np.float64)


def peak_mib(call: Callable[[], object]) -> float:
    """Return the peak memory (MiB) allocated while ``call`` runs, beyond what existed before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - before) / MIB


def check(result: BaselineResult) -> None:
    """Fail the benchmark if the timed call did not compute real baselines."""
    outcomes = {result.outcome(home) for home in range(0, HOMES, 997)}
    assert BaselineOutcome.X_OF_Y in outcomes
    assert np.isfinite(result.baseline_kw).mean() > 0.99


def run_baselines(
    benchmark: BenchmarkFixture, fleet: dict[str, Any], config: BaselineConfig
) -> BaselineResult:
    """Time compute_baselines on ``fleet`` and record sizes and peak memory."""
    result: BaselineResult = benchmark(compute_baselines, **fleet, config=config)
    check(result)
    benchmark.extra_info["input_mib"] = round(fleet["history_kw"].nbytes / MIB, 1)
    benchmark.extra_info["peak_mib"] = round(
        peak_mib(lambda: compute_baselines(**fleet, config=config)), 1
    )
    return result


def test_residential_100k_float32(benchmark: BenchmarkFixture, fleet32: dict[str, Any]) -> None:
    run_baselines(benchmark, fleet32, BaselineConfig())


def test_caiso_10_of_10_100k_float32(benchmark: BenchmarkFixture, fleet32: dict[str, Any]) -> None:
    result = run_baselines(benchmark, fleet32, BaselineConfig(method=BaselineMethod.CAISO_10_OF_10))
    # About 30 % of the homes lack 10 valid weekdays and fall back; the rest get 10-of-10.
    assert (result.outcome_codes == list(BaselineOutcome).index(BaselineOutcome.X_OF_Y)).any()


def test_residential_100k_float64(benchmark: BenchmarkFixture, fleet64: dict[str, Any]) -> None:
    run_baselines(benchmark, fleet64, BaselineConfig())


def test_settle_100k(benchmark: BenchmarkFixture, fleet32: dict[str, Any]) -> None:
    """Settlement report (rows, totals) for 100k homes from precomputed baselines."""
    baselines = compute_baselines(**fleet32)
    rng = np.random.default_rng(SEED)
    curtailed = rng.random(HOMES) < CURTAILED_SHARE
    measured = np.where(
        curtailed[:, None], baselines.baseline_kw * 0.5, baselines.baseline_kw * 1.01
    )
    ids = [f"home-{index:06d}" for index in range(HOMES)]
    prices = rng.choice([0.25, 0.30, 0.35], HOMES)
    report = benchmark(settle_event, "evt", ids, baselines, measured, prices)
    assert report.totals.homes_paid > 0.3 * HOMES
    benchmark.extra_info["peak_mib"] = round(
        peak_mib(lambda: settle_event("evt", ids, baselines, measured, prices)), 1
    )


def test_settlement_csv_100k(benchmark: BenchmarkFixture, fleet32: dict[str, Any]) -> None:
    """CSV export of a 100k-home settlement report."""
    baselines = compute_baselines(**fleet32)
    measured = baselines.baseline_kw * 0.5
    ids = [f"home-{index:06d}" for index in range(HOMES)]
    report = settle_event("evt", ids, baselines, measured, 0.3)
    text = benchmark(report.to_csv)
    assert text.count("\n") == HOMES + 2
