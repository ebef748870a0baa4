"""The event runner on its own clock (aggregator unreachable): awards, failures, telemetry."""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import patch

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.jeisson.const import (
    EVENT_ENDED,
    EVENT_OFFERED,
    EVENT_OPTED_OUT,
    EVENT_STARTED,
    OFFER_GRACE,
    SAMPLE_INTERVAL,
)
from custom_components.jeisson.schedule import Outcome
from jeisson.common.protocol import EventKind, HomeEventStatus, Offer
from tests.helpers import wait_for

from .common import ACTUATOR, award, record, state, take, turn


async def test_award_for_a_running_window_starts_at_once(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """An award whose window already began (a re-negotiation round) sheds at once; a
    repeated award is answered the same way and not executed twice."""
    started = record(hass, EVENT_STARTED)
    message = award("now", starts_in=-1, lasts=2, loads=["heater"])
    decision = await take(hass, offline, message)
    assert decision.accepted
    assert decision.loads == ["heater"]
    assert state(hass, "switch.water_heater") == "off"
    again = await take(hass, offline, message)
    assert (again.accepted, again.loads, again.kw) == (True, ["heater"], 2.0)
    assert len(started) == 1
    await wait_for(lambda: state(hass, "switch.water_heater") == "on", what="restored")


async def test_award_naming_an_unknown_load_is_refused(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """The home cannot carry out an award for a load it does not have."""
    decision = await take(hass, offline, award("bad", starts_in=5, lasts=5, loads=["ghost"]))
    assert not decision.accepted
    event = offline.runtime_data.runner.schedule.events["bad"]
    assert event.outcome is Outcome.REJECTED
    assert all(item.award_id != "bad" for item in offline.runtime_data.coordinator.data.calendar)


async def test_direct_award_with_no_allowed_load_is_refused(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """A flat incentive below every load's price: nothing to shed, so the award is refused."""
    message = award("cheap", starts_in=5, lasts=5, loads=[], kind=EventKind.DIRECT)
    message = message.model_copy(update={"price": 0.01})
    decision = await take(hass, offline, message)
    assert not decision.accepted
    assert decision.loads == []


async def test_a_switch_that_fails_is_given_up_as_unavailable(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """A load whose switch-off fails is reported as an unavailable opt-out, not retried."""
    opted = record(hass, EVENT_OPTED_OUT)
    with patch(f"{ACTUATOR}.async_turn_off", side_effect=HomeAssistantError("stuck")):
        await take(hass, offline, award("stuck", starts_in=-1, lasts=30, loads=["heater"]))
    assert [(item["load_id"], item["reason"]) for item in opted] == [("heater", "unavailable")]
    assert state(hass, "switch.water_heater") == "on"
    assert offline.runtime_data.runner.shed_kw() == 0


async def test_restore_failure_is_logged_and_the_event_still_ends(
    hass: HomeAssistant, offline: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """A load that cannot be switched back on is logged; the event is done all the same."""
    ended = record(hass, EVENT_ENDED)
    await take(hass, offline, award("end", starts_in=-0.5, lasts=2, loads=["heater"]))
    assert state(hass, "switch.water_heater") == "off"
    with patch(f"{ACTUATOR}.async_turn_on", side_effect=HomeAssistantError("stuck")):
        await wait_for(lambda: bool(ended), what="end")
        event = offline.runtime_data.runner.schedule.events["end"]
        await wait_for(lambda: event.status is HomeEventStatus.DONE, what="done")
    assert "Could not restore load heater" in caplog.text


async def test_homeowner_restoring_early_cancels_the_staggered_restore(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """Switching a load on during the restore stagger just ends Jeisson's hold on it."""
    ended = record(hass, EVENT_ENDED)
    opted = record(hass, EVENT_OPTED_OUT)
    await take(hass, offline, award("slow", starts_in=-0.5, lasts=2, loads=["heater"], stagger=600))
    await wait_for(lambda: bool(ended), what="end")
    event = offline.runtime_data.runner.schedule.events["slow"]
    assert event.status is HomeEventStatus.RESTORING
    await turn(hass, "water_heater", on=True)
    await wait_for(lambda: event.status is HomeEventStatus.DONE, what="done")
    assert not opted
    assert event.restore_at == {}


async def test_telemetry_is_sampled_while_active_and_queued_offline(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """Samples every SAMPLE_INTERVAL while active, batched; kept in the client's outbox."""
    client = offline.runtime_data.client
    before = len(client.queued_messages)
    await take(hass, offline, award("tele", starts_in=-1, lasts=300, loads=["heater", "pump"]))
    runner = offline.runtime_data.runner
    assert runner.shed_kw() == 4.0
    sample = runner.sample(dt_util.utcnow())
    assert sample.shed_kw == 4.0
    assert sample.loads == {"heater": 0.0, "pump": 0.0, "car": 2.0}
    for step in range(1, 4):
        async_fire_time_changed(hass, dt_util.utcnow() + SAMPLE_INTERVAL * step)
        await hass.async_block_till_done()
    await wait_for(lambda: len(client.queued_messages) > before + 1, what="telemetry queued")
    await offline.runtime_data.coordinator.async_opt_out("evt-tele")
    await hass.async_block_till_done()
    assert state(hass, "switch.water_heater") == "on"
    assert state(hass, "switch.pool_pump") == "on"


async def test_calendar_lists_upcoming_events(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """The calendar shows the next award and lists events in a range; opted-out ones drop
    out of the "next event" but stay in the history."""
    calendar = "calendar.jeisson_home_demand_response_events"
    await take(hass, offline, award("cal", starts_in=3600, lasts=1800, loads=["heater"]))
    current = hass.states.get(calendar)
    assert current.state == "off"
    assert current.attributes["message"] == "Demand response: 2 kW at 0.3 EUR/kWh"
    response = await hass.services.async_call(
        "calendar",
        "get_events",
        {
            "entity_id": calendar,
            "start_date_time": dt_util.utcnow(),
            "end_date_time": dt_util.utcnow() + timedelta(hours=3),
        },
        blocking=True,
        return_response=True,
    )
    events = response[calendar]["events"]
    assert [event["summary"] for event in events] == ["Demand response: 2 kW at 0.3 EUR/kWh"]
    assert "evt-cal" in events[0]["description"]
    assert "loads: Water heater" in events[0]["description"]  # by name, not "heater"
    await offline.runtime_data.coordinator.async_opt_out("evt-cal")
    await hass.async_block_till_done()
    # The remaining award (the fixture's, tomorrow) is now the next one.
    assert hass.states.get(calendar).attributes["start_time"] != current.attributes["start_time"]


async def test_offer_without_connection_is_not_bid_and_expires(
    hass: HomeAssistant, offline: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """An offer that cannot be answered is logged; "offered" clears after the deadline."""
    coordinator = offline.runtime_data.coordinator
    await coordinator.async_opt_out("evt-later")  # the fixture's award; status is idle now
    now = dt_util.utcnow()
    offer = Offer(
        event_id="evt-o",
        round=1,
        window_start=now + timedelta(minutes=10),
        window_end=now + timedelta(minutes=40),
        price_cap=0.5,
        bid_deadline=now + timedelta(seconds=5),
    )
    offered = record(hass, EVENT_OFFERED)
    coordinator._on_message(offer)
    await hass.async_block_till_done()
    assert offered[0]["event_id"] == "evt-o"
    assert "Could not bid on event evt-o" in caplog.text
    assert state(hass, "sensor.jeisson_home_demand_response_status") == "offered"
    assert [step.loads for step in coordinator.bid_steps(offer)] == [["car"], ["heater"], ["pump"]]
    async_fire_time_changed(hass, now + timedelta(seconds=5) + OFFER_GRACE + timedelta(seconds=1))
    await hass.async_block_till_done()
    assert state(hass, "sensor.jeisson_home_demand_response_status") == "idle"
