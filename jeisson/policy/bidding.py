"""What a home bids: its loads' steps from the owner's terms and each load's recent power.

The rules (docs/home-assistant.md, "How your home bids"):

* **One step per load, more for a load that can be turned down.** A load that is only on or off
  bids one whole step. A load with levels (:class:`Flexibility`: a charger's lower currents, a
  thermostat's setpoint offsets) bids one partial step per level, down from where it runs now,
  then (unless its lowest level is a floor) a whole step for the rest. Each deeper step asks
  :attr:`Flexibility.step_markup` times the one before: the owner gives up more for more.
* **A step's kW is what the load is expected to move**: its recent measured mean power
  (:class:`~jeisson.policy.recent.RecentPower`), not its rating; a load nothing measures counts
  its rating. A load expected to move less than :data:`MIN_STEP_KW` does not bid.
* **Power-up events** (:attr:`~jeisson.common.protocol.Offer.is_power_up`): a load that can take
  more (:attr:`Flexibility.can_power_up`) bids one whole step, the headroom between its rating
  and what it draws now.
* **A step's price is the owner's minimum price** for the load (times the markup for deeper
  steps). A step asking more than the offer's cap is left out, with every deeper one of its load.
* Steps are ordered by price, then bigger load first, then load id, a load's own steps in depth
  order. Only when there are more steps than the protocol allows are whole steps of one price
  merged, and then the dearest steps left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from itertools import groupby
from typing import Final

from jeisson.common.protocol import MAX_STEPS_PER_BID, BidStep
from jeisson.policy.terms import Terms, ineligible_reason

MIN_STEP_KW: Final = 0.05
"""A step moving less than this (50 W) is not worth bidding."""
DEFAULT_STEP_MARKUP: Final = 1.5
"""Each deeper step of a load asks this many times the price of the one before."""
KW_DECIMALS: Final = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class Flexibility:
    """How a load can be moved besides being switched off."""

    levels_kw: tuple[float, ...] = ()
    """Powers (kW) it can run at while shedding, e.g. a charger's lower current limits."""
    level_shares: tuple[float, ...] = ()
    """Levels as shares of its expected power, e.g. a thermostat's setpoint offsets (0.6, 0.3)."""
    can_switch_off: bool = True
    """False when its lowest level is a floor (a charger that keeps charging)."""
    can_power_up: bool = False
    """It can take more load in a power-up event (run at its rating now)."""
    step_markup: float = DEFAULT_STEP_MARKUP

    def levels(self, expected_kw: float) -> list[float]:
        """Return the levels below ``expected_kw``, highest first."""
        candidates = {*self.levels_kw, *(share * expected_kw for share in self.level_shares)}
        ceiling = expected_kw - MIN_STEP_KW
        return sorted(
            {round(level, KW_DECIMALS) for level in candidates if level <= ceiling}, reverse=True
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class FlexLoad:
    """One load as the policy sees it: its rating, the owner's terms, how it can be moved."""

    load_id: str
    rated_kw: float
    terms: Terms = field(default_factory=Terms)
    flex: Flexibility = field(default_factory=Flexibility)


def expected_kw(load: FlexLoad, recent_kw: float | None) -> float:
    """Return what shedding ``load`` is expected to move: its recent mean power, else its rating."""
    if recent_kw is None:
        return load.rated_kw
    return max(0.0, min(recent_kw, load.rated_kw))


def load_steps(load: FlexLoad, recent_kw: float | None, *, power_up: bool = False) -> list[BidStep]:
    """Return one load's steps, shallowest first, before any price cap."""
    price = load.terms.min_price
    if power_up:
        headroom = load.rated_kw - (recent_kw or 0.0)
        if not load.flex.can_power_up or headroom < MIN_STEP_KW:
            return []
        return [BidStep(kw=round(headroom, KW_DECIMALS), price=price, loads=[load.load_id])]
    current = expected_kw(load, recent_kw)
    steps: list[BidStep] = []
    for level in load.flex.levels(current):
        steps.append(
            BidStep(
                kw=round(current - level, KW_DECIMALS),
                price=round(price, 6),
                loads=[load.load_id],
                level_kw=level,
            )
        )
        current = level
        price *= load.flex.step_markup
    if load.flex.can_switch_off and current >= MIN_STEP_KW:
        steps.append(
            BidStep(kw=round(current, KW_DECIMALS), price=round(price, 6), loads=[load.load_id])
        )
    return steps


@dataclass(frozen=True, slots=True)
class BidContext:
    """The offer a home answers, as the policy needs it."""

    window_start: datetime
    window_end: datetime
    price_cap: float
    tz: tzinfo
    power_up: bool = False


def build_steps(
    loads: Iterable[FlexLoad],
    context: BidContext,
    *,
    is_available: Callable[[FlexLoad], bool],
    recent_kw: Callable[[str], float | None] = lambda _load_id: None,
    max_steps: int = MAX_STEPS_PER_BID,
) -> list[BidStep]:
    """Return the bid step curve answering an offer (empty when no load may bid)."""
    keyed: list[tuple[tuple[float, float, str, int], BidStep]] = []
    for load in loads:
        if load.rated_kw <= 0 or ineligible_reason(
            load.terms,
            window_start=context.window_start,
            window_end=context.window_end,
            tz=context.tz,
            available=is_available(load),
            price=context.price_cap,
        ):
            continue
        steps = load_steps(load, recent_kw(load.load_id), power_up=context.power_up)
        for depth, step in enumerate(steps):
            if step.price > context.price_cap:
                break  # this step and every deeper one of the load ask too much
            keyed.append(((step.price, -load.rated_kw, load.load_id, depth), step))
    keyed.sort(key=lambda item: item[0])
    steps = [step for _, step in keyed]
    if len(steps) > max_steps:
        steps = _merge_whole_steps(steps)[:max_steps]
    return steps


def _merge_whole_steps(steps: list[BidStep]) -> list[BidStep]:
    """Merge neighbouring whole steps of one price (partial steps name one load: kept)."""
    merged: list[BidStep] = []
    for (price, partial), group in groupby(
        steps, key=lambda step: (step.price, step.level_kw is not None)
    ):
        members = list(group)
        if partial:
            merged.extend(members)
            continue
        merged.append(
            BidStep(
                kw=round(sum(step.kw for step in members), KW_DECIMALS),
                price=price,
                loads=[load_id for step in members for load_id in step.loads],
            )
        )
    return merged


def bid_kw(steps: Iterable[BidStep]) -> float:
    """Return the kW of a whole curve."""
    return sum(step.kw for step in steps)
