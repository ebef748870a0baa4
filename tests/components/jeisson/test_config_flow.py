"""Config flow: enrol, errors that recover, duplicates, reauth and reconfigure (real aggregator)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.config_entries import SOURCE_USER
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.const import (
    CONF_AGGREGATOR_ID,
    CONF_CODE,
    CONF_HOME_ID,
    CONF_LOADS,
    CONF_PARTICIPATING,
    DOMAIN,
)
from jeisson.common.errors import AuthenticationFailed, UnsupportedSchemaVersion
from jeisson.common.protocol import ServerHello
from tests.helpers import free_port

from .aggregator_process import AggregatorProcess

FLOW = "custom_components.jeisson.config_flow"


async def _start(hass: HomeAssistant) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    return dict(result)


async def _unload_all(hass: HomeAssistant) -> None:
    for entry in hass.config_entries.async_entries(DOMAIN):
        await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def test_user_flow_enrols_and_creates_the_entry(
    hass: HomeAssistant, aggregator: AggregatorProcess
) -> None:
    """URL + code → enrolled, connection tested, entry created with the token."""
    home_id, code = await aggregator.add_home()
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: aggregator.url + "/", CONF_CODE: f"  {code} "}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    assert entry.data[CONF_URL] == aggregator.url
    assert entry.data[CONF_HOME_ID] == home_id
    assert entry.data[CONF_TOKEN]
    assert entry.unique_id == f"{entry.data[CONF_AGGREGATOR_ID]}-{home_id}"
    assert entry.options == {CONF_LOADS: {}, CONF_PARTICIPATING: True}
    assert result["title"] == "test home"  # the name the operator gave the home
    assert entry.data["home_name"] == "test home"
    await hass.async_block_till_done()
    await _unload_all(hass)


async def test_invalid_code_recovers(hass: HomeAssistant, aggregator: AggregatorProcess) -> None:
    """An unknown code shows invalid_code; the right code then creates the entry."""
    _, code = await aggregator.add_home()
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: aggregator.url, CONF_CODE: "not-a-real-code"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_CODE: "invalid_code"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: aggregator.url, CONF_CODE: code}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await _unload_all(hass)


async def test_invalid_url_and_cannot_connect_recover(
    hass: HomeAssistant, aggregator: AggregatorProcess
) -> None:
    """A non-http URL and an unreachable aggregator are reported, then fixed."""
    _, code = await aggregator.add_home()
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: "ftp://example.org", CONF_CODE: code}
    )
    assert result["errors"] == {CONF_URL: "invalid_url"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: f"http://127.0.0.1:{free_port()}", CONF_CODE: code}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: aggregator.url, CONF_CODE: code}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await _unload_all(hass)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("boom"), "unknown"),
        (UnsupportedSchemaVersion(2, 2, 1), "unsupported_protocol"),
    ],
)
async def test_unexpected_errors_recover(
    hass: HomeAssistant, aggregator: AggregatorProcess, error: Exception, expected: str
) -> None:
    """Errors the aggregator cannot produce on demand (patched) recover too."""
    home_id, code = await aggregator.add_home()
    result = await _start(hass)
    with patch(f"{FLOW}.test_connection", side_effect=error):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: aggregator.url, CONF_CODE: code}
        )
    assert result["errors"] == {"base": expected}
    # The code was consumed by the failed attempt: the operator hands out a new one.
    code = await aggregator.new_code(home_id)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: aggregator.url, CONF_CODE: code}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await _unload_all(hass)


async def test_same_home_twice_aborts(hass: HomeAssistant, aggregator: AggregatorProcess) -> None:
    """Enrolling the same home on the same aggregator again aborts (one entry per home)."""
    home_id, code = await aggregator.add_home()
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: aggregator.url, CONF_CODE: code}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_URL: aggregator.url, CONF_CODE: await aggregator.new_code(home_id)},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    await _unload_all(hass)


async def test_reauth_with_a_new_code_rotates_the_token(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """Reauth asks for a new code, checks it is the same home and stores the new token."""
    old_token = loaded_entry.data[CONF_TOKEN]
    home_id = loaded_entry.data[CONF_HOME_ID]
    result = await loaded_entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_CODE: "wrong-code"}
    )
    assert result["errors"] == {CONF_CODE: "invalid_code"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_CODE: await aggregator.new_code(home_id)}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert loaded_entry.data[CONF_TOKEN] != old_token
    await hass.async_block_till_done()


async def test_reauth_with_another_homes_code_aborts(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """A code of a different home cannot take over this entry."""
    old_token = loaded_entry.data[CONF_TOKEN]
    _, other_code = await aggregator.add_home("someone else")
    result = await loaded_entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_CODE: other_code}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_home"
    assert loaded_entry.data[CONF_TOKEN] == old_token


async def test_reconfigure_changes_the_url(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """Reconfigure tests the new URL with the home's token; errors recover."""
    result = await loaded_entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: "not a url"}
    )
    assert result["errors"] == {CONF_URL: "invalid_url"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: f"http://127.0.0.1:{free_port()}"}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    new_url = f"http://127.0.0.1:{aggregator.port}/"
    hass.config_entries.async_update_entry(
        loaded_entry, data={**loaded_entry.data, CONF_URL: "http://old.invalid"}
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_URL: new_url})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert loaded_entry.data[CONF_URL] == new_url.rstrip("/")
    await hass.async_block_till_done()


async def test_reconfigure_reports_a_revoked_token(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """When the aggregator rejects the stored token the form says invalid_auth."""
    await aggregator.enroll(await aggregator.new_code(loaded_entry.data[CONF_HOME_ID]))
    result = await loaded_entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: aggregator.url}
    )
    assert result["errors"] == {"base": "invalid_auth"}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("boom"), "unknown"),
        (UnsupportedSchemaVersion(2, 2, 1), "unsupported_protocol"),
        (AuthenticationFailed("no"), "invalid_auth"),
    ],
)
async def test_reconfigure_errors_recover(
    hass: HomeAssistant,
    aggregator: AggregatorProcess,
    loaded_entry: MockConfigEntry,
    error: Exception,
    expected: str,
) -> None:
    """Patched errors show their message and the flow still completes."""
    result = await loaded_entry.start_reconfigure_flow(hass)
    with patch(f"{FLOW}.test_connection", side_effect=error):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: aggregator.url}
        )
    assert result["errors"] == {"base": expected}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: aggregator.url}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()


async def test_reconfigure_to_another_aggregator_aborts(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """A URL that answers as another aggregator/home is refused (unique id mismatch)."""
    other = ServerHello(
        server_version="x",
        aggregator_id="other",
        home_id="someone",
        heartbeat_interval=30,
        server_time=datetime.now(UTC),
    )
    result = await loaded_entry.start_reconfigure_flow(hass)
    with patch(f"{FLOW}.test_connection", return_value=other):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: aggregator.url}
        )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_home"
