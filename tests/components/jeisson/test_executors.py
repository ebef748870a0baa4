"""Setting loads on real HA entities: an EV charger's current limit, a thermostat, a water heater.

The charger is a template ``number`` backed by an ``input_number`` (what a charger integration's
current-limit entity looks like to Jeisson); the thermostat and the water heater are HA's own
demo ``climate`` and ``water_heater`` entities. Most awards are handed to the event runner as
the coordinator does (the aggregator unreachable); the last test runs the charger end to end
against a real aggregator process (bid with partial steps, award of a level, restore).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.const import Platform
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.bidding import build_steps
from custom_components.jeisson.const import EVENT_BID, EVENT_OPTED_OUT
from custom_components.jeisson.executors import WaterHeaterActuator
from custom_components.jeisson.models import LoadConfig
from custom_components.jeisson.schedule import Outcome
from jeisson.common.protocol import Award, EventKind
from tests.helpers import wait_for

from .aggregator_process import AggregatorProcess
from .common import (
    ENTRY_ID,
    load_options,
    of_type,
    offline_entry,
    record,
    record_events,
    save_schedule,
    saved_event,
)

CHARGER = "number.charger_current"
THERMOSTAT = "climate.hvac"
"""HA's demo thermostat: cooling to 21 °C."""
HEAT_PUMP = "climate.heatpump"
"""HA's demo heat pump: heating to 20 °C (68 °F)."""
BOILER = "water_heater.demo_water_heater_celsius"
"""HA's demo water heater (modes include eco and electric; set to electric, not away, here)."""


@pytest.fixture
async def charger(hass: HomeAssistant) -> None:
    """Create the charger's current limit (32 A, a template number over an input_number)."""
    assert await async_setup_component(
        hass,
        "input_number",
        {"input_number": {"charger": {"min": 0, "max": 32, "step": 1, "initial": 32}}},
    )
    assert await async_setup_component(
        hass,
        "template",
        {
            "template": [
                {
                    "number": [
                        {
                            "name": "Charger current",
                            "unique_id": "charger_current",
                            "state": "{{ states('input_number.charger') }}",
                            "min": 0,
                            "max": 32,
                            "step": 1,
                            "set_value": {
                                "action": "input_number.set_value",
                                "target": {"entity_id": "input_number.charger"},
                                "data": {"value": "{{ value }}"},
                            },
                        }
                    ]
                }
            ]
        },
    )


@pytest.fixture
async def devices(hass: HomeAssistant, charger: None) -> None:
    """The charger, and HA's demo thermostats and water heater."""
    assert await async_setup_component(hass, "homeassistant", {})  # the demo's dependencies
    with patch(
        "homeassistant.components.demo.COMPONENTS_WITH_CONFIG_ENTRY_DEMO_PLATFORM",
        [Platform.CLIMATE, Platform.WATER_HEATER],
    ):
        assert await async_setup_component(hass, "demo", {})
        await hass.async_block_till_done()
    await hass.services.async_call(
        "water_heater",
        "set_operation_mode",
        {"entity_id": BOILER, "operation_mode": "electric"},
        blocking=True,
    )
    await hass.services.async_call(
        "water_heater", "set_away_mode", {"entity_id": BOILER, "away_mode": False}, blocking=True
    )


def _options(hvac_terms: dict[str, Any] | None = None, **extra: Any) -> dict[str, dict[str, Any]]:
    car = load_options(CHARGER, name="Car", kind="ev_charger", rated_kw=7.36)
    car |= {"floor_current": 6.0, "voltage": 230.0, "phases": 1, **extra}
    hvac = load_options(THERMOSTAT, name="Air conditioning", kind="thermostat", rated_kw=2.0)
    hvac |= {"max_offset": 2.0, **(hvac_terms or {})}
    boiler = load_options(BOILER, name="Boiler", kind="water_heater", rated_kw=3.0)
    heat = load_options(HEAT_PUMP, name="Heat pump", kind="thermostat", rated_kw=3.0)
    return {"car": car, "hvac": hvac, "boiler": boiler, "heat": heat}


@pytest.fixture
def hvac_terms() -> dict[str, Any]:
    """Extra options of the thermostat load (a test parametrizes it)."""
    return {}


