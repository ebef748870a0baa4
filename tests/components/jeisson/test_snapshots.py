"""Entity snapshots of every platform (syrupy), one set of files for every HA release tested.

Home Assistant 2026.11 added ``compat_name`` to entity registry entries (the name an entity had
before HA's naming change, kept for integrations that had one; ``None`` otherwise); 2026.10.4
has no such field. The serializer below leaves the field out when it is ``None``, so the same
snapshot files hold on both releases, and an entity that ever gets a ``compat_name`` still
shows it and fails against these files.
"""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import attrs
import pytest
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from pytest_homeassistant_custom_component.syrupy import (
    HomeAssistantSnapshotExtension,
    HomeAssistantSnapshotSerializer,
)
from syrupy.assertion import SnapshotAssertion

COMPAT_NAME = "compat_name"


class _Serializer(HomeAssistantSnapshotSerializer):
    """Home Assistant's serializer, without HA 2026.11's ``compat_name`` when it is None."""

    @classmethod
    def _serializable_entity_registry_entry(cls, data: er.RegistryEntry) -> Any:
        serialized = super()._serializable_entity_registry_entry(data)
        if serialized.get(COMPAT_NAME, ...) is None:
            del serialized[COMPAT_NAME]
        return serialized


class _Extension(HomeAssistantSnapshotExtension):
    """Home Assistant's snapshot extension with the serializer above."""

    serializer_class = _Serializer


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Serialise registry entries and states the Home Assistant way (ids and times as ANY)."""
    return snapshot.use_extension(_Extension)


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


async def test_the_serializer_leaves_out_compat_name_only_when_it_is_none(
    entity_registry: er.EntityRegistry,
) -> None:
    """On every release the rest of an entry is serialised as HA does; a set compat_name stays."""
    entry = entity_registry.async_get_or_create("switch", "jeisson", "x")
    theirs = HomeAssistantSnapshotSerializer._serializable_entity_registry_entry(entry)
    ours = _Serializer._serializable_entity_registry_entry(entry)
    assert COMPAT_NAME not in ours
    assert ours == {key: value for key, value in theirs.items() if key != COMPAT_NAME}
    if COMPAT_NAME in attrs.fields_dict(er.RegistryEntry):  # HA 2026.11 and newer
        named = attrs.evolve(entry, **{COMPAT_NAME: "Old name"})
        assert _Serializer._serializable_entity_registry_entry(named)[COMPAT_NAME] == "Old name"
