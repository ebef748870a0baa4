"""Diagnostics: the entry (token and URL redacted), the loads, the connection and the schedule."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant

from .coordinator import JeissonConfigEntry

TO_REDACT = {CONF_TOKEN, CONF_URL}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: JeissonConfigEntry
) -> dict[str, Any]:
    """Return what helps debugging, without secrets."""
    data = entry.runtime_data
    hello = data.client.server_hello
    state = data.coordinator.data
    return {
        "entry": {
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
        },
        "connection": {
            "connected": data.client.connected,
            "server_hello": hello.model_dump(mode="json") if hello else None,
        },
        "state": {
            "status": state.status.value,
            "participating": state.participating,
            "committed_kw": state.committed_kw,
            "delivered_kw": state.delivered_kw,
            "earnings": state.earnings,
            "currency": state.currency,
        },
        "schedule": data.runner.schedule.as_dict(),
    }
