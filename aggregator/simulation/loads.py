"""Simulated appliances for the fleet simulator: load models, homeowner terms and a seeded mix.

A :class:`SimulatedLoad` is one appliance behind a relay. Its thermostat or schedule switches it
on and off around a duty cycle (a two-state Markov chain), and when running it draws its rated
power plus gaussian measurement noise. The homeowner's terms (the home policy's
:class:`~jeisson.policy.terms.Terms`) say at what price and for how long it may be moved, and its
:class:`~jeisson.policy.bidding.Flexibility` how: an EV charger turns down to lower currents and
a floor, a thermostat offsets its setpoint (it draws a share of its power), a battery stops
charging or charges at full rate in a power-up event, a water heater heats now on a power-up.
:func:`random_loads` draws a realistic mix for one home from a seeded :class:`random.Random`, so
a fleet is the same on every run with the same seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from jeisson.common.protocol import Load, LoadKind
from jeisson.policy.bidding import Flexibility, FlexLoad
from jeisson.policy.terms import Terms

LoadTerms = Terms
"""The homeowner's terms for one load (the home policy's)."""

NOISE_SIGMA: Final = 0.03
"""Relative standard deviation of a running load's measured power."""
KW_DECIMALS: Final = 3
PRICE_DECIMALS: Final = 2


@dataclass(frozen=True, slots=True)
class LoadProfile:
    """How one kind of appliance behaves and what its owner usually asks for it."""

    kind: LoadKind
    name: str
    rated_kw: tuple[float, float] | tuple[float, ...]
    """A (low, high) range, or the list of ratings it comes in when ``discrete``."""
    duty_cycle: float
    """Fraction of time it runs."""
    cycle_s: float
    """Mean length of one on+off cycle."""
    price: tuple[float, float]
    max_off_minutes: tuple[float, float]
    presence: float
    """Share of homes that have one."""
    never_curtail_share: float = 0.0
    relay_off_share: float = 0.0
    """Share of homes whose owner has it switched off (it then draws nothing and never bids)."""
    discrete: bool = False
    flex: Callable[[float], Flexibility] | None = None
    """How a load of this kind with a given rating can be moved (None: on or off)."""


CHARGER_FLOOR_KW: Final = 1.4
"""6 A on one phase: the lowest current a charger keeps charging at."""
CHARGER_FLOOR_3PH_KW: Final = 4.1
"""6 A on three phases."""
THREE_PHASE_KW: Final = 10.0
CHARGER_MID_SHARE: Final = 6 / 11
"""A charger's middle level as a share of its rating (an 11 kW charger: 6 kW)."""
THERMOSTAT_SHARES: Final = (0.6, 0.3)
"""A thermostat offset by one degree draws about 60 % of its power, by two about 30 %."""


def charger_flex(rated_kw: float) -> Flexibility:
    """Return an EV charger's levels: about half its power, then its floor (never off)."""
    floor = CHARGER_FLOOR_3PH_KW if rated_kw >= THREE_PHASE_KW else CHARGER_FLOOR_KW
    return Flexibility(
        levels_kw=(round(rated_kw * CHARGER_MID_SHARE, 1), floor),
        can_switch_off=False,
        can_power_up=True,
    )


def thermostat_flex(_rated_kw: float) -> Flexibility:
    """Return a thermostat's setpoint offsets as shares of its power (never off)."""
    return Flexibility(level_shares=THERMOSTAT_SHARES, can_switch_off=False)


def shiftable_flex(_rated_kw: float) -> Flexibility:
    """Return a load that is on or off and can run now in a power-up event."""
    return Flexibility(can_power_up=True)


WATER_HEATER: Final = LoadProfile(
    LoadKind.WATER_HEATER,
    "Water heater",
    (3.0, 4.5),
    0.35,
    1800,
    (0.05, 0.20),
    (60, 240),
    0.75,
    flex=shiftable_flex,
)
HVAC: Final = LoadProfile(
    LoadKind.HVAC, "Heat pump / AC", (1.5, 5.0), 0.55, 1200, (0.15, 0.45), (30, 120), 0.8, 0.15
)
EV_CHARGER: Final = LoadProfile(
    LoadKind.EV_CHARGER,
    "EV charger",
    (3.7, 7.4, 11.0),
    0.6,
    7200,
    (0.08, 0.30),
    (60, 480),
    0.35,
    discrete=True,
    flex=charger_flex,
)
THERMOSTAT: Final = LoadProfile(
    LoadKind.THERMOSTAT,
    "Thermostat",
    (1.5, 3.0),
    0.5,
    1200,
    (0.10, 0.30),
    (60, 180),
    0.3,
    flex=thermostat_flex,
)
BATTERY: Final = LoadProfile(
    LoadKind.BATTERY,
    "Home battery",
    (3.0, 5.0),
    0.4,
    5400,
    (0.05, 0.15),
    (60, 240),
    0.15,
    flex=shiftable_flex,
)
POOL_PUMP: Final = LoadProfile(
    LoadKind.POOL_PUMP,
    "Pool pump",
    (0.75, 1.5),
    0.9,
    3600,
    (0.03, 0.12),
    (120, 480),
    0.25,
    relay_off_share=0.2,
)
FREEZER: Final = LoadProfile(
    LoadKind.OTHER, "Freezer", (0.1, 0.3), 0.4, 2400, (1.0, 1.0), (0, 0), 0.7, 1.0
)
DRYER: Final = LoadProfile(
    LoadKind.OTHER, "Tumble dryer", (2.0, 3.0), 0.3, 3600, (0.10, 0.35), (30, 180), 0.3
)
PROFILES: Final[tuple[LoadProfile, ...]] = (
    WATER_HEATER,
    HVAC,
    EV_CHARGER,
    POOL_PUMP,
    FREEZER,
    DRYER,
    THERMOSTAT,
    BATTERY,
)
"""The appliances a simulated home may have, in inventory order."""


