"""Diagnostics: useful state, with the token and the aggregator URL redacted."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

REDACTED = "**REDACTED**"


async def test_diagnostics_redact_secrets(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, loaded_entry: MockConfigEntry
) -> None:
    """Token and URL never appear; loads, connection and schedule do."""
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, loaded_entry)
    assert diagnostics["entry"]["data"]["token"] == REDACTED
    assert diagnostics["entry"]["data"]["url"] == REDACTED
    assert loaded_entry.data["token"] not in str(diagnostics)
    assert set(diagnostics["entry"]["options"]["loads"]) == {"heater", "pump", "car"}
    assert diagnostics["connection"]["connected"] is True
    assert diagnostics["connection"]["server_hello"]["home_id"] == loaded_entry.data["home_id"]
    assert diagnostics["state"]["status"] == "idle"
    assert diagnostics["schedule"] == {"events": [], "earnings_total": 0.0, "currency": None}
