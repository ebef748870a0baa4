"""Test harness: Home Assistant's real ZHA integration and zigpy objects on a simulated radio.

Home Assistant 2026.10's ZHA integration (``homeassistant.components.zha``) and the ``zha``
library it drives run unchanged. Only the radio is simulated: :class:`SimulatedRadio` is a zigpy
``ControllerApplication`` whose radio methods do nothing, and whose ``send_packet`` hands every
unicast frame to the :class:`SimulatedDevice` at that address, which answers it the way a real
Zigbee device does (ZDO descriptors and binds, ZCL reads, writes, reporting configuration,
cluster commands, default responses, attribute reports). Everything above the radio -- zigpy's
device interview, ``Device``/``Endpoint``/``Cluster`` objects, frame parsing, ZHA's cluster
configuration, entities, availability -- is the real code.

Use it from a test module: importing the two fixture functions makes pytest see the fixtures
``zha_harness`` and ``zcl_requests`` in that module (the ``noqa`` keeps ruff from removing them)::

    from .zha_harness import (
        ELECTRICAL_MEASUREMENT_CLUSTER_ID,
        OFF_COMMAND_ID,
        ON_OFF_CLUSTER_ID,
        SMART_PLUG,
        ZclRequestLog,
        ZhaHarness,
        zcl_requests_fixture,  # noqa: F401  (pytest fixture)
        zha_entity_ids,
        zha_harness_fixture,  # noqa: F401  (pytest fixture)
    )

    async def test_off(hass, zha_harness: ZhaHarness, zcl_requests: ZclRequestLog) -> None:
        plug = await zha_harness.async_join(SMART_PLUG)
        switch = zha_entity_ids(hass, plug.device_id).switch
        await hass.services.async_call(
            "switch", "turn_off", {"entity_id": switch}, blocking=True
        )
        assert zcl_requests.commands(ON_OFF_CLUSTER_ID) == [OFF_COMMAND_ID]
        # 1234 tenths of a watt: ZHA's power sensor shows 123.4 W.
        await zha_harness.async_report(
            plug, ELECTRICAL_MEASUREMENT_CLUSTER_ID, {"active_power": 1234}
        )

Fixtures:

- ``zha_harness`` -> :class:`ZhaHarness`: ZHA set up in the test ``hass`` from a config entry
  whose radio path (:data:`FAKE_RADIO_PATH`) is not a real port; torn down (config entry
  unloaded, radio shut down, no lingering tasks or timers) after the test.
- ``zcl_requests`` -> :class:`ZclRequestLog`: every ``zigpy.zcl.Cluster.request`` call (the
  ZCL command or general command ZHA sends to a device) is recorded, then sent on normally.

:class:`ZhaHarness`:

- ``await async_join(signature)`` -> :class:`JoinedDevice` (zigpy device, HA device registry id,
  the simulated device): the device announces itself (``handle_join``), zigpy interviews it over
  the simulated radio, ZHA configures it; returns once ZHA's entities are in Home Assistant.
- ``await async_report(joined, cluster_id, {attribute: raw value})``: the device sends a ZCL
  Report Attributes frame, exactly as a plug does when its power changes.
- ``await async_set_available(joined, False/True)``: the device drops off the network (the radio
  can no longer deliver to it) and ZHA marks it unavailable, or it comes back.
- ``await async_block_till_done()``: wait for Home Assistant, ZHA's own tasks and frames in flight.
- ``app`` (the :class:`SimulatedRadio` ZHA is using), ``config_entry``.

Helpers: :func:`zha_entity_ids` (ZHA's own switch and power sensor entity ids for a device, from
the entity registry), :func:`zha_cluster` (a device's zigpy cluster, reached the way the
integration does it: through ``homeassistant.components.zha.helpers``), :data:`SMART_PLUG` (the
default smart plug signature; ``SMART_PLUG.with_address(...)`` for a second plug,
``.with_attributes({(endpoint, cluster): {name: value}})`` for other values, e.g. a plug that
is off or scales power differently) and its cluster/command id constants.

Shortcuts taken, each because nothing real can run here: no serial port (``usb_device_from_path``
answers "not a USB device"), no zigpy SQLite database (the network lives in memory), no radio
settle delays (``CONNECT_DELAY_S``/``SHUT_DOWN_DELAY_S`` are 0), quirks off by default (the plug
is generic; pass ``enable_quirks=True`` to :meth:`ZhaHarness.async_setup` to load zha-quirks).
These are ZHA internals, not a public API: if a Home Assistant upgrade moves them this module
fails loudly at import or setup, which is the point.
"""

# zigpy's integer types (t.uint8_t(...), t.NWK(...), ...) and ZDO/ZCL enums have untyped
# constructors; every call to them would be flagged.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Final
from unittest.mock import patch

