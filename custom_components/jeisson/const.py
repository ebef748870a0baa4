"""Constants of the Jeisson demand-response integration: keys, timings, event names."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

DOMAIN: Final = "jeisson"
LOGGER: Final = logging.getLogger(__package__)

SOFTWARE_VERSION: Final = "0.2.0"
"""Reported to the aggregator in the home hello (matches manifest.json ``version``)."""

# --- Config entry data --------------------------------------------------------------------------
CONF_CODE: Final = "code"
CONF_HOME_ID: Final = "home_id"
CONF_AGGREGATOR_ID: Final = "aggregator_id"
CONF_HOME_NAME: Final = "home_name"
"""The name the operator gave the home, as last received (the entry is titled after it)."""

# --- Options (loads and terms) ------------------------------------------------------------------
CONF_LOADS: Final = "loads"
CONF_PARTICIPATING: Final = "participating"
CONF_NOTIFY: Final = "notify"
"""Built-in notifications: NOTIFY_OFF (default), NOTIFY_PERSISTENT, ``service:notify.<name>``
(a notify action, e.g. the Companion app's) or ``entity:notify.<object id>`` (a notify entity)."""
NOTIFY_OFF: Final = "off"
NOTIFY_PERSISTENT: Final = "persistent_notification"
CONF_WIFI_REMOTE_DEVICES: Final = "wifi_remote_devices"
"""Accept WiFi actuators from outside the local network (off by default)."""
CONF_LOAD_ID: Final = "load_id"
CONF_KIND: Final = "kind"
CONF_RATED_KW: Final = "rated_kw"
CONF_ACTUATOR: Final = "actuator"
CONF_POWER_SENSOR: Final = "power_sensor"
CONF_MIN_PRICE: Final = "min_price"
CONF_MAX_OFF_MINUTES: Final = "max_off_minutes"
CONF_OFF_LIMITS_START: Final = "off_limits_start"
CONF_OFF_LIMITS_END: Final = "off_limits_end"
CONF_NEVER_CURTAIL: Final = "never_curtail"
CONF_FLOOR_CURRENT: Final = "floor_current"
"""EV charger (number entity): the lowest charging current (A) the owner allows."""
CONF_VOLTAGE: Final = "voltage"
CONF_PHASES: Final = "phases"
CONF_CHARGED_BY: Final = "charged_by"
"""EV charger: the daily time the car must be charged by (a window containing it is refused)."""
CONF_MAX_OFFSET: Final = "max_offset"
"""Thermostat (climate entity): the largest setpoint offset (degrees) the owner allows."""
CONF_EVENT_OPTION: Final = "event_option"
"""Battery (select entity): the option (mode) it runs in during an event, e.g. discharge."""
CONF_SOC_SENSOR: Final = "soc_sensor"
CONF_MIN_SOC: Final = "min_soc"
"""Battery: the state of charge (%) at or below which it is not used (and is given back)."""
CONF_PRECONDITION_MINUTES: Final = "precondition_minutes"
"""Thermostat: minutes before an event to pre-cool (pre-heat) by half the maximum offset."""

DEFAULT_MIN_PRICE: Final = 0.0
DEFAULT_MAX_OFF_MINUTES: Final = 120
MAX_OFF_MINUTES_LIMIT: Final = 24 * 60
MAX_RATED_KW: Final = 1000.0
MAX_PRICE_PER_KWH: Final = 1000.0
DEFAULT_FLOOR_CURRENT: Final = 6.0
"""The lowest current most chargers allow (IEC 61851)."""
DEFAULT_VOLTAGE: Final = 230.0
DEFAULT_PHASES: Final = 1
MAX_CURRENT: Final = 80.0
DEFAULT_MAX_OFFSET: Final = 2.0
MAX_OFFSET_LIMIT: Final = 5.0
MAX_PRECONDITION_MINUTES: Final = 120
DEFAULT_MIN_SOC: Final = 20.0
RAMP_STEPS: Final = 3
"""A thermostat returns to its setpoint in this many steps after an event (the last a restore)."""
THERMOSTAT_LEVEL_SHARES: Final = (0.7, 0.4)
"""A thermostat's bid levels as shares of its expected power: half its maximum offset is
expected to leave 70 % of it running, the full offset 40 % (a linear estimate)."""

# --- Timings -----------------------------------------------------------------------------------
CONNECT_TIMEOUT: Final = 15.0
"""Seconds allowed for the first connection at setup and in the config flow."""
SAMPLE_INTERVAL: Final = timedelta(seconds=10)
"""How often telemetry is sampled while an event is active."""
SAMPLES_PER_BATCH: Final = 3
"""Telemetry samples are sent in batches of this many (and at the end of an event)."""
STALE_AFTER: Final = timedelta(minutes=5)
"""Aggregator-fed data (next event, calendar) goes unavailable after this long disconnected."""
OFFER_GRACE: Final = timedelta(seconds=60)
"""An offer with no award this long after its bid deadline no longer shows as "offered"."""
HISTORY_LIMIT: Final = 50
"""How many finished events are kept for the calendar and earnings."""

# --- Storage -----------------------------------------------------------------------------------
STORAGE_VERSION: Final = 1
STORAGE_KEY_PREFIX: Final = f"{DOMAIN}.events"

# --- Repair issues -----------------------------------------------------------------------------
ISSUE_UNSUPPORTED_PROTOCOL: Final = "unsupported_protocol"

# --- Bus events (one per lifecycle step; payloads documented in docs/home-assistant.md) -------
EVENT_OFFERED: Final = f"{DOMAIN}_offered"
EVENT_BID: Final = f"{DOMAIN}_bid"
EVENT_AWARDED: Final = f"{DOMAIN}_awarded"
EVENT_STARTED: Final = f"{DOMAIN}_started"
EVENT_ENDED: Final = f"{DOMAIN}_ended"
EVENT_CANCELLED: Final = f"{DOMAIN}_cancelled"
EVENT_OPTED_OUT: Final = f"{DOMAIN}_opted_out"
EVENT_SETTLED: Final = f"{DOMAIN}_settled"
"""The aggregator sent the event's final statement (or a correction of it)."""
TRIGGER_TYPES: Final = {
    "offered": EVENT_OFFERED,
    "bid": EVENT_BID,
    "awarded": EVENT_AWARDED,
    "started": EVENT_STARTED,
    "ended": EVENT_ENDED,
    "cancelled": EVENT_CANCELLED,
    "opted_out": EVENT_OPTED_OUT,
    "settled": EVENT_SETTLED,
}
"""Device trigger type → bus event type."""

ATTR_DEVICE_ID: Final = "device_id"
ATTR_ENTRY_ID: Final = "config_entry_id"
ATTR_EVENT_ID: Final = "event_id"
ATTR_LOAD_ID: Final = "load_id"
ATTR_HELD_BY_JEISSON: Final = "held_by_jeisson"
ATTR_HELD_UNTIL: Final = "held_until"

# --- Services ----------------------------------------------------------------------------------
SERVICE_OPT_OUT: Final = "opt_out"
SERVICE_SET_LOAD_TERMS: Final = "set_load_terms"
