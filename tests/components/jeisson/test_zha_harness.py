"""The ZHA test harness: real ZHA and zigpy on a simulated radio, proven end to end.

Each test would fail if its part of the harness broke: ZHA setup on the simulated radio, the
join (zigpy's interview and ZHA's configuration over simulated frames), commands reaching the
device, attribute reports reaching ZHA's entities, availability, and the
``homeassistant.components.zha.helpers`` path to a device's clusters.
"""

from __future__ import annotations

import logging

import pytest
import zigpy.exceptions
from homeassistant.components.zha.helpers import get_zha_gateway
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, UnitOfPower
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import device_registry as dr
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Identify
from zigpy.zcl.clusters.hvac import Thermostat

from .zha_harness import (
    COORDINATOR_IEEE,
    COORDINATOR_MANUFACTURER,
    COORDINATOR_MODEL,
    ELECTRICAL_MEASUREMENT_CLUSTER_ID,
    METERING_CLUSTER_ID,
    NETWORK_EXTENDED_PAN_ID,
    NETWORK_PAN_ID,
    OFF_COMMAND_ID,
    ON_COMMAND_ID,
    ON_OFF_CLUSTER_ID,
    PLUG_AC_POWER_DIVISOR,
    PLUG_ENDPOINT_ID,
    SMART_PLUG,
    JoinedDevice,
    SimulatedRadio,
    ZclRequestLog,
    ZhaHarness,
    zcl_requests_fixture,  # noqa: F401  (pytest fixture)
    zha_cluster,
    zha_entity_ids,
    zha_harness_fixture,  # noqa: F401  (pytest fixture)
)

_LOGGER = logging.getLogger(__name__)

SECOND_PLUG = SMART_PLUG.with_address(ieee="a4:c1:38:00:00:00:ca:fe", nwk=0x7B11)
#: Raw active power 12345 over the plug's ac_power_divisor 10.
ACTIVE_POWER_RAW = 12345
ACTIVE_POWER_W = 1234.5
#: Raw instantaneous demand 1500 over the metering divisor 1000, in kW, shown in W.
DEMAND_RAW = 1500
DEMAND_W = 1500


def _state(hass: HomeAssistant, entity_id: str) -> State:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state


def _switch_and_power(hass: HomeAssistant, plug: JoinedDevice) -> tuple[str, str]:
    ids = zha_entity_ids(hass, plug.device_id)
    assert ids.switch is not None
    assert ids.power is not None
    return ids.switch, ids.power


def active_power_w(hass: HomeAssistant, device_id: str) -> float | None:
    """Active power straight from the device's Electrical Measurement cluster, in watts.

    The path an integration takes in HA 2026.10, guarded because ZHA's internals are not a
    public API: no ZHA (ImportError), no gateway (ValueError), an unknown device or a device
    without the cluster (KeyError) all give None, never a crash.
    """
    try:
        from homeassistant.components.zha.helpers import async_get_zha_device_proxy

        proxy = async_get_zha_device_proxy(hass, device_id)
        cluster = proxy.device.device.endpoints[PLUG_ENDPOINT_ID].in_clusters[
            ELECTRICAL_MEASUREMENT_CLUSTER_ID
        ]
    except (ImportError, ValueError, KeyError) as err:
        _LOGGER.debug("No ZHA power for %s: %r", device_id, err)
        return None
    raw = cluster.get("active_power")
    if raw is None:
        return None
    multiplier = cluster.get("ac_power_multiplier") or 1
    divisor = cluster.get("ac_power_divisor") or 1
    return float(raw * multiplier / divisor)


