"""Tests of the fleet simulator: virtual-home rules, relays and restore, and a fleet on a server."""

from __future__ import annotations

import asyncio
import random
import statistics
from datetime import time, timedelta

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.simulation.fleet import Fleet, FleetConfig, SimulatorError
from aggregator.simulation.home import AckPlan, HomeTiming, VirtualHome
from aggregator.simulation.loads import (
    EV_CHARGER,
    PROFILES,
    WATER_HEATER,
    LoadTerms,
    SimulatedLoad,
    charger_flex,
    random_loads,
)
from jeisson.common.protocol import (
    MAX_STEPS_PER_BID,
    Award,
    Bid,
    EventDirection,
    EventKind,
    HomeEventStatus,
    Load,
    LoadKind,
    Offer,
    utc_now,
)
from jeisson.policy.bidding import Flexibility
from tests.helpers import wait_for

from .common import RunningServer

HOUR = timedelta(hours=1)


def load(
    load_id: str,
    kw: float,
    price: float,
    *,
    max_off: float = 240,
    never: bool = False,
    kind: LoadKind = LoadKind.WATER_HEATER,
    relay_on: bool = True,
    off_limits: tuple[time, time] | None = None,
    flex: Flexibility | None = None,
) -> SimulatedLoad:
    """Return one simulated load with explicit terms (off-limits hours in UTC)."""
    start, end = off_limits or (None, None)
    return SimulatedLoad(
        spec=Load(load_id=load_id, name=load_id, kind=kind, rated_kw=kw, curtailable=not never),
        terms=LoadTerms(
            min_price=price,
            max_off_minutes=int(max_off),
            never_curtail=never,
            off_limits_start=start,
            off_limits_end=end,
        ),
        duty_cycle=0.5,
        cycle_s=600,
        relay_on=relay_on,
        running=True,
        flex=flex or Flexibility(),
    )


def home_of(*loads: SimulatedLoad, seed: int = 1) -> VirtualHome:
    """Return a virtual home with the given loads."""
    return VirtualHome("test-home", loads, rng=random.Random(seed), home_id="home-1")


def offer(window: timedelta = HOUR, cap: float = 0.4, round_: int = 1) -> Offer:
    """Return an offer for a window starting in an hour."""
    start = utc_now() + HOUR
    return Offer(
        event_id="evt-1",
        round=round_,
        window_start=start,
        window_end=start + window,
        price_cap=cap,
        bid_deadline=utc_now() + timedelta(seconds=30),
    )


def award(
    loads: list[str],
    kw: float,
    *,
    award_id: str = "awd-1",
    kind: EventKind = EventKind.MARKET,
    price: float = 0.3,
    start_in: timedelta = HOUR,
    window: timedelta = HOUR,
    stagger: float = 0.0,
) -> Award:
    """Return an award for the given loads."""
    start = utc_now() + start_in
    return Award(
        event_id="evt-1",
        award_id=award_id,
        round=1,
        kind=kind,
        loads=loads,
        kw=kw,
        price=price,
        window_start=start,
        window_end=start + window,
        restore_stagger_s=stagger,
    )


def bid_loads(home: VirtualHome, request: Offer) -> list[list[str]]:
    """Return the loads of each step of the home's bid."""
    return [step.loads for step in home.bid_steps(request)]


# --- bidding rules ------------------------------------------------------------------------


def test_load_whose_max_off_is_shorter_than_the_window_does_not_bid() -> None:
    home = home_of(load("wh", 4.0, 0.1, max_off=30), load("pool", 1.0, 0.05, max_off=240))

    assert bid_loads(home, offer(window=HOUR)) == [["pool"]]
    assert bid_loads(home, offer(window=timedelta(minutes=30))) == [["pool"], ["wh"]]


def test_never_curtail_load_does_not_bid() -> None:
    home = home_of(load("freezer", 0.2, 0.0, never=True, kind=LoadKind.OTHER), load("wh", 4, 0.1))

    assert bid_loads(home, offer()) == [["wh"]]
    assert home.inventory().loads[0].curtailable is False


def test_loads_priced_above_the_cap_switched_off_or_blocked_do_not_bid() -> None:
    window = offer()
    blocked = (window.window_start.time(), window.window_end.time())
    home = home_of(
        load("dear", 2.0, 0.5),
        load("off", 1.0, 0.05, relay_on=False),
        load("blocked", 3.0, 0.1, off_limits=blocked),
        load("ok", 4.0, 0.2),
    )

    assert bid_loads(home, window) == [["ok"]]


