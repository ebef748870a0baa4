"""Base entity of the integration: one device per enrolled home, push updates."""

from __future__ import annotations

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN, SOFTWARE_VERSION
from .coordinator import JeissonConfigEntry, JeissonCoordinator

MANUFACTURER = "Jeisson"
MODEL = "Demand response home"


def device_identifier(entry: JeissonConfigEntry) -> tuple[str, str]:
    """Return the device registry identifier of the entry's home."""
    return (DOMAIN, entry.unique_id or entry.entry_id)


def device_info(entry: JeissonConfigEntry) -> DeviceInfo:
    """Return the device that represents the enrolled home."""
    return DeviceInfo(
        identifiers={device_identifier(entry)},
        name=entry.title,
        manufacturer=MANUFACTURER,
        model=MODEL,
        sw_version=SOFTWARE_VERSION,
        entry_type=DeviceEntryType.SERVICE,
    )


@callback
def async_register_device(hass: HomeAssistant, entry: JeissonConfigEntry) -> dr.DeviceEntry:
    """Create (or update) the home's device before the entities, so triggers can use its id."""
    return dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, **device_info(entry)
    )


class JeissonEntity(CoordinatorEntity[JeissonCoordinator]):
    """An entity of the enrolled home's device."""

    _attr_has_entity_name = True

    def __init__(
        self,
        coordinator: JeissonCoordinator,
        description: EntityDescription,
        *,
        unique_suffix: str | None = None,
    ) -> None:
        """Describe the entity and tie it to the home's device."""
        super().__init__(coordinator)
        self.entity_description = description
        entry = coordinator.config_entry
        base = entry.unique_id or entry.entry_id
        self._attr_unique_id = f"{base}_{unique_suffix or description.key}"
        self._attr_device_info = device_info(entry)
