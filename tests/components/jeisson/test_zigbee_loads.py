"""Zigbee loads in a Jeisson home: options flow, linked entities, events end to end.

A real aggregator process negotiates with the home; the home's loads are smart plugs on Home
Assistant's real ZHA integration (real zigpy objects on the simulated radio of
:mod:`.zha_harness`). The assertions look at what reaches the plugs (ZCL On/Off commands) and
what reaches the aggregator (telemetry rows in its SQLite database).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from homeassistant.const import CONF_NAME, CONF_TOKEN, CONF_URL, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.const import (
    CONF_AGGREGATOR_ID,
    CONF_HOME_ID,
    CONF_LOADS,
    CONF_PARTICIPATING,
    DOMAIN,
    EVENT_OPTED_OUT,
)
from custom_components.jeisson.zigbee import CONF_ZHA_DEVICE, zha_actuator_ref
from jeisson.common.protocol import Award, EventKind, Offer
from tests.helpers import wait_for

from .aggregator_process import AggregatorProcess
from .common import load_options
from .zha_harness import (
    ELECTRICAL_MEASUREMENT_CLUSTER_ID,
    OFF_COMMAND_ID,
    ON_COMMAND_ID,
    ON_OFF_CLUSTER_ID,
    PLUG_ENDPOINT_ID,
    SMART_PLUG,
    JoinedDevice,
    ZclRequestLog,
    ZhaHarness,
    zcl_requests_fixture,  # noqa: F401  (pytest fixture)
    zha_entity_ids,
    zha_harness_fixture,  # noqa: F401  (pytest fixture)
)

FRIDGE_PLUG = SMART_PLUG.with_address("a4:c1:38:00:00:00:f0:0d", 0x5C3D)
#: Raw active power in tenths of a watt (the plug's ac_power_divisor is 10).
HEATER_RAW, HEATER_KW = 20000, 2.0
FRIDGE_RAW, FRIDGE_KW = 1500, 0.15
FRIDGE_RAW_LATER, FRIDGE_KW_LATER = 1800, 0.18
ENTRY_UNIQUE_ID = "zigbee-home"


@pytest.fixture
async def plugs(zha_harness: ZhaHarness) -> tuple[JoinedDevice, JoinedDevice]:
    """Two smart plugs joined to ZHA: the water heater's and the fridge's."""
    return await zha_harness.async_join(SMART_PLUG), await zha_harness.async_join(FRIDGE_PLUG)


def zha_load_options(plug: JoinedDevice, **kwargs: Any) -> dict[str, Any]:
    """The stored options of a load on ``plug`` (what the options flow saves)."""
    return {**load_options(zha_actuator_ref(plug.device_id), **kwargs), "zha_ieee": plug.ieee}


@pytest.fixture
async def zigbee_home(
    hass: HomeAssistant,
    aggregator: AggregatorProcess,
    enrolled: dict[str, Any],
    plugs: tuple[JoinedDevice, JoinedDevice],
) -> AsyncIterator[MockConfigEntry]:
    """An enrolled home whose loads are the two plugs (the fridge is never curtailed)."""
    heater, fridge = plugs
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Jeisson home",
        unique_id=ENTRY_UNIQUE_ID,
        data={
            CONF_URL: aggregator.url,
            CONF_TOKEN: enrolled["token"],
            CONF_HOME_ID: enrolled["home_id"],
            CONF_AGGREGATOR_ID: enrolled["aggregator_id"],
        },
        options={
            CONF_LOADS: {
                "heater": zha_load_options(heater, name="Water heater", rated_kw=2.0),
                "fridge": zha_load_options(
                    fridge, name="Fridge", kind="other", rated_kw=0.2, never_curtail=True
                ),
            },
            CONF_PARTICIPATING: True,
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    yield entry
    if entry.state.recoverable:
        await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


def load_switch(hass: HomeAssistant, load_id: str, unique_id: str = ENTRY_UNIQUE_ID) -> str:
    """The entity id of Jeisson's switch for a load."""
    entity_id = er.async_get(hass).async_get_entity_id(
        "switch", DOMAIN, f"{unique_id}_load_{load_id}"
    )
    assert entity_id is not None
    return entity_id


def record(hass: HomeAssistant, event_type: str) -> list[dict[str, Any]]:
    """Collect the payloads of one bus event type."""
    seen: list[dict[str, Any]] = []

    @callback
    def _record(event: Event) -> None:
        seen.append(dict(event.data))

    hass.bus.async_listen(event_type, _record)
    return seen


