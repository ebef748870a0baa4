"""The homeowner's loads and terms, as stored in the config entry options (no HA imports)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from jeisson.common.protocol import Inventory, Load, LoadKind
from jeisson.policy.bidding import Flexibility, FlexLoad
from jeisson.policy.terms import Terms

from .const import (
    CONF_ACTUATOR,
    CONF_CHARGED_BY,
    CONF_EVENT_OPTION,
    CONF_FLOOR_CURRENT,
    CONF_KIND,
    CONF_LOADS,
    CONF_MAX_OFF_MINUTES,
    CONF_MAX_OFFSET,
    CONF_MIN_PRICE,
    CONF_MIN_SOC,
    CONF_NEVER_CURTAIL,
    CONF_OFF_LIMITS_END,
    CONF_OFF_LIMITS_START,
    CONF_PARTICIPATING,
    CONF_PHASES,
    CONF_POWER_SENSOR,
    CONF_PRECONDITION_MINUTES,
    CONF_RATED_KW,
    CONF_SOC_SENSOR,
    CONF_VOLTAGE,
    DEFAULT_FLOOR_CURRENT,
    DEFAULT_MAX_OFF_MINUTES,
    DEFAULT_MAX_OFFSET,
    DEFAULT_MIN_PRICE,
    DEFAULT_MIN_SOC,
    DEFAULT_PHASES,
    DEFAULT_VOLTAGE,
    THERMOSTAT_LEVEL_SHARES,
)

LOAD_ID_HEX_CHARS = 12
WATTS_PER_KW = 1000.0
NUMBER_DOMAIN = "number"
CLIMATE_DOMAIN = "climate"
WATER_HEATER_DOMAIN = "water_heater"
SELECT_DOMAIN = "select"
SETTING_DOMAINS = (NUMBER_DOMAIN, CLIMATE_DOMAIN, WATER_HEATER_DOMAIN, SELECT_DOMAIN)
"""Actuator entity domains whose setting Jeisson changes (rather than switching power)."""
CONF_ZHA_IEEE = "zha_ieee"
"""Load option: the IEEE address of the ZHA device that powers the load (beside its device id)."""


def new_load_id() -> str:
    """Return a fresh, stable load id (it never changes when the load is renamed)."""
    return uuid.uuid4().hex[:LOAD_ID_HEX_CHARS]


def parse_time(value: str | None) -> time | None:
    """Parse ``HH:MM[:SS]`` (what HA's time selector stores); None/empty gives None."""
    if not value:
        return None
    return time.fromisoformat(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadConfig:
    """One curtailable appliance: what it is, how it is switched, and its terms."""

    load_id: str
    name: str
    kind: LoadKind
    rated_kw: float
    actuator: str
    """The entity id of the HA switch that powers the load (or ``zha:<device id>``)."""
    power_sensor: str | None = None
    zha_ieee: str | None = None
    """For a ZHA load: the device's IEEE address, to find it again if it was re-paired."""
    terms: Terms = field(default_factory=Terms)
    floor_current: float = DEFAULT_FLOOR_CURRENT
    """EV charger: the lowest current limit (A) Jeisson may set."""
    voltage: float = DEFAULT_VOLTAGE
    phases: int = DEFAULT_PHASES
    max_offset: float = DEFAULT_MAX_OFFSET
    """Thermostat: the largest setpoint offset (degrees) Jeisson may apply."""
    precondition_minutes: int = 0
    """Thermostat: pre-cool (pre-heat) this long before an event (0: not at all)."""
    event_option: str | None = None
    """Battery: the mode (its select's option) it runs in during an event."""
    soc_sensor: str | None = None
    min_soc: float = DEFAULT_MIN_SOC
    """Battery: at or below this state of charge (%) it is not used."""

    @property
    def domain(self) -> str:
        """Return the actuator's entity domain (``zha``/``jeisson_wifi`` for those refs)."""
        return self.actuator.split(":", 1)[0].split(".", 1)[0]

    @property
    def kw_per_amp(self) -> float:
        """Return the kW one ampere of charging current draws (voltage x phases)."""
        return self.voltage * self.phases / WATTS_PER_KW

    @classmethod
    def from_options(cls, load_id: str, raw: Mapping[str, Any]) -> LoadConfig:
        """Build a load from its stored options dict."""
        return cls(
            load_id=load_id,
            name=str(raw["name"]),
            kind=LoadKind(raw[CONF_KIND]),
            rated_kw=float(raw[CONF_RATED_KW]),
            actuator=str(raw[CONF_ACTUATOR]),
            power_sensor=raw.get(CONF_POWER_SENSOR) or None,
            zha_ieee=raw.get(CONF_ZHA_IEEE) or None,
            terms=Terms(
                min_price=float(raw.get(CONF_MIN_PRICE, DEFAULT_MIN_PRICE)),
                max_off_minutes=int(raw.get(CONF_MAX_OFF_MINUTES, DEFAULT_MAX_OFF_MINUTES)),
                off_limits_start=parse_time(raw.get(CONF_OFF_LIMITS_START)),
                off_limits_end=parse_time(raw.get(CONF_OFF_LIMITS_END)),
                never_curtail=bool(raw.get(CONF_NEVER_CURTAIL, False)),
                ready_by=parse_time(raw.get(CONF_CHARGED_BY)),
            ),
            floor_current=float(raw.get(CONF_FLOOR_CURRENT) or DEFAULT_FLOOR_CURRENT),
            voltage=float(raw.get(CONF_VOLTAGE) or DEFAULT_VOLTAGE),
            phases=int(raw.get(CONF_PHASES) or DEFAULT_PHASES),
            max_offset=float(raw.get(CONF_MAX_OFFSET) or DEFAULT_MAX_OFFSET),
            precondition_minutes=int(raw.get(CONF_PRECONDITION_MINUTES) or 0),
            event_option=raw.get(CONF_EVENT_OPTION) or None,
            soc_sensor=raw.get(CONF_SOC_SENSOR) or None,
            min_soc=float(raw.get(CONF_MIN_SOC) or DEFAULT_MIN_SOC),
        )

    def flexibility(self) -> Flexibility:
        """Return how the load can be moved: by its actuator's domain.

        An EV charger's current limit (``number``) bids down to half-way and to the owner's
        floor, never off; a thermostat (``climate``) bids half and all of its maximum offset;
        anything switched (and a water heater's eco mode) bids one whole step.
        """
        if self.domain == NUMBER_DOMAIN:
            floor_kw = min(self.rated_kw, self.floor_current * self.kw_per_amp)
            middle_kw = (self.rated_kw + floor_kw) / 2
            return Flexibility(levels_kw=(middle_kw, floor_kw), can_switch_off=False)
        if self.domain == CLIMATE_DOMAIN:
            return Flexibility(level_shares=THERMOSTAT_LEVEL_SHARES, can_switch_off=False)
        return Flexibility()

    def flex_load(self) -> FlexLoad:
        """Return the load as the home policy sees it."""
        return FlexLoad(
            load_id=self.load_id,
            rated_kw=self.rated_kw,
            terms=self.terms,
            flex=self.flexibility(),
        )

    def to_protocol(self) -> Load:
        """Return the load as declared in the inventory sent to the aggregator."""
        return Load(
            load_id=self.load_id,
            name=self.name,
            kind=self.kind,
            rated_kw=self.rated_kw,
            curtailable=not self.terms.never_curtail,
        )


def loads_from_options(options: Mapping[str, Any]) -> dict[str, LoadConfig]:
    """Return every configured load by id."""
    raw_loads: Mapping[str, Mapping[str, Any]] = options.get(CONF_LOADS, {})
    return {load_id: LoadConfig.from_options(load_id, raw) for load_id, raw in raw_loads.items()}


def participating_from_options(options: Mapping[str, Any]) -> bool:
    """Return whether the home takes part in demand response (default on)."""
    return bool(options.get(CONF_PARTICIPATING, True))


def inventory_from_options(options: Mapping[str, Any]) -> Inventory:
    """Return the inventory message describing the configured loads."""
    return Inventory(
        loads=[load.to_protocol() for load in loads_from_options(options).values()],
        participating=participating_from_options(options),
    )
