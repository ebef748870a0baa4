"""Zigbee loads through ZHA: the ZHA actuator, and finding the ZHA devices that can power a load.

A load configured with a ZHA device stores the device's registry id (in its ``actuator`` option,
as ``zha:<device id>``) and its IEEE address (``zha_ieee``), so a plug that was removed and
paired again (a new registry id, the same IEEE address) is still found.

:class:`ZigbeeActuator` switches the load through ZHA's own ``switch`` entity for that device
(the public, stable path) and takes state and availability from it, so the ZHA device's
availability is the load's. Power is read, in this order:

1. the power sensor the homeowner chose for the load, if any;
2. straight from the device's clusters, where ZHA is loaded: Electrical Measurement (0x0B04)
   ``active_power`` * ``ac_power_multiplier`` / ``ac_power_divisor`` in W, else Metering
   (0x0702) ``instantaneous_demand`` * ``multiplier`` / ``divisor`` in kW (only when its
   ``unit_of_measure`` is kW; ZHA shows nothing else as power either). This goes through
   ``homeassistant.components.zha.helpers``, which is not a public API: any ImportError,
   ValueError, LookupError, AttributeError, TypeError or StopIteration on that path is logged
   at debug level and the next source is used — never a crash;
3. ZHA's own power sensor entities of the device (device class ``power``);
4. nothing: the caller (:func:`.actuators.load_power_kw`) uses the load's rated power when on.

A plug whose relay is off draws nothing, so its power is 0 then (a stale cached reading is not
reported). Nothing in this module imports ZHA or zigpy at import time: homes without ZHA do
not need them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Final

import probatio
from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.selector import (
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)

from . import actuators
from .const import CONF_ACTUATOR, DOMAIN, LOGGER
from .models import CONF_ZHA_IEEE, LoadConfig

ZHA_DOMAIN: Final = "zha"
ZHA_ACTUATOR_PREFIX: Final = "zha:"
"""A load's ``actuator`` option that names a ZHA device (never a valid entity id)."""
CONF_ZHA_DEVICE: Final = "zha_device"
"""Load form field: the ZHA device (registry id) that powers the load."""

ZHA_HELPERS_MODULE: Final = "homeassistant.components.zha.helpers"
"""ZHA's helper module (imported lazily and guarded: it is not a public API)."""
ZDO_ENDPOINT_ID: Final = 0
ON_OFF_CLUSTER_ID: Final = 0x0006
METERING_CLUSTER_ID: Final = 0x0702
ELECTRICAL_MEASUREMENT_CLUSTER_ID: Final = 0x0B04
METERING_UNIT_KW: Final = 0x00
"""Metering ``unit_of_measure`` 0: demand in kW (summation in kWh)."""
WATTS_PER_KW: Final = 1000.0

_ZHA_INTERNALS_ERRORS: Final = (
    ImportError,
    ValueError,
    LookupError,
    AttributeError,
    TypeError,
    StopIteration,
)
"""What reaching into ZHA's internals may raise when they change or ZHA is not running."""


# --- Load options ------------------------------------------------------------------------------


def zha_actuator_ref(device_id: str) -> str:
    """Return the load ``actuator`` option value that names ZHA device ``device_id``."""
    return ZHA_ACTUATOR_PREFIX + device_id


def zha_device_id(actuator: str) -> str | None:
    """Return the ZHA device registry id an ``actuator`` option names (None: not ZHA)."""
    if actuator.startswith(ZHA_ACTUATOR_PREFIX):
        return actuator.removeprefix(ZHA_ACTUATOR_PREFIX)
    return None


def is_zha_load(load: LoadConfig) -> bool:
    """Return True when ``load`` is powered by a ZHA device."""
    return zha_device_id(load.actuator) is not None


# --- The ZHA device and its entities -------------------------------------------------------------


def zha_ieee(device: dr.DeviceEntry) -> str | None:
    """Return the IEEE address ZHA registered ``device`` under (None: not a ZHA device)."""
    return next(
        (identifier for domain, identifier in device.identifiers if domain == ZHA_DOMAIN), None
    )


@callback
def zha_device_entry(
    hass: HomeAssistant, device_id: str | None, ieee: str | None = None
) -> dr.DeviceEntry | None:
    """Return the ZHA device: by registry id, else by IEEE address (the device was re-paired)."""
    registry = dr.async_get(hass)
    if device_id is not None:
        device = registry.async_get(device_id, include_child_devices=False)
        if device is not None and (found := zha_ieee(device)) and (ieee is None or found == ieee):
            return device
    if ieee is None:
        return None
    for entry in hass.config_entries.async_entries(ZHA_DOMAIN):
        if (
            device := registry.async_get_device_by_identifier((ZHA_DOMAIN, ieee), entry.entry_id)
        ) is not None:
            return device
    return None


