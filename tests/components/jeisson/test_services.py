"""Service actions and entity commands: validation errors and translated failures."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.const import CONF_LOADS, DOMAIN

HEATER_LOAD = "switch.jeisson_home_water_heater"


async def test_opt_out_without_an_event_is_a_validation_error(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """Nothing to opt out of: the action (and the button) say so."""
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "opt_out", {"config_entry_id": loaded_entry.entry_id}, blocking=True
        )
    assert err.value.translation_key == "no_event_to_opt_out"
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            "button", "press", {ATTR_ENTITY_ID: "button.jeisson_home_opt_out"}, blocking=True
        )
    assert err.value.translation_key == "no_event_to_opt_out"


async def test_opt_out_needs_a_loaded_jeisson_entry(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """Unknown or unloaded entries are refused with a clear message."""
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "opt_out", {"config_entry_id": "nope"}, blocking=True
        )
    assert err.value.translation_key == "entry_not_found"
    await hass.config_entries.async_unload(loaded_entry.entry_id)
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "opt_out", {"config_entry_id": loaded_entry.entry_id}, blocking=True
        )
    assert err.value.translation_key == "entry_not_loaded"


async def test_set_load_terms_updates_the_options(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """New terms are stored for the load behind the switch; times in HH:MM:SS."""
    await hass.services.async_call(
        DOMAIN,
        "set_load_terms",
        {
            ATTR_ENTITY_ID: HEATER_LOAD,
            "min_price": 0.42,
            "off_limits_start": "06:30",
            "off_limits_end": "08:00",
        },
        blocking=True,
    )
    heater = loaded_entry.options[CONF_LOADS]["heater"]
    assert heater["min_price"] == 0.42
    assert heater["off_limits_start"] == "06:30:00"
    assert heater["off_limits_end"] == "08:00:00"
    # The same terms again change nothing (and do not fail).
    await hass.services.async_call(
        DOMAIN, "set_load_terms", {ATTR_ENTITY_ID: HEATER_LOAD, "min_price": 0.42}, blocking=True
    )
    await hass.services.async_call(
        DOMAIN,
        "set_load_terms",
        {ATTR_ENTITY_ID: HEATER_LOAD, "off_limits_start": None, "off_limits_end": None},
        blocking=True,
    )
    assert loaded_entry.options[CONF_LOADS]["heater"]["off_limits_start"] is None


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({ATTR_ENTITY_ID: "switch.water_heater", "min_price": 1}, "not_a_load"),
        ({ATTR_ENTITY_ID: "switch.jeisson_home_participation", "min_price": 1}, "not_a_load"),
        ({ATTR_ENTITY_ID: HEATER_LOAD}, "no_terms_given"),
        ({ATTR_ENTITY_ID: HEATER_LOAD, "off_limits_start": "06:00"}, "off_limits_incomplete"),
    ],
)
async def test_set_load_terms_rejects_bad_input(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, data: dict, key: str
) -> None:
    """Bad targets and incomplete terms are validation errors."""
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(DOMAIN, "set_load_terms", data, blocking=True)
    assert err.value.translation_key == key


async def test_load_switch_drives_its_actuator(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """The load switch mirrors and commands the HA switch behind it."""
    await hass.services.async_call(
        "switch", "turn_off", {ATTR_ENTITY_ID: HEATER_LOAD}, blocking=True
    )
    await hass.async_block_till_done()
    assert hass.states.get("switch.water_heater").state == "off"
    assert hass.states.get(HEATER_LOAD).state == "off"
    await hass.services.async_call(
        "switch", "turn_on", {ATTR_ENTITY_ID: HEATER_LOAD}, blocking=True
    )
    await hass.async_block_till_done()
    assert hass.states.get(HEATER_LOAD).state == "on"


async def test_failing_actuator_raises_a_translated_error(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """A stuck relay (its switch call fails) gives a translated HomeAssistantError."""
    with (
        patch(
            "custom_components.jeisson.actuators.SwitchEntityActuator.async_turn_off",
            side_effect=HomeAssistantError("relay stuck"),
        ),
        pytest.raises(HomeAssistantError) as err,
    ):
        await hass.services.async_call(
            "switch", "turn_off", {ATTR_ENTITY_ID: HEATER_LOAD}, blocking=True
        )
    assert err.value.translation_key == "actuator_failed"
    assert err.value.translation_placeholders == {"load": "Water heater", "error": "relay stuck"}


async def test_participation_switch(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """Switching participation off and on is stored and shown."""
    participation = "switch.jeisson_home_participation"
    await hass.services.async_call(
        "switch", "turn_off", {ATTR_ENTITY_ID: participation}, blocking=True
    )
    assert hass.states.get(participation).state == "off"
    assert hass.states.get("sensor.jeisson_home_demand_response_status").state == (
        "not_participating"
    )
    await hass.services.async_call(
        "switch", "turn_on", {ATTR_ENTITY_ID: participation}, blocking=True
    )
    assert hass.states.get(participation).state == "on"
    assert hass.states.get("sensor.jeisson_home_demand_response_status").state == "idle"