def telemetry_loads(aggregator: AggregatorProcess, event_id: str) -> list[dict[str, float]]:
    """The per-load power of every telemetry sample the aggregator stored for an event."""
    with sqlite3.connect(aggregator.workdir / "aggregator.db") as db:
        rows = db.execute(
            "SELECT loads FROM telemetry WHERE event_id = ? ORDER BY ts", (event_id,)
        ).fetchall()
    return [json.loads(loads) if isinstance(loads, str) else loads for (loads,) in rows]


async def test_awarded_event_switches_the_plug_off_and_back_on(
    hass: HomeAssistant,
    aggregator: AggregatorProcess,
    *,
    zigbee_home: MockConfigEntry,
    plugs: tuple[JoinedDevice, JoinedDevice],
    zha_harness: ZhaHarness,
    zcl_requests: ZclRequestLog,
) -> None:
    """Award → On/Off ``off`` to the heater's plug only → the fridge's active-power reports
    reach the aggregator's telemetry → ``on`` after the event."""
    heater, fridge = plugs
    await zha_harness.async_report(
        heater, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": HEATER_RAW}
    )
    await zha_harness.async_report(
        fridge, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": FRIDGE_RAW}
    )
    runner = zigbee_home.runtime_data.runner
    assert runner.sample(dt_util.utcnow()).loads == {"heater": HEATER_KW, "fridge": FRIDGE_KW}
    zcl_requests.clear()

    created = await aggregator.create_event(target_kw=1.0, price_cap=0.5, duration=3.0)
    event_id = created["id"]

    def heater_commands() -> list[int]:
        return zcl_requests.commands(ON_OFF_CLUSTER_ID, ieee=heater.ieee)

    await wait_for(lambda: heater_commands() == [OFF_COMMAND_ID], what="off sent to the plug")
    assert heater.simulated.get_attribute(PLUG_ENDPOINT_ID, ON_OFF_CLUSTER_ID, "on_off") is False
    assert zcl_requests.commands(ON_OFF_CLUSTER_ID, ieee=fridge.ieee) == []
    # The fridge's power changes during the event; a switched-off plug draws nothing.
    await zha_harness.async_report(
        fridge, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": FRIDGE_RAW_LATER}
    )
    assert runner.sample(dt_util.utcnow()).loads == {"heater": 0.0, "fridge": FRIDGE_KW_LATER}
    assert runner.shed_kw() == HEATER_KW  # measured at switch-off, not the rated power

    await wait_for(
        lambda: heater_commands() == [OFF_COMMAND_ID, ON_COMMAND_ID], what="on sent after the event"
    )
    assert heater.simulated.get_attribute(PLUG_ENDPOINT_ID, ON_OFF_CLUSTER_ID, "on_off") is True
    assert zcl_requests.commands(ON_OFF_CLUSTER_ID, ieee=fridge.ieee) == []

    def reported() -> list[dict[str, float]]:
        return telemetry_loads(aggregator, event_id)

    await wait_for(
        lambda: any(loads.get("fridge") == FRIDGE_KW_LATER for loads in reported()),
        what="the fridge's reported power in the aggregator's telemetry",
    )
    assert all(loads["heater"] == 0.0 for loads in reported())
    detail = await aggregator.event(event_id)
    assert detail["awards"][0]["loads"] == ["heater"]


async def test_load_switch_is_shown_on_the_zha_device(
    hass: HomeAssistant, zigbee_home: MockConfigEntry, plugs: tuple[JoinedDevice, JoinedDevice]
) -> None:
    """Jeisson's load switches sit on the plugs' ZHA devices; the home's device keeps only
    Jeisson's identifier and the plugs stay ZHA's."""
    heater, fridge = plugs
    entities = er.async_get(hass)
    devices = dr.async_get(hass)
    for load_id, plug in (("heater", heater), ("fridge", fridge)):
        entry = entities.async_get(load_switch(hass, load_id))
        assert entry is not None
        assert entry.device_id == plug.device_id
        assert entry.config_entry_id == zigbee_home.entry_id
        device = devices.async_get(plug.device_id)
        assert device is not None
        assert device.config_entry_id != zigbee_home.entry_id
        assert device.identifiers == {("zha", plug.ieee)}
    home = devices.async_get_device_by_identifier((DOMAIN, ENTRY_UNIQUE_ID), zigbee_home.entry_id)
    assert home is not None
    assert home.identifiers == {(DOMAIN, ENTRY_UNIQUE_ID)}
    assert {entry.entity_id for entry in er.async_entries_for_device(entities, home.id)}.isdisjoint(
        {load_switch(hass, "heater"), load_switch(hass, "fridge")}
    )
    state = hass.states.get(load_switch(hass, "heater"))
    assert state.state == STATE_ON
    assert (
        state.attributes["friendly_name"]
        == f"{devices.async_get(heater.device_id).name} Water heater"
    )


