"""The home policy (jeisson.policy): steps from terms and recent power, award decisions, state."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from jeisson.common.protocol import Award, Bid, EventDirection, EventKind
from jeisson.policy.awards import LoadAward, LoadState, decide, moved_kw
from jeisson.policy.bidding import BidContext, Flexibility, FlexLoad, build_steps, load_steps
from jeisson.policy.recent import RecentPower
from jeisson.policy.terms import Ineligible, Terms, ineligible_reason

START = datetime(2026, 12, 4, 18, tzinfo=UTC)
END = START + timedelta(hours=1)
CONTEXT = BidContext(START, END, 1.0, UTC)
THERMOSTAT = FlexLoad(
    load_id="t",
    rated_kw=2.0,
    terms=Terms(min_price=0.2),
    flex=Flexibility(level_shares=(0.6, 0.3), can_switch_off=False),
)
CHARGER = FlexLoad(
    load_id="ev",
    rated_kw=11.0,
    terms=Terms(min_price=0.1),
    flex=Flexibility(levels_kw=(6.0, 1.4), can_switch_off=False, can_power_up=True),
)
HEATER = FlexLoad(load_id="wh", rated_kw=4.5, terms=Terms(min_price=0.1))


def _always(_load: FlexLoad) -> bool:
    return True


def _award(**changes: object) -> Award:
    award = Award(
        event_id="e",
        award_id="a",
        round=1,
        loads=["ev"],
        kw=5.0,
        price=0.2,
        window_start=START,
        window_end=END,
        restore_stagger_s=0,
    )
    return award.model_copy(update=changes)


def test_recent_power_is_a_time_weighted_mean_and_ignores_old_samples() -> None:
    recent = RecentPower(span=timedelta(minutes=10))
    assert recent.mean_kw("wh") is None
    for minute in range(120):
        recent.add(START + timedelta(minutes=minute), {"wh": 4.0 if minute % 4 == 0 else 0.0})
    recent.add(START, {"wh": 100.0})  # out of order: ignored

    assert recent.mean_kw("wh") == pytest.approx(1.0, abs=0.3)
    assert recent.latest_kw("wh") == 0.0


def test_a_thermostat_bids_its_offsets_as_partial_steps_each_dearer() -> None:
    steps = load_steps(THERMOSTAT, 1.5)

    assert [(step.kw, step.level_kw, step.price) for step in steps] == [
        (pytest.approx(0.6), 0.9, 0.2),
        (pytest.approx(0.45), 0.45, pytest.approx(0.3)),
    ]


def test_a_load_nothing_measures_bids_its_rating_and_an_idle_one_bids_nothing() -> None:
    assert [step.kw for step in load_steps(HEATER, None)] == [4.5]
    assert load_steps(HEATER, 0.01) == []
    assert [step.kw for step in load_steps(HEATER, 9.0)] == [4.5]  # never above its rating


def test_a_cap_leaves_out_a_load_s_deeper_steps_with_it() -> None:
    cheap = BidContext(START, END, 0.12, UTC)

    steps = build_steps([CHARGER, HEATER], cheap, is_available=_always)

    assert [(step.loads, step.level_kw) for step in steps] == [(["ev"], 6.0), (["wh"], None)]
    Bid(reply_to="o", event_id="e", round=1, steps=steps)


def test_power_up_bids_the_headroom_of_loads_that_can_take_more() -> None:
    up = BidContext(START, END, 1.0, UTC, power_up=True)

    steps = build_steps([CHARGER, HEATER], up, is_available=_always, recent_kw={"ev": 3.0}.get)

    assert [(step.loads, step.kw, step.level_kw) for step in steps] == [(["ev"], 8.0, None)]


def test_too_many_steps_merge_whole_steps_of_a_price_and_keep_partial_ones() -> None:
    loads = [FlexLoad(load_id=f"l{i}", rated_kw=1.0, terms=Terms(min_price=0.1)) for i in range(6)]

    steps = build_steps([CHARGER, *loads], CONTEXT, is_available=_always, max_steps=3)

    assert [(step.loads, step.level_kw) for step in steps] == [
        (["ev"], 6.0),
        ([f"l{i}" for i in range(6)], None),
        (["ev"], 1.4),
    ]
    Bid(reply_to="o", event_id="e", round=1, steps=steps)


def test_terms_keep_loads_out() -> None:
    night = Terms(off_limits_start=time(17, 30), off_limits_end=time(18, 30))
    kwargs = {"window_start": START, "window_end": END, "tz": UTC}

    assert ineligible_reason(night, available=True, **kwargs) is Ineligible.OFF_LIMITS
    assert ineligible_reason(Terms(), available=False, **kwargs) is Ineligible.UNAVAILABLE
    assert ineligible_reason(Terms(never_curtail=True), available=True, **kwargs) is (
        Ineligible.NEVER_CURTAIL
    )
    assert (
        build_steps(
            [FlexLoad(load_id="n", rated_kw=1.0, terms=night)], CONTEXT, is_available=_always
        )
        == []
    )


def test_a_ready_by_time_inside_the_window_keeps_the_load_out() -> None:
    """An EV that must be charged by a time in the window does not bid; outside it, it does."""
    kwargs = {"window_start": START, "window_end": END, "tz": UTC, "available": True}
    inside = (START + (END - START) / 2).time()
    outside = (END + timedelta(hours=1)).time()

    assert ineligible_reason(Terms(ready_by=inside), **kwargs) is Ineligible.READY_BY
    assert ineligible_reason(Terms(ready_by=outside), **kwargs) is None


def test_decide_takes_an_award_s_levels_and_refuses_what_it_cannot_do() -> None:
    loads = {"ev": CHARGER, "wh": HEATER}

    market = decide(_award(levels={"ev": 6.0}), loads, tz=UTC, is_available=_always)
    up = decide(
        _award(loads=["wh"], direction=EventDirection.UP), loads, tz=UTC, is_available=_always
    )
    direct = decide(
        _award(loads=[], kind=EventKind.DIRECT, kw=0.0, direction=EventDirection.UP),
        loads,
        tz=UTC,
        is_available=_always,
        recent_kw={"ev": 3.0}.get,
    )

    assert market.accepted
    assert [(item.load_id, item.level_kw) for item in market.loads] == [("ev", 6.0)]
    assert not up.accepted  # a water heater on a switch cannot power up here
    assert direct.load_ids == ["ev"]
    assert direct.kw == 3.0
    assert not decide(_award(loads=["x"]), loads, tz=UTC, is_available=_always).accepted


def test_a_load_award_moves_from_held_to_released_and_books_its_energy() -> None:
    charger = LoadAward(load_id="ev", level_kw=6.0)
    charger.hold(10.8, START)
    boost = LoadAward(load_id="bat", power_up=True)
    boost.hold(1.0, START)

    assert charger.state is LoadState.HELD
    assert moved_kw([charger, boost], {"ev": 11.0, "bat": 5.0}) == pytest.approx(4.8 + 4.0)
    assert charger.release(START + timedelta(minutes=30), END, 11.0, "user") == pytest.approx(2.4)
    assert charger.release(END, END, 11.0) == 0.0  # once
    assert (charger.state, charger.reason) == (LoadState.RELEASED, "user")
    assert LoadAward(load_id="x").release(END, END, 1.0) == 0.0  # never held
