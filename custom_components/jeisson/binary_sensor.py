"""Binary sensors: an event is active, the aggregator is connected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import JeissonConfigEntry, JeissonState
from .entity import JeissonEntity

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class JeissonBinarySensorDescription(BinarySensorEntityDescription):
    """Describes a Jeisson binary sensor."""

    is_on_fn: Callable[[JeissonState], bool]


BINARY_SENSORS: tuple[JeissonBinarySensorDescription, ...] = (
    JeissonBinarySensorDescription(
        key="event_active",
        translation_key="event_active",
        device_class=BinarySensorDeviceClass.RUNNING,
        is_on_fn=lambda state: state.event_active,
    ),
    JeissonBinarySensorDescription(
        key="connected",
        translation_key="connected",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        is_on_fn=lambda state: state.connected,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: JeissonConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the home's binary sensors."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(
        JeissonBinarySensor(coordinator, description) for description in BINARY_SENSORS
    )


class JeissonBinarySensor(JeissonEntity, BinarySensorEntity):
    """A binary sensor fed by the coordinator's state snapshot."""

    entity_description: JeissonBinarySensorDescription

    @property
    def is_on(self) -> bool:
        """Return the sensor's state."""
        return self.entity_description.is_on_fn(self.coordinator.data)
