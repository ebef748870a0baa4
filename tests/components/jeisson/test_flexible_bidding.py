"""The shared home policy in Home Assistant: bids from measured power, power-up events.

A real aggregator process, real template switches, and the heater's power sensor as a state the
test sets (what a metering plug's sensor would report).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.const import CONF_KIND, EVENT_AWARDED, EVENT_BID
from custom_components.jeisson.options_flow import LOAD_SCHEMA
from tests.helpers import wait_for

from .aggregator_process import AggregatorProcess
from .common import HEATER, is_state, load_options, of_type, record_events

HEATER_POWER = "sensor.water_heater_power"
POWER_ATTRIBUTES = {"unit_of_measurement": "W", "device_class": "power"}


@pytest.fixture
def default_loads(switches: list[str]) -> dict[str, dict[str, Any]]:
    """A metered 2 kW heater and an unmetered 1.5 kW pump."""
    return {
        "heater": load_options(
            switches[0], name="Water heater", rated_kw=2.0, power_sensor=HEATER_POWER
        ),
        "pump": load_options(
            switches[1], name="Pool pump", kind="pool_pump", rated_kw=1.5, min_price=0.2
        ),
    }


async def _create(aggregator: AggregatorProcess, **body: Any) -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(seconds=2)
    payload = {
        "target_kw": 1.0,
        "price_cap": 0.5,
        "start": start.isoformat(),
        "end": (start + timedelta(seconds=3)).isoformat(),
        "bid_window_s": 1.0,
        "restore_stagger_s": 1.0,
        **body,
    }
    return dict(await aggregator.request("POST", "/api/v1/events", payload))


async def test_a_metered_load_bids_its_recent_mean_power_not_its_rating(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    runner = loaded_entry.runtime_data.runner
    start = datetime.now(UTC) - timedelta(hours=3)
    for minute in range(180):  # the heater's thermostat: on every other minute
        hass.states.async_set(HEATER_POWER, "2000" if minute % 2 else "0", POWER_ATTRIBUTES)
        runner.sample(start + timedelta(minutes=minute))
    events = record_events(hass)

    await _create(aggregator)
    await wait_for(lambda: bool(of_type(events, EVENT_BID)), what="the bid")

    steps = {tuple(step["loads"]): step["kw"] for step in of_type(events, EVENT_BID)[0]["steps"]}
    assert steps[("heater",)] == pytest.approx(1.0, abs=0.1)
    assert steps[("pump",)] == 1.5  # nothing measures it: its rating


async def test_switched_loads_do_not_bid_in_a_power_up_event_or_take_a_direct_one(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    events = record_events(hass)

    market = await _create(aggregator, direction="up")
    await wait_for(lambda: bool(of_type(events, EVENT_BID)), what="the (empty) bid")
    assert of_type(events, EVENT_BID)[0]["steps"] == []

    direct = await _create(aggregator, direction="up", kind="direct")

    async def declined() -> bool:
        detail = await aggregator.event(direct["id"])
        return [award["status"] for award in detail["awards"]] == ["declined"]

    await wait_for(declined, what="the direct power-up award declined")
    assert not of_type(events, EVENT_AWARDED)
    assert is_state(hass, HEATER, "on")
    assert (await aggregator.event(market["id"]))["awards"] == []


def test_the_load_form_offers_only_kinds_an_executor_can_carry_out() -> None:
    """Every kind is offered (the actuator field checks the entity fits it)."""
    offered = LOAD_SCHEMA.schema[next(key for key in LOAD_SCHEMA.schema if key == CONF_KIND)]

    assert set(offered.config["options"]) == {
        "water_heater",
        "hvac",
        "ev_charger",
        "pool_pump",
        "thermostat",
        "battery",
        "other",
    }
