"""A virtual home for the fleet simulator: its bidding rules, relays, samples and restore.

:class:`VirtualHome` decides what the Home Assistant integration decides for a real home: the
step curve it bids from its loads and the owner's terms (:meth:`VirtualHome.bid_steps`), how it
answers an award (:meth:`VirtualHome.plan_ack`), which relays it opens at window start
(:meth:`VirtualHome.switch_off`), and the staggered restore of only those loads
(:meth:`VirtualHome.restore`). It has no network code: :mod:`aggregator.simulation.agent`
connects it to an aggregator through :class:`~jeisson.client.HomeClient`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import Final

from aggregator.simulation.loads import KW_DECIMALS, SimulatedLoad
from jeisson.common.protocol import (
    MAX_STEPS_PER_BID,
    Award,
    BidStep,
    EventKind,
    HeldAward,
    HomeEventStatus,
    Inventory,
    Offer,
    Sample,
    utc_now,
)

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
    """An award the home took on and where it is in carrying it out."""

    award: Award
    loads: tuple[str, ...]
    kw: float
    status: HomeEventStatus = HomeEventStatus.AWARDED
    switched_off: dict[str, float] = field(default_factory=dict)
    """Loads this award switched off, with the power they drew before (the shed estimate)."""
    released: set[str] = field(default_factory=set)
    """Loads the homeowner took back (opt-out)."""

    @property
    def held(self) -> set[str]:
        """Return the loads still held under this award."""
        if self.status not in _LIVE:
            return set()
        return set(self.loads) - self.released

    @property
    def shed_kw(self) -> float:
        """Return the reduction it delivers now (switched-off loads not yet released)."""
        if self.status is not HomeEventStatus.ACTIVE:
            return 0.0
        return sum(kw for load, kw in self.switched_off.items() if load not in self.released)


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
                loads=list(holding.loads),
            )
            for award_id, holding in self.holdings.items()
            if holding.status is not HomeEventStatus.DONE
        ]

    def held_loads(self) -> set[str]:
        """Return the loads under a live award (awarded or switched off)."""
        return {load for holding in self.holdings.values() for load in holding.held}

    @property
    def flexible_kw(self) -> float:
        """Return the rated kW of the loads the owner lets Jeisson curtail."""
        return sum(load.rated_kw for load in self.loads.values() if load.curtailable)

    # --- the rules ------------------------------------------------------------------------

    def given_back(self, event_id: str) -> set[str]:
        """Return the loads the owner took back (opted out of) in an event."""
        return {
            load
            for holding in self.holdings.values()
            if holding.award.event_id == event_id
            for load in holding.released
        }

    def _available(
        self, price: float, start: datetime, end: datetime, event_id: str
    ) -> list[SimulatedLoad]:
        """Return the loads the owner's terms allow at ``price`` for the window.

        Loads already held, and loads the owner took back in this event (the aggregator does
        not ask for those again), are left out.
        """
        window_s = (end - start).total_seconds()
        hours = window_hours(start, end)
        held = self.held_loads() | self.given_back(event_id)
        return [
            load
            for load in self.loads.values()
            if load.relay_on
            and load.rated_kw > 0
            and load.load_id not in held
            and load.allows(price, window_s, hours)
        ]

    def bid_steps(self, offer: Offer) -> list[BidStep]:
        """Return the step curve answering ``offer`` (empty when nothing qualifies).

        One step per distinct minimum price, cheapest first, of the loads whose terms allow the
        offer's cap and window and that are not already held; loads switched off by the owner do
        not bid. Beyond :data:`MAX_STEPS_PER_BID` the dearest loads share the last step, at the
        highest price among them.
        """
        loads = sorted(
            self._available(offer.price_cap, offer.window_start, offer.window_end, offer.event_id),
            key=lambda load: (load.terms.min_price, load.load_id),
        )
        groups = [
            list(members) for _, members in groupby(loads, key=lambda load: load.terms.min_price)
        ]
        if len(groups) > MAX_STEPS_PER_BID:
            tail = [load for group in groups[MAX_STEPS_PER_BID - 1 :] for load in group]
            groups = [*groups[: MAX_STEPS_PER_BID - 1], tail]
        return [
            BidStep(
                kw=round(sum(load.rated_kw for load in group), KW_DECIMALS),
                price=max(load.terms.min_price for load in group),
                loads=[load.load_id for load in group],
            )
            for group in groups
        ]

    def plan_ack(self, award: Award) -> AckPlan:
        """Decide how to answer an award.

        Market: accept when every awarded load is a curtailable load not held by another award.
        Direct: take on every load the terms allow at the award's price; decline if none.
        """
        existing = self.holdings.get(award.award_id)
        if existing is not None:
            return AckPlan(True, existing.loads, existing.kw)
        if award.kind is EventKind.DIRECT:
            loads = self._available(
                award.price, award.window_start, award.window_end, award.event_id
            )
            if not loads:
                return AckPlan(False)
            kw = round(sum(load.rated_kw for load in loads), KW_DECIMALS)
            return AckPlan(True, tuple(load.load_id for load in loads), kw)
        held = self.held_loads()
        usable = all(
            load in self.loads and self.loads[load].curtailable and load not in held
            for load in award.loads
        )
        if not award.loads or not usable:
            return AckPlan(False)
        return AckPlan(True, tuple(award.loads), award.kw)

    def take(self, award: Award, plan: AckPlan) -> Holding | None:
        """Record an accepted award (idempotent); return its holding, None if declined."""
        if not plan.accepted:
            return None
        holding = self.holdings.get(award.award_id)
        if holding is None:
            holding = Holding(award=award, loads=plan.loads, kw=plan.kw)
            self.holdings[award.award_id] = holding
        return holding

    def switch_off(self, award_id: str) -> list[str]:
        """Open the relays of an award's loads (window start); return the loads switched off.

        A load whose relay is already off is left alone and is therefore never restored by us.
        """
        holding = self.holdings.get(award_id)
        if holding is None or holding.status is not HomeEventStatus.AWARDED:
            return []
        switched: list[str] = []
        for load_id in holding.held:
            load = self.loads[load_id]
            if not load.relay_on:
                continue
            holding.switched_off[load_id] = load.shed_estimate_kw(self.rng)
            load.relay_on = False
            switched.append(load_id)
        holding.status = HomeEventStatus.ACTIVE
        self.changed.set()
        return sorted(switched)

    async def restore(self, award_id: str, stagger_s: float) -> list[RestoreRecord]:
        """Switch back on only the loads this award switched off, each after a random delay.

        Delays are uniform in ``[0, stagger_s]`` so a feeder sees no rebound spike. Calling it
        again for the same award does nothing.
        """
        holding = self.holdings.get(award_id)
        if holding is None or holding.status not in _LIVE:
            return []
        holding.status = HomeEventStatus.RESTORING
        self.changed.set()
        pending = [load for load in holding.switched_off if load not in holding.released]
        plan = sorted((self.rng.uniform(0.0, max(0.0, stagger_s)), load) for load in pending)
        done: list[RestoreRecord] = []
        waited = 0.0
        try:
            for delay, load_id in plan:
                await asyncio.sleep(delay - waited)
                waited = delay
                done.append(self._close_relay(holding, load_id, delay))
        finally:
            holding.status = HomeEventStatus.DONE
            self.changed.set()
        return done

    def _close_relay(self, holding: Holding, load_id: str, delay: float) -> RestoreRecord:
        """Switch one load back on (unless another live award still holds it) and log it."""
        still_held = any(
            load_id in other.switched_off and load_id in other.held
            for other in self.holdings.values()
            if other is not holding and other.status is HomeEventStatus.ACTIVE
        )
        if not still_held:
            self.loads[load_id].relay_on = True
        award = holding.award
        record = RestoreRecord(award.event_id, award.award_id, load_id, delay, utc_now())
        self.restores.append(record)
        return record

    def release(self, event_id: str, load_id: str | None = None) -> list[str]:
        """Give loads of an event back to the owner at once (opt-out); return those switched on."""
        restored: list[str] = []
        for holding in self.holdings.values():
            if holding.award.event_id != event_id or holding.status not in _LIVE:
                continue
            chosen = holding.held if load_id is None else holding.held & {load_id}
            for load in sorted(chosen):
                holding.released.add(load)
                if load in holding.switched_off:
                    self.loads[load].relay_on = True
                    restored.append(load)
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
        sample = Sample(
            ts=utc_now(),
            power_kw=round(sum(per_load.values()), KW_DECIMALS),
            shed_kw=round(sum(holding.shed_kw for holding in active), KW_DECIMALS),
            loads=per_load,
        )
        return sample, (active[0].award.event_id if active else None)
