"""A home battery as a load: its mode select set for the event, within a minimum charge.

The battery's mode is a real HA ``select`` (a template select over an ``input_select``, what a
battery integration's mode entity looks like to Jeisson); its state of charge is a sensor state
the test sets (what the battery integration would report).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.jeisson.const import EVENT_OPTED_OUT
from custom_components.jeisson.event_runner import RETRY_INTERVAL
from jeisson.common.protocol import Award
from tests.helpers import wait_for

from .common import ENTRY_ID, load_options, offline_entry, record, save_schedule, saved_event

MODE = "select.battery_mode"
SOC = "sensor.battery_soc"
SOC_ATTRIBUTES = {"device_class": "battery", "unit_of_measurement": "%"}


@pytest.fixture
async def home(
    hass: HomeAssistant, hass_storage: dict[str, Any], socket_enabled: None
) -> MockConfigEntry:
    """A battery in self-consumption at 80 %, and a home (aggregator unreachable) using it."""
    assert await async_setup_component(
        hass,
        "input_select",
        {"input_select": {"mode": {"options": ["self_consumption", "discharge", "idle"]}}},
    )
    assert await async_setup_component(
        hass,
        "template",
        {
            "template": [
                {
                    "select": [
                        {
                            "name": "Battery mode",
                            "unique_id": "battery_mode",
                            "state": "{{ states('input_select.mode') }}",
                            "options": "{{ state_attr('input_select.mode', 'options') }}",
                            "select_option": {
                                "action": "input_select.select_option",
                                "target": {"entity_id": "input_select.mode"},
                                "data": {"option": "{{ option }}"},
                            },
                        }
                    ]
                }
            ]
        },
    )
    await hass.async_block_till_done()
    hass.states.async_set(SOC, "80", SOC_ATTRIBUTES)
    now = dt_util.utcnow()
    save_schedule(
        hass_storage,
        ENTRY_ID,
        [
            saved_event(
                "later",
                now + timedelta(days=1),
                now + timedelta(days=1, hours=1),
                status="awarded",
                loads=["battery"],
            )
        ],
    )
    battery = load_options(MODE, name="Battery", kind="battery", rated_kw=5.0)
    battery |= {"event_option": "discharge", "soc_sensor": SOC, "min_soc": 30}
    switched = offline_entry(["switch.a", "switch.b", "switch.c"], "http://127.0.0.1:9")
    entry = MockConfigEntry(
        domain=switched.domain,
        title=switched.title,
        unique_id=switched.unique_id,
        entry_id=switched.entry_id,
        data=dict(switched.data),
        options={"loads": {"battery": battery}},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def _award(award_id: str, lasts: float) -> Award:
    start = dt_util.utcnow() + timedelta(seconds=0.3)
    return Award(
        event_id=f"evt-{award_id}",
        award_id=award_id,
        round=1,
        loads=["battery"],
        kw=5.0,
        price=0.3,
        window_start=start,
        window_end=start + timedelta(seconds=lasts),
        restore_stagger_s=0.1,
    )


async def _take(hass: HomeAssistant, entry: MockConfigEntry, message: Award) -> Any:
    coordinator = entry.runtime_data.coordinator
    decision = await entry.runtime_data.runner.async_take_award(
        message, is_available=coordinator.is_available
    )
    await hass.async_block_till_done()
    return decision


def _mode(hass: HomeAssistant) -> str:
    state = hass.states.get(MODE)
    assert state is not None
    return state.state


async def test_battery_discharges_during_the_event_and_goes_back(
    hass: HomeAssistant, home: MockConfigEntry
) -> None:
    """The battery runs in the owner's event mode, then in its previous mode again."""
    assert _mode(hass) == "self_consumption"
    decision = await _take(hass, home, _award("b1", lasts=1.0))
    assert decision.accepted
    await wait_for(lambda: _mode(hass) == "discharge", what="discharging")
    await wait_for(lambda: _mode(hass) == "self_consumption", what="restored")


async def test_battery_at_its_minimum_charge_is_given_back(
    hass: HomeAssistant, home: MockConfigEntry
) -> None:
    """Down to the owner's 30 % mid-event: back to self-consumption at the next check, an
    opt-out for the load; a battery at its minimum charge does not take an award."""
    opted = record(hass, EVENT_OPTED_OUT)
    await _take(hass, home, _award("b2", lasts=600.0))
    await wait_for(lambda: _mode(hass) == "discharge", what="discharging")
    hass.states.async_set(SOC, "29", SOC_ATTRIBUTES)
    async_fire_time_changed(hass, dt_util.utcnow() + RETRY_INTERVAL)
    await wait_for(lambda: _mode(hass) == "self_consumption", what="given back")
    await wait_for(lambda: bool(opted), what="opt-out reported")
    assert opted[0]["reason"] == "unavailable"
    assert home.runtime_data.runner.schedule.events["b2"].opted_out == ["battery"]
    coordinator = home.runtime_data.coordinator
    assert not coordinator.is_available(coordinator.loads["battery"])  # it does not bid
