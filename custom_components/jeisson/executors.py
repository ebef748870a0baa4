"""Loads moved by a setting, not switched: charger current, thermostat setpoint, water heater mode.

Each executor reads the setting before Jeisson acts (:meth:`SettingActuator.snapshot`, saved in
the schedule Store before anything is changed), works out the setting an award asks for
(:meth:`~SettingActuator.target`), applies it, tells whether the entity still holds it (a
homeowner who changes it has taken the load back: an override, never fought) and restores the
saved setting. The functions at the end let the event runner treat switched loads and setting
loads alike: a switched load's target is "off", its restore "on".

* **EV charger** (a ``number`` entity, the charging current limit in A): an award's level (kW)
  becomes a current through the load's voltage x phases, rounded down to the entity's step and
  never below the owner's floor current nor above what was set before.
* **Thermostat** (a ``climate`` entity heating or cooling): a setpoint offset away from comfort
  (cooling: up; heating: down), at most the owner's maximum offset, in proportion to how far
  the award's level is below the expected power (:data:`~.const.THERMOSTAT_LEVEL_SHARES`).
* **Water heater** (a ``water_heater`` entity): ``eco`` operation mode, else away mode.
* **Home battery** (the ``select`` entity of its mode): the owner's event mode (e.g. discharge
  to cover the home, or no charging) while its state of charge is above the owner's minimum;
  at or below it the battery does not bid and a held one is given back (restored) at once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Final

from homeassistant.components.climate.const import HVACMode
from homeassistant.const import ATTR_ENTITY_ID, ATTR_TEMPERATURE, STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant, State
from homeassistant.exceptions import HomeAssistantError

from .actuators import Actuator, actuator_for, power_sensor_kw
from .const import DOMAIN, THERMOSTAT_LEVEL_SHARES
from .models import (
    CLIMATE_DOMAIN,
    NUMBER_DOMAIN,
    SELECT_DOMAIN,
    WATER_HEATER_DOMAIN,
    LoadConfig,
)

type Setting = dict[str, Any]
"""A saved or target setting, JSON-serialisable (kept in the schedule Store)."""

ATTR_VALUE: Final = "value"
ATTR_HVAC_MODE: Final = "hvac_mode"
ATTR_OPERATION_MODE: Final = "operation_mode"
ATTR_AWAY_MODE: Final = "away_mode"
ATTR_OPTION: Final = "option"
ECO_MODE: Final = "eco"
DEFAULT_TEMP_STEP: Final = 0.5
"""Setpoint offsets are rounded to this when the thermostat does not say its step."""
_TOLERANCE: Final = 1e-6
_DEEPEST_SHARE: Final = min(THERMOSTAT_LEVEL_SHARES)
_NOT_A_VALUE: Final = ("unavailable", "unknown")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class SettingActuator(ABC):
    """A load moved by changing one entity's setting (base of the executors)."""

    domain: str = ""

    def __init__(self, hass: HomeAssistant, load: LoadConfig) -> None:
        """Drive ``load.actuator`` (an entity of :attr:`domain`) for ``load``."""
        self._hass = hass
        self._load = load
        self.entity_id = load.actuator

    def _state(self) -> State | None:
        state = self._hass.states.get(self.entity_id)
        return None if state is None or state.state in _NOT_A_VALUE else state

    @property
    def available(self) -> bool:
        """Return True when the entity exists and is not unavailable/unknown."""
        return self._state() is not None

    @property
    @abstractmethod
    def is_on(self) -> bool | None:
        """Return whether the load runs unrestrained, with something to move (None: unknown)."""

    @property
    def watched_entity_ids(self) -> tuple[str, ...]:
        """Return the entity (and its power sensor)."""
        if self._load.power_sensor:
            return (self.entity_id, self._load.power_sensor)
        return (self.entity_id,)

    def power_kw(self) -> float | None:
        """Return the power sensor's value in kW (None when there is none)."""
        if not self._load.power_sensor:
            return None
        return power_sensor_kw(self._hass, self._load.power_sensor)

    @abstractmethod
    def snapshot(self) -> Setting:
        """Return the setting now (what a restore puts back)."""

    @abstractmethod
    def target(self, level_kw: float | None, before_kw: float, saved: Setting) -> Setting:
        """Return the setting an award at ``level_kw`` asks for (None: the deepest)."""

    def moved_kw(self, level_kw: float | None, before_kw: float) -> float:
        """Return the power the award is expected to move from ``before_kw``."""
        return max(0.0, before_kw - (level_kw or 0.0))

    @abstractmethod
    def holds(self, target: Setting) -> bool | None:
        """Return whether the entity is at ``target`` (None: unknown)."""

    def precondition(self, saved: Setting) -> Setting | None:
        """Return the setting to run at before the event (None: no pre-conditioning)."""
        return None

    @property
    def exhausted(self) -> bool:
        """Return True when it must be given back now (a battery at its minimum charge)."""
        return False

    def ramp(self, saved: Setting, target: Setting, keep: float) -> Setting | None:
        """Return a setting on the way back: ``keep`` (0..1) of the move from ``saved`` kept.

        None: the setting goes back in one step.
        """
        return None

    @abstractmethod
    async def async_apply(self, target: Setting) -> None:
        """Set ``target`` (raises HomeAssistantError when it cannot)."""

    @abstractmethod
    async def async_restore(self, saved: Setting) -> None:
        """Put ``saved`` back (raises HomeAssistantError when it cannot)."""

    async def async_turn_off(self) -> None:
        """Refuse: a setting load is not switched (it has no load switch entity)."""
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="not_switchable",
            translation_placeholders={"name": self._load.name},
        )

    async def async_turn_on(self) -> None:
        """Refuse: a setting load is not switched (it has no load switch entity)."""
        await self.async_turn_off()

    async def _call(self, service: str, data: Setting) -> None:
        await self._hass.services.async_call(
            self.domain, service, {ATTR_ENTITY_ID: self.entity_id, **data}, blocking=True
        )


