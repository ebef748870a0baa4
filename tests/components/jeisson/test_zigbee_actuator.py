"""The Zigbee actuator on Home Assistant's real ZHA integration and real zigpy objects.

ZHA runs on the simulated radio of :mod:`.zha_harness`; everything above the radio (zigpy's
interview and clusters, ZHA's gateway, entities and availability) is the real code. The
actuator switches a plug through ZHA's switch entity, reads its power straight from the
device's clusters through ``homeassistant.components.zha.helpers``, and degrades to ZHA's
power sensor, then to the rated power, when that path is gone.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

import pytest
import zigpy.profiles.zha
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er

from custom_components.jeisson.actuators import actuator_for, load_power_kw
from custom_components.jeisson.models import LoadConfig
from custom_components.jeisson.zigbee import (
    ZHA_HELPERS_MODULE,
    ZigbeeActuator,
    device_label,
    has_on_off_cluster,
    linked_zha_device,
    zha_actuator_ref,
    zha_device_entry,
    zha_switch_devices,
)
from jeisson.common.protocol import LoadKind

from .zha_harness import (
    BASIC_CLUSTER_ID,
    ELECTRICAL_MEASUREMENT_CLUSTER_ID,
    GROUPS_CLUSTER_ID,
    IDENTIFY_CLUSTER_ID,
    METERING_CLUSTER_ID,
    OFF_COMMAND_ID,
    ON_COMMAND_ID,
    ON_OFF_CLUSTER_ID,
    PLUG_ENDPOINT_ID,
    SCENES_CLUSTER_ID,
    SMART_PLUG,
    DeviceSignature,
    EndpointSignature,
    JoinedDevice,
    ZclRequestLog,
    ZhaHarness,
    zcl_requests_fixture,  # noqa: F401  (pytest fixture)
    zha_entity_ids,
    zha_harness_fixture,  # noqa: F401  (pytest fixture)
)

RATED_KW = 2.0
#: Raw active power 12000 over the plug's ac_power_divisor 10: 1200 W.
ACTIVE_POWER_RAW = 12000
ACTIVE_POWER_KW = 1.2
EM = (PLUG_ENDPOINT_ID, ELECTRICAL_MEASUREMENT_CLUSTER_ID)
METERING = (PLUG_ENDPOINT_ID, METERING_CLUSTER_ID)
#: Metering unit_of_measure 1: m³ and m³/h (a gas or water meter, not power).
METERING_UNIT_CUBIC_METERS = 0x01
ZIGBEE_LOGGER = "custom_components.jeisson"

#: A plug that measures power with Metering only, finely: raw 12345 / 10000 = 1.2345 kW, which
#: ZHA's own sensor shows rounded to 1234 W.
METERING_PLUG = dataclasses.replace(
    SMART_PLUG.with_address("a4:c1:38:00:00:00:00:02", 0x2002),
    endpoints=(
        dataclasses.replace(
            SMART_PLUG.endpoints[0],
            in_clusters=tuple(
                cluster
                for cluster in SMART_PLUG.endpoints[0].in_clusters
                if cluster != ELECTRICAL_MEASUREMENT_CLUSTER_ID
            ),
        ),
    ),
    attributes={key: values for key, values in SMART_PLUG.attributes.items() if key != EM},
).with_attributes({METERING: {"divisor": 10000}})
METERING_RAW = 12345
METERING_KW = 1.2345

#: A bulb: an On/Off cluster, but ZHA makes it a light, so there is no switch to drive.
BULB = DeviceSignature(
    ieee="a4:c1:38:00:00:00:00:03",
    nwk=0x2003,
    manufacturer="Jeisson Labs",
    model="JZ-BULB",
    endpoints=(
        EndpointSignature(
            endpoint_id=PLUG_ENDPOINT_ID,
            device_type=zigpy.profiles.zha.DeviceType.ON_OFF_LIGHT,
            in_clusters=(
                BASIC_CLUSTER_ID,
                IDENTIFY_CLUSTER_ID,
                GROUPS_CLUSTER_ID,
                SCENES_CLUSTER_ID,
                ON_OFF_CLUSTER_ID,
            ),
        ),
    ),
    attributes={(PLUG_ENDPOINT_ID, ON_OFF_CLUSTER_ID): {"on_off": True}},
)


def zha_load(
    plug: JoinedDevice, *, power_sensor: str | None = None, device_id: str | None = None
) -> LoadConfig:
    """A load powered by ``plug``, as the options flow stores it."""
    return LoadConfig(
        load_id="heater",
        name="Water heater",
        kind=LoadKind.WATER_HEATER,
        rated_kw=RATED_KW,
        actuator=zha_actuator_ref(device_id or plug.device_id),
        zha_ieee=plug.ieee,
        power_sensor=power_sensor,
    )


def actuator(hass: HomeAssistant, load: LoadConfig) -> ZigbeeActuator:
    """The actuator Jeisson builds for ``load`` (a ZigbeeActuator)."""
    built = actuator_for(hass, load)
    assert isinstance(built, ZigbeeActuator)
    return built


def remove_zha_power_sensors(hass: HomeAssistant, plug: JoinedDevice) -> None:
    """Remove ZHA's power sensor entities of ``plug`` (as if ZHA made none)."""
    registry = er.async_get(hass)
    ids = zha_entity_ids(hass, plug.device_id)
    for entity_id in (ids.power, ids.instantaneous_demand):
        if entity_id is not None:
            registry.async_remove(entity_id)


