"""Re-negotiation rounds and repeated awards.

A load named in any award of an event (held, given back or declined) is never bid again in that
event: the aggregator refuses a whole bid naming one (``invalid_state``). An award taken once is
announced once (``jeisson_awarded``), however often it is re-sent, even across a restart.
"""

from __future__ import annotations

from datetime import timedelta

from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.const import EVENT_AWARDED, EVENT_BID, EVENT_OPTED_OUT
from jeisson.common.protocol import Award, AwardAck, Offer, new_message_id
from tests.helpers import wait_for

from .aggregator_process import AggregatorProcess
from .common import HEATER, PUMP, award, is_state, of_type, record, record_events, take, turn


def offer_for(message: Award, round_number: int = 2) -> Offer:
    """Return the offer of a later round of ``message``'s event (window: the rest of it)."""
    now = dt_util.utcnow()
    return Offer(
        event_id=message.event_id,
        round=round_number,
        window_start=now,
        window_end=message.window_end,
        price_cap=0.5,
        bid_deadline=now + timedelta(seconds=10),
    )


def bid_loads(entry: MockConfigEntry, offer: Offer) -> list[list[str]]:
    """Return the loads of each step this home would bid for ``offer``."""
    return [step.loads for step in entry.runtime_data.coordinator.bid_steps(offer)]


async def test_loads_of_a_declined_award_are_not_bid_again_in_its_event(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """The home refused an award (the heater was made never-curtail meanwhile); once the
    heater may curtail again, a later round of the same event still leaves it out. Another
    event may ask for it."""
    hass.config_entries.async_update_entry(
        offline,
        options={
            **offline.options,
            "loads": {
                **offline.options["loads"],
                "heater": {**offline.options["loads"]["heater"], "never_curtail": True},
            },
        },
    )
    message = award("declined", starts_in=60, lasts=600, loads=["heater"])
    decision = await take(hass, offline, message)
    assert not decision.accepted
    assert offline.runtime_data.runner.schedule.events["declined"].declined == ["heater"]
    hass.config_entries.async_update_entry(
        offline,
        options={
            **offline.options,
            "loads": {
                **offline.options["loads"],
                "heater": {**offline.options["loads"]["heater"], "never_curtail": False},
            },
        },
    )
    await hass.async_block_till_done()
    # "car" is under the fixture's award (tomorrow), which does not overlap this window.
    assert bid_loads(offline, offer_for(message)) == [["car"], ["pump"]]
    other = offer_for(message).model_copy(update={"event_id": "evt-other", "round": 1})
    assert ["heater"] in bid_loads(offline, other)


async def test_loads_given_back_stay_out_after_the_award_closed_and_a_restart(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """Overridden and opted-out loads are not bid again in their event, even once their award
    is finished and after Home Assistant restarted (the schedule is saved)."""
    message = award("given", starts_in=-1, lasts=600, loads=["heater", "pump"])
    await take(hass, offline, message)
    assert is_state(hass, HEATER, "off")
    await turn(hass, "water_heater", on=True)  # override: the heater is given back
    await wait_for(lambda: bool(offline.runtime_data.runner.schedule.events["given"].opted_out))
    assert bid_loads(offline, offer_for(message)) == [["car"]]
    await offline.runtime_data.coordinator.async_opt_out(message.event_id)
    await hass.async_block_till_done()
    assert offline.runtime_data.runner.schedule.events["given"].finished
    assert bid_loads(offline, offer_for(message)) == [["car"]]

    assert await hass.config_entries.async_reload(offline.entry_id)
    await hass.async_block_till_done()
    assert bid_loads(offline, offer_for(message)) == [["car"]]


async def test_a_repeated_award_is_announced_once_even_after_a_restart(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """The same award re-sent (same message id, as after a reconnect; then a new id after a
    restart, when the client remembers nothing) is acknowledged each time but fires
    ``jeisson_awarded`` only the first time."""
    awarded = record(hass, EVENT_AWARDED)
    message = award("dup", starts_in=600, lasts=600, loads=["heater"])
    coordinator = offline.runtime_data.coordinator
    coordinator._on_message(message)
    await hass.async_block_till_done()
    coordinator._on_message(message)
    await hass.async_block_till_done()
    assert [item["award_id"] for item in awarded] == ["dup"]

    def acks() -> list[AwardAck]:
        return [
            queued
            for queued in offline.runtime_data.client.queued_messages
            if isinstance(queued, AwardAck) and queued.award_id == "dup"
        ]

    assert len(acks()) == 2
    assert all(ack.accepted for ack in acks())

    assert await hass.config_entries.async_reload(offline.entry_id)
    await hass.async_block_till_done()
    assert len(acks()) == 2  # the unsent acks survived the restart
    offline.runtime_data.coordinator._on_message(
        message.model_copy(update={"id": new_message_id()})
    )
    await hass.async_block_till_done()
    assert len(acks()) == 3
    assert [item["award_id"] for item in awarded] == ["dup"]


async def test_an_overridden_load_is_left_out_of_the_next_round(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """End to end: the heater is awarded, the homeowner switches it back on; the round-2 bid
    names only the pump, and the aggregator accepts it and awards the pump."""
    events = record_events(hass)
    created = await aggregator.create_event(target_kw=1.0, duration=40.0)
    event_id = created["id"]
    await wait_for(lambda: is_state(hass, HEATER, "off"), what="heater switched off")
    assert of_type(events, EVENT_AWARDED)[0]["loads"] == ["heater"]

    await turn(hass, "water_heater", on=True)
    await wait_for(lambda: bool(of_type(events, EVENT_OPTED_OUT)), what="override opt-out")

    def round_two_bid() -> list[dict]:
        return [bid for bid in of_type(events, EVENT_BID) if bid["round"] == 2]

    await wait_for(lambda: bool(round_two_bid()), what="round-2 bid")
    assert [step["loads"] for step in round_two_bid()[0]["steps"]] == [["pump"]]
    await wait_for(lambda: len(of_type(events, EVENT_AWARDED)) == 2, what="round-2 award")
    assert of_type(events, EVENT_AWARDED)[1]["loads"] == ["pump"]
    await wait_for(lambda: is_state(hass, PUMP, "off"), what="pump switched off")
    assert is_state(hass, HEATER, "on")  # never fought

    detail = await aggregator.event(event_id)
    by_round = {award["round"]: award for award in detail["awards"]}
    assert by_round[2]["loads"] == ["pump"]
    await aggregator.cancel(event_id)
    await wait_for(lambda: is_state(hass, PUMP, "on"), what="pump restored")
