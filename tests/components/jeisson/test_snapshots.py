"""Entity snapshots of every platform (syrupy)."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Serialise registry entries and states the Home Assistant way (ids and times as ANY)."""
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


@pytest.fixture
def entry_unique_id() -> str:
    """Use a fixed unique id so the snapshots do not depend on the server's random ids."""
    return "aggregator-home"


@pytest.mark.parametrize(
    "platform",
    [
        Platform.BINARY_SENSOR,
        Platform.BUTTON,
        Platform.CALENDAR,
        Platform.SENSOR,
        Platform.SWITCH,
    ],
)
async def test_platform_snapshot(
    hass: HomeAssistant,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    config_entry: MockConfigEntry,
    platform: Platform,
) -> None:
    """Each platform's entities (registry entries and states) match the committed snapshot."""
    config_entry.add_to_hass(hass)
    with patch("custom_components.jeisson.PLATFORMS", [platform]):
        assert await hass.config_entries.async_setup(config_entry.entry_id)
        await hass.async_block_till_done()
    await snapshot_platform(hass, entity_registry, snapshot, config_entry.entry_id)
    await hass.config_entries.async_unload(config_entry.entry_id)
