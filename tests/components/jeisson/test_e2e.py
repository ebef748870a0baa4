"""End to end: a real aggregator process negotiates with the home and the home switches real
HA switches (template switches backed by input_booleans)."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.const import (
    EVENT_AWARDED,
    EVENT_BID,
    EVENT_CANCELLED,
    EVENT_ENDED,
    EVENT_OPTED_OUT,
    EVENT_STARTED,
)
from tests.helpers import wait_for

from .aggregator_process import AggregatorProcess
from .common import (
    CAR,
    HEATER,
    HEATER_LOAD_SWITCH,
    PUMP,
    is_state,
    of_type,
    record_events,
    turn,
)


async def test_market_event_bids_from_terms_sheds_and_restores(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """Offer → bid from terms → award → heater off at start (pump untouched) → restored."""
    events = record_events(hass)
    created = await aggregator.create_event(target_kw=1.0, price_cap=0.5, duration=3.0)
    event_id = created["id"]

    await wait_for(lambda: bool(of_type(events, EVENT_AWARDED)), what="award")
    bid = of_type(events, EVENT_BID)[0]
    # The car never curtails; heater (0.1) and pump (0.2) bid one step each, cheapest first.
    assert [step["loads"] for step in bid["steps"]] == [["heater"], ["pump"]]
    assert [step["price"] for step in bid["steps"]] == [0.1, 0.2]
    awarded = of_type(events, EVENT_AWARDED)[0]
    assert awarded["loads"] == ["heater"]
    assert awarded["device_id"] is not None
    assert is_state(hass, HEATER, "on")  # not before the window starts
    assert is_state(hass, "sensor.jeisson_home_demand_response_status", "awarded")

    await wait_for(lambda: is_state(hass, HEATER, "off"), what="heater switched off")
    assert is_state(hass, PUMP, "on")
    assert is_state(hass, CAR, "on")
    assert is_state(hass, "binary_sensor.jeisson_home_event_active", "on")
    held = hass.states.get(HEATER_LOAD_SWITCH)
    assert held.attributes["held_by_jeisson"] is True
    assert held.attributes["held_until"] is not None
    assert float(hass.states.get("sensor.jeisson_home_delivered_power").state) == 2.0

    async def delivery_reported() -> bool:
        return (await aggregator.event(event_id))["delivered_kw"] > 0

    await wait_for(delivery_reported, timeout=3, what="telemetry reaching the aggregator")

    await wait_for(lambda: bool(of_type(events, EVENT_ENDED)), what="event end")
    await wait_for(lambda: is_state(hass, HEATER, "on"), timeout=5, what="heater restored")
    await wait_for(
        lambda: is_state(hass, "sensor.jeisson_home_demand_response_status", "idle"),
        what="status idle",
    )
    assert float(hass.states.get("sensor.jeisson_home_estimated_earnings").state) > 0
    assert hass.states.get(HEATER_LOAD_SWITCH).attributes["held_by_jeisson"] is False
    detail = await aggregator.event(event_id)
    assert detail["awards"][0]["loads"] == ["heater"]
    assert detail["awards"][0]["acked_at"] is not None


async def test_homeowner_switching_a_held_load_on_opts_out(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """Switching a held load back on is reported as an override opt-out and not fought."""
    events = record_events(hass)
    created = await aggregator.create_event(target_kw=1.0, duration=4.0)
    await wait_for(lambda: is_state(hass, HEATER, "off"), what="heater switched off")

    await hass.services.async_call(
        "input_boolean", "turn_on", {"entity_id": "input_boolean.water_heater"}, blocking=True
    )
    await wait_for(lambda: bool(of_type(events, EVENT_OPTED_OUT)), what="opt-out")
    opted = of_type(events, EVENT_OPTED_OUT)[0]
    assert opted["load_id"] == "heater"
    assert opted["reason"] == "override"

    async def reported() -> bool:
        detail = await aggregator.event(created["id"])
        return any("heater" in award["opted_out_loads"] for award in detail["awards"])

    await wait_for(reported, what="opt-out reported to the aggregator")
    await wait_for(lambda: bool(of_type(events, EVENT_ENDED)), what="event end")
    assert is_state(hass, HEATER, "on")


async def test_committed_power_drops_when_a_load_opts_out(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """Heater (2 kW) and pump (1.5 kW) awarded; the heater switched on by hand leaves 1.5 kW,
    as the aggregator counts it; the pump switched on too leaves nothing."""
    events = record_events(hass)
    committed = "sensor.jeisson_home_committed_power"
    created = await aggregator.create_event(target_kw=3.0, duration=8.0)
    await wait_for(lambda: is_state(hass, PUMP, "off"), what="heater and pump switched off")
    assert is_state(hass, HEATER, "off")
    assert float(hass.states.get(committed).state) == 3.5

    await turn(hass, "water_heater", on=True)
    await wait_for(lambda: is_state(hass, committed, "1.5"), what="committed power follows")

    async def reported() -> bool:
        detail = await aggregator.event(created["id"])
        return any("heater" in award["opted_out_loads"] for award in detail["awards"])

    await wait_for(reported, what="opt-out reported to the aggregator")
    await turn(hass, "pool_pump", on=True)
    await wait_for(lambda: is_state(hass, committed, "0.0"), what="nothing committed")
    assert len(of_type(events, EVENT_OPTED_OUT)) == 2


async def test_loads_already_off_are_not_switched_on_after_the_event(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """Jeisson restores only what it switched off itself."""
    events = record_events(hass)
    await aggregator.create_event(target_kw=1.0, duration=2.0)
    await wait_for(lambda: bool(of_type(events, EVENT_AWARDED)), what="award")
    await hass.services.async_call(
        "input_boolean", "turn_off", {"entity_id": "input_boolean.water_heater"}, blocking=True
    )
    await wait_for(lambda: bool(of_type(events, EVENT_STARTED)), what="start")
    assert of_type(events, EVENT_STARTED)[0]["loads"] == []
    await wait_for(lambda: bool(of_type(events, EVENT_ENDED)), what="event end")
    await hass.async_block_till_done()
    assert is_state(hass, HEATER, "off")


async def test_loads_are_restored_on_time_when_the_aggregator_dies(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """The home ends the event on its own clock when the aggregator is gone."""
    events = record_events(hass)
    await aggregator.create_event(target_kw=1.0, duration=3.0)
    await wait_for(lambda: is_state(hass, HEATER, "off"), what="heater switched off")
    aggregator.kill()
    await wait_for(
        lambda: is_state(hass, "binary_sensor.jeisson_home_aggregator_connected", "off"),
        what="connection lost",
    )
    await wait_for(lambda: bool(of_type(events, EVENT_ENDED)), what="event end")
    await wait_for(lambda: is_state(hass, HEATER, "on"), timeout=5, what="heater restored")


async def test_reloading_mid_event_resumes_the_schedule(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """A reload (as after an HA restart) keeps the load off and restores it at the end."""
    events = record_events(hass)
    await aggregator.create_event(target_kw=1.0, duration=4.0)
    await wait_for(lambda: is_state(hass, HEATER, "off"), what="heater switched off")

    assert await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert is_state(hass, HEATER, "off")
    assert hass.states.get(HEATER_LOAD_SWITCH).attributes["held_by_jeisson"] is True
    assert not of_type(events, EVENT_OPTED_OUT)

    await wait_for(lambda: bool(of_type(events, EVENT_ENDED)), what="event end")
    await wait_for(lambda: is_state(hass, HEATER, "on"), timeout=5, what="heater restored")


async def test_cancel_restores_the_loads(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """An operator's cancel mid-event restores what Jeisson switched off."""
    events = record_events(hass)
    created = await aggregator.create_event(target_kw=1.0, duration=30.0)
    await wait_for(lambda: is_state(hass, HEATER, "off"), what="heater switched off")
    await aggregator.cancel(created["id"])
    await wait_for(lambda: bool(of_type(events, EVENT_CANCELLED)), what="cancel")
    await wait_for(lambda: is_state(hass, HEATER, "on"), timeout=5, what="heater restored")
    assert not of_type(events, EVENT_ENDED)


