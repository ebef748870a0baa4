"""Sensors of the home's demand-response state (status, kW, earnings) and WiFi actuator power.

Two earnings sensors on purpose: *estimated earnings* is the home's own live count (held kW x
time x price) while events run; *settled earnings* is what the aggregator's final statements
pay (after the late-telemetry window, corrections included), the figure the homeowner is paid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, UnitOfPower
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import DRStatus, JeissonConfigEntry, JeissonState
from .entity import JeissonEntity
from .wifi_devices import POWER_KEY, PairedDevice, WifiHub
from .wifi_entity import WifiDeviceEntity, async_setup_wifi_platform

PARALLEL_UPDATES = 0
DEFAULT_CURRENCY = "EUR"
PERCENT = 100.0
WIFI_POWER = SensorEntityDescription(
    key=POWER_KEY,
    translation_key="wifi_power",
    device_class=SensorDeviceClass.POWER,
    state_class=SensorStateClass.MEASUREMENT,
    native_unit_of_measurement=UnitOfPower.WATT,
    suggested_display_precision=0,
)


@dataclass(frozen=True, kw_only=True)
class JeissonSensorDescription(SensorEntityDescription):
    """Describes a Jeisson sensor."""

    value_fn: Callable[[JeissonState], str | float | datetime | None]
    needs_aggregator: bool = False
    """True when the value comes from the aggregator and goes stale without it."""
    currency_fn: Callable[[JeissonState], str | None] | None = None
    """For monetary sensors: the currency of the value."""
    attributes_fn: Callable[[JeissonState], dict[str, Any] | None] | None = None


def _settled_attributes(state: JeissonState) -> dict[str, Any] | None:
    """Return the last statement's figures (None before any)."""
    last = state.last_settled
    if last is None:
        return None
    return {
        "last_event_id": last.event_id,
        "last_statement_version": last.version,
        "last_payment": last.payment,
        "last_paid_kwh": last.paid_kwh,
        "last_data_quality": last.data_quality,
    }


def _reliability(state: JeissonState) -> float | None:
    last = state.last_settled
    if last is None or last.reliability is None:
        return None
    return round(last.reliability * PERCENT, 1)


SENSORS: tuple[JeissonSensorDescription, ...] = (
    JeissonSensorDescription(
        key="status",
        translation_key="status",
        device_class=SensorDeviceClass.ENUM,
        options=[status.value for status in DRStatus],
        value_fn=lambda state: state.status.value,
    ),
    JeissonSensorDescription(
        key="committed_power",
        translation_key="committed_power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        suggested_display_precision=2,
        value_fn=lambda state: state.committed_kw,
    ),
    JeissonSensorDescription(
        key="delivered_power",
        translation_key="delivered_power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        suggested_display_precision=2,
        value_fn=lambda state: state.delivered_kw,
    ),
    JeissonSensorDescription(
        key="earnings",
        translation_key="earnings",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=lambda state: state.earnings,
        currency_fn=lambda state: state.currency,
    ),
    JeissonSensorDescription(
        key="settled_earnings",
        translation_key="settled_earnings",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=lambda state: state.settled_earnings,
        currency_fn=lambda state: state.settled_currency or state.currency,
        attributes_fn=_settled_attributes,
    ),
    JeissonSensorDescription(
        key="reliability",
        translation_key="reliability",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=PERCENTAGE,
        suggested_display_precision=0,
        value_fn=_reliability,
    ),
    JeissonSensorDescription(
        key="next_event_start",
        translation_key="next_event_start",
        device_class=SensorDeviceClass.TIMESTAMP,
        needs_aggregator=True,
        value_fn=lambda state: state.next_event_start,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: JeissonConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the home's sensors."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(JeissonSensor(coordinator, description) for description in SENSORS)
    await async_setup_wifi_platform(hass, entry, async_add_entities, WifiPowerSensor)


class JeissonSensor(JeissonEntity, SensorEntity):
    """A sensor fed by the coordinator's state snapshot."""

    entity_description: JeissonSensorDescription

    @property
    def available(self) -> bool:
        """Return False when aggregator-fed data is stale."""
        if self.entity_description.needs_aggregator and self.coordinator.data.stale:
            return False
        return super().available

    @property
    def native_value(self) -> str | float | datetime | None:
        """Return the sensor's value."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def native_unit_of_measurement(self) -> str | None:
        """Return the unit; earnings are in the aggregator's currency."""
        if (currency_fn := self.entity_description.currency_fn) is not None:
            return currency_fn(self.coordinator.data) or DEFAULT_CURRENCY
        return super().native_unit_of_measurement

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Return the last statement's figures on the settled earnings sensor."""
        if (attributes_fn := self.entity_description.attributes_fn) is None:
            return None
        return attributes_fn(self.coordinator.data)


class WifiPowerSensor(WifiDeviceEntity, SensorEntity):
    """The power a WiFi actuator reports (measured, or its rated power while on)."""

    def __init__(self, hub: WifiHub, device: PairedDevice) -> None:
        """Describe the power sensor of ``device``."""
        super().__init__(hub, device, WIFI_POWER)

    @property
    def native_value(self) -> float | None:
        """Return the reported power in W."""
        state = self.device_state
        return None if state is None else state.power_w