def test_nothing_qualifying_gives_an_empty_bid() -> None:
    home = home_of(load("hvac", 3.0, 0.45, kind=LoadKind.HVAC), load("wh", 4.0, 0.1, max_off=10))

    assert home.bid_steps(offer(cap=0.4)) == []


def test_loads_already_held_under_an_award_are_excluded() -> None:
    home = home_of(load("wh", 4.0, 0.1), load("ev", 7.4, 0.2, kind=LoadKind.EV_CHARGER))
    held = award(["wh"], 4.0)
    home.take(held, home.plan_ack(held))

    assert bid_loads(home, offer(round_=2)) == [["ev"]]
    assert home.held_loads() == {"wh"}
    assert [(h.award_id, h.status, h.loads) for h in home.held_awards()] == [
        ("awd-1", HomeEventStatus.AWARDED, ["wh"])
    ]


def test_loads_taken_back_are_not_bid_again_in_the_same_event() -> None:
    home = home_of(load("wh", 4.0, 0.1), load("ev", 7.4, 0.2, kind=LoadKind.EV_CHARGER))
    held = award(["wh", "ev"], 11.4)
    home.take(held, home.plan_ack(held))
    home.release("evt-1", "ev")

    assert bid_loads(home, offer(round_=2)) == []  # wh held, ev taken back
    other_event = offer().model_copy(update={"event_id": "evt-2"})
    assert bid_loads(home, other_event) == [["ev"]]


def test_one_step_per_load_rising_in_price_bigger_first_as_real_homes_bid() -> None:
    home = home_of(
        load("c", 1.0, 0.30),
        load("a", 2.0, 0.10),
        load("b", 3.0, 0.10),
        load("d", 4.0, 0.20),
    )

    steps = home.bid_steps(offer())

    assert [(step.price, step.kw, step.loads) for step in steps] == [
        (0.10, 3.0, ["b"]),
        (0.10, 2.0, ["a"]),
        (0.20, 4.0, ["d"]),
        (0.30, 1.0, ["c"]),
    ]


def test_a_step_expects_the_load_s_recent_measured_power_not_its_rating() -> None:
    home = home_of(load("wh", 4.0, 0.1))
    start = utc_now() - 4 * HOUR
    for minute in range(240):  # its thermostat had it on every other minute
        home.recent_power.add(start + minute * timedelta(minutes=1), {"wh": 4.0 * (minute % 2)})

    (step,) = home.bid_steps(offer())

    assert step.kw == pytest.approx(2.0, rel=0.25)


def test_a_charger_bids_partial_steps_down_to_its_floor_and_is_held_there() -> None:
    charger = load("ev", 11.0, 0.1, kind=LoadKind.EV_CHARGER, flex=charger_flex(11.0))
    home = home_of(charger)

    steps = home.bid_steps(offer(cap=1.0))

    assert [(step.level_kw, step.price) for step in steps] == [
        (6.0, 0.1),
        (4.1, pytest.approx(0.15)),
    ]
    assert steps[0].kw == pytest.approx(5.0)
    Bid(reply_to="offer-1", event_id="evt-1", round=1, steps=steps)  # valid on the wire
    held = award(["ev"], 5.0).model_copy(update={"levels": {"ev": 6.0}})
    home.take(held, home.plan_ack(held))
    assert home.switch_off("awd-1") == ["ev"]
    sample, _ = home.sample(1.0)
    assert charger.relay_on
    assert sample.loads["ev"] == pytest.approx(6.0, rel=0.15)
    assert sample.shed_kw == pytest.approx(5.0, rel=0.2)


async def test_a_power_up_award_runs_the_load_at_its_rating_then_gives_it_back() -> None:
    battery = load("bat", 5.0, 0.05, kind=LoadKind.BATTERY, flex=Flexibility(can_power_up=True))
    battery.running = False
    home = home_of(battery, load("wh", 4.0, 0.05))
    home.sample(1.0)
    up = offer().model_copy(update={"direction": EventDirection.UP})

    (step,) = home.bid_steps(up)  # the water heater cannot power up

    assert (step.loads, step.kw) == (["bat"], 5.0)
    held = award(["bat"], 5.0).model_copy(update={"direction": EventDirection.UP})
    home.take(held, home.plan_ack(held))
    home.switch_off("awd-1")
    sample, _ = home.sample(1.0)
    assert sample.loads["bat"] == pytest.approx(5.0, rel=0.15)
    assert sample.shed_kw == pytest.approx(5.0, rel=0.15)
    await home.restore("awd-1", stagger_s=0.0)
    assert home.sample(1.0)[0].loads["bat"] == 0.0