async def test_unreachable_plug_makes_the_load_unavailable(
    hass: HomeAssistant,
    zigbee_home: MockConfigEntry,
    plugs: tuple[JoinedDevice, JoinedDevice],
    zha_harness: ZhaHarness,
) -> None:
    """ZHA marking the plug unavailable makes the load unavailable: its switch, and bids."""
    heater, _ = plugs
    coordinator = zigbee_home.runtime_data.coordinator
    now = dt_util.utcnow()
    offer = Offer(
        event_id="evt-o",
        round=1,
        window_start=now + timedelta(hours=1),
        window_end=now + timedelta(hours=2),
        price_cap=0.5,
        bid_deadline=now + timedelta(minutes=5),
    )
    assert [step.loads for step in coordinator.bid_steps(offer)] == [["heater"]]

    await zha_harness.async_set_available(heater, False)
    assert hass.states.get(load_switch(hass, "heater")).state == STATE_UNAVAILABLE
    assert not coordinator.is_available(coordinator.loads["heater"])
    assert coordinator.bid_steps(offer) == []
    assert zigbee_home.runtime_data.runner.sample(dt_util.utcnow()).loads["heater"] == 0.0

    heater.simulated.online = True  # back: its next report makes ZHA mark it available
    await zha_harness.async_report(
        heater, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": HEATER_RAW}
    )
    assert hass.states.get(load_switch(hass, "heater")).state == STATE_ON
    assert [step.loads for step in coordinator.bid_steps(offer)] == [["heater"]]


async def test_plug_that_cannot_be_reached_is_given_up_as_unavailable(
    hass: HomeAssistant,
    zigbee_home: MockConfigEntry,
    plugs: tuple[JoinedDevice, JoinedDevice],
    zcl_requests: ZclRequestLog,
) -> None:
    """The plug dropped off the network before ZHA noticed: its ``off`` fails to deliver, so
    the held load is reported as an ``unavailable`` opt-out (not retried, not fought)."""
    heater, _ = plugs
    heater.simulated.online = False
    opted = record(hass, EVENT_OPTED_OUT)
    start = dt_util.utcnow() - timedelta(seconds=1)
    award = Award(
        event_id="evt-gone",
        award_id="gone",
        round=1,
        kind=EventKind.MARKET,
        loads=["heater"],
        kw=2.0,
        price=0.3,
        window_start=start,
        window_end=start + timedelta(minutes=30),
        restore_stagger_s=0.2,
    )
    runner = zigbee_home.runtime_data.runner
    decision = await runner.async_take_award(
        award, is_available=zigbee_home.runtime_data.coordinator.is_available
    )
    await hass.async_block_till_done()
    assert decision.accepted
    assert OFF_COMMAND_ID in zcl_requests.commands(ON_OFF_CLUSTER_ID, ieee=heater.ieee)
    assert [(item["load_id"], item["reason"]) for item in opted] == [("heater", "unavailable")]
    assert runner.shed_kw() == 0


async def test_pressing_the_plugs_button_during_an_event_is_an_override(
    hass: HomeAssistant,
    zigbee_home: MockConfigEntry,
    plugs: tuple[JoinedDevice, JoinedDevice],
    zha_harness: ZhaHarness,
) -> None:
    """The homeowner switches the held plug back on at the plug: an override opt-out, and
    Jeisson does not switch it off again."""
    heater, _ = plugs
    opted = record(hass, EVENT_OPTED_OUT)
    start = dt_util.utcnow() - timedelta(seconds=1)
    award = Award(
        event_id="evt-button",
        award_id="button",
        round=1,
        kind=EventKind.MARKET,
        loads=["heater"],
        kw=2.0,
        price=0.3,
        window_start=start,
        window_end=start + timedelta(minutes=30),
        restore_stagger_s=0.2,
    )
    runner = zigbee_home.runtime_data.runner
    await runner.async_take_award(
        award, is_available=zigbee_home.runtime_data.coordinator.is_available
    )
    await hass.async_block_till_done()
    assert heater.simulated.get_attribute(PLUG_ENDPOINT_ID, ON_OFF_CLUSTER_ID, "on_off") is False

    # The button: the plug's relay closes and it reports on_off.
    heater.simulated.set_attribute(PLUG_ENDPOINT_ID, ON_OFF_CLUSTER_ID, "on_off", True)
    await zha_harness.async_report(heater, ON_OFF_CLUSTER_ID, {"on_off": True})
    await wait_for(lambda: bool(opted), what="override opt-out")
    assert [(item["load_id"], item["reason"]) for item in opted] == [("heater", "override")]
    assert hass.states.get(load_switch(hass, "heater")).state == STATE_ON
    assert runner.shed_kw() == 0


