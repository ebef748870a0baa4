"""The HA switch actuator: state, availability and measured power from a power sensor."""

from __future__ import annotations

import pytest
from homeassistant.core import HomeAssistant

from custom_components.jeisson.actuators import SwitchEntityActuator, actuator_for, load_power_kw
from custom_components.jeisson.models import LoadConfig
from jeisson.common.protocol import LoadKind

LOAD = LoadConfig(
    load_id="heater",
    name="Heater",
    kind=LoadKind.WATER_HEATER,
    rated_kw=2.0,
    actuator="switch.heater",
    power_sensor="sensor.heater_power",
)


@pytest.mark.parametrize(
    ("value", "attributes", "expected"),
    [
        ("1500", {"unit_of_measurement": "W", "device_class": "power"}, 1.5),
        ("1.2", {"unit_of_measurement": "kW"}, 1.2),
        ("-5", {"unit_of_measurement": "W"}, 0.0),
        ("abc", {"unit_of_measurement": "W"}, None),
        ("unavailable", {"unit_of_measurement": "W"}, None),
        ("10", {"unit_of_measurement": "W", "device_class": "energy"}, None),
        ("10", {"unit_of_measurement": "furlong"}, None),
    ],
)
async def test_power_from_the_sensor(
    hass: HomeAssistant, value: str, attributes: dict, expected: float | None
) -> None:
    """Watts and kilowatts are read; anything that is not a power is ignored."""
    hass.states.async_set("sensor.heater_power", value, attributes)
    actuator = actuator_for(hass, LOAD)
    assert actuator.power_kw() == expected
    assert actuator.watched_entity_ids == ("switch.heater", "sensor.heater_power")


async def test_state_availability_and_fallback_power(hass: HomeAssistant) -> None:
    """No switch state: unavailable; on without a reading: rated power; off: zero."""
    actuator = SwitchEntityActuator(hass, "switch.heater")
    assert not actuator.available
    assert actuator.is_on is None
    assert actuator.power_kw() is None
    assert SwitchEntityActuator(hass, "switch.heater", "sensor.none").power_kw() is None
    hass.states.async_set("switch.heater", "on")
    assert actuator.available
    assert load_power_kw(LOAD, actuator) == 2.0
    hass.states.async_set("switch.heater", "off")
    assert load_power_kw(LOAD, actuator) == 0.0
    hass.states.async_set("switch.heater", "unavailable")
    assert not actuator.available
