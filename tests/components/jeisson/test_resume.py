"""Restart resilience: the saved schedule resumes on setup, with or without the aggregator."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.jeisson.const import (
    EVENT_ENDED,
    EVENT_OPTED_OUT,
    STALE_AFTER,
)
from tests.helpers import free_port, wait_for

from .aggregator_process import AggregatorProcess
from .common import ENTRY_ID, offline_entry, record, save_schedule, saved_event, state, turn


async def test_restart_mid_event_without_aggregator_resumes_and_restores(
    hass: HomeAssistant, hass_storage: dict[str, Any], switches: list[str], socket_enabled: None
) -> None:
    """Aggregator down at restart: the entry still loads, finishes the switch-off that was
    interrupted, treats a held load found on as an override, and restores on time."""
    now = dt_util.utcnow()
    save_schedule(
        hass_storage,
        ENTRY_ID,
        [
            saved_event(
                "a1",
                now - timedelta(seconds=30),
                now + timedelta(seconds=2),
                status="active",
                loads=["heater", "pump", "car"],
                switched_off={"heater": 2.0, "pump": 2.0, "car": 2.0},
                confirmed_off=["heater", "car"],
                off_since={
                    "heater": (now - timedelta(seconds=30)).isoformat(),
                    "car": (now - timedelta(seconds=30)).isoformat(),
                },
            )
        ],
    )
    await turn(hass, "water_heater", on=False)  # switched off before the restart
    opted = record(hass, EVENT_OPTED_OUT)
    ended = record(hass, EVENT_ENDED)
    entry = offline_entry(switches, f"http://127.0.0.1:{free_port()}")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert state(hass, "binary_sensor.jeisson_home_aggregator_connected") == "off"
    assert state(hass, "switch.pool_pump") == "off"  # the interrupted switch-off is finished
    assert opted == [
        {
            "config_entry_id": ENTRY_ID,
            "device_id": opted[0]["device_id"],
            "event_id": "evt-a1",
            "load_id": "car",
            "reason": "override",
        }
    ]
    assert state(hass, "switch.ev_charger") == "on"
    assert state(hass, "binary_sensor.jeisson_home_event_active") == "on"

    await wait_for(lambda: bool(ended), what="event end on the home's clock")
    await wait_for(
        lambda: (
            state(hass, "switch.water_heater") == "on" and state(hass, "switch.pool_pump") == "on"
        ),
        timeout=5,
        what="restored",
    )
    assert float(state(hass, "sensor.jeisson_home_estimated_earnings")) > 0
    await hass.config_entries.async_unload(entry.entry_id)


async def test_saved_awards_are_closed_scheduled_or_restored(
    hass: HomeAssistant, hass_storage: dict[str, Any], switches: list[str], socket_enabled: None
) -> None:
    """A past award is closed untouched; a pending restore happens; a future award runs."""
    now = dt_util.utcnow()
    save_schedule(
        hass_storage,
        ENTRY_ID,
        [
            saved_event(
                "past",
                now - timedelta(hours=2),
                now - timedelta(hours=1),
                status="awarded",
                loads=["car"],
            ),
            saved_event(
                "restoring",
                now - timedelta(hours=1),
                now - timedelta(minutes=1),
                status="restoring",
                loads=["pump"],
                outcome="completed",
                switched_off={"pump": 1.5},
                confirmed_off=["pump"],
                off_since={"pump": (now - timedelta(hours=1)).isoformat()},
                restore_at={"pump": (now - timedelta(seconds=1)).isoformat()},
            ),
            saved_event(
                "soon",
                now + timedelta(seconds=1),
                now + timedelta(seconds=3),
                status="awarded",
                loads=["heater"],
            ),
        ],
    )
    await turn(hass, "pool_pump", on=False)
    ended = record(hass, EVENT_ENDED)
    entry = offline_entry(switches, f"http://127.0.0.1:{free_port()}")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert state(hass, "switch.ev_charger") == "on"
    await wait_for(lambda: state(hass, "switch.pool_pump") == "on", what="pending restore")
    assert state(hass, "sensor.jeisson_home_demand_response_status") == "awarded"
    assert state(hass, "sensor.jeisson_home_next_event_start") != "unknown"
    await wait_for(lambda: state(hass, "switch.water_heater") == "off", what="start")
    await wait_for(lambda: bool(ended), what="end")
    await wait_for(lambda: state(hass, "switch.water_heater") == "on", timeout=5, what="restore")
    runner = entry.runtime_data.runner
    outcomes = {key: event.outcome for key, event in runner.schedule.events.items()}
    assert outcomes == {"past": "completed", "restoring": "completed", "soon": "completed"}
    await hass.config_entries.async_unload(entry.entry_id)


async def test_aggregator_fed_entities_go_stale(
    hass: HomeAssistant, hass_storage: dict[str, Any], switches: list[str], socket_enabled: None
) -> None:
    """Disconnected longer than STALE_AFTER: next event and calendar become unavailable."""
    now = dt_util.utcnow()
    save_schedule(
        hass_storage,
        ENTRY_ID,
        [
            saved_event(
                "later",
                now + timedelta(hours=1),
                now + timedelta(hours=2),
                status="awarded",
                loads=["heater"],
            )
        ],
    )
    entry = offline_entry(switches, f"http://127.0.0.1:{free_port()}")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert state(hass, "calendar.jeisson_home_demand_response_events") == "off"
    assert state(hass, "sensor.jeisson_home_demand_response_status") == "awarded"
    async_fire_time_changed(hass, dt_util.utcnow() + STALE_AFTER + timedelta(seconds=1))
    await hass.async_block_till_done()
    assert state(hass, "sensor.jeisson_home_next_event_start") == "unavailable"
    assert state(hass, "calendar.jeisson_home_demand_response_events") == "unavailable"
    assert state(hass, "sensor.jeisson_home_demand_response_status") == "awarded"
    await hass.config_entries.async_unload(entry.entry_id)


async def test_rejected_token_mid_event_gives_the_loads_back(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    switches: list[str],
    aggregator: AggregatorProcess,
) -> None:
    """A setup that cannot go on (token rejected) first restores what the home holds."""
    now = dt_util.utcnow()
    save_schedule(
        hass_storage,
        ENTRY_ID,
        [
            saved_event(
                "a1",
                now - timedelta(seconds=30),
                now + timedelta(minutes=30),
                status="active",
                loads=["heater"],
                switched_off={"heater": 2.0},
                confirmed_off=["heater"],
                off_since={"heater": (now - timedelta(seconds=30)).isoformat()},
            )
        ],
    )
    await turn(hass, "water_heater", on=False)
    entry = offline_entry(switches, aggregator.url, token="revoked")
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert state(hass, "switch.water_heater") == "on"
