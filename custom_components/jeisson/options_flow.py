"""Options flow: add, edit and remove loads with their terms, and switch participation.

A load is switched by an existing HA ``switch`` entity or, once one is paired, by a Jeisson WiFi
actuator (stored as ``jeisson_wifi:<device id>``; picking a WiFi actuator's own relay switch
entity means the same, so its off commands carry their end for the device's fail-safe).
Where ZHA has devices with an On/Off cluster, one may be picked instead (stored as
``zha:<device id>`` with its IEEE address, see :mod:`.zigbee`). A load moved by a setting
(:mod:`.executors`) picks its entity in the same field: an EV charger's current limit
(``number``, with the floor current, voltage, phases and "charged by" time), a thermostat
(``climate``, with its maximum offset and pre-conditioning time), a water heater
(``water_heater``) or a home battery's mode (``select``, with its event mode, state of charge
sensor and minimum charge).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import probatio
from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.config_entries import ConfigFlowResult, OptionsFlow
from homeassistant.const import CONF_NAME, UnitOfPower
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TimeSelector,
)

from jeisson.common.protocol import LoadKind

from .actuators import SWITCH_DOMAIN, power_sensor_kw
from .const import (
    CONF_ACTUATOR,
    CONF_CHARGED_BY,
    CONF_EVENT_OPTION,
    CONF_FLOOR_CURRENT,
    CONF_KIND,
    CONF_LOAD_ID,
    CONF_LOADS,
    CONF_MAX_OFF_MINUTES,
    CONF_MAX_OFFSET,
    CONF_MIN_PRICE,
    CONF_MIN_SOC,
    CONF_NEVER_CURTAIL,
    CONF_NOTIFY,
    CONF_OFF_LIMITS_END,
    CONF_OFF_LIMITS_START,
    CONF_PARTICIPATING,
    CONF_PHASES,
    CONF_POWER_SENSOR,
    CONF_PRECONDITION_MINUTES,
    CONF_RATED_KW,
    CONF_SOC_SENSOR,
    CONF_VOLTAGE,
    CONF_WIFI_REMOTE_DEVICES,
    DEFAULT_MAX_OFF_MINUTES,
    DEFAULT_MIN_PRICE,
    MAX_CURRENT,
    MAX_OFF_MINUTES_LIMIT,
    MAX_OFFSET_LIMIT,
    MAX_PRECONDITION_MINUTES,
    MAX_PRICE_PER_KWH,
    MAX_RATED_KW,
    NOTIFY_OFF,
    NOTIFY_PERSISTENT,
)
from .load_guard import own_entity_ids
from .models import (
    CLIMATE_DOMAIN,
    CONF_ZHA_IEEE,
    NUMBER_DOMAIN,
    SELECT_DOMAIN,
    SETTING_DOMAINS,
    WATER_HEATER_DOMAIN,
    new_load_id,
)
from .notifications import notify_targets
from .wifi_devices import actuator_ref, device_id_for_relay_entity, device_id_from_actuator
from .wifi_endpoint import get_router
from .zigbee import CONF_ZHA_DEVICE, form_values, stored_zha_ieee, with_zha_devices, zha_choice

CONF_WIFI_DEVICE = "wifi_device"

_KW_STEP = 0.01
_PRICE_STEP = 0.001
_AMP_STEP = 0.5
_OFFSET_STEP = 0.5
_MAX_VOLTAGE = 480
_MAX_PHASES = 3
KINDS_BY_DOMAIN: dict[str, tuple[LoadKind, ...]] = {
    NUMBER_DOMAIN: (LoadKind.EV_CHARGER,),
    CLIMATE_DOMAIN: (LoadKind.THERMOSTAT, LoadKind.HVAC),
    WATER_HEATER_DOMAIN: (LoadKind.WATER_HEATER,),
    SELECT_DOMAIN: (LoadKind.BATTERY,),
}
"""The kinds a setting entity can carry out (a switch: any but a thermostat or a battery)."""
_NEEDS_DOMAIN = {LoadKind.THERMOSTAT: CLIMATE_DOMAIN, LoadKind.BATTERY: SELECT_DOMAIN}
_PERCENT = 100

LOAD_SCHEMA = probatio.Schema(
    {
        probatio.Required(CONF_NAME): TextSelector(),
        probatio.Required(CONF_KIND, default=LoadKind.OTHER.value): SelectSelector(
            SelectSelectorConfig(
                options=[kind.value for kind in LoadKind],
                translation_key="load_kind",
                mode=SelectSelectorMode.DROPDOWN,
            )
        ),
        # Optional so the form does not pre-fill its minimum; required by _validate, and
        # suggested from the power sensor's reading when there is one.
        probatio.Optional(CONF_RATED_KW): NumberSelector(
            NumberSelectorConfig(
                min=_KW_STEP,
                max=MAX_RATED_KW,
                step=_KW_STEP,
                unit_of_measurement=UnitOfPower.KILO_WATT,
                mode=NumberSelectorMode.BOX,
            )
        ),
        probatio.Required(CONF_ACTUATOR): EntitySelector(
            EntitySelectorConfig(domain=[SWITCH_DOMAIN, *SETTING_DOMAINS])
        ),
        probatio.Optional(CONF_POWER_SENSOR): EntitySelector(
            EntitySelectorConfig(domain="sensor", device_class=SensorDeviceClass.POWER)
        ),
        probatio.Required(CONF_MIN_PRICE, default=DEFAULT_MIN_PRICE): NumberSelector(
            NumberSelectorConfig(
                min=0, max=MAX_PRICE_PER_KWH, step=_PRICE_STEP, mode=NumberSelectorMode.BOX
            )
        ),
        probatio.Required(CONF_MAX_OFF_MINUTES, default=DEFAULT_MAX_OFF_MINUTES): NumberSelector(
            NumberSelectorConfig(
                min=1,
                max=MAX_OFF_MINUTES_LIMIT,
                step=1,
                unit_of_measurement="min",
                mode=NumberSelectorMode.BOX,
            )
        ),
        probatio.Optional(CONF_OFF_LIMITS_START): TimeSelector(),
        probatio.Optional(CONF_OFF_LIMITS_END): TimeSelector(),
        probatio.Required(CONF_NEVER_CURTAIL, default=False): BooleanSelector(),
        probatio.Optional(CONF_FLOOR_CURRENT): NumberSelector(
            NumberSelectorConfig(
                min=0,
                max=MAX_CURRENT,
                step=_AMP_STEP,
                unit_of_measurement="A",
                mode=NumberSelectorMode.BOX,
            )
        ),
        probatio.Optional(CONF_VOLTAGE): NumberSelector(
            NumberSelectorConfig(
                min=1,
                max=_MAX_VOLTAGE,
                step=1,
                unit_of_measurement="V",
                mode=NumberSelectorMode.BOX,
            )
        ),
        probatio.Optional(CONF_PHASES): NumberSelector(
            NumberSelectorConfig(min=1, max=_MAX_PHASES, step=1, mode=NumberSelectorMode.BOX)
        ),
        probatio.Optional(CONF_CHARGED_BY): TimeSelector(),
        probatio.Optional(CONF_MAX_OFFSET): NumberSelector(
            NumberSelectorConfig(
                min=_OFFSET_STEP,
                max=MAX_OFFSET_LIMIT,
                step=_OFFSET_STEP,
                unit_of_measurement="°",
                mode=NumberSelectorMode.BOX,
            )
        ),
        probatio.Optional(CONF_EVENT_OPTION): TextSelector(),
        probatio.Optional(CONF_SOC_SENSOR): EntitySelector(
            EntitySelectorConfig(domain="sensor", device_class=SensorDeviceClass.BATTERY)
        ),
        probatio.Optional(CONF_MIN_SOC): NumberSelector(
            NumberSelectorConfig(
                min=0, max=_PERCENT, step=1, unit_of_measurement="%", mode=NumberSelectorMode.BOX
            )
        ),
        probatio.Optional(CONF_PRECONDITION_MINUTES): NumberSelector(
            NumberSelectorConfig(
                min=0,
                max=MAX_PRECONDITION_MINUTES,
                step=1,
                unit_of_measurement="min",
                mode=NumberSelectorMode.BOX,
            )
        ),
    }
)


def load_schema(wifi_devices: Mapping[str, str]) -> probatio.Schema:
    """Return the load form; with paired WiFi actuators (id → name) one may be picked instead."""
    if not wifi_devices:
        return LOAD_SCHEMA
    fields: dict[Any, Any] = {}
    for marker, selector in LOAD_SCHEMA.schema.items():
        if marker != CONF_ACTUATOR:
            fields[marker] = selector
            continue
        fields[probatio.Optional(CONF_ACTUATOR)] = selector
        fields[probatio.Optional(CONF_WIFI_DEVICE)] = SelectSelector(
            SelectSelectorConfig(
                options=[
                    SelectOptionDict(value=device_id, label=name)
                    for device_id, name in wifi_devices.items()
                ],
                mode=SelectSelectorMode.DROPDOWN,
            )
        )
    return probatio.Schema(fields)


def without_entities(schema: probatio.Schema, excluded: list[str]) -> probatio.Schema:
    """Return ``schema`` whose switch and power sensor pickers leave out ``excluded``.

    The selectors both hide them in the form and refuse them when submitted.
    """
    if not excluded:
        return schema
    fields: dict[Any, Any] = {}
    for marker, selector in schema.schema.items():
        fields[marker] = selector
        if marker in (CONF_ACTUATOR, CONF_POWER_SENSOR) and isinstance(selector, EntitySelector):
            fields[marker] = EntitySelector(
                EntitySelectorConfig(**{**selector.config, "exclude_entities": excluded})
            )
    return probatio.Schema(fields)


def with_currency(schema: probatio.Schema, currency: str) -> probatio.Schema:
    """Return ``schema`` whose minimum price shows Home Assistant's currency per kWh."""
    fields: dict[Any, Any] = {}
    for marker, selector in schema.schema.items():
        fields[marker] = selector
        if marker == CONF_MIN_PRICE and isinstance(selector, NumberSelector):
            fields[marker] = NumberSelector(
                NumberSelectorConfig(
                    **{**selector.config, "unit_of_measurement": f"{currency}/kWh"}
                )
            )
    return probatio.Schema(fields)