def test_more_steps_than_allowed_leave_the_dearest_out() -> None:
    loads = [load(f"l{index}", 1.0, 0.01 * index) for index in range(1, 41)]
    home = home_of(*loads)

    steps = home.bid_steps(offer(cap=1.0))

    assert len(steps) == MAX_STEPS_PER_BID
    assert steps[-1].price == pytest.approx(0.01 * MAX_STEPS_PER_BID)
    Bid(reply_to="offer-1", event_id="evt-1", round=1, steps=steps)  # valid on the wire


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), cap=st.floats(0.0, 1.0), minutes=st.integers(1, 600))
def test_every_generated_bid_is_valid_and_respects_the_terms(
    seed: int, cap: float, minutes: int
) -> None:
    home = home_of(*random_loads(random.Random(seed)), seed=seed)
    request = offer(window=timedelta(minutes=minutes), cap=cap)

    steps = home.bid_steps(request)

    Bid(reply_to="offer-1", event_id="evt-1", round=1, steps=steps)  # ordering, unique loads
    for step in steps:
        assert step.price <= cap
        for load_id in step.loads:
            terms = home.loads[load_id].terms
            assert not terms.never_curtail
            assert terms.min_price <= step.price
            assert terms.max_off_minutes >= minutes
            assert home.loads[load_id].relay_on


# --- answering awards -----------------------------------------------------------------------


def test_market_award_is_accepted_for_its_loads_and_declined_for_unknown_ones() -> None:
    home = home_of(load("wh", 4.0, 0.1), load("freezer", 0.2, 0.0, never=True))

    assert home.plan_ack(award(["wh"], 4.0)) == AckPlan(True, ("wh",), 4.0)
    assert home.plan_ack(award(["boiler"], 2.0, award_id="awd-2")).accepted is False
    assert home.plan_ack(award(["freezer"], 0.2, award_id="awd-3")).accepted is False


def test_direct_award_takes_the_loads_the_terms_allow_at_its_price() -> None:
    home = home_of(
        load("wh", 4.0, 0.10),
        load("ev", 7.4, 0.25, kind=LoadKind.EV_CHARGER),
        load("hvac", 3.0, 0.40, kind=LoadKind.HVAC),
        load("short", 1.0, 0.05, max_off=15),
    )

    plan = home.plan_ack(award([], 0.0, kind=EventKind.DIRECT, price=0.30))

    assert plan == AckPlan(True, ("wh", "ev"), 11.4)
    assert home.plan_ack(award([], 0.0, kind=EventKind.DIRECT, price=0.01)).accepted is False


# --- relays and restore ---------------------------------------------------------------------


async def test_restore_switches_on_only_the_loads_it_switched_off() -> None:
    home = home_of(load("wh", 4.0, 0.1), load("pool", 1.0, 0.05), load("ev", 7.4, 0.2))
    held = award(["wh", "pool"], 5.0, stagger=0.0)
    home.take(held, home.plan_ack(held))
    home.set_relay("pool", on=False)  # the owner switched the pool pump off before the start

    switched = home.switch_off("awd-1")
    sample, event_id = home.sample(1.0)

    assert switched == ["wh"]
    assert event_id == "evt-1"
    assert sample.shed_kw == pytest.approx(4.0, rel=0.2)
    assert sample.loads["wh"] == 0.0

    restored = await home.restore("awd-1", stagger_s=0.0)

    assert [record.load_id for record in restored] == ["wh"]
    assert home.loads["wh"].relay_on is True
    assert home.loads["pool"].relay_on is False
    assert home.loads["ev"].relay_on is True
    assert home.holdings["awd-1"].status is HomeEventStatus.DONE
    assert home.held_awards() == []
    assert await home.restore("awd-1", stagger_s=0.0) == []