async def test_options_flow_offers_zha_plugs_and_stores_the_device(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    zha_harness: ZhaHarness,
) -> None:
    """The load form lists ZHA plugs by name and model; the chosen one is stored by device id
    and IEEE address, its load switch appears on the plug's device; errors are explained."""
    plug = await zha_harness.async_join(SMART_PLUG)
    device = dr.async_get(hass).async_get(plug.device_id)
    assert device is not None
    new_load = {
        CONF_NAME: "Dryer",
        "kind": "other",
        "rated_kw": 2.5,
        "min_price": 0.2,
        "max_off_minutes": 30,
        "never_curtail": False,
    }

    result = await _menu(hass, loaded_entry, "add_load")
    options = _field(result, CONF_ZHA_DEVICE)["select"]["options"]
    assert options == [{"value": plug.device_id, "label": f"{device.name} ({SMART_PLUG.model})"}]
    flow_id = result["flow_id"]
    result = await hass.config_entries.options.async_configure(flow_id, new_load)
    assert result["errors"] == {"base": "actuator_required"}
    result = await hass.config_entries.options.async_configure(
        flow_id, {**new_load, "actuator": "switch.water_heater", CONF_ZHA_DEVICE: plug.device_id}
    )
    assert result["errors"] == {"base": "actuator_conflict"}
    result = await hass.config_entries.options.async_configure(
        flow_id, {**new_load, CONF_ZHA_DEVICE: plug.device_id}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    load_id, stored = next(
        (load_id, load)
        for load_id, load in loaded_entry.options[CONF_LOADS].items()
        if load[CONF_NAME] == "Dryer"
    )
    assert stored["actuator"] == f"zha:{plug.device_id}"
    assert stored["zha_ieee"] == plug.ieee
    switch = load_switch(hass, load_id, loaded_entry.unique_id)
    assert er.async_get(hass).async_get(switch).device_id == plug.device_id
    assert hass.states.get(switch).state == STATE_ON

    # The same plug for a second load: in use.
    result = await _menu(hass, loaded_entry, "add_load")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**new_load, CONF_NAME: "Kettle", CONF_ZHA_DEVICE: plug.device_id}
    )
    assert result["errors"] == {CONF_ZHA_DEVICE: "actuator_in_use"}

    # Editing shows the plug in the ZHA field, not as a switch.
    result = await _menu(hass, loaded_entry, "edit_load")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"load_id": load_id}
    )
    assert _suggested(result, CONF_ZHA_DEVICE) == plug.device_id
    assert _suggested(result, "actuator") is None
    # The plug loses its switch before the form is sent: it can no longer power a load.
    switch_entity = zha_entity_ids(hass, plug.device_id).switch
    er.async_get(hass).async_remove(switch_entity)
    await hass.async_block_till_done()
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**new_load, CONF_ZHA_DEVICE: plug.device_id}
    )
    assert result["errors"] == {"base": "zha_device_unavailable"}


async def test_options_flow_without_zha_devices_has_no_zha_field(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """No ZHA device to offer: the load form is the plain one (a switch is required)."""
    result = await _menu(hass, loaded_entry, "add_load")
    assert _field(result, CONF_ZHA_DEVICE) is None


async def _menu(hass: HomeAssistant, entry: MockConfigEntry, choice: str) -> dict[str, Any]:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": choice}
    )
    return dict(result)


def _field(result: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The serialised selector of a form field (None when the form has no such field)."""
    for key, value in result["data_schema"].schema.items():
        if key == name:
            return dict(value.serialize()["selector"])
    return None


def _suggested(result: dict[str, Any], name: str) -> Any:
    """The suggested value of a form field (None when none)."""
    for key in result["data_schema"].schema:
        if key == name:
            return (key.description or {}).get("suggested_value")
    return None
