"""The opt-out button: stop curtailing for every open event of this home."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN
from .coordinator import JeissonConfigEntry
from .entity import JeissonEntity

PARALLEL_UPDATES = 1

OPT_OUT = ButtonEntityDescription(key="opt_out", translation_key="opt_out")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: JeissonConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the opt-out button."""
    async_add_entities([JeissonOptOutButton(entry.runtime_data.coordinator, OPT_OUT)])


class JeissonOptOutButton(JeissonEntity, ButtonEntity):
    """Opts the home out of its open events and gives its loads back at once."""

    async def async_press(self) -> None:
        """Opt out (an error when there is nothing to opt out of)."""
        if not await self.coordinator.async_opt_out():
            raise ServiceValidationError(
                translation_domain=DOMAIN, translation_key="no_event_to_opt_out"
            )