async def test_restore_is_staggered_within_the_award_stagger() -> None:
    stagger = 0.4
    loads = [load(f"l{index}", 1.0, 0.1) for index in range(8)]
    home = home_of(*loads, seed=3)
    held = award([item.load_id for item in loads], 8.0)
    home.take(held, home.plan_ack(held))
    home.switch_off("awd-1")
    began = utc_now()

    restored = await home.restore("awd-1", stagger_s=stagger)

    delays = [record.delay_s for record in restored]
    assert len(restored) == 8
    assert all(0.0 <= delay <= stagger for delay in delays)
    assert len(set(delays)) == 8  # spread out, not in lock-step
    assert delays == sorted(delays)
    for record in restored:
        waited = (record.restored_at - began).total_seconds()
        assert waited >= record.delay_s - 0.01  # never before its planned delay
    assert all(item.relay_on for item in loads)


async def test_opt_out_gives_loads_back_at_once_and_stops_counting_them_as_shed() -> None:
    home = home_of(load("wh", 4.0, 0.1), load("ev", 7.4, 0.2))
    held = award(["wh", "ev"], 11.4)
    home.take(held, home.plan_ack(held))
    home.switch_off("awd-1")

    assert home.release("evt-1", "ev") == ["ev"]
    sample, _ = home.sample(1.0)

    assert home.loads["ev"].relay_on is True
    assert home.loads["wh"].relay_on is False
    assert sample.shed_kw == pytest.approx(4.0, rel=0.2)
    assert home.held_loads() == {"wh"}


def test_switch_off_before_award_is_taken_does_nothing() -> None:
    home = home_of(load("wh", 4.0, 0.1))

    assert home.switch_off("awd-unknown") == []
    assert home.loads["wh"].relay_on is True


# --- appliance model ------------------------------------------------------------------------


def test_power_is_noisy_around_the_rating_and_zero_behind_an_open_relay() -> None:
    rng = random.Random(5)
    heater = load("wh", 4.0, 0.1)

    readings = [heater.power_kw(rng) for _ in range(500)]
    heater.relay_on = False

    assert statistics.mean(readings) == pytest.approx(4.0, rel=0.01)
    assert 0.05 < statistics.stdev(readings) < 0.25
    assert heater.power_kw(rng) == 0.0


def test_duty_cycle_holds_on_average() -> None:
    rng = random.Random(11)
    heater = load("wh", 4.0, 0.1)
    heater.duty_cycle, heater.cycle_s = 0.35, 60.0

    running = 0
    for _ in range(20_000):
        heater.step(1.0, rng)
        running += heater.running

    assert running / 20_000 == pytest.approx(0.35, abs=0.05)


def test_generated_homes_are_seeded_and_realistic() -> None:
    first = [random_loads(random.Random(f"7:{index}")) for index in range(300)]
    again = [random_loads(random.Random(f"7:{index}")) for index in range(300)]
    loads = [item for home in first for item in home]

    assert [[item.spec for item in home] for home in first] == [
        [item.spec for item in home] for home in again
    ]
    assert all(any(item.curtailable and item.relay_on for item in home) for home in first)
    kinds = {item.spec.kind for item in loads}
    assert kinds == {profile.kind for profile in PROFILES}
    heaters = [item.rated_kw for item in loads if item.spec.kind is WATER_HEATER.kind]
    chargers = {item.rated_kw for item in loads if item.spec.kind is EV_CHARGER.kind}
    assert min(heaters) >= 3.0
    assert max(heaters) <= 4.5
    assert chargers == {3.7, 7.4, 11.0}
    freezers = [item for item in loads if item.spec.name == "Freezer"]
    assert freezers
    assert all(not item.curtailable for item in freezers)
    assert all(len({item.load_id for item in home}) == len(home) for home in first)


# --- a fleet against a real aggregator ------------------------------------------------------

FAST_HOMES = FleetConfig(
    timing=HomeTiming(
        event_sample_s=0.2,
        event_report_s=0.4,
        idle_sample_s=1.0,
        idle_report_s=2.0,
        bid_delay_max_s=0.1,
    ),
    backoff_base_s=0.05,
    backoff_max_s=0.2,
)


async def until_status(server: RunningServer, event_id: str, status: str) -> None:
    """Wait until the event reaches ``status``."""

    async def reached() -> bool:
        return bool((await server.event(event_id))["status"] == status)

    await wait_for(reached, timeout=10, what=f"event {status}")