async def test_switching_goes_through_zha_to_the_plug(
    hass: HomeAssistant, zha_harness: ZhaHarness, zcl_requests: ZclRequestLog
) -> None:
    """Off and on reach the plug as On/Off commands; state follows ZHA's switch entity."""
    plug = await zha_harness.async_join(SMART_PLUG)
    zigbee = actuator(hass, zha_load(plug))
    ids = zha_entity_ids(hass, plug.device_id)
    assert zigbee.available
    assert zigbee.is_on is True
    assert zigbee.watched_entity_ids[0] == ids.switch
    assert {ids.power, ids.instantaneous_demand} <= set(zigbee.watched_entity_ids)
    zcl_requests.clear()

    await zigbee.async_turn_off()
    await zha_harness.async_block_till_done()
    assert zcl_requests.commands(ON_OFF_CLUSTER_ID, ieee=plug.ieee) == [OFF_COMMAND_ID]
    assert plug.simulated.get_attribute(PLUG_ENDPOINT_ID, ON_OFF_CLUSTER_ID, "on_off") is False
    assert zigbee.is_on is False

    await zigbee.async_turn_on()
    await zha_harness.async_block_till_done()
    assert zcl_requests.commands(ON_OFF_CLUSTER_ID, ieee=plug.ieee) == [
        OFF_COMMAND_ID,
        ON_COMMAND_ID,
    ]
    assert zigbee.is_on is True


