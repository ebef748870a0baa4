"""Sustained shortfall: an awarded load seen on for three minutes (after a one-minute grace)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aggregator.shortfall import DeliveryWatch, Shortfall

START = datetime(2026, 12, 4, 18, tzinfo=UTC)
S = timedelta(seconds=1)


def test_a_load_on_for_three_minutes_after_the_grace_falls_short() -> None:
    watch = DeliveryWatch()
    for second in range(0, 300, 10):
        watch.observe("e", "h", ["wh", "ev"], START + second * S, {"wh": 3.0, "ev": 0.0})
    # On from the start, but the first minute is grace: short from 18:04.
    assert watch.shortfalls("e", START, START + 239 * S) == []
    assert watch.shortfalls("e", START, START + 240 * S) == [Shortfall("e", "h", "wh", START)]


def test_a_load_switched_off_again_starts_over_and_unreported_loads_are_not_judged() -> None:
    watch = DeliveryWatch()
    watch.observe("e", "h", ["wh", "pool"], START + 100 * S, {"wh": 3.0})
    watch.observe("e", "h", ["wh", "pool"], START + 200 * S, {"wh": 0.01})  # off again
    watch.observe("e", "h", ["wh", "pool"], START + 210 * S, {"wh": 2.9})
    assert watch.shortfalls("e", START, START + 389 * S) == []
    assert [item.load_id for item in watch.shortfalls("e", START, START + 390 * S)] == ["wh"]
    watch.forget("e", "h", "wh")
    assert watch.shortfalls("e", START, START + 900 * S) == []


def test_events_are_watched_apart() -> None:
    watch = DeliveryWatch()
    watch.observe("a", "h", ["wh"], START, {"wh": 3.0})
    watch.observe("b", "h", ["wh"], START, {"wh": 3.0})
    watch.forget("a")
    assert watch.shortfalls("a", START, START + timedelta(hours=1)) == []
    assert len(watch.shortfalls("b", START, START + timedelta(hours=1))) == 1


def test_a_load_held_at_a_level_falls_short_only_above_it() -> None:
    watch = DeliveryWatch()
    levels = {"ev": 6.0}
    watch.observe("e", "h", ["ev"], START, {"ev": 6.4}, levels=levels)  # within 10 % + 50 W
    assert watch.shortfalls("e", START, START + timedelta(hours=1)) == []
    watch.observe("e", "h", ["ev"], START + S, {"ev": 7.5}, levels=levels)
    assert watch.shortfalls("e", START, START + timedelta(hours=1)) == [
        Shortfall("e", "h", "ev", START + S)
    ]