@callback
def linked_zha_device(hass: HomeAssistant, load: LoadConfig) -> dr.DeviceEntry | None:
    """Return the ZHA device ``load``'s entities should be shown on (None: not a ZHA load)."""
    device_id = zha_device_id(load.actuator)
    if device_id is None:
        return None
    return zha_device_entry(hass, device_id, load.zha_ieee)


def _zha_entities(hass: HomeAssistant, device_id: str, domain: str) -> list[er.RegistryEntry]:
    """ZHA's enabled primary entities (no config/diagnostic ones) of a device in ``domain``."""
    return sorted(
        (
            entry
            for entry in er.async_entries_for_device(er.async_get(hass), device_id)
            if entry.platform == ZHA_DOMAIN
            and entry.domain == domain
            and entry.entity_category is None
        ),
        key=lambda entry: entry.unique_id,
    )


@callback
def zha_switch_entity_id(hass: HomeAssistant, device_id: str) -> str | None:
    """Return ZHA's switch entity of the device (its first endpoint's, for multi-outlet ones)."""
    switches = _zha_entities(hass, device_id, actuators.SWITCH_DOMAIN)
    return switches[0].entity_id if switches else None


@callback
def zha_power_entity_ids(hass: HomeAssistant, device_id: str) -> list[str]:
    """Return ZHA's power sensor entities of the device (device class ``power``).

    The Electrical Measurement one (active power) comes first, like in :func:`cluster_power_kw`:
    ZHA's unique ids name the cluster (``<ieee>-<endpoint>-<cluster id>``).
    """
    active_power = f"-{ELECTRICAL_MEASUREMENT_CLUSTER_ID}"
    power = [
        entry
        for entry in _zha_entities(hass, device_id, "sensor")
        if (entry.device_class or entry.original_device_class) == SensorDeviceClass.POWER
    ]
    power.sort(key=lambda entry: active_power not in entry.unique_id)
    return [entry.entity_id for entry in power]


# --- Reading the device's clusters (ZHA internals, guarded) -------------------------------------


def _zigpy_endpoints(hass: HomeAssistant, device_id: str) -> list[Any]:
    """Return the zigpy endpoints (no ZDO) of a ZHA device, lowest id first.

    ``async_get_zha_device_proxy(hass, device_id).device.device`` is the zigpy ``Device``. Raises
    whatever ZHA's internals raise (see :data:`_ZHA_INTERNALS_ERRORS`).
    """
    helpers = importlib.import_module(ZHA_HELPERS_MODULE)
    zigpy_device = helpers.async_get_zha_device_proxy(hass, device_id).device.device
    return [
        endpoint
        for endpoint_id, endpoint in sorted(zigpy_device.endpoints.items())
        if endpoint_id != ZDO_ENDPOINT_ID
    ]


def _first_set(cluster: Any, *attributes: str) -> Any:
    """Return the first of ``attributes`` in the cluster's cache that is set and non-zero."""
    for attribute in attributes:
        if value := cluster.get(attribute):
            return value
    return None


def electrical_measurement_kw(cluster: Any) -> float | None:
    """Return Electrical Measurement ``active_power`` in kW (None: never reported).

    Scaled like ZHA's own sensor: ``ac_power_multiplier``/``ac_power_divisor``, falling back to
    ``power_multiplier``/``power_divisor``, each 1 when unset or zero.
    """
    raw = cluster.get("active_power")
    if raw is None:
        return None
    multiplier = _first_set(cluster, "ac_power_multiplier", "power_multiplier") or 1
    divisor = _first_set(cluster, "ac_power_divisor", "power_divisor") or 1
    return max(0.0, float(raw) * multiplier / divisor / WATTS_PER_KW)


def metering_kw(cluster: Any) -> float | None:
    """Return Metering ``instantaneous_demand`` in kW (None: not reported, or not power).

    Only a ``unit_of_measure`` of kW is power (other units are gas, water, ...), as in ZHA.
    """
    if cluster.get("unit_of_measure") != METERING_UNIT_KW:
        return None
    raw = cluster.get("instantaneous_demand")
    if raw is None:
        return None
    multiplier = cluster.get("multiplier") or 1
    divisor = cluster.get("divisor") or 1
    return max(0.0, float(raw) * multiplier / divisor)