async def test_direct_event_sheds_the_loads_the_terms_allow(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """A direct event at 0.15/kWh sheds the heater (asks 0.1) and not the pump (asks 0.2)."""
    events = record_events(hass)
    created = await aggregator.create_event(kind="direct", price_cap=0.15, duration=3.0)
    await wait_for(lambda: bool(of_type(events, EVENT_AWARDED)), what="award")
    assert of_type(events, EVENT_AWARDED)[0]["loads"] == ["heater"]
    await wait_for(lambda: is_state(hass, HEATER, "off"), what="heater switched off")
    assert is_state(hass, PUMP, "on")

    async def acked() -> bool:
        detail = await aggregator.event(created["id"])
        return bool(detail["awards"]) and detail["awards"][0]["acked_at"] is not None

    await wait_for(acked, what="direct award acknowledged")
    await wait_for(lambda: is_state(hass, HEATER, "on"), what="heater restored")


async def test_opt_out_button_restores_at_once(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """The opt-out button gives every held load back and tells the aggregator."""
    events = record_events(hass)
    await aggregator.create_event(target_kw=1.0, duration=30.0)
    await wait_for(lambda: is_state(hass, HEATER, "off"), what="heater switched off")
    await hass.services.async_call(
        "button", "press", {"entity_id": "button.jeisson_home_opt_out"}, blocking=True
    )
    await hass.async_block_till_done()
    assert is_state(hass, HEATER, "on")
    opted = of_type(events, EVENT_OPTED_OUT)
    assert opted[0]["load_id"] is None
    assert opted[0]["reason"] == "user"
    assert is_state(hass, "sensor.jeisson_home_demand_response_status", "idle")
