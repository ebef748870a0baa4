"""Delivered kW over an interval, from stored samples: the time-weighted mean, summed over homes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aggregator.openadr.delivery import mean_shed_kw

T0 = datetime(2026, 12, 5, 18, 0, tzinfo=UTC)
HOLD = timedelta(seconds=30)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_each_sample_holds_until_the_next_one() -> None:
    samples = [("a", at(0), 2.0), ("a", at(30), 4.0)]
    # 2 kW for the first 30 s, 4 kW for the last 30 s of a minute.
    assert mean_shed_kw(samples, at(0), at(60), HOLD) == pytest.approx(3.0)


def test_homes_add_up() -> None:
    samples = [("a", at(0), 2.0), ("a", at(20), 2.0), ("b", at(0), 1.0), ("b", at(20), 1.0)]
    assert mean_shed_kw(samples, at(0), at(40), HOLD) == pytest.approx(3.0)


def test_a_home_that_went_silent_stops_counting_after_the_hold() -> None:
    # One sample, then nothing: it counts for 30 s of the 60 s span.
    assert mean_shed_kw([("a", at(0), 4.0)], at(0), at(60), HOLD) == pytest.approx(2.0)


def test_a_sample_taken_before_the_span_counts_for_its_overlap_only() -> None:
    samples = [("a", at(-10), 6.0), ("a", at(20), 0.0)]
    assert mean_shed_kw(samples, at(0), at(40), HOLD) == pytest.approx(6.0 * 20 / 40)


def test_an_empty_span_or_no_samples_deliver_nothing() -> None:
    assert mean_shed_kw([], at(0), at(60), HOLD) == 0.0
    assert mean_shed_kw([("a", at(0), 4.0)], at(10), at(10), HOLD) == 0.0
