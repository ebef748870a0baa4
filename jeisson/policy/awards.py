"""What a home does with an award: which loads it takes on, and each load's state as one object.

:func:`decide` answers an award (market: every awarded load must be the home's to act on;
direct: the home takes every load its terms allow at the incentive). A taken award keeps one
:class:`LoadAward` per load: the level it runs at (or off / full power), its power before
Jeisson moved it (the shed estimate, saved before acting), when it was moved and when it is to
be restored, and where it is (:class:`LoadState`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Final

from jeisson.common.protocol import Award, EventKind
from jeisson.policy.bidding import KW_DECIMALS, FlexLoad, expected_kw
from jeisson.policy.terms import ineligible_reason

SECONDS_PER_HOUR: Final = 3600.0


class LoadState(StrEnum):
    """Where one load of an award is."""

    AWARDED = "awarded"
    """Taken on; to be moved at the window start."""
    HELD = "held"
    """Moved by Jeisson (off, at its level, or powered up)."""
    RESTORING = "restoring"
    """Its staggered restore is due (``restore_at``)."""
    RELEASED = "released"
    """Given back: restored, or the owner took it back (``reason`` says which)."""
    UNTOUCHED = "untouched"
    """Nothing to do: it was already where the award wanted it (never restored by Jeisson)."""


@dataclass(kw_only=True, slots=True)
class LoadAward:
    """One load of one award: its target, what it drew before, and where it is."""

    load_id: str
    level_kw: float | None = None
    """The power it runs at (a partial step); None: off, or in a power-up event full power."""
    power_up: bool = False
    before_kw: float | None = None
    """Its power just before Jeisson moved it (saved before acting)."""
    moved_at: datetime | None = None
    restore_at: datetime | None = None
    state: LoadState = LoadState.AWARDED
    reason: str | None = None
    """Why it was released early: ``user``, ``override``, ``unavailable``."""

    @property
    def held(self) -> bool:
        """Return True while Jeisson holds the load where the award wants it."""
        return self.state is LoadState.HELD

    def moved_kw(self, rated_kw: float) -> float:
        """Return the power this load moves while held (shed; power-up: added)."""
        before = self.before_kw if self.before_kw is not None else rated_kw
        if self.power_up:
            target = self.level_kw if self.level_kw is not None else rated_kw
            return max(0.0, target - before)
        return max(0.0, before - (self.level_kw or 0.0))

    def hold(self, before_kw: float, at: datetime) -> None:
        """Record that Jeisson moved the load at ``at`` from ``before_kw``."""
        self.before_kw = round(before_kw, KW_DECIMALS)
        self.moved_at = at
        self.state = LoadState.HELD

    def release(
        self, at: datetime, window_end: datetime, rated_kw: float, reason: str | None = None
    ) -> float:
        """Give the load back at ``at``; return the kWh it moved while held (0 if never held)."""
        if self.state is LoadState.RELEASED:
            return 0.0
        was_held = self.moved_at is not None and self.state in (LoadState.HELD, LoadState.RESTORING)
        self.state = LoadState.RELEASED
        self.reason = reason
        self.restore_at = None
        if not was_held or self.moved_at is None:
            return 0.0
        hours = max(0.0, (min(at, window_end) - self.moved_at).total_seconds() / SECONDS_PER_HOUR)
        return self.moved_kw(rated_kw) * hours


@dataclass(frozen=True, slots=True)
class AwardDecision:
    """How a home answers an award: whether it takes it on, with which loads and kW."""

    accepted: bool
    loads: tuple[LoadAward, ...] = ()
    kw: float = 0.0

    @property
    def load_ids(self) -> list[str]:
        """Return the loads taken on."""
        return [load.load_id for load in self.loads]


def decide(
    award: Award,
    loads: Mapping[str, FlexLoad],
    *,
    tz: tzinfo,
    is_available: Callable[[FlexLoad], bool],
    recent_kw: Callable[[str], float | None] = lambda _load_id: None,
) -> AwardDecision:
    """Decide how to answer ``award``.

    Market: accept when every awarded load is one of the home's curtailable, available loads
    (in a power-up event, one that can take more). Direct: take on every load its terms allow at
    the award's price (the expected kW of each); decline when there is none.
    """
    power_up = award.is_power_up
    if award.kind is EventKind.DIRECT:
        chosen = [
            load
            for load in loads.values()
            if load.rated_kw > 0
            and (load.flex.can_power_up or not power_up)
            and ineligible_reason(
                load.terms,
                window_start=award.window_start,
                window_end=award.window_end,
                tz=tz,
                available=is_available(load),
                price=award.price,
            )
            is None
        ]
        if not chosen:
            return AwardDecision(False)
        kw = sum(expected_kw(load, recent_kw(load.load_id)) for load in chosen)
        taken = tuple(LoadAward(load_id=load.load_id, power_up=power_up) for load in chosen)
        return AwardDecision(True, taken, round(kw, KW_DECIMALS))
    usable = all(
        load_id in loads
        and not loads[load_id].terms.never_curtail
        and (loads[load_id].flex.can_power_up or not power_up)
        and is_available(loads[load_id])
        for load_id in award.loads
    )
    if not award.loads or not usable:
        return AwardDecision(False)
    taken = tuple(
        LoadAward(load_id=load_id, level_kw=award.level(load_id), power_up=power_up)
        for load_id in award.loads
    )
    return AwardDecision(True, taken, award.kw)


def moved_kw(awarded: Iterable[LoadAward], rated_kw: Mapping[str, float]) -> float:
    """Return the power the held loads move right now."""
    return sum(load.moved_kw(rated_kw.get(load.load_id, 0.0)) for load in awarded if load.held)