async def test_fleet_enrols_connects_bids_and_carries_out_an_event(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with Fleet(server.url, server.operator_token, seed=4, config=FAST_HOMES) as fleet:
        homes = await fleet.start(6)

        _, listed = await server.request("GET", "/api/v1/homes", expect=200)
        by_id = {item["home_id"]: item for item in listed["homes"]}
        assert fleet.connected == 6
        for home in homes:
            assert by_id[home.home_id]["connected"]
            assert by_id[home.home_id]["enrolled"]
            assert [item["load_id"] for item in by_id[home.home_id]["loads"]] == list(home.loads)
        flexible = sum(home.flexible_kw for home in homes)

        event = await server.create_event(
            target_kw=round(flexible * 0.3, 1), price_cap=0.4, restore_stagger_s=0.5
        )

        async def committed() -> bool:
            detail = await server.event(event["id"])
            return bool(detail["status"] == "active" and detail["delivered_kw"] > 0)

        await wait_for(committed, timeout=10, what="event active with delivery")
        detail = await server.event(event["id"])
        first = detail["rounds"][0]
        assert first["bids"] == first["offered_homes"] == 6
        assert detail["committed_kw"] >= detail["target_kw"]
        stored = await server.store.bids_for(event["id"], 1)
        for bid in stored:
            home = fleet.home(bid.home_id)
            prices = [step.price for step in bid.steps]
            assert prices == sorted(prices)
            assert all(home.loads[item].curtailable for step in bid.steps for item in step.loads)
        awarded = {item["home_id"]: item for item in detail["awards"]}
        for home_id, item in awarded.items():
            assert item["status"] == "acked"
            holding = fleet.home(home_id).holdings[item["award_id"]]
            assert holding.status is HomeEventStatus.ACTIVE
            assert all(
                not fleet.home(home_id).loads[name].relay_on
                or fleet.home(home_id).loads[name].level_kw is not None
                for name in holding.switched_off
            )

        await wait_for(
            lambda: all(
                holding.status is HomeEventStatus.DONE
                for home in homes
                for holding in home.holdings.values()
            ),
            timeout=15,
            what="every award restored",
        )
        assert (await server.event(event["id"]))["status"] == "completed"
        switched = [
            home.loads[name]
            for home in homes
            for holding in home.holdings.values()
            for name in holding.switched_off
        ]
        assert switched
        assert all(item.relay_on and item.level_kw is None for item in switched)


async def test_dropped_home_reconnects_and_keeps_its_award(
    server: RunningServer,
) -> None:
    async with Fleet(server.url, server.operator_token, seed=9, config=FAST_HOMES) as fleet:
        homes = await fleet.start(3)
        event = await server.create_event(
            target_kw=0.5, price_cap=0.4, end=utc_now() + timedelta(seconds=12)
        )

        await until_status(server, event["id"], "active")
        detail = await server.event(event["id"])
        award_info = detail["awards"][0]
        home = fleet.home(award_info["home_id"])
        assert home.held_awards()[0].status is HomeEventStatus.ACTIVE

        await fleet.drop(home)
        assert not fleet.is_connected(home)
        assert home.held_awards()  # still carrying it out offline
        await fleet.reconnect(home)
        await wait_for(lambda: fleet.is_connected(home), what="reconnected")
        await asyncio.sleep(server.settings.drop_grace_s + 0.5)

        detail = await server.event(event["id"])
        assert [item["status"] for item in detail["awards"]] == ["acked"]
        assert len(detail["rounds"]) == 1
        assert len(homes) == 3


async def test_opt_out_through_the_fleet_restores_and_is_recorded(
    server: RunningServer,
) -> None:
    async with Fleet(server.url, server.operator_token, seed=2, config=FAST_HOMES) as fleet:
        await fleet.start(2)
        event = await server.create_event(target_kw=0.5, price_cap=0.4)

        await until_status(server, event["id"], "active")
        award_info = (await server.event(event["id"]))["awards"][0]
        home = fleet.home(award_info["home_id"])

        await fleet.opt_out(home, event["id"])

        detail = await server.event(event["id"])
        assert detail["awards"][0]["status"] == "opted_out"
        assert all(home.loads[name].relay_on for name in award_info["loads"])


async def test_fleet_with_a_wrong_operator_token_fails_clearly(server: RunningServer) -> None:
    async with Fleet(server.url, "not-a-token", config=FAST_HOMES) as fleet:
        with pytest.raises(SimulatorError, match="HTTP 401"):
            await fleet.start(1)