@dataclass(slots=True)
class SimulatedLoad:
    """One appliance behind a relay, with its owner's terms and its live state."""

    spec: Load
    terms: Terms
    duty_cycle: float
    cycle_s: float
    relay_on: bool = True
    """The relay (or the homeowner's switch): off means it draws nothing."""
    running: bool = True
    """Whether its thermostat or schedule wants it on right now."""
    noise_sigma: float = NOISE_SIGMA
    flex: Flexibility = field(default_factory=Flexibility)
    level_kw: float | None = None
    """Held at this power by a partial step (a charger's current limit, a thermostat offset)."""
    forced_on: bool = False
    """Running at its rating for a power-up event, whatever its schedule says."""

    @property
    def load_id(self) -> str:
        """Return the load's id."""
        return self.spec.load_id

    @property
    def rated_kw(self) -> float:
        """Return the load's rated power."""
        return self.spec.rated_kw

    @property
    def curtailable(self) -> bool:
        """Return True unless the homeowner marked it never-curtail."""
        return not self.terms.never_curtail

    def step(self, dt: float, rng: random.Random) -> None:
        """Advance the thermostat/schedule by ``dt`` seconds (keeps the duty cycle on average)."""
        if dt <= 0 or self.cycle_s <= 0:
            return
        mean_on = self.duty_cycle * self.cycle_s
        mean_off = (1.0 - self.duty_cycle) * self.cycle_s
        mean_stay = mean_on if self.running else mean_off
        if mean_stay <= 0 or rng.random() < 1.0 - math.exp(-dt / mean_stay):
            self.running = not self.running

    def flex_load(self) -> FlexLoad:
        """Return the load as the home policy sees it."""
        return FlexLoad(
            load_id=self.load_id, rated_kw=self.rated_kw, terms=self.terms, flex=self.flex
        )

    def power_kw(self, rng: random.Random) -> float:
        """Return the measured power now: rated (or its level) plus noise when running."""
        if not self.relay_on or not (self.running or self.forced_on):
            return 0.0
        draw = self.rated_kw if self.level_kw is None else min(self.level_kw, self.rated_kw)
        noisy = draw * (1.0 + rng.gauss(0.0, self.noise_sigma))
        return max(0.0, round(noisy, KW_DECIMALS))

    def shed_estimate_kw(self, rng: random.Random) -> float:
        """Return what switching it off now sheds: its measured draw, or its rating when idle.

        An idle thermostat load would have run during the window, so its rating is the estimate.
        """
        measured = self.power_kw(rng)
        return measured if measured > 0 else self.rated_kw


def _draw_rating(profile: LoadProfile, rng: random.Random) -> float:
    if profile.discrete:
        return rng.choice(profile.rated_kw)
    low, high = profile.rated_kw[0], profile.rated_kw[-1]
    return round(rng.uniform(low, high), 2)


def make_load(
    profile: LoadProfile,
    load_id: str,
    rng: random.Random,
    *,
    curtailable: bool | None = None,
) -> SimulatedLoad:
    """Return one appliance of ``profile`` with drawn rating, terms and initial state.

    ``curtailable`` forces the never-curtail choice instead of drawing it from the profile.
    """
    rated = _draw_rating(profile, rng)
    never = rng.random() < profile.never_curtail_share
    if curtailable is not None:
        never = not curtailable
    terms = Terms(
        min_price=round(rng.uniform(*profile.price), PRICE_DECIMALS),
        max_off_minutes=round(rng.uniform(*profile.max_off_minutes)),
        never_curtail=never,
    )
    spec = Load(
        load_id=load_id,
        name=profile.name,
        kind=profile.kind,
        rated_kw=rated,
        curtailable=not never,
    )
    return SimulatedLoad(
        spec=spec,
        terms=terms,
        duty_cycle=profile.duty_cycle,
        cycle_s=profile.cycle_s,
        relay_on=rng.random() >= profile.relay_off_share,
        running=rng.random() < profile.duty_cycle,
        flex=profile.flex(rated) if profile.flex is not None else Flexibility(),
    )


def random_loads(
    rng: random.Random, profiles: Sequence[LoadProfile] = PROFILES
) -> list[SimulatedLoad]:
    """Draw one home's appliances: each profile present with its share, at least one curtailable.

    Load ids are the kind plus a number (``water_heater-1``), stable for a given seed.
    """
    chosen = [profile for profile in profiles if rng.random() < profile.presence]
    loads = [
        make_load(profile, f"{profile.kind.value}-{number}", rng)
        for number, profile in enumerate(chosen, start=1)
    ]
    if not any(load.curtailable and load.relay_on for load in loads):
        extra = make_load(WATER_HEATER, f"{WATER_HEATER.kind.value}-0", rng, curtailable=True)
        extra.relay_on = True
        loads.insert(0, extra)
    return loads