import pytest
import zigpy.config
import zigpy.device
import zigpy.endpoint
import zigpy.exceptions
import zigpy.profiles.zha
import zigpy.state
import zigpy.types as t
import zigpy.zcl
import zigpy.zdo
import zigpy.zdo.types as zdo_t
from homeassistant.components.zha import const as zha_const
from homeassistant.components.zha import radio_manager as zha_radio_manager
from homeassistant.components.zha.helpers import (
    async_get_zha_device_proxy,
    get_zha_gateway,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component

# Neither ships type information (no py.typed).
from pytest_homeassistant_custom_component.common import MockConfigEntry  # type: ignore[import-untyped]
from zha.application import gateway as zha_gateway_module  # type: ignore[import-untyped]
from zha.application.const import RadioType  # type: ignore[import-untyped]
from zha.zigbee.device import DeviceStatus  # type: ignore[import-untyped]
from zigpy.application import ControllerApplication
from zigpy.zcl import foundation
from zigpy.zcl.clusters import CLUSTERS_BY_ID
from zigpy.zcl.clusters.general import Basic, Groups, Identify, OnOff, Scenes
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.smartenergy import Metering

_LOGGER = logging.getLogger(__name__)

# --- The simulated network -------------------------------------------------------------------

#: Serial path in the ZHA config entry; no such port exists, nothing ever opens it.
FAKE_RADIO_PATH: Final = "/dev/serial/by-id/usb-Jeisson_Simulated_Zigbee_Radio-if00"
#: Radio type in the config entry; its zigpy controller class is the one the harness replaces.
FAKE_RADIO_TYPE: Final = RadioType.ezsp
FAKE_RADIO_BAUDRATE: Final = 115200
COORDINATOR_IEEE: Final = t.EUI64.convert("00:12:4b:00:2a:3b:4c:5d")
COORDINATOR_NWK: Final = t.NWK(0x0000)
COORDINATOR_ENDPOINT_ID: Final = 1
COORDINATOR_MANUFACTURER: Final = "Jeisson"
COORDINATOR_MODEL: Final = "Simulated Zigbee radio"
COORDINATOR_FIRMWARE: Final = "7.4.4.0 build 0"
NETWORK_PAN_ID: Final = t.PanId(0x1A62)
NETWORK_EXTENDED_PAN_ID: Final = t.ExtendedPanId(t.EUI64.convert("dd:dd:dd:dd:dd:dd:dd:dd"))
NETWORK_CHANNEL: Final = t.uint8_t(15)
NETWORK_SECURITY_LEVEL: Final = t.uint8_t(5)
NETWORK_KEY: Final = t.KeyData(range(16))
ZHA_CONFIG_ENTRY_VERSION: Final = 5
ZHA_CONFIG_ENTRY_MINOR_VERSION: Final = 2
#: Zigbee manufacturer code the simulated devices put in their node descriptor.
SIMULATED_MANUFACTURER_CODE: Final = 0x1234
NODE_DESCRIPTOR_BUFFER_SIZE: Final = 82
NODE_DESCRIPTOR_TRANSFER_SIZE: Final = 82
NODE_DESCRIPTOR_SERVER_MASK: Final = 0x2C00
#: Link quality of frames from simulated devices: a strong, close-by link.
SIMULATED_LQI: Final = t.uint8_t(255)
SIMULATED_RSSI: Final = t.int8s(-40)
#: Upper bound for a join (interview + ZHA configuration); it takes well under a second here.
JOIN_TIMEOUT_S: Final = 15.0
JOIN_POLL_S: Final = 0.01

# --- The smart plug --------------------------------------------------------------------------

BASIC_CLUSTER_ID: Final = Basic.cluster_id
IDENTIFY_CLUSTER_ID: Final = Identify.cluster_id
GROUPS_CLUSTER_ID: Final = Groups.cluster_id
SCENES_CLUSTER_ID: Final = Scenes.cluster_id
ON_OFF_CLUSTER_ID: Final = OnOff.cluster_id
METERING_CLUSTER_ID: Final = Metering.cluster_id
ELECTRICAL_MEASUREMENT_CLUSTER_ID: Final = ElectricalMeasurement.cluster_id
OFF_COMMAND_ID: Final = OnOff.ServerCommandDefs.off.id
ON_COMMAND_ID: Final = OnOff.ServerCommandDefs.on.id
TOGGLE_COMMAND_ID: Final = OnOff.ServerCommandDefs.toggle.id
PLUG_ENDPOINT_ID: Final = 1
#: ZCL Basic ``power_source``: mains, single phase.
POWER_SOURCE_MAINS_SINGLE_PHASE: Final = 0x01
#: ZCL Electrical Measurement ``measurement_type`` bit 0: active measurement (AC).
MEASUREMENT_TYPE_ACTIVE_AC: Final = 0x01
#: ZCL Metering ``unit_of_measure`` 0: kW (demand) and kWh (summation).
METERING_UNIT_KW_KWH: Final = 0x00
#: ZCL Metering ``metering_device_type`` 0: electric metering.
METERING_DEVICE_ELECTRIC: Final = 0x00
#: Active power is reported in tenths of a watt (raw 12345 -> 1234.5 W).
PLUG_AC_POWER_DIVISOR: Final = 10
#: Instantaneous demand is reported in watts, over a kW unit (raw 1500 -> 1.5 kW -> 1500 W).
PLUG_METERING_DIVISOR: Final = 1000


@dataclasses.dataclass(frozen=True)
class EndpointSignature:
    """One endpoint of a device as its Simple Descriptor describes it."""

    endpoint_id: int
    device_type: int
    in_clusters: tuple[int, ...]
    out_clusters: tuple[int, ...] = ()
    profile_id: int = zigpy.profiles.zha.PROFILE_ID


@dataclasses.dataclass(frozen=True)
class DeviceSignature:
    """What a simulated device is: addresses, descriptors and the attribute values it holds.

    ``attributes`` maps ``(endpoint id, cluster id)`` to ``{attribute name: raw ZCL value}``;
    the device answers reads from it (and ``UNSUPPORTED_ATTRIBUTE`` for anything else), so the
    multipliers/divisors ZHA reads at join time come from here. Basic ``manufacturer`` and
    ``model`` are filled in from the fields of the same name.
    """

    ieee: str
    nwk: int
    manufacturer: str
    model: str
    endpoints: tuple[EndpointSignature, ...]
    attributes: Mapping[tuple[int, int], Mapping[str, Any]] = dataclasses.field(
        default_factory=dict
    )

    def with_address(self, ieee: str, nwk: int) -> DeviceSignature:
        """Return the same device at other addresses (to join several of them)."""
        return dataclasses.replace(self, ieee=ieee, nwk=nwk)

    def with_attributes(
        self, changes: Mapping[tuple[int, int], Mapping[str, Any]]
    ) -> DeviceSignature:
        """Return the same device with some attribute values changed or added."""
        merged = {key: dict(values) for key, values in self.attributes.items()}
        for key, values in changes.items():
            merged.setdefault(key, {}).update(values)
        return dataclasses.replace(self, attributes=merged)


#: A mains-powered smart plug with power metering, as ZHA sees many commercial plugs.
SMART_PLUG: Final = DeviceSignature(
    ieee="a4:c1:38:00:00:00:be:ef",
    nwk=0x4F2A,
    manufacturer="Jeisson Labs",
    model="JZ-PLUG-16A",
    endpoints=(
        EndpointSignature(
            endpoint_id=PLUG_ENDPOINT_ID,
            device_type=zigpy.profiles.zha.DeviceType.SMART_PLUG,
            in_clusters=(
                BASIC_CLUSTER_ID,
                IDENTIFY_CLUSTER_ID,
                GROUPS_CLUSTER_ID,
                SCENES_CLUSTER_ID,
                ON_OFF_CLUSTER_ID,
                METERING_CLUSTER_ID,
                ELECTRICAL_MEASUREMENT_CLUSTER_ID,
            ),
        ),
    ),
    attributes={
        (PLUG_ENDPOINT_ID, BASIC_CLUSTER_ID): {
            "zcl_version": 3,
            "app_version": 1,
            "hw_version": 1,
            "power_source": POWER_SOURCE_MAINS_SINGLE_PHASE,
            "sw_build_id": "1.0.0",
        },
        (PLUG_ENDPOINT_ID, ON_OFF_CLUSTER_ID): {"on_off": True},
        (PLUG_ENDPOINT_ID, ELECTRICAL_MEASUREMENT_CLUSTER_ID): {
            "measurement_type": MEASUREMENT_TYPE_ACTIVE_AC,
            "active_power": 0,
            "ac_power_multiplier": 1,
            "ac_power_divisor": PLUG_AC_POWER_DIVISOR,
        },
        (PLUG_ENDPOINT_ID, METERING_CLUSTER_ID): {
            "instantaneous_demand": 0,
            "current_summ_delivered": 0,
            "unit_of_measure": METERING_UNIT_KW_KWH,
            "multiplier": 1,
            "divisor": PLUG_METERING_DIVISOR,
            "metering_device_type": METERING_DEVICE_ELECTRIC,
            "status": 0,
        },
    },
)


# --- The simulated device --------------------------------------------------------------------


def _nwk_address(nwk: int) -> t.AddrModeAddress:
    return t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(nwk))


