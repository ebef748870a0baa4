"""How Jeisson switches a load and reads its power: the Actuator interface and its HA switch form.

An :class:`Actuator` is all the event runner and the entities know about a load's hardware. This
module provides :class:`SwitchEntityActuator` (any existing HA ``switch`` entity, optionally with
a power sensor) and :class:`WifiActuator` (a paired Jeisson WiFi relay, whose ``off`` carries
its end so the device restores the load by itself if Home Assistant goes away); the ZHA (zigpy
On/Off cluster) actuator implements the same interface in :mod:`.zigbee`.
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
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.util.unit_conversion import PowerConverter

from . import zigbee
from .const import DOMAIN
from .models import LoadConfig
from .wifi_devices import (
    POWER_KEY,
    RELAY_KEY,
    DeviceState,
    WifiHub,
    device_id_from_actuator,
    entity_unique_id,
)
from .wifi_endpoint import get_router

SWITCH_DOMAIN = "switch"
SENSOR_DOMAIN = "sensor"
WATTS_PER_KW = 1000.0
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


class WifiActuator:
    """A paired Jeisson WiFi relay: commands over its websocket, state and power from reports.

    Reachable means connected, authenticated and reporting. ``off`` holds the load until the
    event gives it back (the device ends the hold by its own clock), or for a day, renewed, when
    switched off by hand.
    """

    def __init__(self, hass: HomeAssistant, device_id: str) -> None:
        """Drive WiFi device ``device_id`` through the hub of the home it is paired with."""
        self._hass = hass
        self.device_id = device_id

    def _hub(self) -> WifiHub | None:
        router = get_router(self._hass)
        return None if router is None else router.hub_for_device(self.device_id)

    def _state(self) -> DeviceState | None:
        hub = self._hub()
        return None if hub is None else hub.state(self.device_id)

    @property
    def available(self) -> bool:
        """Return True when the device is connected and reporting."""
        return self._state() is not None

    @property
    def is_on(self) -> bool | None:
        """Return the relay state the device last reported (None when not connected)."""
        state = self._state()
        return None if state is None else state.relay_on

    @property
    def watched_entity_ids(self) -> tuple[str, ...]:
        """Return the device's relay switch and power sensor (relay first)."""
        registry = er.async_get(self._hass)
        found = (
            registry.async_get_entity_id(platform, DOMAIN, entity_unique_id(self.device_id, key))
            for platform, key in ((SWITCH_DOMAIN, RELAY_KEY), (SENSOR_DOMAIN, POWER_KEY))
        )
        return tuple(entity_id for entity_id in found if entity_id)

    def power_kw(self) -> float | None:
        """Return the measured power in kW (None when the device has no meter or is away)."""
        state = self._state()
        if state is None or not state.power_measured:
            return None
        return state.power_w / WATTS_PER_KW

    @callback
    def async_listen(self, listener: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call ``listener`` when the device connects, disconnects or reports."""
        hub = self._hub()
        if hub is None:
            return lambda: None
        return hub.async_add_listener(self.device_id, listener)

    async def async_turn_off(self) -> None:
        """Hold the load off (until its event ends, or a renewed day when manual)."""
        await self._live().async_turn_off(self.device_id)

    async def async_turn_on(self) -> None:
        """Release the hold and power the load."""
        await self._live().async_turn_on(self.device_id)

    def _live(self) -> WifiHub:
        hub = self._hub()
        if hub is None:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="wifi_not_connected",
                translation_placeholders={"name": self.device_id},
            )
        return hub


def actuator_for(hass: HomeAssistant, load: LoadConfig) -> Actuator:
    """Return the actuator that drives ``load``."""
    if (device_id := device_id_from_actuator(load.actuator)) is not None:
        return WifiActuator(hass, device_id)
    if zigbee.is_zha_load(load):
        return zigbee.ZigbeeActuator.for_load(hass, load)
    return SwitchEntityActuator(hass, load.actuator, load.power_sensor)


def load_reading(load: LoadConfig, actuator: Actuator) -> tuple[float, bool]:
    """Return the load's power now and whether it is certain (not an estimate).

    Measured when something measures it; else its rated power while on (an estimate), or 0
    while off (certain: the switch is off).
    """
    measured = actuator.power_kw()
    if measured is not None:
        return measured, True
    if actuator.is_on:
        return load.rated_kw, False
    return 0.0, True


def load_power_kw(load: LoadConfig, actuator: Actuator) -> float:
    """Return the load's power now: measured if possible, else rated when on, else 0."""
    return load_reading(load, actuator)[0]