class ChargerCurrentActuator(SettingActuator):
    """An EV charger's charging current limit (a ``number`` entity in A)."""

    domain = NUMBER_DOMAIN

    def _value(self) -> float | None:
        state = self._state()
        return None if state is None else _number(state.state)

    def _step(self) -> float:
        state = self._state()
        step = _number(state.attributes.get("step")) if state else None
        return step if step and step > 0 else _TOLERANCE

    @property
    def is_on(self) -> bool | None:
        """Return True when the limit is above the owner's floor (there is something to move)."""
        value = self._value()
        return None if value is None else value > self._load.floor_current + _TOLERANCE

    def snapshot(self) -> Setting:
        """Return the current limit now."""
        return {ATTR_VALUE: self._value()}

    def target(self, level_kw: float | None, before_kw: float, saved: Setting) -> Setting:
        """Return the limit whose power is at most ``level_kw``: never below the floor."""
        floor = self._load.floor_current
        amps = floor if level_kw is None else level_kw / self._load.kw_per_amp
        step = self._step()
        amps = max(floor, math.floor(amps / step + _TOLERANCE) * step)
        state = self._state()
        if state is not None and (lowest := _number(state.attributes.get("min"))) is not None:
            amps = max(amps, lowest)
        if (before := _number(saved.get(ATTR_VALUE))) is not None:
            amps = min(amps, before)  # never raise it
        return {ATTR_VALUE: round(amps, 3)}

    def moved_kw(self, level_kw: float | None, before_kw: float) -> float:
        """Return the power moved down to the level (None: to the floor)."""
        floor_kw = self._load.floor_current * self._load.kw_per_amp
        return max(0.0, before_kw - (floor_kw if level_kw is None else level_kw))

    def holds(self, target: Setting) -> bool | None:
        """Return whether the limit is at the target (within half a step)."""
        value = self._value()
        wanted = _number(target.get(ATTR_VALUE))
        if value is None or wanted is None:
            return None
        return abs(value - wanted) <= self._step() / 2

    async def async_apply(self, target: Setting) -> None:
        """Set the limit."""
        await self._call("set_value", {ATTR_VALUE: target[ATTR_VALUE]})

    async def async_restore(self, saved: Setting) -> None:
        """Set the limit back."""
        if saved.get(ATTR_VALUE) is not None:
            await self._call("set_value", {ATTR_VALUE: saved[ATTR_VALUE]})