def _attribute_def(cluster_id: int, attribute: str | int) -> foundation.ZCLAttributeDef:
    """Look an attribute up by name or id in zigpy's definition of the cluster."""
    cluster_cls = CLUSTERS_BY_ID[cluster_id]
    if isinstance(attribute, str):
        return cluster_cls.attributes_by_name[attribute]
    return cluster_cls.attributes[attribute]


def _typed_value(cluster_id: int, attribute: str | int, value: Any) -> foundation.TypeValue:
    """Wrap a raw value in the ZCL type zigpy declares for that attribute."""
    attr_def = _attribute_def(cluster_id, attribute)
    return foundation.TypeValue(type=attr_def.zcl_type, value=attr_def.type(value))


class SimulatedDevice:
    """A Zigbee device on the simulated network: it answers frames like the real thing.

    It holds its own attribute values (what a read returns), obeys On/Off commands, reports
    ``on_off`` after a change (as plugs with configured reporting do), and can drop off the
    network (``online = False``: the radio reports a delivery failure for every frame to it).
    ZDO requests it does not know are kept in :attr:`unanswered` and logged (they time out in
    zigpy, as with a real device); ZCL frames it cannot serve get the Default Response a device
    sends (``UNSUPPORTED_CLUSTER``, ``UNSUP_GENERAL_COMMAND``).
    """

    def __init__(self, signature: DeviceSignature) -> None:
        """Build the device's state from its signature."""
        self.signature = signature
        self.ieee = t.EUI64.convert(signature.ieee)
        self.nwk = t.NWK(signature.nwk)
        self.online = True
        self.unanswered: list[t.ZigbeePacket] = []
        self._tsn = 0
        self._values: dict[tuple[int, int], dict[int, Any]] = {}
        for (endpoint_id, cluster_id), values in signature.attributes.items():
            for name, value in values.items():
                self.set_attribute(endpoint_id, cluster_id, name, value)
        for endpoint in signature.endpoints:
            if BASIC_CLUSTER_ID in endpoint.in_clusters:
                basic = (endpoint.endpoint_id, BASIC_CLUSTER_ID)
                self.set_attribute(*basic, "manufacturer", signature.manufacturer)
                self.set_attribute(*basic, "model", signature.model)

    def set_attribute(
        self, endpoint_id: int, cluster_id: int, attribute: str | int, value: Any
    ) -> int:
        """Store a raw attribute value on the device; return the attribute id."""
        attr_def = _attribute_def(cluster_id, attribute)
        self._values.setdefault((endpoint_id, cluster_id), {})[attr_def.id] = value
        return int(attr_def.id)

    def get_attribute(self, endpoint_id: int, cluster_id: int, attribute: str | int) -> Any:
        """Return the device's own value of an attribute (None when it has none)."""
        attr_id = _attribute_def(cluster_id, attribute).id
        return self._values.get((endpoint_id, cluster_id), {}).get(attr_id)

    @property
    def node_descriptor(self) -> zdo_t.NodeDescriptor:
        """The node descriptor of a mains-powered router (what a smart plug is)."""
        flags = (
            zdo_t.MACCapabilityFlags.AllocateAddress
            | zdo_t.MACCapabilityFlags.FullFunctionDevice
            | zdo_t.MACCapabilityFlags.MainsPowered
            | zdo_t.MACCapabilityFlags.RxOnWhenIdle
        )
        return zdo_t.NodeDescriptor(
            logical_type=zdo_t.LogicalType.Router,
            complex_descriptor_available=0,
            user_descriptor_available=0,
            reserved=0,
            aps_flags=0,
            frequency_band=zdo_t.FrequencyBand.Freq2400MHz,
            mac_capability_flags=flags,
            manufacturer_code=SIMULATED_MANUFACTURER_CODE,
            maximum_buffer_size=NODE_DESCRIPTOR_BUFFER_SIZE,
            maximum_incoming_transfer_size=NODE_DESCRIPTOR_TRANSFER_SIZE,
            server_mask=NODE_DESCRIPTOR_SERVER_MASK,
            maximum_outgoing_transfer_size=NODE_DESCRIPTOR_TRANSFER_SIZE,
            descriptor_capability_field=zdo_t.DescriptorCapability.NONE,
        )

    def _next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) % 256
        return self._tsn

    def _reply(self, request: t.ZigbeePacket, data: bytes) -> t.ZigbeePacket:
        """A frame from this device answering ``request`` (same cluster and TSN)."""
        return t.ZigbeePacket(
            src=_nwk_address(self.nwk),
            src_ep=request.dst_ep,
            dst=_nwk_address(COORDINATOR_NWK),
            dst_ep=request.src_ep,
            tsn=request.tsn,
            profile_id=request.profile_id,
            cluster_id=request.cluster_id,
            data=t.SerializableBytes(data),
            lqi=SIMULATED_LQI,
            rssi=SIMULATED_RSSI,
        )

    def handle(self, packet: t.ZigbeePacket) -> list[t.ZigbeePacket]:
        """Answer one frame from the coordinator; return the frames the device sends back."""
        if packet.dst_ep == zigpy.zdo.ZDO_ENDPOINT:
            return self._handle_zdo(packet)
        return self._handle_zcl(packet)

    def _not_understood(self, packet: t.ZigbeePacket) -> list[t.ZigbeePacket]:
        _LOGGER.warning("Simulated %s does not answer %r", self.signature.model, packet)
        self.unanswered.append(packet)
        return []

    # ZDO: descriptors for the interview, binds for ZHA's configuration.

    def _handle_zdo(self, packet: t.ZigbeePacket) -> list[t.ZigbeePacket]:
        data = packet.data.serialize()
        tsn, payload = t.uint8_t.deserialize(data)
        command = zdo_t.ZDOCmd(packet.cluster_id)
        _, param_types = zdo_t.CLUSTERS[command]
        args, _ = t.deserialize(payload, param_types)
        success = zdo_t.Status.SUCCESS
        answer: list[Any]
        if command == zdo_t.ZDOCmd.Node_Desc_req:
            answer = [success, self.nwk, self.node_descriptor]
        elif command == zdo_t.ZDOCmd.Active_EP_req:
            answer = [success, self.nwk, [ep.endpoint_id for ep in self.signature.endpoints]]
        elif command == zdo_t.ZDOCmd.Simple_Desc_req:
            # zigpy asks only for the endpoints Active_EP_rsp listed.
            endpoint = next(ep for ep in self.signature.endpoints if ep.endpoint_id == args[1])
            answer = [
                success,
                self.nwk,
                zdo_t.SizePrefixedSimpleDescriptor(
                    endpoint=endpoint.endpoint_id,
                    profile=endpoint.profile_id,
                    device_type=endpoint.device_type,
                    device_version=0,
                    input_clusters=list(endpoint.in_clusters),
                    output_clusters=list(endpoint.out_clusters),
                ),
            ]
        elif command in (zdo_t.ZDOCmd.Bind_req, zdo_t.ZDOCmd.Unbind_req):
            answer = [success]
        else:
            return self._not_understood(packet)
        response = zdo_t.ZDOCmd(command | 0x8000)
        _, response_types = zdo_t.CLUSTERS[response]
        rsp = self._reply(packet, t.uint8_t(tsn).serialize() + t.serialize(answer, response_types))
        return [dataclasses.replace(rsp, cluster_id=t.uint16_t(response))]

    # ZCL: reads, writes, reporting configuration, cluster commands.

    def _handle_zcl(self, packet: t.ZigbeePacket) -> list[t.ZigbeePacket]:
        hdr, payload = foundation.ZCLHeader.deserialize(packet.data.serialize())
        assert packet.dst_ep is not None
        key = (int(packet.dst_ep), int(packet.cluster_id))
        if not any(
            ep.endpoint_id == packet.dst_ep and packet.cluster_id in ep.in_clusters
            for ep in self.signature.endpoints
        ):
            return self._default_response(packet, hdr, foundation.Status.UNSUPPORTED_CLUSTER)
        if hdr.frame_control.is_general:
            return self._handle_general(packet, hdr, payload, key)
        return self._handle_cluster_command(packet, hdr, key)

    def _general_reply(
        self,
        request: t.ZigbeePacket,
        hdr: foundation.ZCLHeader,
        command: foundation.GeneralCommand,
        *args: Any,
    ) -> t.ZigbeePacket:
        rsp_hdr = foundation.ZCLHeader.general(
            tsn=hdr.tsn,
            command_id=command,
            manufacturer=hdr.manufacturer,
            direction=foundation.Direction.Server_to_Client,
        )
        schema = foundation.GENERAL_COMMANDS[command].schema
        return self._reply(request, rsp_hdr.serialize() + schema(*args).serialize())

    def _default_response(
        self,
        request: t.ZigbeePacket,
        hdr: foundation.ZCLHeader,
        status: foundation.Status,
    ) -> list[t.ZigbeePacket]:
        if hdr.frame_control.disable_default_response and status == foundation.Status.SUCCESS:
            return []
        return [
            self._general_reply(
                request, hdr, foundation.GeneralCommand.Default_Response, hdr.command_id, status
            )
        ]

    def _handle_general(
        self,
        packet: t.ZigbeePacket,
        hdr: foundation.ZCLHeader,
        payload: bytes,
        key: tuple[int, int],
    ) -> list[t.ZigbeePacket]:
        command = foundation.GeneralCommand(hdr.command_id)
        # zigpy builds each command's schema class at runtime: its fields are not typed.
        request: Any
        request, _ = foundation.GENERAL_COMMANDS[command].schema.deserialize(payload)
        cluster_id = key[1]
        values = self._values.setdefault(key, {})
        if command == foundation.GeneralCommand.Read_Attributes:
            records = []
            for attr_id in request.attribute_ids:
                if attr_id in values:
                    records.append(
                        foundation.ReadAttributeRecord(
                            attrid=attr_id,
                            status=foundation.Status.SUCCESS,
                            value=_typed_value(cluster_id, attr_id, values[attr_id]),
                        )
                    )
                else:
                    records.append(
                        foundation.ReadAttributeRecord(
                            attrid=attr_id, status=foundation.Status.UNSUPPORTED_ATTRIBUTE
                        )
                    )
            return [
                self._general_reply(
                    packet, hdr, foundation.GeneralCommand.Read_Attributes_rsp, records
                )
            ]
        if command in (
            foundation.GeneralCommand.Write_Attributes,
            foundation.GeneralCommand.Write_Attributes_Undivided,
            foundation.GeneralCommand.Write_Attributes_No_Response,
        ):
            for record in request.attributes:
                values[record.attrid] = record.value.value
            if command == foundation.GeneralCommand.Write_Attributes_No_Response:
                return []
            status = foundation.WriteAttributesResponse(
                [foundation.WriteAttributesStatusRecord(status=foundation.Status.SUCCESS)]
            )
            return [
                self._general_reply(
                    packet, hdr, foundation.GeneralCommand.Write_Attributes_rsp, status
                )
            ]
        if command == foundation.GeneralCommand.Configure_Reporting:
            status_records = foundation.ConfigureReportingResponse(
                [foundation.ConfigureReportingResponseRecord(status=foundation.Status.SUCCESS)]
            )
            return [
                self._general_reply(
                    packet, hdr, foundation.GeneralCommand.Configure_Reporting_rsp, status_records
                )
            ]
        return self._default_response(packet, hdr, foundation.Status.UNSUP_GENERAL_COMMAND)

    def _handle_cluster_command(
        self,
        packet: t.ZigbeePacket,
        hdr: foundation.ZCLHeader,
        key: tuple[int, int],
    ) -> list[t.ZigbeePacket]:
        endpoint_id, cluster_id = key
        frames: list[t.ZigbeePacket] = []
        if cluster_id == ON_OFF_CLUSTER_ID and hdr.command_id in (
            OFF_COMMAND_ID,
            ON_COMMAND_ID,
            TOGGLE_COMMAND_ID,
        ):
            was_on = bool(self.get_attribute(endpoint_id, cluster_id, "on_off"))
            is_on = {OFF_COMMAND_ID: False, ON_COMMAND_ID: True}.get(hdr.command_id, not was_on)
            self.set_attribute(endpoint_id, cluster_id, "on_off", is_on)
            frames.extend(self._default_response(packet, hdr, foundation.Status.SUCCESS))
            if is_on != was_on:
                frames.append(self.report_frame(endpoint_id, cluster_id, {"on_off": is_on}))
            return frames
        # Identify, Groups, Scenes...: accepted, with no state the harness needs.
        return self._default_response(packet, hdr, foundation.Status.SUCCESS)

    def report_frame(
        self, endpoint_id: int, cluster_id: int, values: Mapping[str | int, Any]
    ) -> t.ZigbeePacket:
        """A ZCL Report Attributes frame from this device (values are stored on it too)."""
        reports = []
        for attribute, value in values.items():
            attr_id = self.set_attribute(endpoint_id, cluster_id, attribute, value)
            reports.append(
                foundation.Attribute(attrid=attr_id, value=_typed_value(cluster_id, attr_id, value))
            )
        hdr = foundation.ZCLHeader.general(
            tsn=self._next_tsn(),
            command_id=foundation.GeneralCommand.Report_Attributes,
            direction=foundation.Direction.Server_to_Client,
        )
        schema = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Report_Attributes].schema
        return t.ZigbeePacket(
            src=_nwk_address(self.nwk),
            src_ep=t.uint8_t(endpoint_id),
            dst=_nwk_address(COORDINATOR_NWK),
            dst_ep=t.uint8_t(COORDINATOR_ENDPOINT_ID),
            tsn=hdr.tsn,
            profile_id=t.uint16_t(zigpy.profiles.zha.PROFILE_ID),
            cluster_id=t.uint16_t(cluster_id),
            data=t.SerializableBytes(hdr.serialize() + schema(reports).serialize()),
            lqi=SIMULATED_LQI,
            rssi=SIMULATED_RSSI,
        )


