"""Fixtures of the HA integration tests: a real aggregator, switches, an enrolled home."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

# The hass fixture puts its own testing_config first on sys.path: import this checkout's
# custom_components package now (at import time), so HA loads our integration.
import custom_components.jeisson  # noqa: F401
from custom_components.jeisson.const import (
    CONF_AGGREGATOR_ID,
    CONF_HOME_ID,
    CONF_LOADS,
    CONF_PARTICIPATING,
    DOMAIN,
)

from .aggregator_process import AggregatorProcess
from .common import ENTRY_ID, SWITCHES, load_options, offline_entry, save_schedule, saved_event


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/jeisson in every test."""


@pytest.fixture
def aggregator(tmp_path: Path, socket_enabled: None) -> Iterator[AggregatorProcess]:
    """Run a real aggregator server on 127.0.0.1 with a fresh SQLite database."""
    server = AggregatorProcess(workdir=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def switches(hass: HomeAssistant) -> list[str]:
    """Create template switches backed by input_booleans (all on); return their entity ids."""
    assert await async_setup_component(
        hass,
        "input_boolean",
        {"input_boolean": {name: {"name": name, "initial": True} for name in SWITCHES}},
    )
    assert await async_setup_component(
        hass,
        "template",
        {
            "template": [
                {
                    "switch": [
                        {
                            "name": name,
                            "unique_id": f"test_{name}",
                            "state": f"{{{{ is_state('input_boolean.{name}', 'on') }}}}",
                            "turn_on": {
                                "action": "input_boolean.turn_on",
                                "target": {"entity_id": f"input_boolean.{name}"},
                            },
                            "turn_off": {
                                "action": "input_boolean.turn_off",
                                "target": {"entity_id": f"input_boolean.{name}"},
                            },
                        }
                        for name in SWITCHES
                    ]
                }
            ]
        },
    )
    await hass.async_block_till_done()
    entity_ids = [f"switch.{name}" for name in SWITCHES]
    for entity_id in entity_ids:
        state = hass.states.get(entity_id)
        assert state is not None, entity_id
        assert state.state == "on"
    return entity_ids


@pytest.fixture
def default_loads(switches: list[str]) -> dict[str, dict[str, Any]]:
    """Three loads on the three switches: two cheap, one that never curtails."""
    return {
        "heater": load_options(switches[0], name="Water heater", rated_kw=2.0, min_price=0.1),
        "pump": load_options(
            switches[1], name="Pool pump", kind="pool_pump", rated_kw=1.5, min_price=0.2
        ),
        "car": load_options(
            switches[2], name="Car", kind="ev_charger", rated_kw=7.0, never_curtail=True
        ),
    }


@pytest.fixture
async def enrolled(aggregator: AggregatorProcess) -> dict[str, Any]:
    """Enrol a home on the aggregator; return {home_id, token, aggregator_id}."""
    _, code = await aggregator.add_home("Snapshot home")
    return await aggregator.enroll(code)


@pytest.fixture
def entry_unique_id(enrolled: dict[str, Any]) -> str:
    """Return the entry's unique id as the config flow sets it (snapshot tests fix it)."""
    return f"{enrolled['aggregator_id']}-{enrolled['home_id']}"


@pytest.fixture
def config_entry(
    aggregator: AggregatorProcess,
    enrolled: dict[str, Any],
    default_loads: dict[str, dict[str, Any]],
    entry_unique_id: str,
) -> MockConfigEntry:
    """A config entry of an enrolled home (fixed entry id and title)."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Jeisson home",
        unique_id=entry_unique_id,
        entry_id="01JEISSONTESTENTRY000000000",
        data={
            CONF_URL: aggregator.url,
            CONF_TOKEN: enrolled["token"],
            CONF_HOME_ID: enrolled["home_id"],
            CONF_AGGREGATOR_ID: enrolled["aggregator_id"],
        },
        options={CONF_LOADS: default_loads, CONF_PARTICIPATING: True},
    )


@pytest.fixture
async def loaded_entry(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> AsyncIterator[MockConfigEntry]:
    """Set up the entry against the real aggregator; unload it at the end of the test."""
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    yield config_entry
    if (
        hass.config_entries.async_get_entry(config_entry.entry_id)
        and config_entry.state.recoverable
    ):
        await hass.config_entries.async_unload(config_entry.entry_id)
        await hass.async_block_till_done()


@pytest.fixture
async def offline(
    hass: HomeAssistant, hass_storage: dict[str, Any], switches: list[str], socket_enabled: None
) -> MockConfigEntry:
    """An entry holding a far-away award, so it sets up although no aggregator answers."""
    now = dt_util.utcnow()
    save_schedule(
        hass_storage,
        ENTRY_ID,
        [
            saved_event(
                "later",
                now + timedelta(days=1),
                now + timedelta(days=1, hours=1),
                status="awarded",
                loads=["car"],
            )
        ],
    )
    entry = offline_entry(switches, "http://127.0.0.1:9")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry
