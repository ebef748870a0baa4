"""Options flow: add, edit, remove loads with their terms; participation."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.const import CONF_LOADS, CONF_PARTICIPATING

NEW_LOAD = {
    CONF_NAME: "Heat pump",
    "kind": "hvac",
    "rated_kw": 3.5,
    "actuator": "switch.ev_charger",
    "min_price": 0.25,
    "max_off_minutes": 45,
    "never_curtail": False,
}


async def _menu(hass: HomeAssistant, entry: MockConfigEntry, choice: str) -> dict[str, Any]:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.MENU
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": choice}
    )
    return dict(result)


async def test_menu_without_loads_offers_only_add_and_settings(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Edit and remove appear only once there are loads."""
    config_entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(config_entry, options={CONF_LOADS: {}})
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    assert result["menu_options"] == ["add_load", "settings"]
    await hass.config_entries.async_unload(config_entry.entry_id)


async def test_add_load_validates_then_creates_its_switch(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """Blank name, a switch already used, half off-limits hours: errors, then success."""
    result = await _menu(hass, loaded_entry, "add_load")
    assert result["step_id"] == "add_load"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {**NEW_LOAD, CONF_NAME: "  ", "actuator": "switch.water_heater"},
    )
    assert result["errors"] == {CONF_NAME: "name_required", "actuator": "actuator_in_use"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**NEW_LOAD, "actuator": "switch.spare", "off_limits_start": "07:00"}
    )
    assert result["errors"] == {"base": "off_limits_incomplete"}
    hass.states.async_set("switch.spare", "on")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            **NEW_LOAD,
            "actuator": "switch.spare",
            "off_limits_start": "07:00:00",
            "off_limits_end": "09:00:00",
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    loads = loaded_entry.options[CONF_LOADS]
    added = next(load for load in loads.values() if load[CONF_NAME] == "Heat pump")
    assert added["off_limits_start"] == "07:00:00"
    assert added["power_sensor"] is None
    assert hass.states.get("switch.jeisson_home_heat_pump").state == "on"


async def test_add_charger_checks_the_entity_fits_the_kind(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """A number entity is an EV charger's current limit: as a pool pump it is refused; as a
    charger it is stored with its floor, voltage, phases and charged-by time, and gets no
    switch (it is not switched)."""
    hass.states.async_set("number.wallbox_current", "16")
    result = await _menu(hass, loaded_entry, "add_load")
    charger = {
        **NEW_LOAD,
        CONF_NAME: "Wallbox",
        "kind": "pool_pump",
        "rated_kw": 11.0,
        "actuator": "number.wallbox_current",
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], charger)
    assert result["errors"] == {"actuator": "actuator_kind_mismatch"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            **charger,
            "kind": "ev_charger",
            "floor_current": 8,
            "voltage": 230,
            "phases": 3,
            "charged_by": "07:00:00",
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    added = next(
        load for load in loaded_entry.options[CONF_LOADS].values() if load[CONF_NAME] == "Wallbox"
    )
    assert (added["floor_current"], added["phases"], added["charged_by"]) == (8.0, 3.0, "07:00:00")
    assert added["max_offset"] is None
    assert hass.states.get("switch.jeisson_home_wallbox") is None


async def test_thermostat_kind_needs_a_climate_entity(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """A thermostat load offsets a setpoint: a switch cannot carry it out."""
    result = await _menu(hass, loaded_entry, "add_load")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**NEW_LOAD, "kind": "thermostat", "actuator": "switch.spare"}
    )
    assert result["errors"] == {"actuator": "actuator_kind_mismatch"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {**NEW_LOAD, "kind": "thermostat", "actuator": "climate.living_room", "max_offset": 1.5},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_edit_load_changes_terms(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """Editing shows the current values and saves the new ones under the same id."""
    result = await _menu(hass, loaded_entry, "edit_load")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"load_id": "pump"}
    )
    assert result["step_id"] == "load_details"
    assert result["description_placeholders"] == {CONF_NAME: "Pool pump"}
    current = dict(loaded_entry.options[CONF_LOADS]["pump"])
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            **{key: value for key, value in current.items() if value is not None},
            "actuator": "switch.water_heater",
        },
    )
    assert result["errors"] == {"actuator": "actuator_in_use"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            **{key: value for key, value in current.items() if value is not None},
            "min_price": 0.35,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.options[CONF_LOADS]["pump"]["min_price"] == 0.35


async def test_remove_load_and_switch_participation_off(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """Removed loads are gone from the options; participation off shows in the status."""
    result = await _menu(hass, loaded_entry, "remove_load")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LOADS: ["car"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert set(loaded_entry.options[CONF_LOADS]) == {"heater", "pump"}

    result = await _menu(hass, loaded_entry, "settings")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_PARTICIPATING: False}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.options[CONF_PARTICIPATING] is False
    state = hass.states.get("sensor.jeisson_home_demand_response_status")
    assert state.state == "not_participating"
    assert hass.states.get("switch.jeisson_home_participation").state == "off"


def _excluded(result: dict[str, Any], field: str) -> list[str]:
    """Return the entities the form's picker for ``field`` leaves out."""
    selector = next(
        value for marker, value in result["data_schema"].schema.items() if marker == field
    )
    return list(selector.config.get("exclude_entities", []))


async def test_own_entities_cannot_power_or_measure_a_load(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """Participation, load switches and Jeisson's sensors are neither offered nor accepted."""
    participation = "switch.jeisson_home_participation"
    heater_switch = "switch.jeisson_home_water_heater"
    committed = "sensor.jeisson_home_committed_power"
    result = await _menu(hass, loaded_entry, "add_load")
    assert {participation, heater_switch} <= set(_excluded(result, "actuator"))
    assert committed in _excluded(result, "power_sensor")
    assert "switch.spare" not in _excluded(result, "actuator")
    for field, own in (
        ("actuator", participation),
        ("actuator", heater_switch),
        ("power_sensor", committed),
    ):
        with pytest.raises(InvalidData) as refused:
            await hass.config_entries.options.async_configure(
                result["flow_id"], {**NEW_LOAD, "actuator": "switch.spare", field: own}
            )
        assert refused.value.path == [field]
    assert set(loaded_entry.options[CONF_LOADS]) == {"heater", "pump", "car"}
