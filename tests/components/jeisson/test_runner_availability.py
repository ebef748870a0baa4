"""Unreachable actuators: reported as ``unavailable`` opt-outs, and every load restored.

The switches here are template switches backed by input_booleans, as in the other tests, with
an availability template: ``input_boolean.<name>_reachable`` off makes ``switch.<name>``
unavailable, as a Zigbee plug dropping off the mesh or a WiFi relay losing its connection does
(HA then silently skips the entity in a service call, so nothing switches it).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.jeisson import event_runner
from custom_components.jeisson.const import (
    EVENT_ENDED,
    EVENT_OPTED_OUT,
    EVENT_STARTED,
    STORAGE_KEY_PREFIX,
)
from custom_components.jeisson.event_runner import RETRY_FOR, RETRY_INTERVAL
from jeisson.common.protocol import OptOut, OptOutReason
from tests.helpers import free_port, wait_for

from .aggregator_process import AggregatorProcess
from .common import (
    ACTUATOR,
    ENTRY_ID,
    HEATER,
    PUMP,
    SWITCHES,
    award,
    is_state,
    of_type,
    offline_entry,
    record,
    record_events,
    save_schedule,
    saved_event,
    state,
    take,
    turn,
)

RESTORE_FAILED = "Could not restore load heater"
RETRIED = "Restored load heater after event"


@pytest.fixture
async def switches(hass: HomeAssistant) -> list[str]:
    """The three test switches (all on), each unavailable while its ``_reachable`` is off.

    Overrides conftest's fixture of the same name, so every entry fixture uses these.
    """
    booleans = {name: {"name": name, "initial": True} for name in SWITCHES}
    booleans |= {f"{name}_reachable": {"initial": True} for name in SWITCHES}
    assert await async_setup_component(hass, "input_boolean", {"input_boolean": booleans})
    assert await async_setup_component(
        hass,
        "template",
        {
            "template": [
                {
                    "switch": [
                        {
                            "name": name,
                            "unique_id": f"test_{name}",
                            "state": f"{{{{ is_state('input_boolean.{name}', 'on') }}}}",
                            "availability": (
                                f"{{{{ is_state('input_boolean.{name}_reachable', 'on') }}}}"
                            ),
                            "turn_on": {
                                "action": "input_boolean.turn_on",
                                "target": {"entity_id": f"input_boolean.{name}"},
                            },
                            "turn_off": {
                                "action": "input_boolean.turn_off",
                                "target": {"entity_id": f"input_boolean.{name}"},
                            },
                        }
                        for name in SWITCHES
                    ]
                }
            ]
        },
    )
    await hass.async_block_till_done()
    entity_ids = [f"switch.{name}" for name in SWITCHES]
    assert all(state(hass, entity_id) == "on" for entity_id in entity_ids)
    return entity_ids


async def reach(hass: HomeAssistant, name: str, reachable: bool) -> None:
    """Make one test switch reachable (available) or not."""
    await turn(hass, f"{name}_reachable", on=reachable)


def reports(entry: MockConfigEntry) -> list[tuple[str, str | None, OptOutReason]]:
    """Return the opt-outs the client holds for the aggregator (it is unreachable)."""
    return [
        (message.event_id, message.load_id, message.reason)
        for message in entry.runtime_data.client.queued_messages
        if isinstance(message, OptOut)
    ]


def saved_to_restore(hass_storage: dict[str, Any]) -> dict[str, Any]:
    """Return the loads still to restore as the Store holds them."""
    return dict(hass_storage[f"{STORAGE_KEY_PREFIX}.{ENTRY_ID}"]["data"].get("to_restore", {}))


async def tick(hass: HomeAssistant, times: int = 1) -> None:
    """Let ``times`` retry intervals pass (with their timers), then settle."""
    for _ in range(times):
        async_fire_time_changed(hass, dt_util.utcnow() + RETRY_INTERVAL)
        await hass.async_block_till_done()


async def pending_restore(
    hass: HomeAssistant, entry: MockConfigEntry, award_id: str, *, on: bool
) -> None:
    """Run a short award of the heater to its end and the heater's restore while the heater
    is unreachable (``on``: what it was switched to meanwhile, at the device)."""
    message = award(award_id, starts_in=-0.5, lasts=1.5, loads=["heater"], stagger=600)
    await take(hass, entry, message)
    assert state(hass, HEATER) == "off"
    runner = entry.runtime_data.runner
    event = runner.schedule.events[award_id]
    await wait_for(lambda: bool(event.restore_at), what="end (restore scheduled)")
    await reach(hass, "water_heater", reachable=False)
    await turn(hass, "water_heater", on=on)  # unseen: the switch is unavailable
    async_fire_time_changed(hass, event.restore_at["heater"])
    await hass.async_block_till_done()
    assert event.finished
    assert set(runner.schedule.to_restore) == {"heater"}


async def test_load_unreachable_at_the_start_is_reported_and_left_alone(
    hass: HomeAssistant, offline: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """The pump is unreachable when the window starts: an ``unavailable`` opt-out for it
    (bus event and a message for the aggregator); the heater is shed. Back during the event
    (on), the pump is not switched off; nothing of it is restored at the end."""
    opted = record(hass, EVENT_OPTED_OUT)
    started = record(hass, EVENT_STARTED)
    await reach(hass, "pool_pump", reachable=False)
    await take(hass, offline, award("gone", starts_in=-0.5, lasts=2, loads=["heater", "pump"]))
    assert [(item["event_id"], item["load_id"], item["reason"]) for item in opted] == [
        ("evt-gone", "pump", "unavailable")
    ]
    assert reports(offline) == [("evt-gone", "pump", OptOutReason.UNAVAILABLE)]
    assert started[0]["loads"] == ["heater"]
    assert "Load pump is unreachable at the start of event evt-gone" in caplog.text
    event = offline.runtime_data.runner.schedule.events["gone"]
    assert event.opted_out == ["pump"]
    assert offline.runtime_data.runner.shed_kw() == 2.0
    assert state(hass, HEATER) == "off"

    await reach(hass, "pool_pump", reachable=True)
    assert state(hass, PUMP) == "on"
    await wait_for(lambda: state(hass, HEATER) == "on", what="heater restored at the end")
    assert event.finished
    assert state(hass, PUMP) == "on"
    assert len(opted) == 1
    assert offline.runtime_data.runner.schedule.to_restore == {}


async def test_held_load_dropping_off_is_reported_once_and_restored_at_the_end(
    hass: HomeAssistant, offline: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    """The heater's actuator drops off mid-event (twice): one ``unavailable`` opt-out; back
    (still off), it is not switched again during the event, and is restored at the end with
    the pump."""
    opted = record(hass, EVENT_OPTED_OUT)
    ended = record(hass, EVENT_ENDED)
    runner = offline.runtime_data.runner
    await take(hass, offline, award("drop", starts_in=-0.5, lasts=3, loads=["heater", "pump"]))
    assert state(hass, HEATER) == "off"
    assert runner.shed_kw() == 4.0

    await reach(hass, "water_heater", reachable=False)
    await wait_for(lambda: bool(opted), what="opt-out")
    event = runner.schedule.events["drop"]
    assert event.unreachable == ["heater"]
    assert event.held_loads() == ["pump"]
    assert runner.shed_kw() == 2.0
    stored = hass_storage[f"{STORAGE_KEY_PREFIX}.{ENTRY_ID}"]["data"]["events"]
    assert next(item for item in stored if item["award_id"] == "drop")["unreachable"] == ["heater"]

    await reach(hass, "water_heater", reachable=True)
    await reach(hass, "water_heater", reachable=False)
    await reach(hass, "water_heater", reachable=True)
    assert state(hass, HEATER) == "off"
    assert [(item["load_id"], item["reason"]) for item in opted] == [("heater", "unavailable")]
    assert reports(offline) == [("evt-drop", "heater", OptOutReason.UNAVAILABLE)]

    await wait_for(lambda: bool(ended), what="end")
    assert set(ended[0]["restore_at"]) == {"heater", "pump"}
    await wait_for(
        lambda: state(hass, HEATER) == "on" and state(hass, PUMP) == "on", what="both restored"
    )
    await wait_for(lambda: event.finished, what="done")
    assert len(opted) == 1
    assert runner.schedule.to_restore == {}


async def test_load_back_on_mid_event_then_switched_off_by_hand_is_left_off(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """The heater drops off, and comes back on (the plug powers up on): Jeisson does not
    switch it off again — it was given back. The homeowner then switches it off: at the end
    it stays off (only the pump is restored)."""
    opted = record(hass, EVENT_OPTED_OUT)
    runner = offline.runtime_data.runner
    await take(hass, offline, award("back", starts_in=-0.5, lasts=3, loads=["heater", "pump"]))
    await reach(hass, "water_heater", reachable=False)
    await turn(hass, "water_heater", on=True)
    await reach(hass, "water_heater", reachable=True)
    await hass.async_block_till_done()
    assert state(hass, HEATER) == "on"
    event = runner.schedule.events["back"]
    assert event.unreachable == []
    assert [(item["load_id"], item["reason"]) for item in opted] == [("heater", "unavailable")]

    await turn(hass, "water_heater", on=False)
    await wait_for(lambda: event.finished, what="end and restore")
    assert state(hass, PUMP) == "on"
    assert state(hass, HEATER) == "off"
    assert runner.schedule.to_restore == {}


async def test_restore_while_unreachable_is_retried_when_back_even_after_a_reload(
    hass: HomeAssistant,
    offline: MockConfigEntry,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The heater is unreachable when its restore comes: it is kept (saved) as still to
    restore, warned about once, survives a reload, and is switched on as soon as it is back."""
    await pending_restore(hass, offline, "late", on=False)
    assert caplog.text.count(RESTORE_FAILED) == 1
    assert saved_to_restore(hass_storage)["heater"]["event_id"] == "evt-late"
    await tick(hass, 3)  # still unreachable: nothing to do, no more warnings
    assert caplog.text.count(RESTORE_FAILED) == 1

    assert await hass.config_entries.async_reload(offline.entry_id)
    await hass.async_block_till_done()
    runner = offline.runtime_data.runner
    assert set(runner.schedule.to_restore) == {"heater"}
    assert runner.schedule.to_restore["heater"].failed
    assert state(hass, HEATER) == "unavailable"
    assert RETRIED not in caplog.text

    await reach(hass, "water_heater", reachable=True)
    await wait_for(lambda: state(hass, HEATER) == "on", what="restored once back")
    await wait_for(lambda: not runner.schedule.to_restore, what="nothing owed")
    assert RETRIED in caplog.text
    assert caplog.text.count(RESTORE_FAILED) == 1
    assert saved_to_restore(hass_storage) == {}
    assert runner._unsub_retry is None  # nothing owed, no event active: no retry timer


