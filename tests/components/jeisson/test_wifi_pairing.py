"""Pairing Jeisson WiFi actuators: discovery, the key typed by the user, known and unknown keys."""

# ruff: noqa: F811 - the fixtures imported from wifi_support are parameters of the tests

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from homeassistant.config_entries import SOURCE_IGNORE, SOURCE_INTEGRATION_DISCOVERY
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.const import DOMAIN
from custom_components.jeisson.entity import device_identifier
from jeisson.actuator import protocol
from tests.helpers import wait_for

from .wifi_support import (
    ENTRY_ID,
    KEY,
    KEY_TEXT,
    OTHER_KEY,
    endpoint_url,  # noqa: F401 - fixture
    paired_record,
    pairing_flows,
    raw_device,  # noqa: F401 - fixture
    simulator,  # noqa: F401 - fixture
    state_of,
    store_paired,
    stored_devices,
    wait_for_pairing_flow,
)

DISCOVERY = {
    "device_id": "never-seen",
    "name": "Boiler",
    "model": None,
    "firmware": "1.0",
    "rated_kw": 3.0,
}


async def test_new_device_is_discovered_and_paired_with_the_key_on_its_label(
    hass: HomeAssistant,
    endpoint_url: str,
    simulator: Any,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real simulator connects; typos are caught at once; the right key pairs it."""
    caplog.set_level(logging.DEBUG)
    sim = await simulator(endpoint_url, "sim-pump")
    flow = await wait_for_pairing_flow(hass, "sim-pump")
    assert flow["step_id"] == "wifi_confirm"
    assert flow["context"]["title_placeholders"] == {"name": "Pool pump"}
    await wait_for(lambda: "waiting for the user" in sim.output(), what="pending")
    registry = dr.async_get(hass)
    assert registry.async_get_device_by_identifier((DOMAIN, "actuator:sim-pump"), ENTRY_ID) is None

    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"key": "a-b-c"})
    assert result["errors"] == {"key": "invalid_key_format"}
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {"key": protocol.format_key(OTHER_KEY)}
    )
    assert result["errors"] == {"key": "wrong_key"}
    assert result["description_placeholders"] == {
        "name": "Pool pump",
        "model": "Jeisson simulator",
        "rated_kw": "1.5",
    }
    typed = KEY_TEXT.upper().replace("-", " ")  # case and separators do not matter
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"key": typed})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wifi_paired"

    device = registry.async_get_device_by_identifier((DOMAIN, "actuator:sim-pump"), ENTRY_ID)
    assert device is not None
    assert (device.name, device.manufacturer, device.model) == (
        "Pool pump",
        "Jeisson",
        "Jeisson simulator",
    )
    assert device.sw_version
    entry = hass.config_entries.async_get_entry(ENTRY_ID)
    assert entry is not None
    home = registry.async_get_device_by_identifier(device_identifier(entry), ENTRY_ID)
    assert home is not None
    assert device.via_device_id == home.id
    await wait_for(lambda: state_of(hass, "switch.pool_pump_relay") == "on", what="relay")
    await wait_for(lambda: state_of(hass, "sensor.pool_pump_power") not in (None, "unknown"))
    assert 1400 <= float(state_of(hass, "sensor.pool_pump_power") or 0) <= 1600
    await wait_for(lambda: "accepted this device" in sim.output(), what="welcome")
    assert stored_devices(hass_storage)[0]["key"] == KEY.hex()
    assert not pairing_flows(hass, "sim-pump")
    # The test harness's mock storage logs what it writes; every other logger never sees a key.
    logged = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith("pytest_homeassistant_custom_component")
    )
    for secret in (KEY_TEXT, KEY.hex(), typed):
        assert secret not in logged
        assert secret not in sim.output()
    assert await sim.stop() == 0


async def test_a_device_that_left_is_paired_and_welcomed_when_it_comes_back(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, endpoint_url: str, raw_device: Any
) -> None:
    """The typed key is checked against the kept hello; the next connection is welcomed."""
    first = await raw_device(endpoint_url)
    await first.send(first.hello("raw-1"))
    assert (await first.next())["type"] == "pending"
    await first.close()
    flow = await wait_for_pairing_flow(hass, "raw-1")
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"key": KEY_TEXT})
    assert result["reason"] == "wifi_paired"

    again = await raw_device(endpoint_url)
    await again.send(again.hello("raw-1"))
    welcome = await again.next()
    assert welcome is not None
    assert welcome["type"] == "welcome"
    assert protocol.check_server_proof(KEY, again.challenge["nonce"], again.nonce, "raw-1", welcome)
    await wait_for(lambda: state_of(hass, "switch.raw_device_relay") == "on", what="available")


async def test_a_known_device_with_a_wrong_key_is_rejected(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    loaded_entry: MockConfigEntry,
    endpoint_url: str,
    raw_device: Any,
) -> None:
    """auth_failed and close 4003; no pairing flow; its entities stay unavailable."""
    store_paired(hass_storage, paired_record("known-1"))
    await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert state_of(hass, "switch.water_heater_relay") == "unavailable"
    raw = await raw_device(endpoint_url)
    await raw.send(raw.hello("known-1", OTHER_KEY))
    error = await raw.next()
    assert error == {"type": "error", "code": "auth_failed", "message": "wrong device key"}
    assert await raw.closed_with() == protocol.CLOSE_AUTH_FAILED
    assert not pairing_flows(hass, "known-1")
    assert state_of(hass, "switch.water_heater_relay") == "unavailable"


async def test_a_pending_id_used_twice_keeps_both_and_the_key_picks_the_device(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, endpoint_url: str, raw_device: Any
) -> None:
    """A second connection with a pending id does not replace the first; still one flow.

    The typed key pairs the connection it proves (here the first), the other is closed.
    """
    real = await raw_device(endpoint_url)
    await real.send(real.hello("twice", name="Boiler"))
    assert (await real.next())["type"] == "pending"
    await wait_for_pairing_flow(hass, "twice")
    other = await raw_device(endpoint_url)
    await other.send(other.hello("twice", OTHER_KEY, name="Impostor"))
    assert (await other.next())["type"] == "pending"
    await hass.async_block_till_done()
    assert len(pairing_flows(hass, "twice")) == 1
    assert not real.ws.closed

    flow = pairing_flows(hass, "twice")[0]
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"key": KEY_TEXT})
    assert result["reason"] == "wifi_paired"
    assert result["description_placeholders"]["name"] == "Boiler"
    assert (await real.next())["type"] == "welcome"
    assert (await other.next())["code"] == "replaced"
    assert await other.closed_with() == protocol.CLOSE_REPLACED


async def test_unloading_the_last_home_closes_pending_devices_and_the_endpoint(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, endpoint_url: str, raw_device: Any
) -> None:
    """Pending devices are closed and forgotten; new connections get HTTP 503."""
    raw = await raw_device(endpoint_url)
    await raw.send(raw.hello("orphan"))
    assert (await raw.next())["type"] == "pending"
    flow = await wait_for_pairing_flow(hass, "orphan")
    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    assert await raw.closed_with() == 1001
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"key": KEY_TEXT})
    assert result["reason"] == "wifi_not_pending"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(endpoint_url)
    assert refused.value.status == 503


async def test_an_ignored_device_is_not_offered_again(hass: HomeAssistant) -> None:
    """The user ignored it once: its discovery aborts."""
    MockConfigEntry(
        domain=DOMAIN, source=SOURCE_IGNORE, unique_id="actuator:never-seen"
    ).add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_INTEGRATION_DISCOVERY}, data=DISCOVERY
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wifi_ignored"


async def test_confirming_a_device_that_is_not_waiting_aborts(hass: HomeAssistant) -> None:
    """No endpoint, or the device is no longer pending: nothing to pair."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_INTEGRATION_DISCOVERY}, data=DISCOVERY
    )
    assert result["step_id"] == "wifi_confirm"
    assert result["description_placeholders"]["model"] == "Jeisson WiFi actuator"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"key": KEY_TEXT})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wifi_not_pending"
