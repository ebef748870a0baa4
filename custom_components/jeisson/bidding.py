"""The homeowner's loads into a bid step curve, by the shared home policy (no HA imports).

The rules live in :mod:`jeisson.policy.bidding`, which the fleet simulator runs too: one step
per load (more for a load with levels), each step's kW the load's recent measured mean power
(its rating when nothing measures it), each step's price the owner's minimum price for the load,
loads asking more than the offer's cap left out. Documented in docs/home-assistant.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, tzinfo

from jeisson.common.protocol import MAX_STEPS_PER_BID, BidStep
from jeisson.policy.bidding import BidContext, bid_kw
from jeisson.policy.bidding import build_steps as policy_steps
from jeisson.policy.terms import Ineligible, overlaps_off_limits
from jeisson.policy.terms import ineligible_reason as terms_reason

from .models import LoadConfig

type AvailabilityFn = Callable[[LoadConfig], bool]
type RecentFn = Callable[[str], float | None]

__all__ = [
    "Ineligible",
    "bid_kw",
    "build_steps",
    "eligible_loads",
    "ineligible_reason",
    "loads_kw",
    "overlaps_off_limits",
]


def _no_figure(_load_id: str) -> float | None:
    return None


def ineligible_reason(
    load: LoadConfig,
    *,
    window_start: datetime,
    window_end: datetime,
    tz: tzinfo,
    available: bool,
    price: float | None = None,
) -> Ineligible | None:
    """Return why ``load`` may not be moved in this window (None when it may)."""
    return terms_reason(
        load.terms,
        window_start=window_start,
        window_end=window_end,
        tz=tz,
        available=available,
        price=price,
    )


def eligible_loads(
    loads: Iterable[LoadConfig],
    *,
    window_start: datetime,
    window_end: datetime,
    price: float,
    tz: tzinfo,
    is_available: AvailabilityFn,
) -> list[LoadConfig]:
    """Return the loads whose terms allow moving them in this window at this price."""
    return [
        load
        for load in loads
        if ineligible_reason(
            load,
            window_start=window_start,
            window_end=window_end,
            tz=tz,
            available=is_available(load),
            price=price,
        )
        is None
    ]


def build_steps(
    loads: Iterable[LoadConfig],
    *,
    window_start: datetime,
    window_end: datetime,
    price_cap: float,
    tz: tzinfo,
    is_available: AvailabilityFn,
    recent_kw: RecentFn = _no_figure,
    power_up: bool = False,
    max_steps: int = MAX_STEPS_PER_BID,
) -> list[BidStep]:
    """Return the bid step curve for an offer (empty when no load may bid)."""
    by_id = {load.load_id: load for load in loads}
    return policy_steps(
        (load.flex_load() for load in by_id.values()),
        BidContext(window_start, window_end, price_cap, tz, power_up),
        is_available=lambda flex: is_available(by_id[flex.load_id]),
        recent_kw=recent_kw,
        max_steps=max_steps,
    )


def loads_kw(loads: Mapping[str, LoadConfig], load_ids: Iterable[str]) -> float:
    """Return the rated kW of the given loads (unknown ids count zero)."""
    return sum(loads[load_id].rated_kw for load_id in load_ids if load_id in loads)