def cluster_power_kw(hass: HomeAssistant, device_id: str) -> float | None:
    """Return the device's power from its clusters' attribute cache, or None.

    Electrical Measurement on any endpoint wins over Metering. None, with a debug log, when
    ZHA's internals cannot be reached (see the module docstring).
    """
    try:
        endpoints = _zigpy_endpoints(hass, device_id)
        for cluster_id, read in (
            (ELECTRICAL_MEASUREMENT_CLUSTER_ID, electrical_measurement_kw),
            (METERING_CLUSTER_ID, metering_kw),
        ):
            for endpoint in endpoints:
                cluster = endpoint.in_clusters.get(cluster_id)
                if cluster is not None and (kw := read(cluster)) is not None:
                    return kw
    except _ZHA_INTERNALS_ERRORS as err:
        LOGGER.debug(
            "Cannot read power from ZHA device %s clusters (%r); using its power sensor or "
            "the rated power",
            device_id,
            err,
        )
    return None


def has_on_off_cluster(hass: HomeAssistant, device_id: str) -> bool | None:
    """Return whether the device has an On/Off server cluster (None: ZHA cannot tell us)."""
    try:
        return any(
            ON_OFF_CLUSTER_ID in endpoint.in_clusters
            for endpoint in _zigpy_endpoints(hass, device_id)
        )
    except _ZHA_INTERNALS_ERRORS as err:
        LOGGER.debug("Cannot read ZHA device %s clusters (%r)", device_id, err)
        return None


# --- Devices offered in the options flow ---------------------------------------------------------


@callback
def zha_switch_devices(hass: HomeAssistant) -> list[dr.DeviceEntry]:
    """Return the enabled ZHA devices that can power a load: an On/Off cluster and a switch.

    The switch entity is what Jeisson drives; where ZHA cannot be asked about clusters, having
    ZHA's switch entity is taken as the proof of an On/Off cluster.
    """
    registry = dr.async_get(hass)
    return [
        device
        for entry in hass.config_entries.async_entries(ZHA_DOMAIN)
        for device in dr.async_entries_for_config_entry(registry, entry.entry_id)
        if not device.disabled
        and zha_ieee(device) is not None
        and zha_switch_entity_id(hass, device.id) is not None
        and has_on_off_cluster(hass, device.id) is not False
    ]


def device_label(device: dr.DeviceEntry) -> str:
    """Return how a ZHA device is listed: its friendly name and model."""
    name = device.name_by_user or device.name or zha_ieee(device) or device.id
    return f"{name} ({device.model})" if device.model else name


@callback
def zha_device_selector(hass: HomeAssistant) -> SelectSelector | None:
    """Return the selector of ZHA devices that can power a load (None: there are none)."""
    devices = zha_switch_devices(hass)
    if not devices:
        return None
    options = sorted(
        (SelectOptionDict(value=device.id, label=device_label(device)) for device in devices),
        key=lambda option: option["label"].casefold(),
    )
    return SelectSelector(
        SelectSelectorConfig(options=options, mode=SelectSelectorMode.DROPDOWN, sort=False)
    )


@callback
def with_zha_devices(hass: HomeAssistant, schema: probatio.Schema) -> probatio.Schema:
    """Return the load form with a ZHA device choice right after the switch, if any exist.

    The switch becomes optional then: the form asks for one actuator of either kind.
    """
    selector = zha_device_selector(hass)
    if selector is None:
        return schema
    fields: dict[Any, Any] = {}
    for key, value in schema.schema.items():
        if key != CONF_ACTUATOR:
            fields[key] = value
            continue
        fields[probatio.Optional(CONF_ACTUATOR)] = value
        fields[probatio.Optional(CONF_ZHA_DEVICE)] = selector
    return probatio.Schema(fields)


@callback
def form_values(hass: HomeAssistant, stored: Mapping[str, Any]) -> dict[str, Any]:
    """Return a stored load as the form shows it: a ZHA load's device in the ZHA field."""
    values = dict(stored)
    values.pop(CONF_ZHA_IEEE, None)
    device_id = zha_device_id(str(values.get(CONF_ACTUATOR) or ""))
    if device_id is None:
        return values
    del values[CONF_ACTUATOR]
    device = zha_device_entry(hass, device_id, stored.get(CONF_ZHA_IEEE))
    values[CONF_ZHA_DEVICE] = device.id if device else device_id
    return values


