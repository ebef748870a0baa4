"""Options flow: add, edit, remove loads with their terms; participation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import probatio
import pytest
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

import custom_components.jeisson
from custom_components.jeisson.const import CONF_LOADS, CONF_PARTICIPATING, DOMAIN
from custom_components.jeisson.options_flow import LOAD_SCHEMA

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


async def test_battery_needs_its_select_event_mode_and_charge_sensor(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """A battery is moved by its mode select, in the owner's event mode, within a charge floor."""
    result = await _menu(hass, loaded_entry, "add_load")
    battery = {**NEW_LOAD, CONF_NAME: "Battery", "kind": "battery", "actuator": "switch.spare"}
    result = await hass.config_entries.options.async_configure(result["flow_id"], battery)
    assert result["errors"] == {"actuator": "actuator_kind_mismatch"}
    battery["actuator"] = "select.battery_mode"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**battery, "event_option": "discharge"}
    )
    assert result["errors"] == {"base": "battery_incomplete"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {**battery, "event_option": " discharge ", "soc_sensor": "sensor.soc", "min_soc": 25},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    added = next(
        load for load in loaded_entry.options[CONF_LOADS].values() if load[CONF_NAME] == "Battery"
    )
    assert (added["event_option"], added["soc_sensor"], added["min_soc"]) == (
        "discharge",
        "sensor.soc",
        25.0,
    )


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


async def test_options_apply_without_a_reload_and_removed_loads_leave_no_entities(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """Adding, renaming and removing loads keeps the entry (and its connection) loaded; a
    removed load's switch leaves the registry, also one left over from an older version."""
    client = loaded_entry.runtime_data.client
    registry = er.async_get(hass)
    car = "switch.jeisson_home_car"
    assert registry.async_get(car) is not None

    result = await _menu(hass, loaded_entry, "edit_load")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"load_id": "pump"}
    )
    current = dict(loaded_entry.options[CONF_LOADS]["pump"])
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            **{key: value for key, value in current.items() if value is not None},
            CONF_NAME: "Pool filter",
        },
    )
    await hass.async_block_till_done()
    pump = hass.states.get("switch.jeisson_home_pool_pump")  # same entity id, new name
    assert pump.attributes["friendly_name"] == "Jeisson home Pool filter"

    result = await _menu(hass, loaded_entry, "remove_load")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LOADS: ["car"]}
    )
    await hass.async_block_till_done()
    assert loaded_entry.runtime_data.client is client  # not reloaded
    assert client.connected
    assert registry.async_get(car) is None
    assert hass.states.get(car) is None
    assert hass.states.get("switch.jeisson_home_water_heater").state == "on"

    # A leftover of a load removed before this version: gone at the next set-up.
    leftover = registry.async_get_or_create(
        "switch",
        DOMAIN,
        f"{loaded_entry.unique_id}_load_gone",
        config_entry=loaded_entry,
        suggested_object_id="jeisson_home_gone",
    )
    assert await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert registry.async_get(leftover.entity_id) is None
    assert registry.async_get(car) is None
    assert registry.async_get("switch.jeisson_home_water_heater") is not None


def _marker(result: dict[str, Any], field: str) -> Any:
    return next(marker for marker in result["data_schema"].schema if marker == field)


async def test_add_load_form_prefills_nothing_shows_the_currency_and_suggests_rated_kw(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """No rated power pre-filled (the frontend fills a required number with its minimum);
    the minimum price in HA's currency; the rated power suggested from the power sensor."""
    await hass.config.async_update(currency="CHF")
    result = await _menu(hass, loaded_entry, "add_load")
    rated = _marker(result, "rated_kw")
    assert not isinstance(rated, probatio.Required)
    assert rated.default is probatio.UNDEFINED
    price = result["data_schema"].schema[_marker(result, "min_price")]
    assert price.config["unit_of_measurement"] == "CHF/kWh"

    dryer = {key: value for key, value in NEW_LOAD.items() if key != "rated_kw"}
    dryer["actuator"] = "switch.spare"
    result = await hass.config_entries.options.async_configure(result["flow_id"], dryer)
    assert result["errors"] == {"rated_kw": "rated_kw_required"}

    hass.states.async_set(
        "sensor.dryer_power", "1834", {"device_class": "power", "unit_of_measurement": "W"}
    )
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**dryer, "power_sensor": "sensor.dryer_power"}
    )
    assert result["errors"] == {"rated_kw": "rated_kw_from_sensor"}
    assert _marker(result, "rated_kw").description["suggested_value"] == 1.83
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**dryer, "power_sensor": "sensor.dryer_power", "rated_kw": 1.83}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


def test_the_switch_field_is_described_as_it_is() -> None:
    """Required when nothing else can power the load: its description must not say it may be
    left empty (the Zigbee and WiFi fields say "instead" themselves)."""
    for language in ("en", "es"):
        path = Path(custom_components.jeisson.__file__).parent / "translations" / f"{language}.json"
        steps = json.loads(path.read_text(encoding="utf-8"))["options"]["step"]
        for step in ("add_load", "load_details"):
            description = steps[step]["data_description"]["actuator"].lower()
            assert "empty" not in description
            assert "vacío" not in description
    assert isinstance(_schema_marker(LOAD_SCHEMA, "actuator"), probatio.Required)


def _schema_marker(schema: probatio.Schema, field: str) -> Any:
    return next(marker for marker in schema.schema if marker == field)