class ThermostatActuator(SettingActuator):
    """A thermostat (``climate`` entity) heating or cooling: its setpoint is offset."""

    domain = CLIMATE_DOMAIN

    def _setpoint(self) -> float | None:
        state = self._state()
        return None if state is None else _number(state.attributes.get(ATTR_TEMPERATURE))

    @property
    def is_on(self) -> bool | None:
        """Return True when it heats or cools to a single setpoint."""
        state = self._state()
        if state is None:
            return None
        return state.state in (HVACMode.HEAT, HVACMode.COOL) and self._setpoint() is not None

    def snapshot(self) -> Setting:
        """Return the setpoint and mode now."""
        state = self._state()
        return {
            ATTR_TEMPERATURE: self._setpoint(),
            ATTR_HVAC_MODE: state.state if state else None,
        }

    def _temp_step(self) -> float:
        state = self._state()
        step = _number(state.attributes.get("target_temp_step")) if state else None
        return step if step and step > 0 else DEFAULT_TEMP_STEP

    def _within_limits(self, setpoint: float) -> float:
        state = self._state()
        if state is not None:
            if (low := _number(state.attributes.get("min_temp"))) is not None:
                setpoint = max(setpoint, low)
            if (high := _number(state.attributes.get("max_temp"))) is not None:
                setpoint = min(setpoint, high)
        return round(setpoint, 2)

    def precondition(self, saved: Setting) -> Setting | None:
        """Return the opposite offset (half the maximum): pre-cool, or pre-heat."""
        setpoint = _number(saved.get(ATTR_TEMPERATURE))
        if self._load.precondition_minutes <= 0 or setpoint is None:
            return None
        step = self._temp_step()
        offset = max(step, round(self._load.max_offset / 2 / step) * step)
        cooling = saved.get(ATTR_HVAC_MODE) == HVACMode.COOL
        return {
            ATTR_TEMPERATURE: self._within_limits(
                setpoint - offset if cooling else setpoint + offset
            )
        }

    def ramp(self, saved: Setting, target: Setting, keep: float) -> Setting | None:
        """Return a setpoint ``keep`` of the way from the saved one to the held one."""
        start = _number(saved.get(ATTR_TEMPERATURE))
        held = _number(target.get(ATTR_TEMPERATURE))
        if start is None or held is None:
            return None
        step = self._temp_step()
        return {ATTR_TEMPERATURE: round(start + round((held - start) * keep / step) * step, 2)}

    def offset(self, level_kw: float | None, before_kw: float) -> float:
        """Return the offset (degrees, positive) an award at ``level_kw`` asks for.

        The deepest level (:data:`~.const.THERMOSTAT_LEVEL_SHARES`) is the owner's maximum
        offset; shallower levels a proportional part, rounded to the thermostat's step.
        """
        step = self._temp_step()
        share = _DEEPEST_SHARE
        if level_kw is not None and before_kw > 0:
            share = min(1.0, max(_DEEPEST_SHARE, level_kw / before_kw))
        wanted = self._load.max_offset * (1.0 - share) / (1.0 - _DEEPEST_SHARE)
        return min(self._load.max_offset, round(wanted / step) * step)

    def target(self, level_kw: float | None, before_kw: float, saved: Setting) -> Setting:
        """Return the offset setpoint: cooling raised, heating lowered, within its limits."""
        setpoint = _number(saved.get(ATTR_TEMPERATURE))
        if setpoint is None:
            return {}
        offset = self.offset(level_kw, before_kw)
        cooling = saved.get(ATTR_HVAC_MODE) == HVACMode.COOL
        return {
            ATTR_TEMPERATURE: self._within_limits(
                setpoint + offset if cooling else setpoint - offset
            )
        }

    def moved_kw(self, level_kw: float | None, before_kw: float) -> float:
        """Return the power moved to the level (None: the deepest share)."""
        level = before_kw * _DEEPEST_SHARE if level_kw is None else level_kw
        return max(0.0, before_kw - level)

    def holds(self, target: Setting) -> bool | None:
        """Return whether the setpoint is still the one Jeisson set."""
        setpoint = self._setpoint()
        wanted = _number(target.get(ATTR_TEMPERATURE))
        if setpoint is None or wanted is None:
            return None
        return abs(setpoint - wanted) <= DEFAULT_TEMP_STEP / 2 - _TOLERANCE

    async def async_apply(self, target: Setting) -> None:
        """Set the offset setpoint."""
        if target.get(ATTR_TEMPERATURE) is not None:
            await self._call("set_temperature", {ATTR_TEMPERATURE: target[ATTR_TEMPERATURE]})

    async def async_restore(self, saved: Setting) -> None:
        """Set the saved setpoint back."""
        if saved.get(ATTR_TEMPERATURE) is not None:
            await self._call("set_temperature", {ATTR_TEMPERATURE: saved[ATTR_TEMPERATURE]})