# --- The simulated radio ---------------------------------------------------------------------


class SimulatedRadio(ControllerApplication):
    """A zigpy ``ControllerApplication`` with no hardware behind it.

    The network (coordinator, PAN, key) exists only in memory; frames to a
    :class:`SimulatedDevice` are answered by it, delivered on the next loop iteration as a
    radio delivers received frames; frames to anyone else fail with ``DeliveryError``.
    Broadcasts and group frames (e.g. the startup permit-join) go nowhere.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        """Create the radio; ``config`` is validated by zigpy's own schema."""
        super().__init__(config)
        self.simulated_devices: dict[t.NWK, SimulatedDevice] = {}
        self.sent_packets: list[t.ZigbeePacket] = []
        self._deliveries: set[asyncio.Handle] = set()

    # Radio methods: nothing to talk to.

    async def connect(self) -> None:
        """Nothing to connect to."""

    async def disconnect(self) -> None:
        """Drop frames still in flight."""
        for handle in self._deliveries:
            handle.cancel()
        self._deliveries.clear()

    async def load_network_info(self, *, load_devices: bool = False) -> None:
        """The radio's (fixed) network settings."""
        self.state.node_info = zigpy.state.NodeInfo(
            nwk=COORDINATOR_NWK,
            ieee=COORDINATOR_IEEE,
            logical_type=zdo_t.LogicalType.Coordinator,
            model=COORDINATOR_MODEL,
            manufacturer=COORDINATOR_MANUFACTURER,
            version=COORDINATOR_FIRMWARE,
        )
        self.state.network_info = zigpy.state.NetworkInfo(
            extended_pan_id=NETWORK_EXTENDED_PAN_ID,
            pan_id=NETWORK_PAN_ID,
            channel=NETWORK_CHANNEL,
            network_key=zigpy.state.Key(key=NETWORK_KEY),
            security_level=NETWORK_SECURITY_LEVEL,
        )

    async def write_network_info(
        self, *, network_info: zigpy.state.NetworkInfo, node_info: zigpy.state.NodeInfo
    ) -> None:
        """Accept new settings (only used when forming a network)."""
        self.state.network_info = network_info
        self.state.node_info = node_info

    async def reset_network_info(self) -> None:
        """Nothing stored to reset."""

    async def start_network(self) -> None:
        """Add the coordinator to the device list, as radio libraries do on startup."""
        coordinator = self.add_device(ieee=COORDINATOR_IEEE, nwk=COORDINATOR_NWK)
        coordinator.node_desc = zdo_t.NodeDescriptor(
            logical_type=zdo_t.LogicalType.Coordinator,
            complex_descriptor_available=0,
            user_descriptor_available=0,
            reserved=0,
            aps_flags=0,
            frequency_band=zdo_t.FrequencyBand.Freq2400MHz,
            mac_capability_flags=(
                zdo_t.MACCapabilityFlags.AlternatePanCoordinator
                | zdo_t.MACCapabilityFlags.FullFunctionDevice
                | zdo_t.MACCapabilityFlags.MainsPowered
                | zdo_t.MACCapabilityFlags.RxOnWhenIdle
                | zdo_t.MACCapabilityFlags.AllocateAddress
            ),
            manufacturer_code=SIMULATED_MANUFACTURER_CODE,
            maximum_buffer_size=NODE_DESCRIPTOR_BUFFER_SIZE,
            maximum_incoming_transfer_size=NODE_DESCRIPTOR_TRANSFER_SIZE,
            server_mask=NODE_DESCRIPTOR_SERVER_MASK,
            maximum_outgoing_transfer_size=NODE_DESCRIPTOR_TRANSFER_SIZE,
            descriptor_capability_field=zdo_t.DescriptorCapability.NONE,
        )
        endpoint = coordinator.add_endpoint(COORDINATOR_ENDPOINT_ID)
        endpoint.status = zigpy.endpoint.Status.ZDO_INIT
        endpoint.profile_id = zigpy.profiles.zha.PROFILE_ID
        endpoint.device_type = zigpy.profiles.zha.DeviceType.IAS_CONTROL
        endpoint.add_input_cluster(BASIC_CLUSTER_ID)
        coordinator.manufacturer = COORDINATOR_MANUFACTURER
        coordinator.model = COORDINATOR_MODEL

    async def force_remove(self, dev: zigpy.device.Device) -> None:
        """Nothing to evict from a radio's tables."""

    async def add_endpoint(self, descriptor: zdo_t.SimpleDescriptor) -> None:
        """No radio endpoint table."""

    async def permit_ncp(self, time_s: int = 60) -> None:
        """Joining is simulated by :meth:`ZhaHarness.async_join`."""

    async def permit_with_link_key(
        self, node: t.EUI64, link_key: t.KeyData, time_s: int = 60
    ) -> None:
        """Joining is simulated by :meth:`ZhaHarness.async_join`."""

    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        """Hand a unicast frame to the simulated device it is for; deliver its answers."""
        self.sent_packets.append(packet)
        assert packet.dst is not None
        if packet.dst.addr_mode not in (t.AddrMode.NWK, t.AddrMode.IEEE):
            return  # broadcast or group: nobody on this network answers those
        device = next(
            (
                dev
                for dev in self.simulated_devices.values()
                if packet.dst.address in (dev.nwk, dev.ieee)
            ),
            None,
        )
        if device is None or not device.online:
            raise zigpy.exceptions.DeliveryError(
                f"No route to {packet.dst!r}", status=t.MACStatus.MAC_NO_ACK
            )
        loop = asyncio.get_running_loop()
        for frame in device.handle(packet):
            self._schedule_delivery(loop, frame)

    def _schedule_delivery(self, loop: asyncio.AbstractEventLoop, frame: t.ZigbeePacket) -> None:
        def deliver() -> None:
            self._deliveries.discard(handle)
            self.packet_received(frame)

        handle = loop.call_soon(deliver)
        self._deliveries.add(handle)

    @property
    def frames_in_flight(self) -> int:
        """Frames a device sent that the coordinator has not received yet."""
        return len(self._deliveries)

    def attach(self, device: SimulatedDevice) -> None:
        """Put a simulated device on the network (it is not joined yet)."""
        self.simulated_devices[device.nwk] = device


