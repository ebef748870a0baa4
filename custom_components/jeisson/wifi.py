"""Hooks the WiFi actuators into a Jeisson home: hub setup, stale device removal, cleanup.

The entity platforms call :func:`async_setup_wifi_hub` (the first one creates the hub, the other
gets the same one): it loads the home's paired devices, registers the endpoint (once per Home
Assistant), announces it over zeroconf and tears it all down when the entry unloads. The
integration's ``__init__`` re-exports :func:`async_remove_config_entry_device` and calls
:func:`async_remove_wifi_store` when the entry is deleted.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr

from .const import DOMAIN
from .coordinator import JeissonConfigEntry
from .entity import device_identifier as home_identifier
from .schedule import Schedule
from .wifi_devices import WifiHub, device_id_from_identifiers, wifi_store
from .wifi_endpoint import async_get_router, get_router


async def async_setup_wifi_hub(hass: HomeAssistant, entry: JeissonConfigEntry) -> WifiHub:
    """Return the home's WiFi hub, setting it up (and the endpoint) on first call."""
    router = async_get_router(hass)
    async with router.setup_lock:
        if (hub := router.hub(entry.entry_id)) is not None:
            return hub
        home = dr.async_get(hass).async_get_device_by_identifier(
            home_identifier(entry), entry.entry_id
        )

        def _schedule() -> Schedule | None:
            runtime = getattr(entry, "runtime_data", None)
            return None if runtime is None else runtime.runner.schedule

        hub = WifiHub(hass, entry, schedule=_schedule, home_device_id=home.id if home else None)
        await hub.async_load()
        router.async_add_hub(hub)
        entry.async_on_unload(partial(router.async_remove_hub, entry.entry_id))
        return hub


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: ConfigEntry[Any], device_entry: dr.DeviceEntry
) -> bool:
    """Let the user delete a WiFi actuator that is offline (or no longer paired).

    Its key is forgotten, so its next connection is a new device that must be paired again.
    The home's own device and a connected actuator cannot be deleted: the user is told why and
    what to do instead (a translated error, not Home Assistant's generic refusal).
    """
    device_id = device_id_from_identifiers(device_entry.identifiers)
    if device_id is None:
        raise HomeAssistantError(
            translation_domain=DOMAIN, translation_key="home_device_not_removable"
        )
    router = get_router(hass)
    hub = router.hub(entry.entry_id) if router is not None else None
    if hub is None:
        await _forget_stored(hass, entry.entry_id, device_id)
        return True
    if hub.is_connected(device_id):
        paired = hub.get(device_id)
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="wifi_device_connected",
            translation_placeholders={"name": paired.name if paired else device_id},
        )
    await hub.async_forget(device_id)
    return True


async def _forget_stored(hass: HomeAssistant, entry_id: str, device_id: str) -> None:
    """Drop a device's key from the store of a home that is not loaded."""
    store = wifi_store(hass, entry_id)
    raw = await store.async_load()
    if not raw:
        return
    devices = [item for item in raw.get("devices", []) if item.get("device_id") != device_id]
    await store.async_save({**raw, "devices": devices})


async def async_remove_wifi_store(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """Delete the paired devices and their keys when the home's entry is deleted."""
    await wifi_store(hass, entry.entry_id).async_remove()
