"""Awarded events on a Jeisson WiFi actuator: a real aggregator, the real simulator process.

The award switches the device off with the hold's end; Home Assistant gives the load back at
the end; when Home Assistant goes away mid-event the device restores the load on time by itself;
a device that rebooted without its hold is put back in it; its button is an opt-out.
"""

# ruff: noqa: F811 - the fixtures imported from wifi_support are parameters of the tests

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.jeisson.const import EVENT_AWARDED, EVENT_ENDED, EVENT_OPTED_OUT
from custom_components.jeisson.wifi_devices import RENEW_INTERVAL, actuator_ref, stagger_share
from jeisson.actuator import protocol
from tests.helpers import wait_for

from .aggregator_process import AggregatorProcess
from .common import load_options, of_type, record_events
from .wifi_support import (
    endpoint_url,  # noqa: F401 - fixture
    paired_record,
    raw_device,  # noqa: F401 - fixture
    simulator,  # noqa: F401 - fixture
    start_device,  # noqa: F401 - fixture
    state_of,
    store_paired,
)

DEVICE = "sim-heater"
RELAY = "switch.water_heater_relay"
LOAD_SWITCH = "switch.jeisson_home_water_heater"
STAGGER_S = 1.0
OFF_STATE = {
    "relay": "off",
    "power_w": 0.0,
    "power_measured": True,
    "hold": None,
    "cause": "command",
    "uptime_s": 5.0,
}
RESTORE_TOLERANCE_S = 0.6
"""The device's fail-safe loop runs every 0.25 s; the test polls every 0.05 s."""


