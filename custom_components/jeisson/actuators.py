"""How Jeisson switches a load and reads its power: the Actuator interface and its HA switch form.

An :class:`Actuator` is all the event runner and the entities know about a load's hardware. This
module provides :class:`SwitchEntityActuator` (any existing HA ``switch`` entity, optionally with
a power sensor); the ZHA actuator (:mod:`.zigbee`) and the Jeisson WiFi actuators implement the
same interface in their own modules.
"""

from __future__ import annotations

from typing import Protocol

from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_ENTITY_ID,
    ATTR_UNIT_OF_MEASUREMENT,
    SERVICE_TURN_OFF,
    SERVICE_TURN_ON,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    UnitOfPower,
)
from homeassistant.core import HomeAssistant
from homeassistant.util.unit_conversion import PowerConverter

from . import zigbee
from .models import LoadConfig

SWITCH_DOMAIN = "switch"
_NOT_A_VALUE = (STATE_UNAVAILABLE, STATE_UNKNOWN)


class Actuator(Protocol):
    """What Jeisson needs from the thing that powers a load."""

    @property
    def available(self) -> bool:
        """Return True when the actuator can be commanded now."""

    @property
    def is_on(self) -> bool | None:
        """Return whether the load is powered (None when unknown)."""

    @property
    def watched_entity_ids(self) -> tuple[str, ...]:
        """Return the HA entities whose state changes mean this actuator changed."""

    def power_kw(self) -> float | None:
        """Return the measured power in kW, or None when nothing measures it."""

    async def async_turn_off(self) -> None:
        """Switch the load off (raises HomeAssistantError when it cannot)."""

    async def async_turn_on(self) -> None:
        """Switch the load on (raises HomeAssistantError when it cannot)."""


def power_sensor_kw(hass: HomeAssistant, entity_id: str) -> float | None:
    """Return a power sensor's value in kW (None when absent, unavailable or not a power)."""
    state = hass.states.get(entity_id)
    if state is None or state.state in _NOT_A_VALUE:
        return None
    try:
        value = float(state.state)
    except ValueError:
        return None
    unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT, UnitOfPower.WATT)
    if state.attributes.get(ATTR_DEVICE_CLASS) not in (None, SensorDeviceClass.POWER):
        return None
    if unit not in PowerConverter.VALID_UNITS:
        return None
    return max(0.0, PowerConverter.convert(value, unit, UnitOfPower.KILO_WATT))


class SwitchEntityActuator:
    """An actuator that is an existing HA ``switch`` entity, with an optional power sensor."""

    def __init__(self, hass: HomeAssistant, switch: str, power_sensor: str | None = None) -> None:
        """Drive ``switch`` and read power from ``power_sensor`` when given."""
        self._hass = hass
        self._switch = switch
        self._power_sensor = power_sensor

    @property
    def available(self) -> bool:
        """Return True when the switch entity exists and is not unavailable/unknown."""
        state = self._hass.states.get(self._switch)
        return state is not None and state.state not in _NOT_A_VALUE

    @property
    def is_on(self) -> bool | None:
        """Return the switch state (None when unavailable)."""
        state = self._hass.states.get(self._switch)
        if state is None or state.state in _NOT_A_VALUE:
            return None
        return state.state == STATE_ON

    @property
    def watched_entity_ids(self) -> tuple[str, ...]:
        """Return the switch (and power sensor) entity ids."""
        if self._power_sensor:
            return (self._switch, self._power_sensor)
        return (self._switch,)

    def power_kw(self) -> float | None:
        """Return the power sensor's value in kW (None when absent or not a number)."""
        if not self._power_sensor:
            return None
        return power_sensor_kw(self._hass, self._power_sensor)

    async def async_turn_off(self) -> None:
        """Call ``switch.turn_off`` and wait for it."""
        await self._call(SERVICE_TURN_OFF)

    async def async_turn_on(self) -> None:
        """Call ``switch.turn_on`` and wait for it."""
        await self._call(SERVICE_TURN_ON)

    async def _call(self, service: str) -> None:
        await self._hass.services.async_call(
            SWITCH_DOMAIN, service, {ATTR_ENTITY_ID: self._switch}, blocking=True
        )


def actuator_for(hass: HomeAssistant, load: LoadConfig) -> Actuator:
    """Return the actuator that drives ``load``."""
    if zigbee.is_zha_load(load):
        return zigbee.ZigbeeActuator.for_load(hass, load)
    return SwitchEntityActuator(hass, load.actuator, load.power_sensor)


def load_power_kw(load: LoadConfig, actuator: Actuator) -> float:
    """Return the load's power now: measured if possible, else rated when on, else 0."""
    measured = actuator.power_kw()
    if measured is not None:
        return measured
    return load.rated_kw if actuator.is_on else 0.0
