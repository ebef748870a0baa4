"""A round's bids into awards: partial steps of one load are taken in order and award a level."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.awarding import clear_round
from aggregator.records import BidRecord
from aggregator.settlement.attribution import live_shed_by_event
from jeisson.common.protocol import BidStep, Load, LoadKind

NOW = datetime(2026, 12, 4, 17, tzinfo=UTC)
CHARGER = Load(load_id="ev", name="Charger", kind=LoadKind.EV_CHARGER, rated_kw=11.0)
HEATER = Load(load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=4.5)


def _bid(home_id: str, *steps: BidStep) -> BidRecord:
    return BidRecord("ev-1", 1, home_id, f"bid-{home_id}", tuple(steps), NOW)


type Awarded = dict[str, tuple[dict[str, float], dict[str, float]]]


def _clear(target_kw: float, *bids: BidRecord) -> Awarded:
    outcome = clear_round(
        event_id="ev-1",
        round_number=1,
        bids=bids,
        target_kw=target_kw,
        price_cap=1.0,
        last_curtailed={},
        inventories={bid.home_id: {"ev": CHARGER, "wh": HEATER} for bid in bids},
        now=NOW,
    )
    return {award.home_id: (award.load_kw, award.load_levels) for award in outcome.awards}


CHARGER_STEPS = (
    BidStep(kw=4.8, price=0.10, loads=["ev"], level_kw=6.0),
    BidStep(kw=4.6, price=0.20, loads=["ev"], level_kw=1.4),
    BidStep(kw=1.4, price=0.30, loads=["ev"]),
)


@pytest.mark.parametrize(
    ("target_kw", "load_kw", "levels"),
    [
        (3.0, 4.8, {"ev": 6.0}),
        (9.0, 9.4, {"ev": 1.4}),
        (10.5, 10.8, {}),  # the whole step after the partial ones: off
    ],
)
def test_a_load_s_accepted_steps_add_up_and_the_last_sets_its_level(
    target_kw: float, load_kw: float, levels: dict[str, float]
) -> None:
    awards = _clear(target_kw, _bid("h1", *CHARGER_STEPS))

    kw, level = awards["h1"]
    assert kw["ev"] == pytest.approx(load_kw)
    assert level == levels


def test_equal_prices_take_a_load_s_steps_in_bid_order() -> None:
    # Both charger steps at one price, either meets the target: the first is taken.
    steps = (
        BidStep(kw=4.8, price=0.10, loads=["ev"], level_kw=6.0),
        BidStep(kw=4.6, price=0.10, loads=["ev"], level_kw=1.4),
    )

    awards = _clear(4.0, _bid("h1", *steps))

    assert awards["h1"] == ({"ev": pytest.approx(4.8)}, {"ev": 6.0})


def test_a_load_at_its_level_is_credited_with_its_shed() -> None:
    awarded = {"ev-1": {"ev": 4.8}}

    assert live_shed_by_event(4.8, {"ev": 6.1}, awarded, {"ev": 6.0}) == {"ev-1": 4.8}
    assert live_shed_by_event(4.8, {"ev": 9.0}, awarded, {"ev": 6.0}) == {"ev-1": 0.0}
    assert live_shed_by_event(4.8, {"ev": 6.1}, awarded) == {"ev-1": 0.0}  # held off: not off