@pytest.fixture
async def home(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    devices: None,
    socket_enabled: None,
    hvac_terms: dict[str, Any],
) -> MockConfigEntry:
    """A home (aggregator unreachable) whose loads are the three setting entities."""
    now = dt_util.utcnow()
    save_schedule(
        hass_storage,
        ENTRY_ID,
        [
            saved_event(
                "later",
                now + timedelta(days=1),
                now + timedelta(days=1, hours=1),
                status="awarded",
                loads=["car"],
            )
        ],
    )
    switched = offline_entry(["switch.a", "switch.b", "switch.c"], "http://127.0.0.1:9")
    entry = MockConfigEntry(
        domain=switched.domain,
        title=switched.title,
        unique_id=switched.unique_id,
        entry_id=switched.entry_id,
        data=dict(switched.data),
        options={"loads": _options(hvac_terms)},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def _award(
    award_id: str, loads: list[str], levels: dict[str, float] | None = None, lasts: float = 1.0
) -> Award:
    start = dt_util.utcnow() + timedelta(seconds=0.3)
    return Award(
        event_id=f"evt-{award_id}",
        award_id=award_id,
        round=1,
        loads=loads,
        kw=3.0,
        price=0.3,
        window_start=start,
        window_end=start + timedelta(seconds=lasts),
        restore_stagger_s=0.1,
        levels=levels,
    )


async def _take(hass: HomeAssistant, entry: MockConfigEntry, message: Award) -> Any:
    coordinator = entry.runtime_data.coordinator
    decision = await entry.runtime_data.runner.async_take_award(
        message, is_available=coordinator.is_available
    )
    await hass.async_block_till_done()
    return decision


def _value(hass: HomeAssistant, entity_id: str, attribute: str | None = None) -> Any:
    state = hass.states.get(entity_id)
    assert state is not None
    return state.state if attribute is None else state.attributes.get(attribute)


async def test_charger_throttled_to_its_level_and_restored(
    hass: HomeAssistant, home: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    """A partial step at 2.5 kW sets 10 A (230 V x 1 phase, rounded down), the 32 A saved in
    the Store before acting is put back at the end; no switch entity is made for the load."""
    decision = await _take(hass, home, _award("car1", ["car"], {"car": 2.5}))
    assert decision.accepted
    await wait_for(lambda: _value(hass, CHARGER) == "10.0", what="throttled")
    stored = hass_storage[f"jeisson.events.{ENTRY_ID}"]["data"]["events"]
    held = next(event for event in stored if event["award_id"] == "car1")
    assert held["settings"]["car"] == {"value": 32.0}
    assert held["targets"]["car"] == {"value": 10.0}
    assert held["levels"] == {"car": 2.5}
    await wait_for(lambda: _value(hass, CHARGER) == "32.0", what="restored")
    assert hass.states.get("switch.jeisson_home_car") is None


async def test_charger_never_below_the_floor(hass: HomeAssistant, home: MockConfigEntry) -> None:
    """A level below the owner's floor (or a whole award with no level) stops at 6 A."""
    await _take(hass, home, _award("car2", ["car"], {"car": 0.5}))
    await wait_for(lambda: _value(hass, CHARGER) == "6.0", what="at the floor")
    await wait_for(lambda: _value(hass, CHARGER) == "32.0", what="restored")


async def test_charger_bids_partial_steps_down_to_the_floor(
    hass: HomeAssistant, home: MockConfigEntry
) -> None:
    """Full (7.36 kW) -> half-way -> floor (6 A = 1.38 kW): two partial steps, never off."""
    load = LoadConfig.from_options("car", _options()["car"])
    start = dt_util.utcnow() + timedelta(hours=1)
    steps = build_steps(
        [load],
        window_start=start,
        window_end=start + timedelta(minutes=30),
        price_cap=10.0,
        tz=dt_util.UTC,
        is_available=lambda _load: True,
    )
    assert [step.level_kw for step in steps] == [4.37, 1.38]
    assert sum(step.kw for step in steps) == pytest.approx(7.36 - 1.38)


async def test_charger_with_charged_by_in_the_window_does_not_bid(hass: HomeAssistant) -> None:
    """The car must be charged by 07:00: a window spanning 07:00 gets no step from it."""
    load = LoadConfig.from_options("car", _options(charged_by="07:00:00")["car"])
    assert load.terms.ready_by == time(7)
    start = dt_util.start_of_local_day().astimezone(dt_util.UTC) + timedelta(hours=6, minutes=45)
    kwargs: dict[str, Any] = {
        "price_cap": 10.0,
        "tz": dt_util.get_default_time_zone(),
        "is_available": lambda _load: True,
    }
    over = build_steps(
        [load], window_start=start, window_end=start + timedelta(minutes=30), **kwargs
    )
    assert over == []
    later = start + timedelta(hours=1)
    after = build_steps(
        [load], window_start=later, window_end=later + timedelta(minutes=30), **kwargs
    )
    assert after


async def test_thermostat_offset_applied_and_returned(
    hass: HomeAssistant, home: MockConfigEntry
) -> None:
    """Cooling at 21 °C: the deepest level raises the setpoint by the owner's 2°, then 21 again."""
    level = 0.4 * 2.0  # the deepest share of its (rated, unmeasured) 2 kW
    await _take(hass, home, _award("ac1", ["hvac"], {"hvac": level}))
    await wait_for(lambda: _value(hass, THERMOSTAT, "temperature") == 23, what="offset")
    await wait_for(lambda: _value(hass, THERMOSTAT, "temperature") == 21, what="returned")


async def test_thermostat_changed_by_the_owner_is_an_override(
    hass: HomeAssistant, home: MockConfigEntry
) -> None:
    """The owner sets 22 °C mid-event: an opt-out for the load, and 22 is left alone."""
    opted = record(hass, EVENT_OPTED_OUT)
    await _take(hass, home, _award("ac2", ["hvac"], {"hvac": 1.4}, lasts=2.0))
    await wait_for(lambda: _value(hass, THERMOSTAT, "temperature") == 22, what="half offset")
    await hass.services.async_call(
        "climate", "set_temperature", {"entity_id": THERMOSTAT, "temperature": 20}, blocking=True
    )
    await wait_for(lambda: bool(opted), what="override reported")
    assert opted[0]["reason"] == "override"
    event = home.runtime_data.runner.schedule.events["ac2"]
    await wait_for(lambda: event.finished, timeout=10, what="event over")
    assert _value(hass, THERMOSTAT, "temperature") == 20


async def test_water_heater_eco_during_the_event(
    hass: HomeAssistant, home: MockConfigEntry
) -> None:
    """The boiler runs in eco mode during the event, then in its previous mode again."""
    await _take(hass, home, _award("boiler", ["boiler"]))
    await wait_for(lambda: _value(hass, BOILER) == "eco", what="eco")
    await wait_for(lambda: _value(hass, BOILER) == "electric", what="restored")


async def test_heating_thermostat_lowered_by_the_whole_offset(
    hass: HomeAssistant, home: MockConfigEntry
) -> None:
    """A direct award (no level) takes the whole offset: heating at 20 °C goes to 18, then 20."""
    before = _value(hass, HEAT_PUMP, "temperature")
    message = _award("heat", [], lasts=1.0).model_copy(update={"kind": EventKind.DIRECT})
    decision = await _take(hass, home, message)
    assert "heat" in decision.loads
    await wait_for(lambda: _value(hass, HEAT_PUMP, "temperature") == before - 2, what="lowered")
    await wait_for(lambda: _value(hass, HEAT_PUMP, "temperature") == before, what="returned")


async def test_setting_loads_are_not_switched(hass: HomeAssistant, home: MockConfigEntry) -> None:
    """The executors refuse on/off commands (they have no load switch to receive them)."""
    coordinator = home.runtime_data.coordinator
    actuator = coordinator.actuator(coordinator.loads["car"])
    with pytest.raises(HomeAssistantError) as raised:
        await actuator.async_turn_on()
    assert raised.value.translation_key == "not_switchable"


async def test_water_heater_without_eco_uses_away_mode(hass: HomeAssistant) -> None:
    """A water heater with no eco mode is put in away mode (read from a state: no service)."""
    load = LoadConfig.from_options("tank", load_options("water_heater.tank", name="Tank"))
    actuator = WaterHeaterActuator(hass, load)
    hass.states.async_set(
        "water_heater.tank", "electric", {"operation_list": ["electric"], "away_mode": "off"}
    )
    assert actuator.is_on
    saved = actuator.snapshot()
    assert saved == {"operation_mode": "electric", "away_mode": False}
    target = actuator.target(None, 3.0, saved)
    assert target == {"away_mode": True}
    assert actuator.holds(target) is False
    hass.states.async_set(
        "water_heater.tank", "electric", {"operation_list": ["electric"], "away_mode": "on"}
    )
    assert actuator.holds(target) is True
    assert not actuator.is_on


@pytest.fixture
def default_loads(charger: None) -> dict[str, dict[str, Any]]:
    """The enrolled home of this module's end-to-end test: the charger alone."""
    return {"car": _options()["car"]}


async def test_charger_throttled_by_a_real_market_award_and_restored(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """End to end: the charger bids 7.36 -> 4.37 -> 1.38 kW, the aggregator awards the first
    partial step for a 2 kW target, the home charges at 19 A (4.37 kW) in the window and at
    32 A again afterwards."""
    events = record_events(hass)
    start = datetime.now(UTC) + timedelta(seconds=2)
    await aggregator.request(
        "POST",
        "/api/v1/events",
        {
            "target_kw": 2.0,
            "price_cap": 0.5,
            "start": start.isoformat(),
            "end": (start + timedelta(seconds=3)).isoformat(),
            "bid_window_s": 1.0,
            "restore_stagger_s": 0.5,
        },
    )
    await wait_for(lambda: bool(of_type(events, EVENT_BID)), what="the bid")
    steps = of_type(events, EVENT_BID)[0]["steps"]
    assert [step["level_kw"] for step in steps] == [4.37, 1.38]
    await wait_for(lambda: _value(hass, CHARGER) == "19.0", what="throttled to 19 A")
    await wait_for(lambda: _value(hass, CHARGER) == "32.0", what="restored to 32 A")


def _setpoints(hass: HomeAssistant, entity_id: str) -> list[float]:
    """Record each new setpoint of ``entity_id``."""
    seen: list[float] = []

    @callback
    def _record(event: Event[EventStateChangedData]) -> None:
        new = event.data["new_state"]
        value = new.attributes.get("temperature") if new else None
        if value is not None and (not seen or seen[-1] != value):
            seen.append(value)

    async_track_state_change_event(hass, [entity_id], _record)
    return seen


async def test_thermostat_returns_in_steps_over_the_stagger(
    hass: HomeAssistant, home: MockConfigEntry
) -> None:
    """Cooling held at 23 °C (21 + 2) steps back 22.5 -> 22 -> 21 after the event, not at once."""
    seen = _setpoints(hass, THERMOSTAT)
    message = _award("ramp", ["hvac"], {"hvac": 0.8}).model_copy(update={"restore_stagger_s": 1.5})
    await _take(hass, home, message)
    event = home.runtime_data.runner.schedule.events["ramp"]
    await wait_for(lambda: event.finished, what="restored")
    assert seen == [23, 22.5, 22, 21]


@pytest.mark.parametrize("hvac_terms", [{"precondition_minutes": 5}])
async def test_thermostat_pre_cools_before_the_event(
    hass: HomeAssistant, home: MockConfigEntry
) -> None:
    """Five minutes of pre-cooling asked, the window 1 s away: pre-cooled to 20 (half the
    offset) at once, 23 in the window, and the saved 21 (not 20) at the end."""
    seen = _setpoints(hass, THERMOSTAT)
    await _take(hass, home, _award("pre", ["hvac"], {"hvac": 0.8}, lasts=1.0))
    event = home.runtime_data.runner.schedule.events["pre"]
    await wait_for(lambda: event.finished, what="restored")
    assert seen[0] == 20
    assert seen[-1] == 21
    assert 23 in seen
    assert event.settings["hvac"]["temperature"] == 21


@pytest.mark.parametrize("hvac_terms", [{"precondition_minutes": 5}])
async def test_pre_conditioned_thermostat_restored_when_cancelled(
    hass: HomeAssistant, home: MockConfigEntry
) -> None:
    """An award cancelled before its window gives the pre-cooled thermostat back at 21."""
    runner = home.runtime_data.runner
    message = _award("gone", ["hvac"], {"hvac": 0.8}).model_copy(
        update={
            "window_start": dt_util.utcnow() + timedelta(minutes=2),
            "window_end": dt_util.utcnow() + timedelta(minutes=3),
        }
    )
    await _take(hass, home, message)
    await wait_for(lambda: _value(hass, THERMOSTAT, "temperature") == 20, what="pre-cooled")
    await runner.async_finish_event("evt-gone", Outcome.CANCELLED, "test")
    await wait_for(lambda: _value(hass, THERMOSTAT, "temperature") == 21, what="restored")
