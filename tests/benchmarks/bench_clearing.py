"""Speed of the merit-order clearing engine on realistic rounds (run with ``scripts/bench``).

A round is generated once per benchmark, seeded: homes bid 1 to 5 steps (most bid 5), prices
in cents between 0.05 and 0.60 per kWh and non-decreasing along each home's curve (many equal
prices, so the rotation tie-break does real work), loads of 0.3 to 7 kW, a quarter of the homes
never curtailed and the rest curtailed within the last 90 days. The cap is 0.40 and the target
30 % of the kW offered within it; only :func:`aggregator.clearing.clear` is timed.
"""

from __future__ import annotations

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from aggregator.clearing import NEVER_CURTAILED, ClearingResult, StepTable, clear

SEED = 20_240_601
NOW = 1_750_000_000.0
DAY = 86_400.0
PRICE_CAP = 0.40
TARGET_SHARE = 0.30
SHORTFALL_SHARE = 1.20
STEPS_PER_HOME_WEIGHTS = (0.05, 0.05, 0.10, 0.20, 0.60)  # 1..5 steps, mean 4.25
NEVER_CURTAILED_SHARE = 0.25
CURTAILED_WITHIN_DAYS = 90.0
LOWEST_PRICE, HIGHEST_PRICE, PRICE_TICK = 0.05, 0.60, 0.01
SMALLEST_KW, LARGEST_KW, KW_TICK = 0.3, 7.0, 0.1

pytestmark = pytest.mark.benchmark(group="clearing")


def make_round(size: int, seed: int = SEED) -> StepTable:
    """Return a seeded round of exactly ``size`` bid steps from ~size / 4.25 homes."""
    rng = np.random.default_rng(seed)
    homes = size  # more than enough homes; the steps are cut at ``size``
    counts = rng.choice(np.arange(1, 6), size=homes, p=STEPS_PER_HOME_WEIGHTS)
    home = np.repeat(np.arange(homes), counts)[:size]
    first_step = np.concatenate(([0], np.cumsum(counts)[:-1]))
    step = np.arange(size) - first_step[home]

    # Each curve starts at a base price and climbs, in whole cents, never above the highest.
    base = rng.uniform(LOWEST_PRICE, HIGHEST_PRICE - 0.15, homes)[home]
    climb = rng.uniform(0.0, 0.05, size)
    climb[step == 0] = 0.0
    cumulative_climb = np.cumsum(climb)
    climb_at_home_start = cumulative_climb[np.flatnonzero(step == 0)][home]
    price = (
        np.round(
            np.minimum(base + cumulative_climb - climb_at_home_start, HIGHEST_PRICE) / PRICE_TICK
        )
        * PRICE_TICK
    )

    kw = np.round(rng.uniform(SMALLEST_KW, LARGEST_KW, size) / KW_TICK) * KW_TICK
    never = rng.random(homes) < NEVER_CURTAILED_SHARE
    last = NOW - rng.uniform(0.0, CURTAILED_WITHIN_DAYS * DAY, homes)
    last[never] = NEVER_CURTAILED
    return StepTable(home=home, step=step, kw=kw, price=price, last_curtailed=last[home])


def offered_within_cap(table: StepTable) -> float:
    """Return the kW offered at or below the benchmark's price cap."""
    return float(table.kw[table.price <= PRICE_CAP].sum())


def check_met(result: ClearingResult, table: StepTable) -> None:
    """Fail the benchmark if the timed call did not clear the round as expected."""
    assert result.shortfall_kw == 0.0
    assert result.clearing_price is not None
    assert result.clearing_price <= PRICE_CAP
    assert 0 < len(result.accepted) < len(table)


@pytest.fixture(scope="module")
def round_100k() -> StepTable:
    return make_round(100_000)


@pytest.fixture(scope="module")
def round_1m() -> StepTable:
    return make_round(1_000_000)


def check_realistic(table: StepTable) -> None:
    """Fail if the generated round lacks the advertised shape (checked after timing)."""
    homes = len(np.unique(table.home))
    assert 0.2 * len(table) <= homes <= 0.27 * len(table)
    assert table.price.min() >= LOWEST_PRICE - 1e-9
    assert table.price.max() <= HIGHEST_PRICE + 1e-9
    order = np.lexsort((table.step, table.home))
    same_home = np.diff(table.home[order]) == 0
    assert (np.diff(table.price[order])[same_home] >= -1e-9).all()


def test_clear_100k_steps(benchmark: BenchmarkFixture, round_100k: StepTable) -> None:
    target = TARGET_SHARE * offered_within_cap(round_100k)
    result = benchmark(clear, round_100k, target, PRICE_CAP)
    check_met(result, round_100k)
    check_realistic(round_100k)


def test_clear_100k_steps_shortfall(benchmark: BenchmarkFixture, round_100k: StepTable) -> None:
    """Worst case: the target exceeds the offer, so every step within the cap is sorted."""
    offered = offered_within_cap(round_100k)
    result = benchmark(clear, round_100k, SHORTFALL_SHARE * offered, PRICE_CAP)
    assert result.shortfall_kw > 0
    assert result.accepted_kw == pytest.approx(offered)


def test_clear_1m_steps(benchmark: BenchmarkFixture, round_1m: StepTable) -> None:
    target = TARGET_SHARE * offered_within_cap(round_1m)
    result = benchmark(clear, round_1m, target, PRICE_CAP)
    check_met(result, round_1m)
    check_realistic(round_1m)


def test_build_table_from_arrays_100k(benchmark: BenchmarkFixture, round_100k: StepTable) -> None:
    """Building (copying and validating) a table from numpy columns."""
    columns = {name: getattr(round_100k, name) for name in StepTable.__dataclass_fields__}
    table = benchmark(StepTable, **columns)
    assert np.array_equal(table.price, round_100k.price)


def test_build_table_from_rows_100k(benchmark: BenchmarkFixture, round_100k: StepTable) -> None:
    """Building a table from Python tuples, as the negotiation does from parsed bids."""
    rows = list(
        zip(
            round_100k.home.tolist(),
            round_100k.step.tolist(),
            round_100k.kw.tolist(),
            round_100k.price.tolist(),
            [None if t == NEVER_CURTAILED else t for t in round_100k.last_curtailed.tolist()],
            strict=True,
        )
    )
    table = benchmark(StepTable.from_rows, rows)
    assert np.array_equal(table.last_curtailed, round_100k.last_curtailed)