class WaterHeaterActuator(SettingActuator):
    """A water heater (``water_heater`` entity): eco operation mode (else away mode)."""

    domain = WATER_HEATER_DOMAIN

    def _has_eco(self, state: State) -> bool:
        return ECO_MODE in (state.attributes.get("operation_list") or [])

    @property
    def is_on(self) -> bool | None:
        """Return True when it heats in a mode other than eco (and not away)."""
        state = self._state()
        if state is None:
            return None
        return state.state not in (STATE_OFF, ECO_MODE) and (
            state.attributes.get(ATTR_AWAY_MODE) != STATE_ON
        )

    def snapshot(self) -> Setting:
        """Return the operation mode and away mode now."""
        state = self._state()
        if state is None:
            return {}
        return {
            ATTR_OPERATION_MODE: state.state,
            ATTR_AWAY_MODE: state.attributes.get(ATTR_AWAY_MODE) == STATE_ON,
        }

    def target(self, level_kw: float | None, before_kw: float, saved: Setting) -> Setting:
        """Return eco mode when it has one, else away mode."""
        state = self._state()
        if state is not None and self._has_eco(state):
            return {ATTR_OPERATION_MODE: ECO_MODE}
        return {ATTR_AWAY_MODE: True}

    def holds(self, target: Setting) -> bool | None:
        """Return whether it is still in the mode Jeisson set."""
        state = self._state()
        if state is None:
            return None
        if ATTR_OPERATION_MODE in target:
            return bool(state.state == target[ATTR_OPERATION_MODE])
        return state.attributes.get(ATTR_AWAY_MODE) == STATE_ON

    async def async_apply(self, target: Setting) -> None:
        """Set eco (or away) mode."""
        if ATTR_OPERATION_MODE in target:
            await self._call("set_operation_mode", target)
        else:
            await self._call("set_away_mode", {ATTR_AWAY_MODE: True})

    async def async_restore(self, saved: Setting) -> None:
        """Put the saved operation mode (and away mode) back."""
        state = self._state()
        away = state is not None and state.attributes.get(ATTR_AWAY_MODE) == STATE_ON
        if away and not saved.get(ATTR_AWAY_MODE):
            await self._call("set_away_mode", {ATTR_AWAY_MODE: False})
        mode = saved.get(ATTR_OPERATION_MODE)
        if mode and (state is None or state.state != mode):
            await self._call("set_operation_mode", {ATTR_OPERATION_MODE: mode})