async def test_zha_sets_up_on_the_simulated_radio(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """ZHA loads its config entry and runs its gateway on the simulated radio's network."""
    assert zha_harness.config_entry.state is ConfigEntryState.LOADED
    gateway = get_zha_gateway(hass)
    assert isinstance(gateway.application_controller, SimulatedRadio)
    assert gateway.state.network_info.pan_id == NETWORK_PAN_ID
    # ZHA names its config entry after the network it found on the radio.
    assert zha_harness.config_entry.unique_id == f"epid={NETWORK_EXTENDED_PAN_ID}".lower()
    coordinator = dr.async_get(hass).async_get_device_by_identifier(
        ("zha", str(COORDINATOR_IEEE)), zha_harness.config_entry.entry_id
    )
    assert coordinator is not None
    assert (coordinator.manufacturer, coordinator.model) == (
        COORDINATOR_MANUFACTURER,
        COORDINATOR_MODEL,
    )


async def test_joined_plug_is_in_the_device_registry(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """zigpy interviews the plug over the simulated radio; ZHA registers it with its model."""
    plug = await zha_harness.async_join(SMART_PLUG)

    device = dr.async_get(hass).async_get(plug.device_id)
    assert isinstance(device, dr.DeviceEntry)
    assert (device.manufacturer, device.model) == (SMART_PLUG.manufacturer, SMART_PLUG.model)
    assert ("zha", SMART_PLUG.ieee) in device.identifiers
    # Everything zigpy knows came from the interview frames the simulated plug answered.
    assert (plug.zigpy_device.manufacturer, plug.zigpy_device.model) == (
        SMART_PLUG.manufacturer,
        SMART_PLUG.model,
    )
    endpoint = plug.zigpy_device.endpoints[PLUG_ENDPOINT_ID]
    assert sorted(endpoint.in_clusters) == sorted(SMART_PLUG.endpoints[0].in_clusters)
    assert plug.zigpy_device.node_desc is not None
    assert plug.zigpy_device.node_desc.is_mains_powered
    assert plug.simulated.unanswered == []


async def test_switch_entity_shows_the_plug_state(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """ZHA's switch exists and shows what the plug answered when ZHA read it at join time."""
    plug = await zha_harness.async_join(SMART_PLUG)
    switch, _ = _switch_and_power(hass, plug)
    assert _state(hass, switch).state == STATE_ON

    plug_off = SECOND_PLUG.with_attributes(
        {(PLUG_ENDPOINT_ID, ON_OFF_CLUSTER_ID): {"on_off": False}}
    )
    second = await zha_harness.async_join(plug_off)
    second_switch, _ = _switch_and_power(hass, second)
    assert second_switch != switch
    assert _state(hass, second_switch).state == STATE_OFF


async def test_switch_services_send_on_off_commands(
    hass: HomeAssistant, zha_harness: ZhaHarness, zcl_requests: ZclRequestLog
) -> None:
    """turn_off sends On/Off ``off`` (0x00) and turn_on ``on`` (0x01), to that plug only."""
    plug = await zha_harness.async_join(SMART_PLUG)
    other = await zha_harness.async_join(SECOND_PLUG)
    switch, _ = _switch_and_power(hass, plug)
    zcl_requests.clear()

    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    assert zcl_requests.commands(ON_OFF_CLUSTER_ID) == [OFF_COMMAND_ID]
    assert plug.simulated.get_attribute(PLUG_ENDPOINT_ID, ON_OFF_CLUSTER_ID, "on_off") is False
    assert _state(hass, switch).state == STATE_OFF

    await hass.services.async_call("switch", "turn_on", {"entity_id": switch}, blocking=True)
    assert zcl_requests.commands(ON_OFF_CLUSTER_ID, ieee=plug.ieee) == [
        OFF_COMMAND_ID,
        ON_COMMAND_ID,
    ]
    assert plug.simulated.get_attribute(PLUG_ENDPOINT_ID, ON_OFF_CLUSTER_ID, "on_off") is True
    assert _state(hass, switch).state == STATE_ON
    assert zcl_requests.commands(ON_OFF_CLUSTER_ID, ieee=other.ieee) == []


async def test_active_power_report_reaches_the_power_sensor(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """A reported active_power is scaled by the multiplier/divisor ZHA read from the plug."""
    plug = await zha_harness.async_join(SMART_PLUG)
    _, power = _switch_and_power(hass, plug)
    assert float(_state(hass, power).state) == 0.0

    await zha_harness.async_report(
        plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": ACTIVE_POWER_RAW}
    )

    state = _state(hass, power)
    assert float(state.state) == pytest.approx(ACTIVE_POWER_W)
    assert state.attributes["unit_of_measurement"] == UnitOfPower.WATT


async def test_multiplier_and_divisor_come_from_the_device(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """Another plug's own ac_power_multiplier/divisor (x2 / 1000) give another scaling."""
    scaled = SMART_PLUG.with_attributes(
        {
            (PLUG_ENDPOINT_ID, ELECTRICAL_MEASUREMENT_CLUSTER_ID): {
                "ac_power_multiplier": 2,
                "ac_power_divisor": 1000,
            }
        }
    )
    plug = await zha_harness.async_join(scaled)
    _, power = _switch_and_power(hass, plug)

    await zha_harness.async_report(plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": 600})

    assert float(_state(hass, power).state) == pytest.approx(1.2)


async def test_instantaneous_demand_report_reaches_the_demand_sensor(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """Metering (0x0702) instantaneous_demand in kW over its divisor shows in watts."""
    plug = await zha_harness.async_join(SMART_PLUG)
    demand = zha_entity_ids(hass, plug.device_id).instantaneous_demand
    assert demand is not None

    await zha_harness.async_report(plug, METERING_CLUSTER_ID, {"instantaneous_demand": DEMAND_RAW})

    state = _state(hass, demand)
    assert float(state.state) == pytest.approx(DEMAND_W)
    assert state.attributes["unit_of_measurement"] == UnitOfPower.WATT


async def test_unavailable_device_makes_its_entities_unavailable(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """Off the network, the plug's entities go unavailable; its next report brings them back."""
    plug = await zha_harness.async_join(SMART_PLUG)
    switch, power = _switch_and_power(hass, plug)

    await zha_harness.async_set_available(plug, False)
    assert _state(hass, switch).state == STATE_UNAVAILABLE
    assert _state(hass, power).state == STATE_UNAVAILABLE

    # Back on the network, the plug speaks first: ZHA marks a device that talks available.
    plug.simulated.online = True
    await zha_harness.async_report(
        plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": ACTIVE_POWER_RAW}
    )
    assert _state(hass, switch).state == STATE_ON
    assert float(_state(hass, power).state) == pytest.approx(ACTIVE_POWER_W)


async def test_power_read_through_zha_helpers(hass: HomeAssistant, zha_harness: ZhaHarness) -> None:
    """The device's cluster cache, reached via zha.helpers, holds what ZHA's sensor shows."""
    plug = await zha_harness.async_join(SMART_PLUG)
    _, power = _switch_and_power(hass, plug)
    await zha_harness.async_report(
        plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": ACTIVE_POWER_RAW}
    )

    cluster = zha_cluster(hass, plug.device_id, ELECTRICAL_MEASUREMENT_CLUSTER_ID)
    assert cluster is plug.zigpy_device.endpoints[PLUG_ENDPOINT_ID].electrical_measurement
    assert cluster.get("active_power") == ACTIVE_POWER_RAW
    assert active_power_w(hass, plug.device_id) == pytest.approx(ACTIVE_POWER_W)
    assert active_power_w(hass, plug.device_id) == pytest.approx(float(_state(hass, power).state))

    # Degrades instead of crashing: unknown device, then ZHA gone.
    assert active_power_w(hass, "not-a-device") is None
    assert await hass.config_entries.async_unload(zha_harness.config_entry.entry_id)
    assert active_power_w(hass, plug.device_id) is None


async def test_simulated_plug_answers_real_zigpy_cluster_calls(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """Reads, writes and errors travel as ZCL frames and come back as a device answers them."""
    plug = await zha_harness.async_join(SMART_PLUG)
    endpoint = plug.zigpy_device.endpoints[PLUG_ENDPOINT_ID]

    success, failure = await endpoint.electrical_measurement.read_attributes(
        ["ac_power_divisor", "rms_voltage"], allow_cache=False
    )
    assert success == {"ac_power_divisor": PLUG_AC_POWER_DIVISOR}
    assert failure == {"rms_voltage": foundation.Status.UNSUPPORTED_ATTRIBUTE}

    [records] = await endpoint.identify.write_attributes({"identify_time": 5})
    assert [record.status for record in records] == [foundation.Status.SUCCESS]
    assert plug.simulated.get_attribute(PLUG_ENDPOINT_ID, Identify.cluster_id, "identify_time") == 5

    discover = await endpoint.on_off.discover_attributes(0, 10)
    assert discover.status == foundation.Status.UNSUP_GENERAL_COMMAND
    missing = endpoint.add_input_cluster(Thermostat.cluster_id)
    unsupported = await missing.read_attributes_raw([Thermostat.AttributeDefs.local_temperature.id])
    assert unsupported.status == foundation.Status.UNSUPPORTED_CLUSTER

    plug.simulated.online = False
    with pytest.raises(zigpy.exceptions.DeliveryError):
        await endpoint.on_off.read_attributes(["on_off"], allow_cache=False)