def _load_options(user_input: dict[str, Any]) -> dict[str, Any]:
    """Return the stored form of a load from the form's input."""
    return {
        CONF_NAME: str(user_input[CONF_NAME]).strip(),
        CONF_KIND: user_input[CONF_KIND],
        CONF_RATED_KW: float(user_input[CONF_RATED_KW]),
        CONF_ACTUATOR: user_input[CONF_ACTUATOR],
        CONF_POWER_SENSOR: user_input.get(CONF_POWER_SENSOR) or None,
        CONF_ZHA_IEEE: user_input.get(CONF_ZHA_IEEE) or None,
        CONF_MIN_PRICE: float(user_input[CONF_MIN_PRICE]),
        CONF_MAX_OFF_MINUTES: int(user_input[CONF_MAX_OFF_MINUTES]),
        CONF_OFF_LIMITS_START: user_input.get(CONF_OFF_LIMITS_START) or None,
        CONF_OFF_LIMITS_END: user_input.get(CONF_OFF_LIMITS_END) or None,
        CONF_NEVER_CURTAIL: bool(user_input[CONF_NEVER_CURTAIL]),
        CONF_FLOOR_CURRENT: _optional_number(user_input, CONF_FLOOR_CURRENT),
        CONF_VOLTAGE: _optional_number(user_input, CONF_VOLTAGE),
        CONF_PHASES: _optional_number(user_input, CONF_PHASES),
        CONF_CHARGED_BY: user_input.get(CONF_CHARGED_BY) or None,
        CONF_MAX_OFFSET: _optional_number(user_input, CONF_MAX_OFFSET),
        CONF_PRECONDITION_MINUTES: _optional_number(user_input, CONF_PRECONDITION_MINUTES),
        CONF_EVENT_OPTION: str(user_input.get(CONF_EVENT_OPTION) or "").strip() or None,
        CONF_SOC_SENSOR: user_input.get(CONF_SOC_SENSOR) or None,
        CONF_MIN_SOC: _optional_number(user_input, CONF_MIN_SOC),
    }


