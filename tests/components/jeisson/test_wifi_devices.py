"""Paired WiFi actuators as HA devices: manual holds and their renewal, reconnect rules,
command failures, stale device removal, diagnostics, and the options flow's choice."""

# ruff: noqa: F811 - the fixtures imported from wifi_support are parameters of the tests

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from homeassistant.const import ATTR_ENTITY_ID, CONF_NAME
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    WebSocketGenerator,
)

from custom_components.jeisson import wifi_devices
from custom_components.jeisson.actuators import WifiActuator, actuator_for, load_power_kw
from custom_components.jeisson.const import CONF_LOADS, DOMAIN
from custom_components.jeisson.entity import device_identifier
from custom_components.jeisson.models import LoadConfig
from custom_components.jeisson.wifi_devices import RENEW_INTERVAL, actuator_ref
from jeisson.actuator import protocol
from jeisson.common.protocol import LoadKind
from tests.helpers import wait_for

from .common import load_options
from .wifi_support import (
    ENTRY_ID,
    KEY,
    endpoint_url,  # noqa: F401 - fixture
    paired_record,
    raw_device,  # noqa: F401 - fixture
    serve,
    start_device,  # noqa: F401 - fixture
    state_of,
    store_paired,
    stored_devices,
    wait_for_pairing_flow,
)

HEATER = "heater-1"
RAW = "raw-1"
SPARE = "spare-1"
HEATER_RELAY = "switch.water_heater_relay"
RAW_RELAY = "switch.raw_device_relay"
ON_STATE = {
    "relay": "on",
    "power_w": 900.0,
    "power_measured": True,
    "hold": None,
    "cause": "boot",
    "uptime_s": 1.0,
}


