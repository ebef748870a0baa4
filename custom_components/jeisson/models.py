"""The homeowner's loads and terms, as stored in the config entry options (no HA imports)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from jeisson.common.protocol import Inventory, Load, LoadKind
from jeisson.policy.bidding import FlexLoad
from jeisson.policy.terms import Terms

from .const import (
    CONF_ACTUATOR,
    CONF_KIND,
    CONF_LOADS,
    CONF_MAX_OFF_MINUTES,
    CONF_MIN_PRICE,
    CONF_NEVER_CURTAIL,
    CONF_OFF_LIMITS_END,
    CONF_OFF_LIMITS_START,
    CONF_PARTICIPATING,
    CONF_POWER_SENSOR,
    CONF_RATED_KW,
    DEFAULT_MAX_OFF_MINUTES,
    DEFAULT_MIN_PRICE,
)

LOAD_ID_HEX_CHARS = 12
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
            ),
        )

    def flex_load(self) -> FlexLoad:
        """Return the load as the home policy sees it (a switched load: on or off)."""
        return FlexLoad(load_id=self.load_id, rated_kw=self.rated_kw, terms=self.terms)

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