# --- Observing ZCL requests ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ZclRequest:
    """One ``zigpy.zcl.Cluster.request`` call: a ZCL frame addressed to a device's cluster."""

    ieee: str
    endpoint_id: int
    cluster_id: int
    general: bool
    command_id: int
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


class ZclRequestLog:
    """Records every ZCL request the coordinator sends (and still sends it)."""

    def __init__(self) -> None:
        """Start with an empty log."""
        self.requests: list[ZclRequest] = []

    def record(
        self,
        cluster: zigpy.zcl.Cluster,
        general: bool,
        command_id: int,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> None:
        """Add one request to the log."""
        self.requests.append(
            ZclRequest(
                ieee=str(cluster.endpoint.device.ieee),
                endpoint_id=int(cluster.endpoint.endpoint_id),
                cluster_id=int(cluster.cluster_id),
                general=general,
                command_id=int(command_id),
                args=args,
                kwargs=dict(kwargs),
            )
        )

    def commands(
        self, cluster_id: int, *, ieee: str | None = None, general: bool = False
    ) -> list[int]:
        """Command ids sent to a cluster, in order (cluster-specific ones unless ``general``)."""
        return [
            request.command_id
            for request in self.requests
            if request.cluster_id == cluster_id
            and request.general == general
            and (ieee is None or request.ieee == ieee)
        ]

    def clear(self) -> None:
        """Forget what was recorded so far (e.g. the join's configuration traffic)."""
        self.requests.clear()

    @contextlib.contextmanager
    def watching(self) -> Iterator[ZclRequestLog]:
        """Wrap ``zigpy.zcl.Cluster.request`` while the context is open."""
        original = zigpy.zcl.Cluster.request
        log = self

        async def recording_request(
            cluster: zigpy.zcl.Cluster,
            general: bool,
            command_id: int,
            schema: Any,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            log.record(cluster, general, command_id, args, kwargs)
            return await original(cluster, general, command_id, schema, *args, **kwargs)

        with patch.object(zigpy.zcl.Cluster, "request", recording_request):
            yield self


# --- ZHA in Home Assistant -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JoinedDevice:
    """A simulated device ZHA has joined: its zigpy object and its HA device registry id."""

    zigpy_device: zigpy.device.Device
    device_id: str
    simulated: SimulatedDevice

    @property
    def ieee(self) -> str:
        """The device's IEEE address as ZHA writes it (``aa:bb:...``)."""
        return str(self.simulated.ieee)


@dataclasses.dataclass(frozen=True)
class ZhaEntityIds:
    """ZHA's own entities for a plug (None where ZHA made no such entity)."""

    switch: str | None
    power: str | None
    instantaneous_demand: str | None


class ZhaHarness:
    """ZHA set up in a test ``hass`` on a :class:`SimulatedRadio` (see the module docstring)."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Prepare (nothing is set up until :meth:`async_setup`)."""
        self.hass = hass
        self.config_entry = MockConfigEntry(
            domain=zha_const.DOMAIN,
            version=ZHA_CONFIG_ENTRY_VERSION,
            minor_version=ZHA_CONFIG_ENTRY_MINOR_VERSION,
            title=FAKE_RADIO_PATH,
            data={
                zigpy.config.CONF_DEVICE: {
                    zigpy.config.CONF_DEVICE_PATH: FAKE_RADIO_PATH,
                    zha_const.CONF_BAUDRATE: FAKE_RADIO_BAUDRATE,
                    zha_const.CONF_FLOW_CONTROL: None,
                },
                zha_const.CONF_RADIO_TYPE: FAKE_RADIO_TYPE.name,
            },
        )
        self._patches = contextlib.ExitStack()

    @property
    def app(self) -> SimulatedRadio:
        """The radio ZHA's gateway is running on."""
        app = get_zha_gateway(self.hass).application_controller
        assert isinstance(app, SimulatedRadio)
        return app

    async def _new_radio(self, *args: Any, **kwargs: Any) -> SimulatedRadio:
        """Stand-in for the radio library's ``ControllerApplication.new``."""
        if "config" in kwargs:
            config = dict(kwargs.pop("config"))
        else:
            config, args = dict(args[0]), args[1:]
        # No zigbee.db: the simulated network lives in memory for one test.
        config[zigpy.config.CONF_DATABASE] = None
        radio = await SimulatedRadio.new(config, *args, **kwargs)
        assert isinstance(radio, SimulatedRadio)
        return radio

    def _start_patches(self) -> None:
        radio_cls = FAKE_RADIO_TYPE.controller
        for target, attribute, value in (
            (radio_cls, "new", self._new_radio),
            (zha_radio_manager, "CONNECT_DELAY_S", 0),
            (zha_gateway_module, "SHUT_DOWN_DELAY_S", 0),
        ):
            self._patches.enter_context(patch.object(target, attribute, value))
        # ZHA asks the usb integration whether the path is a USB serial port; it is not.
        self._patches.enter_context(
            patch("homeassistant.components.zha.usb_device_from_path", return_value=None)
        )

    async def async_setup(self, *, enable_quirks: bool = False) -> None:
        """Set ZHA up from its config entry, on the simulated radio."""
        self._start_patches()
        self.config_entry.add_to_hass(self.hass)
        assert await async_setup_component(
            self.hass,
            zha_const.DOMAIN,
            {zha_const.DOMAIN: {zha_const.CONF_ENABLE_QUIRKS: enable_quirks}},
        )
        await self.hass.async_block_till_done()
        assert self.config_entry.state is ConfigEntryState.LOADED

    async def async_teardown(self) -> None:
        """Unload ZHA (the gateway shuts the radio down) and remove the patches."""
        try:
            if self.config_entry.state is ConfigEntryState.LOADED:
                assert await self.hass.config_entries.async_unload(self.config_entry.entry_id)
            await self.hass.async_block_till_done()
        finally:
            self._patches.close()

    async def async_block_till_done(self) -> None:
        """Wait until Home Assistant, ZHA's own tasks and the radio's frames in flight are idle.

        ZHA's library runs some work (e.g. re-reading a device that came back) in tasks Home
        Assistant does not track, so ``hass.async_block_till_done`` alone is not enough.
        """
        gateway = get_zha_gateway(self.hass)
        while True:
            await gateway.async_block_till_done()
            await self.hass.async_block_till_done()
            if not self.app.frames_in_flight:
                return

    async def async_join(self, signature: DeviceSignature = SMART_PLUG) -> JoinedDevice:
        """Join a device: announce, zigpy interview, ZHA configuration, entities in HA."""
        simulated = SimulatedDevice(signature)
        app = self.app
        app.attach(simulated)
        app.handle_join(nwk=simulated.nwk, ieee=simulated.ieee, parent_nwk=COORDINATOR_NWK)
        try:
            async with asyncio.timeout(JOIN_TIMEOUT_S):
                while (device_id := self._ready_device_id(simulated)) is None:
                    await self.async_block_till_done()
                    await asyncio.sleep(JOIN_POLL_S)
        except TimeoutError as err:
            raise AssertionError(
                f"{signature.model} did not join within {JOIN_TIMEOUT_S} s; frames it did "
                f"not answer: {simulated.unanswered}"
            ) from err
        await self.async_block_till_done()
        zigpy_device = app.get_device(ieee=simulated.ieee)
        assert isinstance(zigpy_device, zigpy.device.Device)
        return JoinedDevice(zigpy_device=zigpy_device, device_id=device_id, simulated=simulated)

    def _ready_device_id(self, simulated: SimulatedDevice) -> str | None:
        """The device's HA id once ZHA initialized it and all its entities have a state."""
        zha_device = get_zha_gateway(self.hass).get_device(simulated.ieee)
        if zha_device is None or zha_device.status is not DeviceStatus.INITIALIZED:
            return None
        device = dr.async_get(self.hass).async_get_device_by_identifier(
            (zha_const.DOMAIN, str(simulated.ieee)), self.config_entry.entry_id
        )
        if device is None:
            return None
        entities = [
            entry
            for entry in er.async_entries_for_device(er.async_get(self.hass), device.id)
            if entry.disabled_by is None
        ]
        if not entities or any(self.hass.states.get(e.entity_id) is None for e in entities):
            return None
        return device.id

    async def async_report(
        self,
        joined: JoinedDevice,
        cluster_id: int,
        values: Mapping[str | int, Any],
        *,
        endpoint_id: int = PLUG_ENDPOINT_ID,
    ) -> None:
        """The device reports attribute values (raw ZCL values, e.g. tenths of a watt)."""
        frame = joined.simulated.report_frame(endpoint_id, cluster_id, values)
        self.app.packet_received(frame)
        await self.async_block_till_done()

    async def async_set_available(self, joined: JoinedDevice, available: bool) -> None:
        """Take the device off the network (or bring it back) and tell ZHA, as its checker does.

        Offline, the radio fails every frame to the device with a delivery error. ZHA's own
        availability checker reaches the same verdict after its grace periods; this calls
        ``update_available`` on ZHA's device directly instead of waiting minutes for it.
        """
        joined.simulated.online = available
        zha_device = get_zha_gateway(self.hass).get_device(joined.simulated.ieee)
        assert zha_device is not None
        zha_device.update_available(available)
        await self.async_block_till_done()


def zha_entity_ids(
    hass: HomeAssistant, device_id: str, *, endpoint_id: int = PLUG_ENDPOINT_ID
) -> ZhaEntityIds:
    """ZHA's switch, active-power and instantaneous-demand entity ids for a device.

    Read from the entity registry. ZHA (2026.10) gives an endpoint's primary entity -- the
    switch of an On/Off cluster -- the unique id ``<ieee>-<endpoint>``, and a cluster's sensor
    ``<ieee>-<endpoint>-<cluster id>`` (further entities of the cluster add a suffix).
    """
    device = dr.async_get(hass).async_get(device_id)
    if device is None:
        raise KeyError(f"No device {device_id} in the device registry")
    ieee = next(
        identifier for domain, identifier in device.identifiers if domain == zha_const.DOMAIN
    )
    by_unique_id = {
        (entry.domain, entry.unique_id): entry.entity_id
        for entry in er.async_entries_for_device(er.async_get(hass), device_id)
        if entry.platform == zha_const.DOMAIN
    }
    prefix = f"{ieee}-{endpoint_id}"
    return ZhaEntityIds(
        switch=by_unique_id.get(("switch", prefix)),
        power=by_unique_id.get(("sensor", f"{prefix}-{ELECTRICAL_MEASUREMENT_CLUSTER_ID}")),
        instantaneous_demand=by_unique_id.get(("sensor", f"{prefix}-{METERING_CLUSTER_ID}")),
    )


def zha_cluster(
    hass: HomeAssistant, device_id: str, cluster_id: int, *, endpoint_id: int = PLUG_ENDPOINT_ID
) -> zigpy.zcl.Cluster:
    """A device's zigpy server cluster, reached through ``homeassistant.components.zha.helpers``.

    This is the path an integration can take in HA 2026.10 (ZHA internals, not a public API):
    ``async_get_zha_device_proxy(hass, device_id)`` -> ``.device`` (the ``zha`` library's
    ``Device``) -> ``.device`` (the zigpy ``Device``) -> endpoint -> ``in_clusters``. It raises
    ``ValueError`` when ZHA has no gateway and ``KeyError`` for unknown devices or clusters.
    """
    proxy = async_get_zha_device_proxy(hass, device_id)
    zigpy_device = proxy.device.device
    cluster: zigpy.zcl.Cluster = zigpy_device.endpoints[endpoint_id].in_clusters[cluster_id]
    return cluster


# --- Fixtures --------------------------------------------------------------------------------


@pytest.fixture(name="zha_harness")
async def zha_harness_fixture(hass: HomeAssistant) -> AsyncIterator[ZhaHarness]:
    """ZHA set up on a simulated radio for one test; unloaded cleanly afterwards."""
    harness = ZhaHarness(hass)
    try:
        await harness.async_setup()
        yield harness
    finally:
        await harness.async_teardown()


@pytest.fixture(name="zcl_requests")
def zcl_requests_fixture() -> Iterator[ZclRequestLog]:
    """Record every ``zigpy.zcl.Cluster.request`` made during the test."""
    with ZclRequestLog().watching() as log:
        yield log
