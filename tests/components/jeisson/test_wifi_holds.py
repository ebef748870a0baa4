"""The end of a WiFi actuator's off hold, read from the event runner's saved schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from custom_components.jeisson.schedule import HeldEvent, Schedule
from custom_components.jeisson.wifi_devices import (
    PairedDevice,
    event_hold_end,
    stagger_share,
)
from jeisson.common.protocol import EventKind, HomeEventStatus

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
STAGGER_S = 600.0


def _event(award_id: str, status: HomeEventStatus, **fields: object) -> HeldEvent:
    event = HeldEvent(
        event_id="e1",
        award_id=award_id,
        kind=EventKind.MARKET,
        price=0.3,
        currency="EUR",
        window_start=START,
        window_end=END,
        restore_stagger_s=STAGGER_S,
        loads=["heater", "pump"],
        committed_kw=3.5,
        status=status,
    )
    for name, value in fields.items():
        setattr(event, name, value)
    return event


def test_an_active_hold_ends_with_the_window_plus_a_stable_share_of_the_stagger() -> None:
    share = stagger_share("dev-1", "a1")
    assert 0.0 <= share < 1.0
    assert share == stagger_share("dev-1", "a1")
    assert share != stagger_share("dev-2", "a1")  # devices left alone do not all come back at once
    schedule = Schedule(
        events={"a1": _event("a1", HomeEventStatus.ACTIVE, switched_off={"heater": 2.0})}
    )
    assert event_hold_end(schedule, ["heater"], "dev-1") == END + timedelta(
        seconds=STAGGER_S * share
    )


def test_a_chosen_restore_time_wins_and_given_back_loads_are_not_held() -> None:
    restore = END + timedelta(seconds=42)
    restoring = _event(
        "a1",
        HomeEventStatus.RESTORING,
        switched_off={"heater": 2.0, "pump": 1.5},
        restore_at={"heater": restore},
        released=["pump"],
    )
    schedule = Schedule(events={"a1": restoring})
    assert event_hold_end(schedule, ["heater"], "dev-1") == restore
    assert event_hold_end(schedule, ["pump"], "dev-1") is None


def test_no_hold_before_the_start_after_an_opt_out_or_without_a_schedule() -> None:
    awarded = _event("a1", HomeEventStatus.AWARDED)
    opted = _event("a2", HomeEventStatus.ACTIVE, switched_off={"heater": 2.0}, opted_out=["heater"])
    done = _event("a3", HomeEventStatus.DONE, switched_off={"heater": 2.0})
    schedule = Schedule(events={"a1": awarded, "a2": opted, "a3": done})
    assert event_hold_end(schedule, ["heater"], "dev-1") is None
    assert event_hold_end(None, ["heater"], "dev-1") is None


def test_two_events_holding_one_device_end_with_the_later_one() -> None:
    later = _event("a2", HomeEventStatus.ACTIVE, switched_off={"pump": 1.5})
    later.window_end = END + timedelta(hours=1)
    schedule = Schedule(
        events={
            "a1": _event("a1", HomeEventStatus.ACTIVE, switched_off={"heater": 2.0}),
            "a2": later,
        }
    )
    end = event_hold_end(schedule, ["heater", "pump"], "dev-1")
    assert end is not None
    assert end >= END + timedelta(hours=1)


def test_a_paired_device_keeps_its_key_out_of_its_repr_and_round_trips() -> None:
    device = PairedDevice(
        device_id="d", name="N", firmware="1", rated_kw=1.0, meter=False, key=b"\x01" * 16
    )
    assert "key" not in repr(device)
    assert PairedDevice.from_dict(device.as_dict()) == device
