"""Helpers the Jeisson tests share: entities, bus recorders, saved schedules, awards, options.

Fixtures live in conftest.py; this module holds the plain functions and constants test modules
import (test modules never import each other).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

# The hass fixture puts its own testing_config first on sys.path: import this checkout's
# custom_components package now (at import time), so HA loads our integration.
import custom_components.jeisson  # noqa: F401
from custom_components.jeisson.const import (
    CONF_AGGREGATOR_ID,
    CONF_HOME_ID,
    CONF_LOADS,
    DOMAIN,
    EVENT_AWARDED,
    EVENT_BID,
    EVENT_CANCELLED,
    EVENT_ENDED,
    EVENT_OFFERED,
    EVENT_OPTED_OUT,
    EVENT_STARTED,
    STORAGE_KEY_PREFIX,
    STORAGE_VERSION,
)
from jeisson.common.protocol import Award, EventKind

# --- The Home Assistant releases the suite runs on ---------------------------------------------

TESTED_HA_RELEASES: dict[str, str] = {"2026.10": "2026.10.4", "2026.11": "2026.11.0"}
"""JEISSON_HA (scripts/lib/py314.sh, one venv each) -> the Home Assistant release it installs."""


# --- The test switches and loads ---------------------------------------------------------------

SWITCHES = ("water_heater", "pool_pump", "ev_charger")
"""The input_booleans behind the template switches of the ``switches`` fixture."""
HEATER = "switch.water_heater"
PUMP = "switch.pool_pump"
CAR = "switch.ev_charger"
HEATER_LOAD_SWITCH = "switch.jeisson_home_water_heater"
"""The integration's switch entity of the heater load."""


def load_options(
    actuator: str,
    *,
    name: str,
    kind: str = "water_heater",
    rated_kw: float = 2.0,
    min_price: float = 0.1,
    max_off_minutes: int = 60,
    off_limits: tuple[str, str] | None = None,
    never_curtail: bool = False,
    power_sensor: str | None = None,
) -> dict[str, Any]:
    """Return the stored options form of one load."""
    return {
        "name": name,
        "kind": kind,
        "rated_kw": rated_kw,
        "actuator": actuator,
        "power_sensor": power_sensor,
        "min_price": min_price,
        "max_off_minutes": max_off_minutes,
        "off_limits_start": off_limits[0] if off_limits else None,
        "off_limits_end": off_limits[1] if off_limits else None,
        "never_curtail": never_curtail,
    }


def state(hass: HomeAssistant, entity_id: str) -> str:
    """Return an entity's state."""
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return current.state


async def turn(hass: HomeAssistant, name: str, on: bool) -> None:
    """Switch one of the test input_booleans."""
    await hass.services.async_call(
        "input_boolean",
        "turn_on" if on else "turn_off",
        {"entity_id": f"input_boolean.{name}"},
        blocking=True,
    )
    await hass.async_block_till_done()


def is_state(hass: HomeAssistant, entity_id: str, expected: str) -> bool:
    """Return True when the entity has the expected state."""
    state = hass.states.get(entity_id)
    return state is not None and state.state == expected


# --- Recording bus events ----------------------------------------------------------------------

LIFECYCLE = (
    EVENT_OFFERED,
    EVENT_BID,
    EVENT_AWARDED,
    EVENT_STARTED,
    EVENT_ENDED,
    EVENT_CANCELLED,
    EVENT_OPTED_OUT,
)


def record_events(hass: HomeAssistant) -> list[Event]:
    """Collect every Jeisson lifecycle bus event."""
    seen: list[Event] = []

    @callback
    def _record(event: Event) -> None:
        seen.append(event)

    for event_type in LIFECYCLE:
        hass.bus.async_listen(event_type, _record)
    return seen


def of_type(events: list[Event], event_type: str) -> list[dict[str, Any]]:
    """Return the payloads of one kind of event."""
    return [dict(event.data) for event in events if event.event_type == event_type]


def record(hass: HomeAssistant, event_type: str) -> list[dict[str, Any]]:
    """Collect the payloads of one bus event type."""
    seen: list[dict[str, Any]] = []

    @callback
    def _record(event: Event) -> None:
        seen.append(dict(event.data))

    hass.bus.async_listen(event_type, _record)
    return seen


# --- An entry whose aggregator is unreachable, with a saved schedule ---------------------------

ENTRY_ID = "01JEISSONRESUMEENTRY0000000"


def saved_event(
    award_id: str,
    start: datetime,
    end: datetime,
    *,
    status: str,
    loads: list[str],
    **fields: Any,
) -> dict[str, Any]:
    """Return an award as the Store holds it."""
    return {
        "event_id": f"evt-{award_id}",
        "award_id": award_id,
        "kind": "market",
        "price": 0.3,
        "currency": "EUR",
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "restore_stagger_s": 0.5,
        "loads": loads,
        "committed_kw": 2.0 * len(loads),
        "status": status,
        "outcome": fields.pop("outcome", None),
        "switched_off": fields.pop("switched_off", {}),
        "confirmed_off": fields.pop("confirmed_off", []),
        "off_since": fields.pop("off_since", {}),
        "restore_at": fields.pop("restore_at", {}),
        "released": [],
        "opted_out": [],
        "delivered_kwh": 0.0,
        "earnings": 0.0,
    }


def save_schedule(hass_storage: dict[str, Any], entry_id: str, events: list[dict]) -> None:
    """Put a schedule in the Store, as a previous run of Home Assistant left it."""
    key = f"{STORAGE_KEY_PREFIX}.{entry_id}"
    hass_storage[key] = {
        "version": STORAGE_VERSION,
        "minor_version": 1,
        "key": key,
        "data": {"events": events, "earnings_total": 0.0, "currency": "EUR"},
    }


def offline_entry(switches: list[str], url: str, token: str = "t") -> MockConfigEntry:  # noqa: S107
    """An entry whose aggregator cannot be reached (or rejects the token)."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Jeisson home",
        unique_id="agg-home",
        entry_id=ENTRY_ID,
        data={CONF_URL: url, CONF_TOKEN: token, CONF_HOME_ID: "home", CONF_AGGREGATOR_ID: "agg"},
        options={
            CONF_LOADS: {
                "heater": load_options(switches[0], name="Water heater"),
                "pump": load_options(switches[1], name="Pool pump"),
                "car": load_options(switches[2], name="Car"),
            }
        },
    )


# --- Awards handed to the event runner directly --------------------------------------------------

ACTUATOR = "custom_components.jeisson.actuators.SwitchEntityActuator"


def award(
    award_id: str,
    *,
    starts_in: float,
    lasts: float,
    loads: list[str],
    kind: EventKind = EventKind.MARKET,
    stagger: float = 0.2,
) -> Award:
    """Return an award message as the aggregator would send it."""
    start = dt_util.utcnow() + timedelta(seconds=starts_in)
    return Award(
        event_id=f"evt-{award_id}",
        award_id=award_id,
        round=1,
        kind=kind,
        loads=loads,
        kw=2.0,
        price=0.3,
        window_start=start,
        window_end=start + timedelta(seconds=lasts),
        restore_stagger_s=stagger,
    )


async def take(hass: HomeAssistant, entry: MockConfigEntry, message: Award) -> Any:
    """Hand an award to the runner like the coordinator does."""
    coordinator = entry.runtime_data.coordinator
    decision = await entry.runtime_data.runner.async_take_award(
        message, is_available=coordinator.is_available
    )
    await hass.async_block_till_done()
    return decision