def _optional_number(user_input: dict[str, Any], key: str) -> float | None:
    """Return an optional number field (None when left empty: the default applies)."""
    value = user_input.get(key)
    return None if value is None else float(value)


def _kind_fits(actuator: str, kind: str) -> bool:
    """Return True when the actuator can carry out a load of ``kind``."""
    domain = actuator.split(".", 1)[0]
    needs = _NEEDS_DOMAIN.get(LoadKind(kind))
    return LoadKind(kind) in KINDS_BY_DOMAIN.get(domain, tuple(LoadKind)) and (
        needs is None or domain == needs
    )


class JeissonOptionsFlow(OptionsFlow):
    """Manage the home's loads, their terms, and participation (applied without a reload)."""

    _editing: str | None = None

    @property
    def _loads(self) -> dict[str, dict[str, Any]]:
        return dict(self.config_entry.options.get(CONF_LOADS, {}))

    def _schema(self) -> probatio.Schema:
        router = get_router(self.hass)
        hub = router.hub(self.config_entry.entry_id) if router is not None else None
        devices = {device.device_id: device.name for device in hub.devices} if hub else {}
        schema = load_schema(devices)
        schema = without_entities(schema, own_entity_ids(self.hass, self.config_entry.entry_id))
        schema = with_currency(schema, self.hass.config.currency)
        return with_zha_devices(self.hass, schema)

    def _measured_kw(self, user_input: Mapping[str, Any]) -> float | None:
        """Return the chosen power sensor's current reading in kW (None without one)."""
        if not (sensor := user_input.get(CONF_POWER_SENSOR)):
            return None
        measured = power_sensor_kw(self.hass, sensor)
        if not measured or measured <= 0:
            return None
        return min(MAX_RATED_KW, max(_KW_STEP, round(measured, 2)))

    def _shown(self, user_input: dict[str, Any] | None) -> dict[str, Any] | None:
        """Return the values to show again: a missing rated power suggested from the sensor."""
        if user_input is None or user_input.get(CONF_RATED_KW) is not None:
            return user_input
        if (measured := self._measured_kw(user_input)) is None:
            return user_input
        return {**user_input, CONF_RATED_KW: measured}

    def _actuator(self, user_input: dict[str, Any]) -> tuple[str | None, str | None]:
        """Return the chosen actuator's stored value, or the error that prevents it."""
        entity_id = user_input.get(CONF_ACTUATOR)
        wifi_device = user_input.get(CONF_WIFI_DEVICE)
        if zha_device := user_input.get(CONF_ZHA_DEVICE):
            if entity_id or wifi_device:
                return None, "actuator_conflict"
            zha_actuator = zha_choice(self.hass, zha_device)
            return zha_actuator, (None if zha_actuator else "zha_device_unavailable")
        if entity_id and wifi_device:
            return None, "actuator_conflict"
        if wifi_device:
            return actuator_ref(wifi_device), None
        if not entity_id:
            return None, "actuator_required"
        relay_of = device_id_for_relay_entity(self.hass, entity_id)
        return (actuator_ref(relay_of) if relay_of else entity_id), None

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Offer what can be done."""
        menu = ["add_load"]
        if self._loads:
            menu += ["edit_load", "remove_load"]
        menu.append("settings")
        return self.async_show_menu(step_id="init", menu_options=menu)

    def _validate(self, user_input: dict[str, Any], load_id: str | None) -> dict[str, str]:
        errors: dict[str, str] = {}
        if not str(user_input[CONF_NAME]).strip():
            errors[CONF_NAME] = "name_required"
        actuator, problem = self._actuator(user_input)
        if problem:
            errors["base"] = problem
        elif actuator is not None and not _kind_fits(actuator, user_input[CONF_KIND]):
            errors[CONF_ACTUATOR] = "actuator_kind_mismatch"
        elif user_input[CONF_KIND] == LoadKind.BATTERY and not (
            str(user_input.get(CONF_EVENT_OPTION) or "").strip() and user_input.get(CONF_SOC_SENSOR)
        ):
            errors["base"] = "battery_incomplete"
        elif any(
            other_id != load_id and other[CONF_ACTUATOR] == actuator
            for other_id, other in self._loads.items()
        ):
            field = next(
                (key for key in (CONF_WIFI_DEVICE, CONF_ZHA_DEVICE) if user_input.get(key)),
                CONF_ACTUATOR,
            )
            errors[field] = "actuator_in_use"
        if user_input.get(CONF_RATED_KW) is None:
            errors[CONF_RATED_KW] = (
                "rated_kw_from_sensor" if self._measured_kw(user_input) else "rated_kw_required"
            )
        if bool(user_input.get(CONF_OFF_LIMITS_START)) != bool(user_input.get(CONF_OFF_LIMITS_END)):
            errors["base"] = "off_limits_incomplete"
        return errors

    def _save_load(self, load_id: str, user_input: dict[str, Any]) -> ConfigFlowResult:
        loads = self._loads
        actuator, _ = self._actuator(user_input)
        loads[load_id] = _load_options(
            {
                **user_input,
                CONF_ACTUATOR: actuator,
                CONF_ZHA_IEEE: stored_zha_ieee(self.hass, actuator),
            }
        )
        return self.async_create_entry(data={**self.config_entry.options, CONF_LOADS: loads})

    async def async_step_add_load(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Declare a new load."""
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = self._validate(user_input, None)
            if not errors:
                return self._save_load(new_load_id(), user_input)
        return self.async_show_form(
            step_id="add_load",
            data_schema=self.add_suggested_values_to_schema(
                self._schema(), self._shown(user_input)
            ),
            errors=errors,
        )

    def _load_selector(self, multiple: bool) -> SelectSelector:
        return SelectSelector(
            SelectSelectorConfig(
                options=[
                    SelectOptionDict(value=load_id, label=load[CONF_NAME])
                    for load_id, load in self._loads.items()
                ],
                multiple=multiple,
                mode=SelectSelectorMode.LIST,
            )
        )

    async def async_step_edit_load(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick the load to edit."""
        if user_input is not None:
            self._editing = user_input[CONF_LOAD_ID]
            return await self.async_step_load_details()
        return self.async_show_form(
            step_id="edit_load",
            data_schema=probatio.Schema(
                {probatio.Required(CONF_LOAD_ID): self._load_selector(multiple=False)}
            ),
        )

    async def async_step_load_details(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change a load's details and terms."""
        if self._editing is None:
            return await self.async_step_edit_load()
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = self._validate(user_input, self._editing)
            if not errors:
                return self._save_load(self._editing, user_input)
        current = {
            key: value for key, value in self._loads[self._editing].items() if value is not None
        }
        if (device_id := device_id_from_actuator(current[CONF_ACTUATOR])) is not None:
            current[CONF_WIFI_DEVICE] = device_id
            del current[CONF_ACTUATOR]
        current = form_values(self.hass, current)
        return self.async_show_form(
            step_id="load_details",
            data_schema=self.add_suggested_values_to_schema(
                self._schema(), self._shown(user_input) or current
            ),
            description_placeholders={CONF_NAME: self._loads[self._editing][CONF_NAME]},
            errors=errors,
        )

    async def async_step_remove_load(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Remove one or more loads."""
        if user_input is not None:
            loads = {
                load_id: load
                for load_id, load in self._loads.items()
                if load_id not in user_input[CONF_LOADS]
            }
            return self.async_create_entry(data={**self.config_entry.options, CONF_LOADS: loads})
        return self.async_show_form(
            step_id="remove_load",
            data_schema=probatio.Schema(
                {probatio.Required(CONF_LOADS): self._load_selector(multiple=True)}
            ),
        )

    async def async_step_settings(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Switch the home's participation on or off; accept remote WiFi actuators or not."""
        options = self.config_entry.options
        if user_input is not None:
            return self.async_create_entry(
                data={
                    **options,
                    CONF_PARTICIPATING: user_input[CONF_PARTICIPATING],
                    CONF_WIFI_REMOTE_DEVICES: user_input[CONF_WIFI_REMOTE_DEVICES],
                    CONF_NOTIFY: user_input.get(CONF_NOTIFY, NOTIFY_OFF),
                }
            )
        return self.async_show_form(
            step_id="settings",
            data_schema=probatio.Schema(
                {
                    probatio.Required(
                        CONF_PARTICIPATING, default=options.get(CONF_PARTICIPATING, True)
                    ): BooleanSelector(),
                    probatio.Required(
                        CONF_WIFI_REMOTE_DEVICES,
                        default=options.get(CONF_WIFI_REMOTE_DEVICES, False),
                    ): BooleanSelector(),
                    probatio.Required(
                        CONF_NOTIFY, default=options.get(CONF_NOTIFY, NOTIFY_OFF)
                    ): SelectSelector(
                        SelectSelectorConfig(
                            options=[
                                SelectOptionDict(value=NOTIFY_OFF, label=NOTIFY_OFF),
                                SelectOptionDict(value=NOTIFY_PERSISTENT, label=NOTIFY_PERSISTENT),
                                *(
                                    SelectOptionDict(value=value, label=label)
                                    for value, label in notify_targets(self.hass).items()
                                ),
                            ],
                            translation_key=CONF_NOTIFY,
                            mode=SelectSelectorMode.DROPDOWN,
                        )
                    ),
                }
            ),
        )
