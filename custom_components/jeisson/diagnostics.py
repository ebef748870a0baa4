"""Diagnostics: entry (token, URL redacted), connection, schedule, WiFi devices (keys redacted)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant

from .coordinator import JeissonConfigEntry
from .wifi_endpoint import get_router

TO_REDACT = {CONF_TOKEN, CONF_URL}
WIFI_TO_REDACT = {"key"}


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
        "wifi_devices": _wifi_devices(hass, entry),
    }


def _wifi_devices(hass: HomeAssistant, entry: JeissonConfigEntry) -> list[Any]:
    """Return the home's paired WiFi actuators and their live state, keys redacted."""
    router = get_router(hass)
    hub = router.hub(entry.entry_id) if router is not None else None
    if hub is None:
        return []
    return [async_redact_data(device, WIFI_TO_REDACT) for device in hub.diagnostics()]