@pytest.fixture
def default_loads(
    default_loads: dict[str, dict[str, Any]], hass_storage: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The three switch loads plus a boiler on a WiFi actuator; three devices paired."""
    store_paired(
        hass_storage,
        paired_record(HEATER),
        paired_record(RAW, name="Raw device", rated_kw=1.0),
        paired_record(SPARE, name="Dryer plug", rated_kw=0.5),
    )
    return {**default_loads, "boiler": load_options(actuator_ref(HEATER), name="Boiler")}


def _load(device_id: str) -> LoadConfig:
    return LoadConfig(
        load_id="x", name="X", kind=LoadKind.OTHER, rated_kw=1.0, actuator=actuator_ref(device_id)
    )


async def _switch(hass: HomeAssistant, service: str, entity_id: str) -> None:
    await hass.services.async_call("switch", service, {ATTR_ENTITY_ID: entity_id}, blocking=True)


async def test_manual_off_is_a_day_long_hold_renewed_while_it_lasts(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    endpoint_url: str,
    start_device: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Switching the relay off by hand holds the load for a day; the hub renews it hourly."""
    sim = start_device(endpoint_url, HEATER)
    await wait_for(lambda: state_of(hass, HEATER_RELAY) == "on", what="connected")
    actuator = actuator_for(hass, _load(HEATER))
    assert isinstance(actuator, WifiActuator)
    assert actuator.available
    assert actuator.is_on is True
    assert 1.9 <= (actuator.power_kw() or 0) <= 2.1
    assert actuator.watched_entity_ids == (HEATER_RELAY, "sensor.water_heater_power")
    assert state_of(hass, "switch.jeisson_home_boiler") == "on"

    monkeypatch.setattr(wifi_devices, "MANUAL_HOLD", timedelta(minutes=2))
    await _switch(hass, "turn_off", HEATER_RELAY)
    assert not sim.relay.is_on()
    assert sim.device.hold is not None
    first = sim.device.hold.command_id
    assert 110 <= sim.device.remaining_s() <= 120
    assert [d["manual_off"] for d in stored_devices(hass_storage) if d["device_id"] == HEATER] == [
        True
    ]
    assert state_of(hass, "switch.jeisson_home_boiler") == "off"

    monkeypatch.setattr(wifi_devices, "MANUAL_HOLD", timedelta(hours=24))
    async_fire_time_changed(hass, dt_util.utcnow() + RENEW_INTERVAL)
    await wait_for(lambda: sim.device.hold.command_id != first, what="renewal")
    assert sim.device.remaining_s() > protocol.MAX_HOLD_S - 60
    assert not sim.relay.is_on()
    # Moving the clock an hour also runs out the connection's read timeout: once the device is
    # back (and its manual hold re-sent), switch it on.
    await wait_for(
        lambda: sim.client.connections == 2 and state_of(hass, HEATER_RELAY) == "off",
        what="connected again",
    )

    await _switch(hass, "turn_on", HEATER_RELAY)
    assert sim.relay.is_on()
    assert sim.device.hold is None
    assert [d["manual_off"] for d in stored_devices(hass_storage) if d["device_id"] == HEATER] == [
        False
    ]


async def test_the_button_ends_a_manual_hold_for_good(
    hass: HomeAssistant, hass_storage: dict[str, Any], endpoint_url: str, start_device: Any
) -> None:
    """A local override clears the manual hold: a reconnect does not switch the load off."""
    sim = start_device(endpoint_url, HEATER)
    await wait_for(lambda: state_of(hass, HEATER_RELAY) == "on", what="connected")
    await _switch(hass, "turn_off", HEATER_RELAY)
    sim.device.local_override()
    await wait_for(lambda: state_of(hass, HEATER_RELAY) == "on", what="override seen")
    relay = hass.states.get(HEATER_RELAY)
    assert relay is not None
    assert relay.attributes == {**relay.attributes, "cause": "local", "hold_until": None}
    await wait_for(
        lambda: (
            not next(d for d in stored_devices(hass_storage) if d["device_id"] == HEATER)[
                "manual_off"
            ]
        ),
        what="manual hold dropped",
    )


async def test_reconnecting_devices_are_put_in_the_hold_they_should_be_in(
    hass: HomeAssistant, hass_storage: dict[str, Any], endpoint_url: str, raw_device: Any
) -> None:
    """A hold nobody wants ends by itself; a manual hold is re-sent; an override is respected."""
    raw = await raw_device(endpoint_url)
    until = dt_util.utcnow().timestamp() + 100
    stale_hold = protocol.hold_payload("old", until, 100.0)
    held = {**ON_STATE, "relay": "off", "power_w": 0.0, "hold": stale_hold}
    await raw.send(raw.hello(RAW, state=held))
    assert (await raw.next())["type"] == "welcome"
    await wait_for(lambda: state_of(hass, RAW_RELAY) == "off", what="shown as it is")
    relay = hass.states.get(RAW_RELAY)
    assert relay is not None
    assert dt_util.parse_datetime(relay.attributes["hold_until"]).timestamp() == pytest.approx(
        until, abs=1e-3
    )
    with pytest.raises(TimeoutError):
        await raw.next(timeout=0.3)  # no command: the runner restores loads, or the device
    await raw.send({"type": "state", "state": ON_STATE})
    await wait_for(lambda: state_of(hass, RAW_RELAY) == "on", what="report")

    # Held off by hand, then reconnected without its hold: the hold is sent again.
    await _switch_off_raw(hass, raw)
    await raw.close()
    await wait_for(lambda: state_of(hass, RAW_RELAY) == "unavailable", what="gone")
    again = await raw_device(endpoint_url)
    await again.send(again.hello(RAW))
    assert (await again.next())["type"] == "welcome"
    command = await again.next()
    assert command is not None
    assert command["command"] == "off"
    assert command["duration_s"] > protocol.MAX_HOLD_S - 60

    # The button was pressed while it was away: that wins, and the manual hold is dropped.
    await again.close()
    third = await raw_device(endpoint_url)
    await third.send(third.hello(RAW, state={**ON_STATE, "cause": "local"}))
    assert (await third.next())["type"] == "welcome"
    await wait_for(lambda: state_of(hass, RAW_RELAY) == "on", what="shown")
    assert not next(d for d in stored_devices(hass_storage) if d["device_id"] == RAW)["manual_off"]


async def _switch_off_raw(hass: HomeAssistant, raw: Any) -> None:
    """Switch the raw device's relay off by hand, answering the command like a device."""
    task = hass.async_create_task(_switch(hass, "turn_off", RAW_RELAY))
    command = await raw.next()
    assert command["command"] == "off"
    held = {**ON_STATE, "relay": "off", "power_w": 0.0, "cause": "command"}
    hold = protocol.hold_payload(command["id"], command["until"], command["duration_s"])
    await raw.send(protocol.ack(command["id"], False, {**held, "hold": hold}))
    await task


async def test_commands_fail_clearly_when_the_device_refuses_or_does_not_answer(
    hass: HomeAssistant,
    endpoint_url: str,
    raw_device: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No ack in time, an error reply, no connection: HomeAssistantError with the reason."""
    monkeypatch.setattr(wifi_devices, "ACK_TIMEOUT_S", 0.3)
    actuator = actuator_for(hass, _load(RAW))
    with pytest.raises(HomeAssistantError, match="not connected"):
        await actuator.async_turn_off()
    assert not actuator.available
    assert actuator.is_on is None
    assert actuator.power_kw() is None
    with pytest.raises(HomeAssistantError, match="not connected"):
        await actuator_for(hass, _load("never-paired")).async_turn_on()

    raw = await raw_device(endpoint_url)
    await raw.send(raw.hello(RAW, state={**ON_STATE, "power_measured": False}))
    assert (await raw.next())["type"] == "welcome"
    await wait_for(lambda: actuator.available, what="connected")
    assert actuator.power_kw() is None  # not measured: the load's rated power is used
    assert load_power_kw(_load(RAW), actuator) == 1.0

    with pytest.raises(HomeAssistantError, match="did not carry out the command"):
        await actuator.async_turn_off()  # the raw device never answers
    assert (await raw.next())["command"] == "off"

    task = hass.async_create_task(actuator.async_turn_on())
    command = await raw.next()
    await raw.send(protocol.error(protocol.E_UNKNOWN_COMMAND, "no relay", command["id"]))
    with pytest.raises(HomeAssistantError, match="unknown_command: no relay"):
        await task

    task = hass.async_create_task(actuator.async_turn_on())
    await raw.next()
    await raw.close()
    with pytest.raises(HomeAssistantError, match="did not carry out the command"):
        await task


@pytest.mark.usefixtures("loaded_entry")
async def test_stale_devices_can_be_removed_and_forget_their_key(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    hass_ws_client: WebSocketGenerator,
    aiohttp_client: ClientSessionGenerator,
    raw_device: Any,
) -> None:
    """Offline: removed and its key forgotten. Connected, or the home itself: refused."""
    for component in ("websocket_api", "config"):  # their HTTP views before serving
        assert await async_setup_component(hass, component, {})
    endpoint_url = await serve(hass, aiohttp_client)
    registry = dr.async_get(hass)
    entities = er.async_get(hass)
    client = await hass_ws_client(hass)

    async def remove(device_id: str) -> dict[str, Any]:
        await client.send_json_auto_id(
            {"type": "config/device_registry/remove", "device_id": device_id}
        )
        return dict(await client.receive_json())

    def device(device_id: str) -> dr.DeviceEntry | None:
        return registry.async_get_device_by_identifier((DOMAIN, f"actuator:{device_id}"), ENTRY_ID)

    heater = device(HEATER)
    assert heater is not None
    assert entities.async_get(HEATER_RELAY) is not None
    assert (await remove(heater.id))["success"]
    assert device(HEATER) is None
    assert entities.async_get(HEATER_RELAY) is None
    assert HEATER not in {d["device_id"] for d in stored_devices(hass_storage)}

    raw = await raw_device(endpoint_url)
    await raw.send(raw.hello(RAW))
    assert (await raw.next())["type"] == "welcome"
    await wait_for(lambda: state_of(hass, RAW_RELAY) == "on", what="connected")
    connected = device(RAW)
    assert connected is not None
    refused = await remove(connected.id)
    assert not refused["success"]  # told why and what to do, in the user's language
    assert refused["error"]["translation_key"] == "wifi_device_connected"
    assert refused["error"]["message"].startswith("The WiFi actuator Raw device is connected")
    assert "Unplug it" in refused["error"]["message"]
    entry = hass.config_entries.async_get_entry(ENTRY_ID)
    assert entry is not None
    home = registry.async_get_device_by_identifier(device_identifier(entry), ENTRY_ID)
    assert home is not None
    refused = await remove(home.id)
    assert not refused["success"]
    assert refused["error"]["translation_key"] == "home_device_not_removable"

    # Forgotten: the removed device's next connection is a new device waiting for the user.
    back = await raw_device(endpoint_url)
    await back.send(back.hello(HEATER, KEY))
    assert (await back.next())["type"] == "pending"
    await wait_for_pairing_flow(hass, HEATER)

    # With the home unloaded, removal still forgets the key.
    assert await hass.config_entries.async_unload(ENTRY_ID)
    spare = device(SPARE)
    assert spare is not None
    assert (await remove(spare.id))["success"]
    assert {d["device_id"] for d in stored_devices(hass_storage)} == {RAW}


async def test_diagnostics_list_paired_devices_without_their_keys(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    aiohttp_client: ClientSessionGenerator,
    loaded_entry: MockConfigEntry,
    start_device: Any,
) -> None:
    """Each device with its live state; the key is redacted."""
    assert await async_setup_component(hass, "diagnostics", {})
    endpoint_url = await serve(hass, aiohttp_client)
    start_device(endpoint_url, HEATER)
    await wait_for(lambda: state_of(hass, HEATER_RELAY) == "on", what="connected")
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, loaded_entry)
    devices = {device["device_id"]: device for device in diagnostics["wifi_devices"]}
    assert set(devices) == {HEATER, RAW, SPARE}
    assert devices[HEATER]["key"] == "**REDACTED**"
    assert devices[HEATER]["connected"] is True
    assert devices[HEATER]["state"]["relay_on"] is True
    assert devices[RAW]["connected"] is False
    assert devices[RAW]["state"] is None
    assert KEY.hex() not in str(diagnostics)


async def test_options_flow_offers_the_paired_wifi_actuators(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """A load is switched by a switch entity or a WiFi actuator (not both, not neither)."""
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "add_load"}
    )
    assert "wifi_device" in result["data_schema"].schema
    base = {
        CONF_NAME: "Dryer",
        "kind": "other",
        "rated_kw": 1.0,
        "min_price": 0.1,
        "max_off_minutes": 30,
        "never_curtail": False,
    }
    for extra, error in (
        ({}, {"base": "actuator_required"}),
        ({"actuator": "switch.x", "wifi_device": SPARE}, {"base": "actuator_conflict"}),
        ({"wifi_device": HEATER}, {"wifi_device": "actuator_in_use"}),
        ({"actuator": HEATER_RELAY}, {"actuator": "actuator_in_use"}),  # the same device
    ):
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {**base, **extra}
        )
        assert result["errors"] == error, extra
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**base, "actuator": "switch.dryer_plug_relay"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    dryer = next(
        load for load in loaded_entry.options[CONF_LOADS].values() if load[CONF_NAME] == "Dryer"
    )
    assert dryer["actuator"] == actuator_ref(SPARE)  # its relay entity means the device

    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "edit_load"}
    )
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"load_id": "boiler"}
    )
    schema = result["data_schema"].schema
    suggested = {
        str(marker): marker.description["suggested_value"]
        for marker in schema
        if marker.description and "suggested_value" in marker.description
    }
    assert suggested["wifi_device"] == HEATER
    assert "actuator" not in suggested


async def test_an_options_change_keeps_the_wifi_links(
    hass: HomeAssistant,
    aiohttp_client: ClientSessionGenerator,
    loaded_entry: MockConfigEntry,
    start_device: Any,
) -> None:
    """Options are applied in place: a connected actuator is never dropped by them."""
    endpoint_url = await serve(hass, aiohttp_client)
    start_device(endpoint_url, HEATER)
    await wait_for(lambda: state_of(hass, HEATER_RELAY) == "on", what="connected")
    seen: list[str] = []
    unsubscribe = async_track_state_change_event(
        hass, [HEATER_RELAY], lambda event: seen.append(event.data["new_state"].state)
    )
    for choice, answer in (
        ("settings", {"participating": False, "wifi_remote_devices": False}),
        ("remove_load", {CONF_LOADS: ["boiler"]}),
    ):
        result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {"next_step_id": choice}
        )
        result = await hass.config_entries.options.async_configure(result["flow_id"], answer)
        assert result["type"] is FlowResultType.CREATE_ENTRY
        await hass.async_block_till_done()
    unsubscribe()
    assert "unavailable" not in seen
    assert state_of(hass, HEATER_RELAY) == "on"