async def test_power_is_read_from_the_electrical_measurement_cluster(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """active_power x multiplier / divisor straight from the cluster, even with ZHA's sensors
    gone; a plug that is off draws nothing, whatever its last report said."""
    plug = await zha_harness.async_join(SMART_PLUG)
    load = zha_load(plug)
    zigbee = actuator(hass, load)
    await zha_harness.async_report(
        plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": ACTIVE_POWER_RAW}
    )
    assert zigbee.power_kw() == pytest.approx(ACTIVE_POWER_KW)

    remove_zha_power_sensors(hass, plug)
    await hass.async_block_till_done()
    assert zha_entity_ids(hass, plug.device_id).power is None
    assert zigbee.power_kw() == pytest.approx(ACTIVE_POWER_KW)

    await zigbee.async_turn_off()
    await zha_harness.async_block_till_done()
    assert zigbee.power_kw() == 0.0
    assert load_power_kw(load, zigbee) == 0.0


async def test_power_multiplier_and_divisor_fallbacks(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """Without ac_power_multiplier/divisor, power_multiplier/divisor scale active_power."""
    attributes = {key: values for key, values in SMART_PLUG.attributes.items() if key != EM}
    attributes[EM] = {
        "measurement_type": 1,
        "active_power": 0,
        "power_multiplier": 2,
        "power_divisor": 1000,
    }
    plug = await zha_harness.async_join(dataclasses.replace(SMART_PLUG, attributes=attributes))
    await zha_harness.async_report(plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": 600})
    # 600 x 2 / 1000 = 1.2 W
    assert actuator(hass, zha_load(plug)).power_kw() == pytest.approx(0.0012)


async def test_a_plug_that_has_reported_nothing_yet(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """No active_power or demand in the cache yet: rated power while on; then a report with no
    scaling attributes on the device counts as plain watts."""
    attributes = dict(SMART_PLUG.attributes)
    attributes[EM] = {"measurement_type": 1}
    attributes[METERING] = {"unit_of_measure": 0, "metering_device_type": 0, "status": 0}
    plug = await zha_harness.async_join(dataclasses.replace(SMART_PLUG, attributes=attributes))
    load = zha_load(plug)
    zigbee = actuator(hass, load)
    assert zigbee.power_kw() is None
    assert load_power_kw(load, zigbee) == RATED_KW

    await zha_harness.async_report(plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": 500})
    assert zigbee.power_kw() == pytest.approx(0.5)


async def test_power_from_metering_when_there_is_no_electrical_measurement(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """instantaneous_demand in kW x multiplier / divisor, unrounded (ZHA's sensor rounds it)."""
    plug = await zha_harness.async_join(METERING_PLUG)
    await zha_harness.async_report(
        plug, METERING_CLUSTER_ID, {"instantaneous_demand": METERING_RAW}
    )
    demand = zha_entity_ids(hass, plug.device_id).instantaneous_demand
    assert demand is not None
    assert float(hass.states.get(demand).state) == 1234  # ZHA's rounding
    assert actuator(hass, zha_load(plug)).power_kw() == pytest.approx(METERING_KW)


async def test_metering_in_other_units_is_not_power(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """A meter counting m³ is no power reading: the rated power is used when on."""
    plug = await zha_harness.async_join(
        METERING_PLUG.with_attributes({METERING: {"unit_of_measure": METERING_UNIT_CUBIC_METERS}})
    )
    await zha_harness.async_report(
        plug, METERING_CLUSTER_ID, {"instantaneous_demand": METERING_RAW}
    )
    load = zha_load(plug)
    zigbee = actuator(hass, load)
    assert zigbee.power_kw() is None
    assert load_power_kw(load, zigbee) == RATED_KW


async def test_the_homeowners_power_sensor_wins(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """A power sensor chosen for the load is read first; while it has no value, the cluster."""
    plug = await zha_harness.async_join(SMART_PLUG)
    await zha_harness.async_report(
        plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": ACTIVE_POWER_RAW}
    )
    zigbee = actuator(hass, zha_load(plug, power_sensor="sensor.clamp"))
    assert "sensor.clamp" in zigbee.watched_entity_ids
    hass.states.async_set("sensor.clamp", "800", {"unit_of_measurement": "W"})
    assert zigbee.power_kw() == pytest.approx(0.8)
    hass.states.async_set("sensor.clamp", "unavailable")
    assert zigbee.power_kw() == pytest.approx(ACTIVE_POWER_KW)


@pytest.mark.parametrize(
    "error",
    [ValueError("No gateway object exists"), KeyError("device"), AttributeError("moved")],
)
async def test_zha_internals_failing_degrade_to_the_power_sensor_then_rated(
    hass: HomeAssistant,
    zha_harness: ZhaHarness,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    """ZHA's helpers raising: ZHA's power sensor entity, then the rated power; logged at
    debug, never raised."""
    plug = await zha_harness.async_join(SMART_PLUG)
    await zha_harness.async_report(
        plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": ACTIVE_POWER_RAW}
    )
    load = zha_load(plug)
    zigbee = actuator(hass, load)
    helpers = sys.modules[ZHA_HELPERS_MODULE]

    def broken(*_args: object) -> None:
        raise error

    monkeypatch.setattr(helpers, "async_get_zha_device_proxy", broken)
    caplog.set_level(logging.DEBUG, logger=ZIGBEE_LOGGER)
    assert zigbee.power_kw() == pytest.approx(ACTIVE_POWER_KW)  # ZHA's sensor: 1200.0 W
    assert "Cannot read power from ZHA device" in caplog.text
    assert all(
        record.levelno == logging.DEBUG for record in caplog.records if record.name == ZIGBEE_LOGGER
    )
    assert has_on_off_cluster(hass, plug.device_id) is None

    remove_zha_power_sensors(hass, plug)
    await hass.async_block_till_done()
    assert zigbee.power_kw() is None
    assert load_power_kw(load, zigbee) == RATED_KW


async def test_zha_helpers_missing_degrade_to_the_power_sensor_then_rated(
    hass: HomeAssistant,
    zha_harness: ZhaHarness,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ZHA's helper module cannot be imported: same fallbacks; switching still works."""
    plug = await zha_harness.async_join(SMART_PLUG)
    await zha_harness.async_report(
        plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": ACTIVE_POWER_RAW}
    )
    load = zha_load(plug)
    zigbee = actuator(hass, load)
    monkeypatch.setitem(sys.modules, ZHA_HELPERS_MODULE, None)  # import raises ImportError
    caplog.set_level(logging.DEBUG, logger=ZIGBEE_LOGGER)

    assert zigbee.power_kw() == pytest.approx(ACTIVE_POWER_KW)
    assert "ModuleNotFoundError" in caplog.text
    assert [device.id for device in zha_switch_devices(hass)] == [plug.device_id]
    await zigbee.async_turn_off()
    await zha_harness.async_block_till_done()
    assert zigbee.is_on is False
    await zigbee.async_turn_on()
    await zha_harness.async_block_till_done()

    remove_zha_power_sensors(hass, plug)
    await hass.async_block_till_done()
    assert load_power_kw(load, zigbee) == RATED_KW


async def test_unreachable_plug_is_unavailable(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """ZHA marking the device unavailable makes the actuator unavailable, with no power."""
    plug = await zha_harness.async_join(SMART_PLUG)
    await zha_harness.async_report(
        plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": ACTIVE_POWER_RAW}
    )
    load = zha_load(plug)
    zigbee = actuator(hass, load)
    await zha_harness.async_set_available(plug, False)
    assert not zigbee.available
    assert zigbee.is_on is None
    assert zigbee.power_kw() is None
    assert load_power_kw(load, zigbee) == 0.0
    # HA skips unavailable entities in service calls: a restore must not silently do nothing.
    with pytest.raises(HomeAssistantError) as raised:
        await zigbee.async_turn_on()
    assert raised.value.translation_key == "zha_unavailable"

    plug.simulated.online = True  # back: its next report makes ZHA mark it available
    await zha_harness.async_report(
        plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": ACTIVE_POWER_RAW}
    )
    assert zigbee.available
    assert zigbee.power_kw() == pytest.approx(ACTIVE_POWER_KW)


async def test_a_repaired_plug_is_found_by_its_ieee_address(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """A stored device id that no longer exists: the device with the stored IEEE is used."""
    plug = await zha_harness.async_join(SMART_PLUG)
    load = zha_load(plug, device_id="device-before-re-pairing")
    zigbee = actuator(hass, load)
    assert zigbee.device is not None
    assert zigbee.device.id == plug.device_id
    assert zigbee.available
    linked = linked_zha_device(hass, load)
    assert linked is not None
    assert linked.id == plug.device_id
    # An IEEE address ZHA does not know finds nothing.
    assert zha_device_entry(hass, None, "00:00:00:00:00:00:00:01") is None
    assert zha_device_entry(hass, None) is None


async def test_only_zha_devices_with_a_switch_are_offered(
    hass: HomeAssistant, zha_harness: ZhaHarness
) -> None:
    """Plugs are offered (name and model); a bulb (a light) and a meter (no On/Off) are not."""
    plug = await zha_harness.async_join(SMART_PLUG)
    await zha_harness.async_join(BULB)
    meter = await zha_harness.async_join(
        dataclasses.replace(
            METERING_PLUG.with_address("a4:c1:38:00:00:00:00:04", 0x2004),
            endpoints=(
                dataclasses.replace(
                    METERING_PLUG.endpoints[0],
                    in_clusters=tuple(
                        cluster
                        for cluster in METERING_PLUG.endpoints[0].in_clusters
                        if cluster != ON_OFF_CLUSTER_ID
                    ),
                ),
            ),
        )
    )
    assert has_on_off_cluster(hass, plug.device_id) is True
    assert has_on_off_cluster(hass, meter.device_id) is False
    offered = zha_switch_devices(hass)
    assert [device.id for device in offered] == [plug.device_id]
    assert device_label(offered[0]) == f"{offered[0].name} ({SMART_PLUG.model})"
    assert SMART_PLUG.model in offered[0].name  # ZHA names it "<manufacturer> <model>"


async def test_without_zha_a_zigbee_load_is_unavailable(hass: HomeAssistant) -> None:
    """ZHA not set up: nothing to drive, no power, a clear error; nothing offered."""
    load = LoadConfig(
        load_id="heater",
        name="Water heater",
        kind=LoadKind.WATER_HEATER,
        rated_kw=RATED_KW,
        actuator=zha_actuator_ref("gone"),
        zha_ieee=SMART_PLUG.ieee,
    )
    zigbee = actuator(hass, load)
    assert not zigbee.available
    assert zigbee.is_on is None
    assert zigbee.power_kw() is None
    assert zigbee.watched_entity_ids == ()
    assert load_power_kw(load, zigbee) == 0.0
    with pytest.raises(HomeAssistantError) as raised:
        await zigbee.async_turn_off()
    assert raised.value.translation_key == "zha_switch_missing"
    assert raised.value.translation_placeholders == {"device": SMART_PLUG.ieee}
    assert zha_switch_devices(hass) == []
    assert has_on_off_cluster(hass, "gone") is None
    assert linked_zha_device(hass, load) is None
    switch_load = dataclasses.replace(load, actuator="switch.heater", zha_ieee=None)
    assert linked_zha_device(hass, switch_load) is None
    assert not isinstance(actuator_for(hass, switch_load), ZigbeeActuator)
    with pytest.raises(ValueError, match="not powered by a ZHA device"):
        ZigbeeActuator.for_load(hass, switch_load)


async def test_switch_states_are_mirrored(hass: HomeAssistant, zha_harness: ZhaHarness) -> None:
    """A plug joined off is seen off; ZHA's entity state is what the actuator reports."""
    plug = await zha_harness.async_join(
        SMART_PLUG.with_attributes({(PLUG_ENDPOINT_ID, ON_OFF_CLUSTER_ID): {"on_off": False}})
    )
    zigbee = actuator(hass, zha_load(plug))
    switch = zha_entity_ids(hass, plug.device_id).switch
    assert switch is not None
    assert hass.states.get(switch).state == STATE_OFF
    assert zigbee.is_on is False
    await zigbee.async_turn_on()
    await zha_harness.async_block_till_done()
    assert hass.states.get(switch).state == STATE_ON