@pytest.fixture
def default_loads(hass_storage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One load, the water heater, on a WiFi actuator already paired with the home."""
    store_paired(hass_storage, paired_record(DEVICE))
    return {
        "heater": load_options(actuator_ref(DEVICE), name="Water heater", rated_kw=2.0),
    }


def _end(created: dict[str, Any]) -> float:
    return datetime.fromisoformat(created["end"]).timestamp()


def _share(events: list[Event]) -> float:
    """Return this device's share of the stagger for the (first) award."""
    return stagger_share(DEVICE, of_type(events, EVENT_AWARDED)[0]["award_id"])


async def _event(aggregator: AggregatorProcess, duration: float) -> dict[str, Any]:
    return await aggregator.create_event(
        target_kw=1.0, price_cap=0.5, duration=duration, restore_stagger_s=STAGGER_S
    )


async def test_an_award_holds_the_device_off_until_the_event_gives_it_back(
    hass: HomeAssistant, aggregator: AggregatorProcess, endpoint_url: str, simulator: Any
) -> None:
    """off carries the window end plus the device's share of the stagger; restored after."""
    events = record_events(hass)
    sim = await simulator(endpoint_url, DEVICE, name="Water heater", rated_kw=2.0)
    await wait_for(lambda: state_of(hass, RELAY) == "on", what="device connected")
    assert state_of(hass, LOAD_SWITCH) == "on"
    created = await _event(aggregator, duration=3.0)

    await wait_for(lambda: bool(of_type(events, EVENT_AWARDED)), what="award")
    assert of_type(events, EVENT_AWARDED)[0]["loads"] == ["heater"]
    await wait_for(lambda: state_of(hass, RELAY) == "off", what="relay off")
    award_id = of_type(events, EVENT_AWARDED)[0]["award_id"]
    expected_until = _end(created) + STAGGER_S * stagger_share(DEVICE, award_id)
    hold = sim.hold()
    assert hold["until"] == pytest.approx(expected_until, abs=0.01)
    assert hold["until_wall"] == pytest.approx(expected_until, abs=0.5)
    relay = hass.states.get(RELAY)
    assert relay is not None
    assert relay.attributes["cause"] == "command"
    assert datetime.fromisoformat(relay.attributes["hold_until"]).timestamp() == pytest.approx(
        expected_until, abs=0.01
    )

    def held() -> bool:
        load = hass.states.get(LOAD_SWITCH)
        return load is not None and load.state == "off" and load.attributes["held_by_jeisson"]

    await wait_for(held, what="the load switch shows the hold")
    assert float(state_of(hass, "sensor.water_heater_power") or -1) == 0.0

    await wait_for(lambda: bool(of_type(events, EVENT_ENDED)), what="event end")
    await wait_for(lambda: state_of(hass, RELAY) == "on", timeout=5, what="restored")
    await wait_for(lambda: sim.hold() is None, timeout=2, what="hold released")
    assert not of_type(events, EVENT_OPTED_OUT)
    assert await sim.stop() == 0


async def test_home_assistant_going_away_mid_event_leaves_the_device_to_restore_on_time(
    hass: HomeAssistant,
    aggregator: AggregatorProcess,
    loaded_entry: MockConfigEntry,
    endpoint_url: str,
    simulator: Any,
) -> None:
    """The entry unloads mid-event: the device ends the hold by its own clock, on time."""
    events = record_events(hass)
    sim = await simulator(endpoint_url, DEVICE, name="Water heater", rated_kw=2.0)
    await wait_for(lambda: state_of(hass, RELAY) == "on", what="device connected")
    await _event(aggregator, duration=2.5)
    await wait_for(lambda: state_of(hass, RELAY) == "off", what="relay off")
    until = sim.hold()["until"]

    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    await wait_for(lambda: "disconnected from Home Assistant" in sim.output(), what="link lost")
    assert sim.hold()["until"] == until  # still held: nobody is there to restore it

    await wait_for(lambda: sim.hold() is None, timeout=10, what="restored by the device")
    restored_at = time.time()
    assert until - RESTORE_TOLERANCE_S <= restored_at <= until + RESTORE_TOLERANCE_S
    assert "load restored by the device" in sim.output()
    assert not of_type(events, EVENT_ENDED)  # Home Assistant was not there for the end
    assert await sim.stop() == 0


async def test_a_device_that_rebooted_without_its_hold_is_put_back_in_it(
    hass: HomeAssistant,
    aggregator: AggregatorProcess,
    endpoint_url: str,
    simulator: Any,
    raw_device: Any,
) -> None:
    """A power blip: the old link is half-open (no FIN) when the rebooted device, its hold
    lost, connects again. Home Assistant re-sends the event's off before showing the new link,
    so the load is never seen on (no override) and ends with the event."""
    events = record_events(hass)
    before = await raw_device(endpoint_url)  # the device before the blip, driven by hand
    await before.send(before.hello(DEVICE, name="Water heater"))
    assert (await before.next())["type"] == "welcome"
    await wait_for(lambda: state_of(hass, RELAY) == "on", what="device connected")
    created = await _event(aggregator, duration=4.0)
    command = await before.next(timeout=10)
    assert command is not None
    assert command["command"] == "off"
    until = command["until"]
    assert until == pytest.approx(_end(created) + STAGGER_S * _share(events), abs=0.01)
    hold = protocol.hold_payload(command["id"], until, command["duration_s"])
    off = {**OFF_STATE, "hold": hold}
    await before.send(protocol.ack(command["id"], False, off))
    await wait_for(lambda: state_of(hass, RELAY) == "off", what="relay off")

    seen: list[tuple[str, bool]] = []  # (relay state, whether the event had ended)

    @callback
    def _record(event: Event[EventStateChangedData]) -> None:
        if (new := event.data["new_state"]) is not None:
            seen.append((new.state, bool(of_type(events, EVENT_ENDED))))

    unsub = async_track_state_change_event(hass, [RELAY], _record)
    rebooted = await simulator(endpoint_url, DEVICE, name="Water heater", rated_kw=2.0)
    await wait_for(lambda: rebooted.hold() not in (None, "unreadable"), what="back in its hold")
    assert rebooted.hold()["until"] == pytest.approx(until, abs=0.01)
    assert (await before.next())["code"] == "replaced"
    await wait_for(lambda: bool(of_type(events, EVENT_ENDED)), what="event end")
    await wait_for(lambda: state_of(hass, RELAY) == "on", timeout=5, what="restored")
    await wait_for(lambda: rebooted.hold() is None, timeout=2, what="hold released")
    unsub()
    assert {state for state, ended in seen if not ended} <= {"off"}  # never on while held
    assert not of_type(events, EVENT_OPTED_OUT)
    assert await rebooted.stop() == 0


async def test_the_device_button_mid_event_is_an_opt_out_and_is_not_fought(
    hass: HomeAssistant, aggregator: AggregatorProcess, endpoint_url: str, start_device: Any
) -> None:
    """The homeowner presses the relay's button: the load stays on and the opt-out is sent."""
    events = record_events(hass)
    sim = start_device(endpoint_url, DEVICE)
    await wait_for(lambda: state_of(hass, RELAY) == "on", what="device connected")
    created = await _event(aggregator, duration=30.0)
    await wait_for(lambda: state_of(hass, RELAY) == "off", what="relay off")
    assert not sim.relay.is_on()

    sim.device.local_override()
    await wait_for(lambda: bool(of_type(events, EVENT_OPTED_OUT)), what="opt-out")
    opted = of_type(events, EVENT_OPTED_OUT)[0]
    assert (opted["load_id"], opted["reason"]) == ("heater", "override")

    async def reported() -> bool:
        detail = await aggregator.event(created["id"])
        return any("heater" in award["opted_out_loads"] for award in detail["awards"])

    await wait_for(reported, what="opt-out reported to the aggregator")
    # Neither the hourly hold renewal nor a reconnect puts it back in the hold. (Moving the
    # clock an hour also runs out the connection's read timeout: the device reconnects.)
    commands = list(sim.device._recent)
    async_fire_time_changed(hass, dt_util.utcnow() + RENEW_INTERVAL)
    await hass.async_block_till_done()
    await wait_for(
        lambda: sim.client.connections == 2 and state_of(hass, RELAY) == "on",
        what="connected again",
    )
    await hass.async_block_till_done()
    assert sim.relay.is_on()
    assert sim.device.hold is None
    assert sim.device._recent == commands  # no command since the button
