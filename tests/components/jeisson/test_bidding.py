"""Bid curves from the homeowner's terms (pure functions, no Home Assistant needed)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from custom_components.jeisson.bidding import (
    Ineligible,
    bid_kw,
    build_steps,
    ineligible_reason,
    loads_kw,
    overlaps_off_limits,
)
from custom_components.jeisson.models import LoadConfig, Terms
from jeisson.common.protocol import LoadKind

MADRID = ZoneInfo("Europe/Madrid")
START = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)  # 18:00 in Madrid
END = START + timedelta(hours=1)


def load(load_id: str, *, kw: float = 1.0, price: float = 0.1, **terms: object) -> LoadConfig:
    """Return a load on switch.<id> with the given terms."""
    return LoadConfig(
        load_id=load_id,
        name=load_id,
        kind=LoadKind.OTHER,
        rated_kw=kw,
        actuator=f"switch.{load_id}",
        terms=Terms(min_price=price, **terms),  # type: ignore[arg-type]
    )


def always(_load: LoadConfig) -> bool:
    """Every actuator is available."""
    return True


def steps_for(loads: list[LoadConfig], cap: float = 1.0, **kwargs: object) -> list:
    """Return the curve for an offer of START-END at ``cap``."""
    return build_steps(
        loads,
        window_start=START,
        window_end=END,
        price_cap=cap,
        tz=MADRID,
        is_available=kwargs.pop("is_available", always),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def test_one_step_per_load_sorted_by_price_then_size() -> None:
    """Steps are cheapest first; equal prices put the bigger load first."""
    steps = steps_for(
        [load("a", price=0.3), load("b", kw=2, price=0.1), load("c", kw=3, price=0.1)]
    )
    assert [(step.loads, step.price, step.kw) for step in steps] == [
        (["c"], 0.1, 3),
        (["b"], 0.1, 2),
        (["a"], 0.3, 1),
    ]
    assert bid_kw(steps) == 6


def test_loads_that_may_not_be_shed_do_not_bid() -> None:
    """Never-curtail, unavailable, too short max-off, and too expensive loads stay out."""
    loads = [
        load("never", never_curtail=True),
        load("gone"),
        load("short", max_off_minutes=30),
        load("pricey", price=2.0),
        load("zero", kw=0),
        load("ok"),
    ]
    steps = steps_for(loads, is_available=lambda item: item.load_id != "gone")
    assert [step.loads for step in steps] == [["ok"]]


def test_off_limits_hours_are_local_and_may_wrap_midnight() -> None:
    """17:30-18:30 Madrid overlaps an 18:00 window; 22:00-06:00 does not; 17:00-18:00 does not."""
    overlapping = Terms(off_limits_start=time(17, 30), off_limits_end=time(18, 30))
    night = Terms(off_limits_start=time(22, 0), off_limits_end=time(6, 0))
    before = Terms(off_limits_start=time(17, 0), off_limits_end=time(18, 0))
    assert overlaps_off_limits(overlapping, START, END, MADRID)
    assert not overlaps_off_limits(night, START, END, MADRID)
    assert not overlaps_off_limits(before, START, END, MADRID)
    late = START + timedelta(hours=5)  # 23:00 Madrid
    assert overlaps_off_limits(night, late, late + timedelta(hours=1), MADRID)
    early = START + timedelta(hours=11)  # 05:00 Madrid the next day, inside the wrap
    assert overlaps_off_limits(night, early, early + timedelta(minutes=30), MADRID)
    assert not overlaps_off_limits(Terms(), START, END, MADRID)
    same = Terms(off_limits_start=time(18, 0), off_limits_end=time(18, 0))
    assert not overlaps_off_limits(same, START, END, MADRID)


def test_ineligible_reasons() -> None:
    """Each term says why a load is left out."""
    common = {"window_start": START, "window_end": END, "tz": MADRID, "available": True}
    assert ineligible_reason(load("a", never_curtail=True), **common) is Ineligible.NEVER_CURTAIL
    assert ineligible_reason(load("a"), **{**common, "available": False}) is Ineligible.UNAVAILABLE
    assert ineligible_reason(load("a", max_off_minutes=59), **common) is Ineligible.WINDOW_TOO_LONG
    blocked = load("a", off_limits_start=time(18, 0), off_limits_end=time(19, 0))
    assert ineligible_reason(blocked, **common) is Ineligible.OFF_LIMITS
    assert ineligible_reason(load("a", price=0.5), price=0.4, **common) is Ineligible.PRICE_TOO_LOW
    assert ineligible_reason(load("a", price=0.5), price=0.5, **common) is None


def test_too_many_loads_merge_equal_prices_then_drop_the_dearest() -> None:
    """Past the protocol's step limit, equal prices share a step; the dearest go last."""
    loads = [load(f"l{i}", price=0.1 * (i % 3)) for i in range(6)]
    steps = steps_for(loads, max_steps=2)
    assert [sorted(step.loads) for step in steps] == [["l0", "l3"], ["l1", "l4"]]
    assert [step.kw for step in steps] == [2, 2]


def test_loads_kw_ignores_unknown_ids() -> None:
    """Rated kW adds up for known loads only."""
    loads = {"a": load("a", kw=1.5), "b": load("b", kw=2)}
    assert loads_kw(loads, ["a", "b", "zzz"]) == 3.5