@callback
def zha_choice(hass: HomeAssistant, device_id: str) -> str | None:
    """Return the ``actuator`` option for the ZHA device chosen in the form.

    None when the device can no longer power a load: gone from ZHA, no switch entity, or no
    On/Off cluster.
    """
    device = zha_device_entry(hass, device_id)
    if (
        device is None
        or zha_switch_entity_id(hass, device.id) is None
        or has_on_off_cluster(hass, device.id) is False
    ):
        return None
    return zha_actuator_ref(device.id)


@callback
def stored_zha_ieee(hass: HomeAssistant, actuator: str | None) -> str | None:
    """Return the IEEE address to store beside an ``actuator`` option (None: not ZHA)."""
    device_id = zha_device_id(actuator or "")
    if device_id is None:
        return None
    device = zha_device_entry(hass, device_id)
    return zha_ieee(device) if device else None


# --- The actuator --------------------------------------------------------------------------------


class ZigbeeActuator:
    """A load powered by a ZHA device: switched through ZHA's switch entity for that device."""

    def __init__(
        self,
        hass: HomeAssistant,
        device_id: str,
        ieee: str | None = None,
        power_sensor: str | None = None,
    ) -> None:
        """Drive ZHA device ``device_id`` (or, if re-paired, the one at ``ieee``)."""
        self._hass = hass
        self._device_id = device_id
        self._ieee = ieee
        self._power_sensor = power_sensor

    @classmethod
    def for_load(cls, hass: HomeAssistant, load: LoadConfig) -> ZigbeeActuator:
        """Return the actuator of a ZHA load (raises ValueError for any other load)."""
        device_id = zha_device_id(load.actuator)
        if device_id is None:
            raise ValueError(f"Load {load.load_id} is not powered by a ZHA device")
        return cls(hass, device_id, load.zha_ieee, load.power_sensor)

    @property
    def device(self) -> dr.DeviceEntry | None:
        """Return the ZHA device in the device registry (None when it is gone)."""
        return zha_device_entry(self._hass, self._device_id, self._ieee)

    def _switch(self) -> actuators.SwitchEntityActuator | None:
        """Return ZHA's switch entity of the device, as a switch actuator (None: none)."""
        device = self.device
        switch = zha_switch_entity_id(self._hass, device.id) if device else None
        return actuators.SwitchEntityActuator(self._hass, switch) if switch else None

    @property
    def available(self) -> bool:
        """Return True when ZHA's switch entity is available (the device is reachable)."""
        switch = self._switch()
        return switch is not None and switch.available

    @property
    def is_on(self) -> bool | None:
        """Return the state of ZHA's switch entity (None when unavailable or gone)."""
        switch = self._switch()
        return switch.is_on if switch else None

    @property
    def watched_entity_ids(self) -> tuple[str, ...]:
        """Return ZHA's switch first, then the power sensors whose changes change the power."""
        device = self.device
        switch = zha_switch_entity_id(self._hass, device.id) if device else None
        if device is None or switch is None:
            return ()
        power = [self._power_sensor] if self._power_sensor else []
        power.extend(zha_power_entity_ids(self._hass, device.id))
        return tuple(dict.fromkeys([switch, *power]))

    def power_kw(self) -> float | None:
        """Return the measured power in kW (see the module docstring for the sources)."""
        switch = self._switch()
        device = self.device
        if device is None or switch is None or not switch.available:
            return None
        if switch.is_on is False:
            return 0.0
        if (
            self._power_sensor
            and (kw := actuators.power_sensor_kw(self._hass, self._power_sensor)) is not None
        ):
            return kw
        if (kw := cluster_power_kw(self._hass, device.id)) is not None:
            return kw
        for entity_id in zha_power_entity_ids(self._hass, device.id):
            if (kw := actuators.power_sensor_kw(self._hass, entity_id)) is not None:
                return kw
        return None

    async def async_turn_off(self) -> None:
        """Call ``switch.turn_off`` on ZHA's switch entity and wait for it."""
        await self._required_switch().async_turn_off()

    async def async_turn_on(self) -> None:
        """Call ``switch.turn_on`` on ZHA's switch entity and wait for it."""
        await self._required_switch().async_turn_on()

    def _required_switch(self) -> actuators.SwitchEntityActuator:
        """Return ZHA's switch; raise when there is none or the device is unavailable.

        (Home Assistant silently skips unavailable entities in a service call: a restore that
        did nothing must not pass for done.)
        """
        switch = self._switch()
        if switch is None or not switch.available:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="zha_switch_missing" if switch is None else "zha_unavailable",
                translation_placeholders={"device": self._ieee or self._device_id},
            )
        return switch
