"""Service actions: opt out of an event, and change a load's terms."""

from __future__ import annotations

from typing import Any

import probatio
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant, ServiceCall, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import entity_registry as er

from .const import (
    ATTR_ENTRY_ID,
    ATTR_EVENT_ID,
    CONF_LOADS,
    CONF_MAX_OFF_MINUTES,
    CONF_MIN_PRICE,
    CONF_NEVER_CURTAIL,
    CONF_OFF_LIMITS_END,
    CONF_OFF_LIMITS_START,
    DOMAIN,
    MAX_OFF_MINUTES_LIMIT,
    MAX_PRICE_PER_KWH,
    SERVICE_OPT_OUT,
    SERVICE_SET_LOAD_TERMS,
)
from .coordinator import JeissonConfigEntry

_TERM_FIELDS = (
    CONF_MIN_PRICE,
    CONF_MAX_OFF_MINUTES,
    CONF_OFF_LIMITS_START,
    CONF_OFF_LIMITS_END,
    CONF_NEVER_CURTAIL,
)
_LOAD_UNIQUE_MARKER = "_load_"

OPT_OUT_SCHEMA = probatio.Schema(
    {
        probatio.Required(ATTR_ENTRY_ID): cv.string,
        probatio.Optional(ATTR_EVENT_ID): cv.string,
    }
)
SET_LOAD_TERMS_SCHEMA = probatio.Schema(
    {
        probatio.Required(ATTR_ENTITY_ID): cv.entity_id,
        probatio.Optional(CONF_MIN_PRICE): probatio.All(
            probatio.Coerce(float), probatio.Range(min=0, max=MAX_PRICE_PER_KWH)
        ),
        probatio.Optional(CONF_MAX_OFF_MINUTES): probatio.All(
            probatio.Coerce(int), probatio.Range(min=1, max=MAX_OFF_MINUTES_LIMIT)
        ),
        probatio.Optional(CONF_OFF_LIMITS_START): probatio.Any(None, cv.time),
        probatio.Optional(CONF_OFF_LIMITS_END): probatio.Any(None, cv.time),
        probatio.Optional(CONF_NEVER_CURTAIL): cv.boolean,
    }
)


def _loaded_entry(hass: HomeAssistant, entry_id: str) -> JeissonConfigEntry:
    entry: JeissonConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_found",
            translation_placeholders={"entry_id": entry_id},
        )
    if entry.state is not ConfigEntryState.LOADED:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_loaded",
            translation_placeholders={"name": entry.title},
        )
    return entry


async def _async_opt_out(call: ServiceCall) -> None:
    entry = _loaded_entry(call.hass, call.data[ATTR_ENTRY_ID])
    event_id: str | None = call.data.get(ATTR_EVENT_ID)
    if not await entry.runtime_data.coordinator.async_opt_out(event_id):
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="no_event_to_opt_out",
        )


async def _async_set_load_terms(call: ServiceCall) -> None:
    hass = call.hass
    entity_id: str = call.data[ATTR_ENTITY_ID]
    registry_entry = er.async_get(hass).async_get(entity_id)
    if (
        registry_entry is None
        or registry_entry.platform != DOMAIN
        or registry_entry.config_entry_id is None
        or _LOAD_UNIQUE_MARKER not in registry_entry.unique_id
    ):
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="not_a_load",
            translation_placeholders={"entity_id": entity_id},
        )
    entry = _loaded_entry(hass, registry_entry.config_entry_id)
    load_id = registry_entry.unique_id.rsplit(_LOAD_UNIQUE_MARKER, 1)[1]
    loads: dict[str, dict[str, Any]] = dict(entry.options.get(CONF_LOADS, {}))
    if load_id not in loads:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="not_a_load",
            translation_placeholders={"entity_id": entity_id},
        )
    changes = {key: call.data[key] for key in _TERM_FIELDS if key in call.data}
    if not changes:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_terms_given")
    for key in (CONF_OFF_LIMITS_START, CONF_OFF_LIMITS_END):
        if key in changes and changes[key] is not None:
            changes[key] = changes[key].isoformat()
    updated = {**loads[load_id], **changes}
    if bool(updated.get(CONF_OFF_LIMITS_START)) != bool(updated.get(CONF_OFF_LIMITS_END)):
        raise ServiceValidationError(
            translation_domain=DOMAIN, translation_key="off_limits_incomplete"
        )
    loads[load_id] = updated
    if not hass.config_entries.async_update_entry(
        entry, options={**entry.options, CONF_LOADS: loads}
    ):
        return
    await entry.runtime_data.coordinator.async_apply_options()


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's service actions (once, in async_setup)."""
    hass.services.async_register(DOMAIN, SERVICE_OPT_OUT, _async_opt_out, schema=OPT_OUT_SCHEMA)
    hass.services.async_register(
        DOMAIN, SERVICE_SET_LOAD_TERMS, _async_set_load_terms, schema=SET_LOAD_TERMS_SCHEMA
    )