class BatteryModeActuator(SettingActuator):
    """A home battery whose mode is a ``select`` entity: the owner's event mode while charged."""

    domain = SELECT_DOMAIN

    def _soc(self) -> float | None:
        if not self._load.soc_sensor:
            return None
        state = self._hass.states.get(self._load.soc_sensor)
        return None if state is None else _number(state.state)

    @property
    def exhausted(self) -> bool:
        """Return True at or below the owner's minimum state of charge (or charge unknown)."""
        soc = self._soc()
        return soc is None or soc <= self._load.min_soc

    @property
    def available(self) -> bool:
        """Return True when its mode can be set to the event mode."""
        state = self._state()
        return state is not None and self._load.event_option in (
            state.attributes.get("options") or []
        )

    @property
    def is_on(self) -> bool | None:
        """Return True when it runs in another mode than the event's."""
        state = self._state()
        return None if state is None else state.state != self._load.event_option

    def snapshot(self) -> Setting:
        """Return the mode now."""
        state = self._state()
        return {ATTR_OPTION: state.state if state else None}

    def target(self, level_kw: float | None, before_kw: float, saved: Setting) -> Setting:
        """Return the owner's event mode."""
        return {ATTR_OPTION: self._load.event_option}

    def holds(self, target: Setting) -> bool | None:
        """Return whether it is still in the event mode."""
        state = self._state()
        return None if state is None else bool(state.state == target.get(ATTR_OPTION))

    async def async_apply(self, target: Setting) -> None:
        """Select the event mode."""
        await self._call("select_option", {ATTR_OPTION: target[ATTR_OPTION]})

    async def async_restore(self, saved: Setting) -> None:
        """Select the saved mode again."""
        if saved.get(ATTR_OPTION):
            await self._call("select_option", {ATTR_OPTION: saved[ATTR_OPTION]})


EXECUTORS: Final[dict[str, type[SettingActuator]]] = {
    NUMBER_DOMAIN: ChargerCurrentActuator,
    CLIMATE_DOMAIN: ThermostatActuator,
    WATER_HEATER_DOMAIN: WaterHeaterActuator,
    SELECT_DOMAIN: BatteryModeActuator,
}
"""The executor of each setting domain."""


def executor_for(hass: HomeAssistant, load: LoadConfig) -> Actuator:
    """Return what drives ``load``: the executor of its setting domain, else its switch."""
    if (executor := EXECUTORS.get(load.domain)) is not None:
        return executor(hass, load)
    return actuator_for(hass, load)


# --- The runner's view: switched and setting loads alike ---------------------------------------


def can_act(actuator: Actuator) -> bool:
    """Return True when the load can be moved now (reachable, and a battery not exhausted)."""
    if isinstance(actuator, SettingActuator) and actuator.exhausted:
        return False
    return actuator.available


def holds(actuator: Actuator, target: Setting) -> bool | None:
    """Return whether the load is where Jeisson put it (a switched load: off)."""
    if isinstance(actuator, SettingActuator):
        return actuator.holds(target)
    is_on = actuator.is_on
    return None if is_on is None else not is_on


async def async_apply(actuator: Actuator, target: Setting) -> None:
    """Move the load: a setting to ``target``, a switched load off."""
    if isinstance(actuator, SettingActuator):
        await actuator.async_apply(target)
    else:
        await actuator.async_turn_off()


async def async_restore(actuator: Actuator, saved: Setting) -> None:
    """Give the load back: a setting to ``saved``, a switched load on."""
    if isinstance(actuator, SettingActuator):
        await actuator.async_restore(saved)
    else:
        await actuator.async_turn_on()
