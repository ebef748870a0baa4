"""Base of the entities of a paired WiFi actuator (its relay switch and power sensor).

Each paired device is an HA device of its own (a sub-device of the home) with push-updated
entities that are unavailable while the device is not connected. Devices paired while the home
is loaded get their entities at once (a dispatcher signal from the hub).
"""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import JeissonConfigEntry
from .wifi import async_setup_wifi_hub
from .wifi_devices import (
    DeviceState,
    PairedDevice,
    WifiHub,
    entity_unique_id,
    signal_device_paired,
)


class WifiDeviceEntity(Entity):
    """An entity of one paired WiFi actuator, updated by its reports."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, hub: WifiHub, device: PairedDevice, description: EntityDescription) -> None:
        """Describe the entity and tie it to the device."""
        self._hub = hub
        self._device_id = device.device_id
        self.entity_description = description
        self._attr_unique_id = entity_unique_id(device.device_id, description.key)
        self._attr_device_info = hub.device_info(device)

    async def async_added_to_hass(self) -> None:
        """Follow the device's connection and reports."""
        await super().async_added_to_hass()
        self.async_on_remove(
            self._hub.async_add_listener(self._device_id, self.async_write_ha_state)
        )

    @property
    def device_state(self) -> DeviceState | None:
        """Return what the device last reported (None while it is not connected)."""
        return self._hub.state(self._device_id)

    @property
    def available(self) -> bool:
        """Return True while the device is connected and reporting."""
        return self._hub.is_connected(self._device_id)


async def async_setup_wifi_platform(
    hass: HomeAssistant,
    entry: JeissonConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    factory: Callable[[WifiHub, PairedDevice], Entity],
) -> None:
    """Add ``factory``'s entity for every paired device, now and whenever one is paired."""
    hub = await async_setup_wifi_hub(hass, entry)
    async_add_entities(factory(hub, device) for device in hub.devices)

    @callback
    def _paired(device: PairedDevice) -> None:
        async_add_entities([factory(hub, device)])

    entry.async_on_unload(
        async_dispatcher_connect(hass, signal_device_paired(entry.entry_id), _paired)
    )
