"""A virtual home for the fleet simulator: its appliances, samples, and the home policy at work.

:class:`VirtualHome` runs the home policy real homes run (:mod:`jeisson.policy`, shared with
the Home Assistant integration): the step curve it bids from its loads, their recent measured
power and the owner's terms (:meth:`VirtualHome.bid_steps`), how it answers an award
(:meth:`VirtualHome.plan_ack`), each load's award state as one
:class:`~jeisson.policy.awards.LoadAward`, which loads it moves at window start
(:meth:`VirtualHome.switch_off`: off, down to a level, or up in a power-up event) and the
staggered restore of only those loads (:meth:`VirtualHome.restore`). It has no network code:
:mod:`aggregator.simulation.agent` connects it to an aggregator through
:class:`~jeisson.client.HomeClient`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from aggregator.simulation.loads import KW_DECIMALS, SimulatedLoad
from jeisson.common.protocol import (
    Award,
    BidStep,
    HeldAward,
    HomeEventStatus,
    Inventory,
    Offer,
    OptOutReason,
    Sample,
    utc_now,
)
from jeisson.policy.awards import AwardDecision, LoadAward, LoadState, decide, moved_kw
from jeisson.policy.bidding import BidContext, FlexLoad, build_steps
from jeisson.policy.recent import RecentPower

HOURS_PER_DAY: Final = 24
_LIVE: Final = frozenset({HomeEventStatus.AWARDED, HomeEventStatus.ACTIVE})


@dataclass(frozen=True, slots=True)
class HomeTiming:
    """How often a virtual home samples and reports, and how fast it answers offers (seconds)."""

    event_sample_s: float = 1.0
    """Sampling interval while it holds loads off."""
    event_report_s: float = 5.0
    """Telemetry batch interval while it holds loads off."""
    idle_sample_s: float = 15.0
    idle_report_s: float = 60.0
    bid_delay_max_s: float = 1.0
    """Longest think time before answering an offer."""


@dataclass(frozen=True, slots=True)
class AckPlan:
    """How a home answers an award: whether it takes it on, with which loads and kW."""

    accepted: bool
    loads: tuple[str, ...] = ()
    kw: float = 0.0


@dataclass(frozen=True, slots=True)
class RestoreRecord:
    """One load switched back on after an event."""

    event_id: str
    award_id: str
    load_id: str
    delay_s: float
    """Planned delay after the restore began (uniform within the stagger)."""
    restored_at: datetime


@dataclass(slots=True)
class Holding:
    """An award the home took on: each load's state as one object (the home policy's)."""

    award: Award
    loads: dict[str, LoadAward]
    kw: float
    status: HomeEventStatus = HomeEventStatus.AWARDED

    @property
    def load_ids(self) -> tuple[str, ...]:
        """Return the loads taken on."""
        return tuple(self.loads)

    @property
    def held(self) -> set[str]:
        """Return the loads still held under this award (awarded or moved, not given back)."""
        if self.status not in _LIVE:
            return set()
        return {
            load_id
            for load_id, load in self.loads.items()
            if load.state in (LoadState.AWARDED, LoadState.HELD)
        }

    @property
    def switched_off(self) -> dict[str, float]:
        """Return the loads this award moved, with the power they drew before."""
        return {
            load_id: load.before_kw
            for load_id, load in self.loads.items()
            if load.before_kw is not None
        }

    @property
    def given_back(self) -> set[str]:
        """Return the loads the owner took back."""
        return {
            load_id
            for load_id, load in self.loads.items()
            if load.state is LoadState.RELEASED and load.reason is not None
        }

    def moved_kw(self, rated: dict[str, float]) -> float:
        """Return what it delivers now (shed, or added in a power-up event)."""
        if self.status is not HomeEventStatus.ACTIVE:
            return 0.0
        return moved_kw(self.loads.values(), rated)


def window_hours(start: datetime, end: datetime) -> frozenset[int]:
    """Return the UTC hours of day a window touches."""
    hours: set[int] = set()
    cursor = start.replace(minute=0, second=0, microsecond=0)
    while cursor < end and len(hours) < HOURS_PER_DAY:
        hours.add(cursor.hour)
        cursor += timedelta(hours=1)
    return frozenset(hours)


class VirtualHome:
    """One simulated home: appliances, the owner's terms, and the awards it carries out."""

    def __init__(
        self,
        name: str,
        loads: Sequence[SimulatedLoad],
        *,
        rng: random.Random,
        timing: HomeTiming | None = None,
        home_id: str = "",
    ) -> None:
        """Create a home with its appliances; ``rng`` draws noise and restore delays."""
        self.name = name
        self.home_id = home_id
        self.loads = {load.load_id: load for load in loads}
        self.timing = timing or HomeTiming()
        self.holdings: dict[str, Holding] = {}
        self.restores: list[RestoreRecord] = []
        self.changed = asyncio.Event()
        """Set whenever a holding changes state (telemetry then reports at once)."""
        self.rng = rng
        self.recent_power = RecentPower()
        """Each load's recent measured power: what its bid steps expect it to move."""

    # --- what the home says about itself --------------------------------------------------

    def inventory(self) -> Inventory:
        """Return the inventory sent in every session."""
        return Inventory(loads=[load.spec for load in self.loads.values()])

    def held_awards(self) -> list[HeldAward]:
        """Return the awards still being carried out (reported in the hello, so it resumes)."""
        return [
            HeldAward(
                event_id=holding.award.event_id,
                award_id=award_id,
                status=holding.status,
                loads=list(holding.load_ids),
            )
            for award_id, holding in self.holdings.items()
            if holding.status is not HomeEventStatus.DONE
        ]

    def held_loads(self) -> set[str]:
        """Return the loads under a live award (awarded or moved)."""
        return {load for holding in self.holdings.values() for load in holding.held}

    @property
    def flexible_kw(self) -> float:
        """Return the rated kW of the loads the owner lets Jeisson curtail."""
        return sum(load.rated_kw for load in self.loads.values() if load.curtailable)

    # --- the rules (the home policy's, as real homes run them) ----------------------------

    def given_back(self, event_id: str) -> set[str]:
        """Return the loads the owner took back (opted out of) in an event."""
        return {
            load
            for holding in self.holdings.values()
            if holding.award.event_id == event_id
            for load in holding.given_back
        }

    def _usable(self, event_id: str) -> Callable[[FlexLoad], bool]:
        """Return which loads may take part: relay on, not held, not taken back in the event."""
        busy = self.held_loads() | self.given_back(event_id)
        return lambda flex: flex.load_id not in busy and self.loads[flex.load_id].relay_on

    def _flex_loads(self) -> dict[str, FlexLoad]:
        return {load_id: load.flex_load() for load_id, load in self.loads.items()}

    def bid_steps(self, offer: Offer) -> list[BidStep]:
        """Return the step curve answering ``offer`` by the home policy (empty: nothing).

        One step per load (more for a charger or thermostat that turns down), each the load's
        recent measured power, at the owner's price; loads held, taken back in this event,
        switched off by the owner or whose terms do not allow the offer do not bid.
        """
        context = BidContext(
            offer.window_start, offer.window_end, offer.price_cap, UTC, offer.is_power_up
        )
        return build_steps(
            self._flex_loads().values(),
            context,
            is_available=self._usable(offer.event_id),
            recent_kw=self.recent_power.mean_kw,
        )

    def _decide(self, award: Award) -> AwardDecision:
        return decide(
            award,
            self._flex_loads(),
            tz=UTC,
            is_available=self._usable(award.event_id),
            recent_kw=self.recent_power.mean_kw,
        )

    def plan_ack(self, award: Award) -> AckPlan:
        """Decide how to answer an award (:func:`jeisson.policy.awards.decide`)."""
        existing = self.holdings.get(award.award_id)
        if existing is not None:
            return AckPlan(True, existing.load_ids, existing.kw)
        decision = self._decide(award)
        return AckPlan(decision.accepted, tuple(decision.load_ids), decision.kw)

    def take(self, award: Award, plan: AckPlan) -> Holding | None:
        """Record an accepted award (idempotent); return its holding, None if declined."""
        if not plan.accepted:
            return None
        holding = self.holdings.get(award.award_id)
        if holding is None:
            power_up = award.is_power_up
            loads = {
                load_id: LoadAward(
                    load_id=load_id, level_kw=award.level(load_id), power_up=power_up
                )
                for load_id in plan.loads
            }
            holding = Holding(award=award, loads=loads, kw=plan.kw)
            self.holdings[award.award_id] = holding
        return holding

    def switch_off(self, award_id: str) -> list[str]:
        """Move an award's loads at window start; return the loads moved.

        Shed: a load at a level is turned down to it, any other switched off. Power-up: a load
        runs at its rating (or level) now. A load already where the award wants it (relay off
        for a shed) is left alone and therefore never restored by us.
        """
        holding = self.holdings.get(award_id)
        if holding is None or holding.status is not HomeEventStatus.AWARDED:
            return []
        moved: list[str] = []
        now = utc_now()
        for load_id in sorted(holding.held):
            load = self.loads[load_id]
            awarded = holding.loads[load_id]
            if not load.relay_on:
                awarded.state = LoadState.UNTOUCHED
                continue
            # Shed: what switching it off saves; power-up: what it draws now (it adds the rest).
            before = (
                load.power_kw(self.rng) if awarded.power_up else load.shed_estimate_kw(self.rng)
            )
            awarded.hold(before, now)
            if awarded.power_up:
                load.forced_on = True
                load.level_kw = awarded.level_kw
            elif awarded.level_kw is not None:
                load.level_kw = awarded.level_kw
            else:
                load.relay_on = False
            moved.append(load_id)
        holding.status = HomeEventStatus.ACTIVE
        self.changed.set()
        return moved

    async def restore(self, award_id: str, stagger_s: float) -> list[RestoreRecord]:
        """Give back only the loads this award moved, each after a random delay.

        Delays are uniform in ``[0, stagger_s]`` so a feeder sees no rebound spike. Calling it
        again for the same award does nothing.
        """
        holding = self.holdings.get(award_id)
        if holding is None or holding.status not in _LIVE:
            return []
        holding.status = HomeEventStatus.RESTORING
        self.changed.set()
        pending = [load_id for load_id, load in holding.loads.items() if load.held]
        plan = sorted((self.rng.uniform(0.0, max(0.0, stagger_s)), load) for load in pending)
        done: list[RestoreRecord] = []
        waited = 0.0
        try:
            for delay, load_id in plan:
                await asyncio.sleep(delay - waited)
                waited = delay
                done.append(self._give_back(holding, load_id, delay))
        finally:
            holding.status = HomeEventStatus.DONE
            self.changed.set()
        return done

    def _put_back(self, holding: Holding, load_id: str, reason: str | None = None) -> None:
        """Return one moved load to what it did before (unless another live award holds it)."""
        awarded = holding.loads[load_id]
        awarded.release(utc_now(), holding.award.window_end, self.loads[load_id].rated_kw, reason)
        still_held = any(
            load_id in other.loads and other.loads[load_id].held
            for other in self.holdings.values()
            if other is not holding and other.status is HomeEventStatus.ACTIVE
        )
        if still_held:
            return
        load = self.loads[load_id]
        load.relay_on = True
        load.level_kw = None
        load.forced_on = False

    def _give_back(self, holding: Holding, load_id: str, delay: float) -> RestoreRecord:
        """Restore one load at the end of its award and log it."""
        self._put_back(holding, load_id)
        award = holding.award
        record = RestoreRecord(award.event_id, award.award_id, load_id, delay, utc_now())
        self.restores.append(record)
        return record

    def release(self, event_id: str, load_id: str | None = None) -> list[str]:
        """Give loads of an event back to the owner at once (opt-out); return those restored."""
        restored: list[str] = []
        for holding in self.holdings.values():
            if holding.award.event_id != event_id or holding.status not in _LIVE:
                continue
            chosen = holding.held if load_id is None else holding.held & {load_id}
            for load in sorted(chosen):
                moved = holding.loads[load].held
                if moved:
                    self._put_back(holding, load, OptOutReason.USER.value)
                    restored.append(load)
                else:
                    holding.loads[load].release(
                        utc_now(), holding.award.window_end, 0.0, OptOutReason.USER.value
                    )
            if not holding.held:
                holding.status = HomeEventStatus.DONE
        self.changed.set()
        return restored

    def set_relay(self, load_id: str, on: bool) -> None:
        """Flip a relay as the homeowner would (e.g. switch the pool pump off)."""
        self.loads[load_id].relay_on = on

    def sample(self, dt: float) -> tuple[Sample, str | None]:
        """Advance the appliances by ``dt`` seconds and measure; return the sample and event."""
        for load in self.loads.values():
            load.step(dt, self.rng)
        per_load = {load_id: load.power_kw(self.rng) for load_id, load in self.loads.items()}
        active = [h for h in self.holdings.values() if h.status is HomeEventStatus.ACTIVE]
        rated = {load_id: load.rated_kw for load_id, load in self.loads.items()}
        now = utc_now()
        self.recent_power.add(now, per_load)
        sample = Sample(
            ts=now,
            power_kw=round(sum(per_load.values()), KW_DECIMALS),
            shed_kw=round(sum(holding.moved_kw(rated) for holding in active), KW_DECIMALS),
            loads=per_load,
        )
        return sample, (active[0].award.event_id if active else None)
