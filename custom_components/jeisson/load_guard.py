"""Which entities may power or measure a load: none of Jeisson's own, but its WiFi actuators.

A load switched by the home's participation switch would opt the home out of every event, and a
load switched by another load's switch would make loads switch each other; Jeisson's committed
and delivered power sensors are no load's measurement. The entities of a WiFi actuator paired
with this home are the exception: they are the actuator itself.
"""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er

from .const import DOMAIN
from .wifi_devices import IDENTIFIER_PREFIX


def own_entity_ids(hass: HomeAssistant, entry_id: str) -> list[str]:
    """Return Jeisson's entities no load of the entry ``entry_id`` may use (sorted)."""
    return sorted(
        entity.entity_id
        for entity in er.async_get(hass).entities.values()
        if entity.platform == DOMAIN
        and not (
            entity.config_entry_id == entry_id and entity.unique_id.startswith(IDENTIFIER_PREFIX)
        )
    )
