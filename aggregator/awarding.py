"""Turning a round's bids into a clearing problem, and its result into per-home awards."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from aggregator.clearing import ClearingResult, StepTable, clear
from aggregator.records import AwardRecord, AwardStatus, BidRecord, new_id
from jeisson.common.protocol import BidStep, Load


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """What clearing one round produced."""

    result: ClearingResult
    awards: list[AwardRecord]
    steps: int


def split_kw_by_rating(
    kw: float, loads: Sequence[str], inventory: Mapping[str, Load]
) -> dict[str, float]:
    """Split ``kw`` over ``loads`` in proportion to their rated power (evenly if unrated)."""
    rated = [inventory[load].rated_kw if load in inventory else 0.0 for load in loads]
    total = sum(rated)
    if total <= 0:
        return {load: kw / len(loads) for load in loads}
    return {load: kw * share / total for load, share in zip(loads, rated, strict=True)}


def clear_round(
    *,
    event_id: str,
    round_number: int,
    bids: Sequence[BidRecord],
    target_kw: float,
    price_cap: float,
    last_curtailed: Mapping[str, datetime | None],
    inventories: Mapping[str, Mapping[str, Load]],
    now: datetime,
    reliability: Mapping[str, float] | None = None,
    default_reliability: float = 1.0,
) -> RoundOutcome:
    """Clear a round in merit order and build one award per home with accepted steps.

    Every award carries the round's uniform clearing price. ``reliability`` gives homes'
    scores (expected kW = bid kW x score); homes not in it count ``default_reliability``.
    """
    homes = sorted({bid.home_id for bid in bids if bid.steps})
    home_index = {home_id: index for index, home_id in enumerate(homes)}
    flat: list[tuple[str, BidStep]] = []
    rows: list[tuple[int, int, float, float, float | None]] = []
    for bid in bids:
        if not bid.steps:
            continue
        curtailed = last_curtailed.get(bid.home_id)
        stamp = curtailed.timestamp() if curtailed is not None else -math.inf
        for step_index, step in enumerate(bid.steps):
            flat.append((bid.home_id, step))
            rows.append((home_index[bid.home_id], step_index, step.kw, step.price, stamp))
    scores = reliability or {}
    step_scores = [scores.get(home_id, default_reliability) for home_id, _ in flat]
    result = clear(StepTable.from_rows(rows, step_scores), target_kw, price_cap)
    if result.clearing_price is None:
        return RoundOutcome(result=result, awards=[], steps=len(rows))

    accepted: dict[str, dict[str, float]] = defaultdict(dict)
    levels: dict[str, dict[str, float]] = defaultdict(dict)
    # Merit order takes a home's steps in bid order (prices never fall within a bid and equal
    # prices go by step index), so a load's accepted partial steps are its first ones, and the
    # level of the last of them is where the load runs; a whole step after them takes it off.
    for index in sorted(result.accepted.tolist()):
        home_id, step = flat[index]
        share = split_kw_by_rating(step.kw, step.loads, inventories.get(home_id, {}))
        for load_id, kw in share.items():
            accepted[home_id][load_id] = accepted[home_id].get(load_id, 0.0) + kw
            if step.level_kw is None:
                levels[home_id].pop(load_id, None)
            else:
                levels[home_id][load_id] = step.level_kw
    awards = [
        AwardRecord(
            award_id=new_id("awd"),
            event_id=event_id,
            round=round_number,
            home_id=home_id,
            kw=sum(load_kw.values()),
            price=result.clearing_price,
            status=AwardStatus.SENT,
            sent_at=now,
            load_kw=load_kw,
            load_levels=levels.get(home_id, {}),
        )
        for home_id, load_kw in accepted.items()
    ]
    return RoundOutcome(result=result, awards=awards, steps=len(rows))