async def test_a_failing_restore_is_retried_every_interval_until_it_works(
    hass: HomeAssistant, offline: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """The heater stays reachable but refuses to switch on (a command timing out): warned
    once, retried every RETRY_INTERVAL, info once it works; then no retry timer is left."""
    ended = record(hass, EVENT_ENDED)
    runner = offline.runtime_data.runner
    await take(hass, offline, award("stuck", starts_in=-0.5, lasts=1.5, loads=["heater"]))
    with patch(f"{ACTUATOR}.async_turn_on", side_effect=HomeAssistantError("timeout")) as turn_on:
        await wait_for(lambda: bool(ended), what="end")
        await wait_for(lambda: turn_on.call_count == 1, what="first restore attempt")
        await hass.async_block_till_done()
        assert set(runner.schedule.to_restore) == {"heater"}
        assert runner._unsub_retry is not None
        await tick(hass, 2)
        assert turn_on.call_count == 3
    assert caplog.text.count(RESTORE_FAILED) == 1
    assert state(hass, HEATER) == "off"
    await tick(hass)
    assert state(hass, HEATER) == "on"
    assert "Restored load heater after event evt-stuck on a retry" in caplog.text
    assert runner.schedule.to_restore == {}
    assert runner._unsub_retry is None


async def test_homeowner_switching_off_after_the_event_is_never_fought(
    hass: HomeAssistant,
    offline: MockConfigEntry,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While its restore was pending, the heater was switched on at the device; it comes
    back on, which settles the restore. The homeowner then switches it off: no retry, no
    reload, switches it on again."""
    await pending_restore(hass, offline, "manual", on=True)
    await reach(hass, "water_heater", reachable=True)
    runner = offline.runtime_data.runner
    await wait_for(lambda: not runner.schedule.to_restore, what="settled")
    assert "Load heater is on again; nothing left to restore" in caplog.text
    await turn(hass, "water_heater", on=False)
    await tick(hass, 3)
    assert state(hass, HEATER) == "off"
    assert await hass.config_entries.async_reload(offline.entry_id)
    await hass.async_block_till_done()
    await tick(hass, 2)
    assert state(hass, HEATER) == "off"
    assert saved_to_restore(hass_storage) == {}
    assert RETRIED not in caplog.text


async def test_homeowner_switching_on_during_failing_retries_settles_them(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """Retries of a reachable heater that refuses commands stop once the homeowner switches
    it on; switched off again by hand later, it stays off."""
    ended = record(hass, EVENT_ENDED)
    runner = offline.runtime_data.runner
    await take(hass, offline, award("hand", starts_in=-0.5, lasts=1.5, loads=["heater"]))
    with patch(f"{ACTUATOR}.async_turn_on", side_effect=HomeAssistantError("timeout")):
        await wait_for(lambda: bool(ended), what="end")
        await wait_for(lambda: bool(runner.schedule.to_restore), what="restore owed")
        await turn(hass, "water_heater", on=True)
        await wait_for(lambda: not runner.schedule.to_restore, what="settled by hand")
    await turn(hass, "water_heater", on=False)
    await tick(hass, 2)
    assert state(hass, HEATER) == "off"


async def test_retries_give_up_after_retry_for(
    hass: HomeAssistant, offline: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """A load unreachable for RETRY_FOR is given up with a warning; no timer is left."""
    runner = offline.runtime_data.runner
    await offline.runtime_data.coordinator.async_opt_out("evt-later")  # the fixture's award
    await pending_restore(hass, offline, "lost", on=False)
    await tick(hass)
    assert set(runner.schedule.to_restore) == {"heater"}
    # RETRY_FOR later (the award ran on the real clock: the due time moves back instead):
    runner.schedule.to_restore["heater"].since -= RETRY_FOR
    await tick(hass)
    assert runner.schedule.to_restore == {}
    assert "Gave up restoring load heater after event evt-lost" in caplog.text
    assert runner._unsub_retry is None
    await reach(hass, "water_heater", reachable=True)
    assert state(hass, HEATER) == "off"


async def test_an_owed_load_awarded_again_is_taken_over_by_the_new_event(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """A heater still to restore (reachable again, but refusing to switch on) is awarded in a
    new event: it stays off through it and that event's end restores it."""
    ended = record(hass, EVENT_ENDED)
    runner = offline.runtime_data.runner
    await take(hass, offline, award("first", starts_in=-0.5, lasts=1, loads=["heater"]))
    with patch(f"{ACTUATOR}.async_turn_on", side_effect=HomeAssistantError("timeout")):
        await wait_for(lambda: bool(ended), what="end")
        await wait_for(lambda: bool(runner.schedule.to_restore), what="restore owed")
        await take(hass, offline, award("second", starts_in=-0.5, lasts=2, loads=["heater"]))
    second = runner.schedule.events["second"]
    assert second.held_loads() == ["heater"]
    assert runner.schedule.to_restore == {}
    await tick(hass)
    assert state(hass, HEATER) == "off"
    await wait_for(lambda: state(hass, HEATER) == "on", what="restored by the second event")


async def test_opting_out_restores_an_unreachable_load_found_off(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """Opting out of the event switches back on a load that dropped off and came back off."""
    runner = offline.runtime_data.runner
    await take(hass, offline, award("opt", starts_in=-0.5, lasts=600, loads=["heater"]))
    await reach(hass, "water_heater", reachable=False)
    event = runner.schedule.events["opt"]
    await wait_for(lambda: event.unreachable == ["heater"], what="given back")
    await reach(hass, "water_heater", reachable=True)
    assert state(hass, HEATER) == "off"
    await offline.runtime_data.coordinator.async_opt_out("evt-opt")
    await hass.async_block_till_done()
    assert state(hass, HEATER) == "on"
    assert event.finished
    assert runner.schedule.to_restore == {}


async def test_a_removed_load_is_no_longer_owed(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """A load removed from the home while its restore is pending is forgotten."""
    await pending_restore(hass, offline, "rm", on=False)
    loads = {key: value for key, value in offline.options["loads"].items() if key != "heater"}
    hass.config_entries.async_update_entry(offline, options={**offline.options, "loads": loads})
    await hass.async_block_till_done()
    await tick(hass)
    assert offline.runtime_data.runner.schedule.to_restore == {}


async def test_back_to_back_award_takes_over_a_load_still_to_restore(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """The heater waits for its staggered restore from one award when the next award of it
    starts: the new award keeps it off (the old restore is cancelled) and restores it."""
    runner = offline.runtime_data.runner
    await take(hass, offline, award("a", starts_in=-0.5, lasts=1, loads=["heater"], stagger=600))
    first = runner.schedule.events["a"]
    await wait_for(lambda: bool(first.restore_at), what="first award over")
    restore_was_due = first.restore_at["heater"]
    await take(hass, offline, award("b", starts_in=-0.2, lasts=1.5, loads=["heater"]))
    second = runner.schedule.events["b"]
    assert first.finished
    assert first.restore_at == {}
    assert second.held_loads() == ["heater"]
    assert second.switched_off == {"heater": 2.0}
    async_fire_time_changed(hass, restore_was_due)
    await hass.async_block_till_done()
    assert state(hass, HEATER) == "off"
    await wait_for(lambda: state(hass, HEATER) == "on", what="restored by the second award")
    await wait_for(lambda: second.finished, what="second award done")


async def test_switch_off_that_acted_but_failed_is_restored_at_the_end(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """The off command reaches the heater but its answer times out: reported unavailable,
    and — being off — the heater is switched back on at the end."""
    opted = record(hass, EVENT_OPTED_OUT)

    async def _off_then_time_out(*_args: Any) -> None:
        await turn(hass, "water_heater", on=False)
        raise HomeAssistantError("timeout")

    with patch(f"{ACTUATOR}.async_turn_off", side_effect=_off_then_time_out):
        await take(hass, offline, award("late-ack", starts_in=-0.5, lasts=1.5, loads=["heater"]))
    assert [(item["load_id"], item["reason"]) for item in opted] == [("heater", "unavailable")]
    event = offline.runtime_data.runner.schedule.events["late-ack"]
    assert event.unreachable == ["heater"]
    assert state(hass, HEATER) == "off"
    await wait_for(lambda: state(hass, HEATER) == "on", what="restored at the end")
    await wait_for(lambda: event.finished, what="done")


async def test_restart_resumes_owed_restores_and_unreachable_loads(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    switches: list[str],
    socket_enabled: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Saved before a restart: the car owed a restore (switched on at setup), and two loads
    given back as unreachable mid-event — the heater found on (left alone), the pump found
    off (restored at the end). Nothing is reported again."""
    now = dt_util.utcnow()
    saved = saved_event(
        "r1",
        now - timedelta(seconds=30),
        now + timedelta(seconds=2),
        status="active",
        loads=["heater", "pump"],
        switched_off={"heater": 2.0, "pump": 2.0},
        confirmed_off=["heater", "pump"],
        off_since={load: (now - timedelta(seconds=30)).isoformat() for load in ("heater", "pump")},
    )
    saved |= {"released": ["heater", "pump"], "opted_out": ["heater", "pump"]}
    saved["unreachable"] = ["heater", "pump"]
    save_schedule(hass_storage, ENTRY_ID, [saved])
    owed = {"event_id": "evt-old", "since": (now - timedelta(hours=1)).isoformat(), "failed": True}
    hass_storage[f"{STORAGE_KEY_PREFIX}.{ENTRY_ID}"]["data"]["to_restore"] = {"car": owed}
    await turn(hass, "pool_pump", on=False)
    await turn(hass, "ev_charger", on=False)
    opted = record(hass, EVENT_OPTED_OUT)
    entry = offline_entry(switches, f"http://127.0.0.1:{free_port()}")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    runner = entry.runtime_data.runner
    assert state(hass, "switch.ev_charger") == "on"
    assert "Restored load car after event evt-old on a retry" in caplog.text
    assert runner.schedule.to_restore == {}
    event = runner.schedule.events["r1"]
    assert event.unreachable == ["pump"]
    assert state(hass, PUMP) == "off"
    await wait_for(lambda: state(hass, PUMP) == "on", what="pump restored at the end")
    assert state(hass, HEATER) == "on"
    assert opted == []
    await hass.config_entries.async_unload(entry.entry_id)


def _opt_out_reasons(aggregator: AggregatorProcess, home_id: str) -> list[tuple[str, str]]:
    """Return (load, reason) of the home's opt-outs as the aggregator stored them."""
    with closing(sqlite3.connect(aggregator.workdir / "aggregator.db")) as conn:
        rows = conn.execute(
            "SELECT load_id, reason FROM opt_outs WHERE home_id = ?", (home_id,)
        ).fetchall()
    return [(str(load), str(reason)) for load, reason in rows]


async def test_the_aggregator_learns_a_load_is_unreachable(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """End to end: the awarded heater is unreachable at the start; the real aggregator
    records an ``unavailable`` opt-out for it and stops counting it."""
    events = record_events(hass)
    created = await aggregator.create_event(target_kw=1.0, starts_in=3.0, duration=3.0)
    await wait_for(lambda: bool(of_type(events, "jeisson_awarded")), what="award")
    assert of_type(events, "jeisson_awarded")[0]["loads"] == ["heater"]
    await reach(hass, "water_heater", reachable=False)
    await wait_for(lambda: bool(of_type(events, EVENT_OPTED_OUT)), what="opt-out")

    async def recorded() -> bool:
        detail = await aggregator.event(created["id"])
        return any("heater" in item["opted_out_loads"] for item in detail["awards"])

    await wait_for(recorded, what="opt-out reaching the aggregator")
    home_id = loaded_entry.data["home_id"]
    reasons = await hass.async_add_executor_job(_opt_out_reasons, aggregator, home_id)
    assert reasons == [("heater", "unavailable")]
    assert is_state(hass, PUMP, "on")


@pytest.mark.usefixtures("socket_enabled")
async def test_after_a_restart_an_actuator_not_back_yet_is_not_warned_about(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    switches: list[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Home Assistant restarts after an event ended with the heater held; the heater's device
    (a WiFi actuator, say) connects a little later, having switched it on itself: nothing to
    warn about. The pump's device never comes back: warned once the start-up grace is over."""
    now = dt_util.utcnow()
    saved = saved_event(
        "r2",
        now - timedelta(minutes=30),
        now - timedelta(seconds=10),
        status="active",
        loads=["heater", "pump"],
        switched_off={"heater": 2.0, "pump": 2.0},
        confirmed_off=["heater", "pump"],
        off_since={load: (now - timedelta(minutes=30)).isoformat() for load in ("heater", "pump")},
    )
    save_schedule(hass_storage, ENTRY_ID, [saved])
    for name in ("water_heater", "pool_pump"):
        await reach(hass, name, reachable=False)
    entry = offline_entry(switches, f"http://127.0.0.1:{free_port()}")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    runner = entry.runtime_data.runner
    await wait_for(lambda: set(runner.schedule.to_restore) == {"heater", "pump"}, what="owed")

    await reach(hass, "water_heater", reachable=True)  # back, and on already
    await wait_for(lambda: set(runner.schedule.to_restore) == {"pump"}, what="heater settled")
    assert state(hass, HEATER) == "on"
    assert "Could not restore load" not in caplog.text

    # The grace is minutes long: shortened here instead of waiting it out.
    monkeypatch.setattr(event_runner, "STARTUP_GRACE", timedelta(0))
    await tick(hass)
    assert caplog.text.count("Could not restore load pump") == 1
    assert RESTORE_FAILED not in caplog.text
    await hass.config_entries.async_unload(entry.entry_id)
