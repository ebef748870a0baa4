"""The saved schedule: round trip through the Store form, energy booking, pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from custom_components.jeisson.const import HISTORY_LIMIT
from custom_components.jeisson.schedule import HeldEvent, Outcome, Schedule
from jeisson.common.protocol import EventKind, HomeEventStatus

START = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)


def held(award_id: str, start: datetime = START, **kwargs: object) -> HeldEvent:
    """Return a one-hour award of two loads at 0.3/kWh."""
    return HeldEvent(
        event_id=f"evt-{award_id}",
        award_id=award_id,
        kind=EventKind.MARKET,
        price=0.3,
        currency="EUR",
        window_start=start,
        window_end=start + timedelta(hours=1),
        restore_stagger_s=60,
        loads=["a", "b"],
        committed_kw=3.0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_release_books_energy_within_the_window_only() -> None:
    """A load held 30 min of the window at 2 kW earns 1 kWh x price; after the end counts not."""
    event = held("1", status=HomeEventStatus.ACTIVE)
    event.switched_off = {"a": 2.0, "b": 1.0}
    event.confirmed_off = ["a", "b"]
    event.off_since = {"a": START - timedelta(minutes=5), "b": START + timedelta(minutes=30)}
    assert event.shed_kw() == 3.0
    event.release("a", START + timedelta(minutes=30))
    event.release("a", START + timedelta(minutes=50))  # twice: counted once
    event.release("b", START + timedelta(hours=2))
    assert event.released == ["a", "b"]
    assert event.delivered_kwh == 1.5
    assert round(event.earnings, 6) == 0.45
    assert event.held_loads() == []


def test_round_trip_keeps_everything() -> None:
    """What is saved is what is loaded after a restart."""
    event = held(
        "1",
        status=HomeEventStatus.RESTORING,
        outcome=Outcome.CANCELLED,
        switched_off={"a": 2.0},
        confirmed_off=["a"],
        off_since={"a": START},
        restore_at={"a": START + timedelta(minutes=61)},
        opted_out=["b"],
        released=["b"],
    )
    schedule = Schedule(events={"1": event}, earnings_total=1.25, currency="EUR")
    again = Schedule.from_dict(schedule.as_dict())
    assert again == schedule
    assert again.events["1"].to_held_award().status is HomeEventStatus.RESTORING
    assert Schedule.from_dict(None) == Schedule()


def test_prune_keeps_the_newest_finished_awards_and_every_open_one() -> None:
    """History is bounded; open awards are never pruned."""
    schedule = Schedule()
    for index in range(HISTORY_LIMIT + 5):
        event = held(str(index), START + timedelta(days=index), status=HomeEventStatus.DONE)
        schedule.events[event.award_id] = event
    schedule.events["open"] = held("open", START - timedelta(days=1))
    schedule.prune()
    assert len(schedule.events) == HISTORY_LIMIT + 1
    assert "open" in schedule.events
    assert "0" not in schedule.events
    assert [event.award_id for event in schedule.open_events()] == ["open"]
    assert schedule.for_event("evt-open")[0].award_id == "open"
