"""Setting up the entry: connection errors map to the right states; reauth; protocol issue."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.const import CONF_HOME_ID, DOMAIN, ISSUE_UNSUPPORTED_PROTOCOL
from custom_components.jeisson.entity import device_identifier
from jeisson.common.errors import UnsupportedSchemaVersion
from tests.helpers import free_port, wait_for

from .aggregator_process import AggregatorProcess

CONNECTED = "binary_sensor.jeisson_home_aggregator_connected"


async def test_unreachable_aggregator_retries_setup(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """No aggregator at the URL: setup is retried later (not ready)."""
    config_entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        config_entry, data={**config_entry.data, CONF_URL: f"http://127.0.0.1:{free_port()}"}
    )
    assert not await hass.config_entries.async_setup(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.SETUP_RETRY


async def test_rejected_token_starts_reauth(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """A token the aggregator rejects fails setup with a reauth flow."""
    config_entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        config_entry, data={**config_entry.data, CONF_TOKEN: "revoked"}
    )
    assert not await hass.config_entries.async_setup(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress()
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]


async def test_unsupported_protocol_raises_a_repair_issue(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """A protocol mismatch is a setup error with a repair issue, cleared by a good setup."""
    config_entry.add_to_hass(hass)
    with patch(
        "custom_components.jeisson.HomeClient.connect",
        side_effect=UnsupportedSchemaVersion(3, 2, 1),
    ):
        assert not await hass.config_entries.async_setup(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.SETUP_ERROR
    issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_UNSUPPORTED_PROTOCOL)
    assert issue is not None
    assert issue.translation_placeholders == {
        "server_version": "3",
        "server_min_version": "2",
        "client_version": "1",
    }
    assert await hass.config_entries.async_reload(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.LOADED
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_UNSUPPORTED_PROTOCOL) is None
    await hass.config_entries.async_unload(config_entry.entry_id)


async def test_token_revoked_while_running_starts_reauth(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """Re-enrolling the home elsewhere revokes our token: the entry asks for reauth."""
    await aggregator.enroll(await aggregator.new_code(loaded_entry.data[CONF_HOME_ID]))
    await wait_for(
        lambda: any(
            flow["context"]["source"] == SOURCE_REAUTH
            for flow in hass.config_entries.flow.async_progress()
        ),
        what="reauth flow",
    )
    await wait_for(lambda: hass.states.get(CONNECTED).state == "off", what="disconnected")


@pytest.mark.parametrize("action", ["revoke", "suspend"])
async def test_token_revoked_or_home_suspended_by_the_operator_starts_reauth(
    hass: HomeAssistant,
    aggregator: AggregatorProcess,
    loaded_entry: MockConfigEntry,
    action: str,
) -> None:
    """The operator revokes the token (or suspends the home): the session closes, reauth."""
    assert hass.states.get(CONNECTED).state == "on"
    await aggregator.request("POST", f"/api/v1/homes/{loaded_entry.data[CONF_HOME_ID]}/{action}")
    await wait_for(
        lambda: any(
            flow["context"]["source"] == SOURCE_REAUTH
            for flow in hass.config_entries.flow.async_progress()
        ),
        what="reauth flow",
    )
    await wait_for(lambda: hass.states.get(CONNECTED).state == "off", what="disconnected")


async def test_connection_lost_and_restored(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """The connectivity sensor follows the connection; the client reconnects by itself."""
    assert hass.states.get(CONNECTED).state == "on"
    aggregator.stop()
    await wait_for(lambda: hass.states.get(CONNECTED).state == "off", what="disconnected")
    assert hass.states.get("sensor.jeisson_home_next_event_start").state != "unavailable"
    aggregator.start()
    await wait_for(lambda: hass.states.get(CONNECTED).state == "on", timeout=90, what="reconnected")


async def test_protocol_mismatch_after_setup_raises_the_repair_issue(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """The listen task ending on a protocol mismatch marks the home disconnected + issue."""
    config_entry.add_to_hass(hass)
    with patch(
        "custom_components.jeisson.HomeClient.run",
        side_effect=UnsupportedSchemaVersion(2, 2, 1),
    ):
        assert await hass.config_entries.async_setup(config_entry.entry_id)
        await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_UNSUPPORTED_PROTOCOL) is not None
    assert hass.states.get(CONNECTED).state == "off"
    await hass.config_entries.async_unload(config_entry.entry_id)


async def test_unexpected_connect_error_fails_setup_cleanly(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """A bug-like error while connecting fails the setup without leaving timers behind."""
    config_entry.add_to_hass(hass)
    with patch("custom_components.jeisson.HomeClient.connect", side_effect=RuntimeError("bug")):
        assert not await hass.config_entries.async_setup(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.SETUP_ERROR


async def test_removing_the_entry_deletes_its_schedule(
    hass: HomeAssistant, hass_storage: dict, loaded_entry: MockConfigEntry
) -> None:
    """The saved schedule goes away with the entry."""
    key = f"jeisson.events.{loaded_entry.entry_id}"
    runner = loaded_entry.runtime_data.runner
    await runner._store.async_save(runner.schedule.as_dict())
    assert key in hass_storage
    assert await hass.config_entries.async_remove(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert key not in hass_storage


async def test_the_home_follows_the_operators_name_unless_the_user_renamed_it(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Titled after the name last received: the operator's new name (the aggregator's
    server_hello) renames the entry and the device; a title the user chose stays."""
    config_entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        config_entry, title="Old name", data={**config_entry.data, "home_name": "Old name"}
    )
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    assert config_entry.title == "Snapshot home"  # the fixture's name on the aggregator
    assert config_entry.data["home_name"] == "Snapshot home"
    device = dr.async_get(hass).async_get_device_by_identifier(
        device_identifier(config_entry), config_entry.entry_id
    )
    assert device is not None
    assert device.name == "Snapshot home"

    hass.config_entries.async_update_entry(
        config_entry, title="My house", data={**config_entry.data, "home_name": "Older name"}
    )
    assert await hass.config_entries.async_reload(config_entry.entry_id)
    await hass.async_block_till_done()
    assert config_entry.title == "My house"
    assert config_entry.data["home_name"] == "Snapshot home"
    await hass.config_entries.async_unload(config_entry.entry_id)
