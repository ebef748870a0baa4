"""Merit-order clearing of one negotiation round's bid steps (vectorised with numpy).

Every home answers an offer with a step curve; the aggregator flattens all steps of a round
into one columnar :class:`StepTable` and calls :func:`clear` with the event's reduction target
and price cap. The rules (from the product brief):

* Steps priced above the cap are excluded (a step priced exactly at the cap is eligible).
* Each step's **expected kW** is its kW times its home's reliability (delivered / committed
  over recent events, :mod:`aggregator.settlement.reliability`; 1.0 when not given).
* Eligible steps are ranked in merit order: cheapest price first; equal prices go to the more
  reliable home, then to the home curtailed least recently (never-curtailed homes first), so
  the burden rotates; remaining ties are broken by home index, then step index, then position
  in the table.
* Steps are indivisible: they are accepted in merit order until the accepted *expected* kW
  reaches the target (the step that reaches or crosses it is accepted, nothing after it), so a
  fleet of unreliable homes is over-procured by just enough bid kW. When every eligible step
  together falls short, all of them are accepted and the (expected) shortfall reported.
* The uniform clearing price is the price of the last accepted step, hence never above the cap.
* A home's steps are accepted in the order of its bid: prices never fall within a bid (the
  protocol refuses it) and equal prices go by step index, so the accepted steps of one home are
  always its first ones. That is what lets a load bid several partial steps (an 11 kW charger:
  11 -> 6 kW, then 6 -> 1.4 kW) without the later step ever being taken alone.

The round clears with array operations only: a fast sort by price narrows the steps to those
that can be accepted, ``np.lexsort`` puts them in merit order, ``np.cumsum`` and
``np.searchsorted`` find the last accepted step. ``docs/performance.md`` has the measured times.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, cast

import numpy as np
import numpy.typing as npt

TARGET_TOLERANCE_KW: Final = 1e-9
"""Accepted kW within this much below the target counts as meeting it (float round-off)."""

NEVER_CURTAILED: Final = -math.inf
"""``last_curtailed`` of a home that was never curtailed: older than any real time."""

_INTEGER_KINDS: Final = "iu"
"""numpy dtype kinds accepted for the integer columns (signed and unsigned integers)."""

_FLOAT_EPS: Final = float(np.finfo(np.float64).eps)
"""Machine epsilon of float64 (twice the unit round-off)."""

_SUMMATION_ERROR_FACTOR: Final = 2.0
"""Margin multiplier: each of two running sums over n positive terms errs by at most about
n * eps / 2 * total, so twice their combined bound is a safe margin between them."""

_REAL_KINDS: Final = "iuf"
"""numpy dtype kinds accepted for the float columns (integers and floats; no bool, no text)."""


def _int_column(name: str, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Return ``values`` as a writable 1-D int64 copy, or raise ValueError."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"StepTable.{name} must be one-dimensional, got shape {array.shape}")
    if array.size and array.dtype.kind not in _INTEGER_KINDS:
        raise ValueError(f"StepTable.{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=True)


def _float_column(name: str, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return ``values`` as a writable 1-D float64 copy, or raise ValueError."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"StepTable.{name} must be one-dimensional, got shape {array.shape}")
    if array.size and array.dtype.kind not in _REAL_KINDS:
        raise ValueError(f"StepTable.{name} must hold real numbers, got dtype {array.dtype}")
    return array.astype(np.float64, copy=True)


def _first_bad(mask: npt.NDArray[np.bool_]) -> int:
    """Return the index of the first True entry of ``mask`` (for error messages)."""
    return int(np.argmax(mask))


@dataclass(frozen=True, slots=True)
class StepTable:
    """All bid steps of one negotiation round, one row per step, stored column by column.

    Columns: ``home`` (the bidding home's index), ``step`` (the step's index within that
    home's bid), ``kw`` (> 0), ``price`` (per kWh, >= 0), ``last_curtailed`` (epoch
    seconds when the home was last curtailed; ``-inf`` when never) and ``reliability`` (the
    home's reliability in [0, 1]; every step 1.0 when omitted). The constructor copies every
    column into a read-only array, checks that all have the same length and that the values
    are usable, and normalises NaN in ``last_curtailed`` to ``-inf`` (never).
    """

    home: npt.NDArray[np.int64]
    step: npt.NDArray[np.int64]
    kw: npt.NDArray[np.float64]
    price: npt.NDArray[np.float64]
    last_curtailed: npt.NDArray[np.float64]
    reliability: npt.NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        """Coerce the columns to read-only 1-D arrays and validate them."""
        home = _int_column("home", self.home)
        step = _int_column("step", self.step)
        kw = _float_column("kw", self.kw)
        price = _float_column("price", self.price)
        last_curtailed = _float_column("last_curtailed", self.last_curtailed)
        reliability = (
            np.ones(len(kw))
            if self.reliability is None
            else _float_column("reliability", self.reliability)
        )

        lengths = {
            "home": len(home),
            "step": len(step),
            "kw": len(kw),
            "price": len(price),
            "last_curtailed": len(last_curtailed),
            "reliability": len(reliability),
        }
        if len(set(lengths.values())) != 1:
            raise ValueError(f"StepTable columns must have the same length, got {lengths}")

        bad = ~np.isfinite(kw)
        if bad.any():
            raise ValueError(f"step {_first_bad(bad)}: kw must be finite")
        bad = kw <= 0
        if bad.any():
            i = _first_bad(bad)
            raise ValueError(f"step {i}: kw must be > 0, got {kw[i]}")
        bad = ~np.isfinite(price)
        if bad.any():
            raise ValueError(f"step {_first_bad(bad)}: price must be finite")
        bad = price < 0
        if bad.any():
            i = _first_bad(bad)
            raise ValueError(f"step {i}: price must be >= 0, got {price[i]}")
        bad = last_curtailed == math.inf
        if bad.any():
            raise ValueError(
                f"step {_first_bad(bad)}: last_curtailed must be a time, NaN or -inf (never)"
            )
        last_curtailed[np.isnan(last_curtailed)] = NEVER_CURTAILED
        bad = ~((reliability >= 0) & (reliability <= 1))  # also catches NaN
        if bad.any():
            i = _first_bad(bad)
            raise ValueError(f"step {i}: reliability must lie in [0, 1], got {reliability[i]}")

        for name, column in (
            ("home", home),
            ("step", step),
            ("kw", kw),
            ("price", price),
            ("last_curtailed", last_curtailed),
            ("reliability", reliability),
        ):
            column.setflags(write=False)
            object.__setattr__(self, name, column)

    @property
    def step_reliability(self) -> npt.NDArray[np.float64]:
        """Return the reliability column (always set once constructed)."""
        return cast("npt.NDArray[np.float64]", self.reliability)

    @property
    def expected_kw(self) -> npt.NDArray[np.float64]:
        """Return each step's kW times its home's reliability."""
        expected: npt.NDArray[np.float64] = self.kw * self.step_reliability
        return expected

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[int, int, float, float, float | None]],
        reliability: Iterable[float] | None = None,
    ) -> StepTable:
        """Build a table from ``(home, step, kw, price, last_curtailed or None)`` rows.

        ``reliability`` gives each row's home reliability (1.0 for every row when None).
        """
        homes: list[int] = []
        steps: list[int] = []
        kws: list[float] = []
        prices: list[float] = []
        curtailed: list[float] = []
        for index, row in enumerate(rows):
            try:
                home, step, kw, price, last_curtailed = row
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"row {index}: expected (home, step, kw, price, last_curtailed), got {row!r}"
                ) from err
            homes.append(home)
            steps.append(step)
            kws.append(kw)
            prices.append(price)
            curtailed.append(NEVER_CURTAILED if last_curtailed is None else last_curtailed)
        # np.asarray keeps the element type, so the constructor can refuse non-integer ids.
        return cls(
            home=np.asarray(homes),
            step=np.asarray(steps),
            kw=np.asarray(kws),
            price=np.asarray(prices),
            last_curtailed=np.asarray(curtailed),
            reliability=None if reliability is None else np.asarray(list(reliability)),
        )

    def __len__(self) -> int:
        """Return the number of steps."""
        return len(self.kw)


@dataclass(frozen=True, slots=True)
class ClearingResult:
    """The outcome of one clearing round.

    ``accepted`` holds indices into the :class:`StepTable`, in merit order (read-only).
    ``clearing_price`` is the price of the last accepted step, ``None`` when nothing was
    accepted. ``accepted_kw`` is the bid kW accepted, ``expected_kw`` the same times each
    home's reliability. ``shortfall_kw`` is ``0.0`` when the target was met, else ``target -
    expected_kw``. ``offered_kw`` is the kW of every step priced within the cap.
    """

    accepted: npt.NDArray[np.int64]
    clearing_price: float | None
    accepted_kw: float
    shortfall_kw: float
    offered_kw: float
    expected_kw: float = 0.0


def _validate_terms(target_kw: float, price_cap: float) -> None:
    """Raise ValueError unless the target is a finite positive kW and the cap is >= 0."""
    if not math.isfinite(target_kw) or target_kw <= 0:
        raise ValueError(f"target_kw must be a finite number > 0, got {target_kw!r}")
    if math.isnan(price_cap) or price_cap < 0:
        raise ValueError(f"price_cap must be a number >= 0, got {price_cap!r}")


def _merit_sort(table: StepTable, steps: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """Return ``steps`` (indices into ``table``) rearranged into merit order.

    Order: price ascending, then reliability descending, then ``last_curtailed`` ascending
    (never-curtailed first), then home index, then step index; ``np.lexsort`` is stable, so
    exact duplicates keep table order.
    """
    keys = (
        table.step[steps],
        table.home[steps],
        table.last_curtailed[steps],
        -table.step_reliability[steps],
        table.price[steps],
    )
    return steps[np.lexsort(keys)]


def _prefix_candidates(
    table: StepTable, eligible: npt.NDArray[np.intp], target_kw: float
) -> tuple[npt.NDArray[np.intp], float]:
    """Return the eligible steps that can be part of the accepted prefix, and the offered kW.

    Price is the first merit-order key, so the steps priced at or below some price level are
    exactly a prefix of the merit order. A fast, unstable sort by price alone gives the running
    kW by price; the candidates are every step priced at or below the level where that running
    total reaches the target plus a margin that bounds the round-off of two float summations in
    different orders (2 * n * eps * total), so the exact merit-order prefix that meets the
    target always lies inside the candidates. Only the candidates then need the full (slower)
    four-key sort; with the target at a fraction of the offer that is most of the work saved.
    """
    prices = table.price[eligible]
    by_price = np.argsort(prices)
    running = np.cumsum(table.expected_kw[eligible][by_price])
    offered_kw = float(table.kw[eligible].sum())
    margin = _SUMMATION_ERROR_FACTOR * len(eligible) * _FLOAT_EPS * float(running[-1])
    reach = int(np.searchsorted(running, target_kw + margin, side="left"))
    if reach == len(running):
        return eligible, offered_kw
    return eligible[prices <= prices[by_price[reach]]], offered_kw


def clear(table: StepTable, target_kw: float, price_cap: float) -> ClearingResult:
    """Clear one round: accept steps in merit order until ``target_kw`` is met.

    Steps above ``price_cap`` are ignored (``math.inf`` means no cap). The step that reaches or
    crosses the target (within :data:`TARGET_TOLERANCE_KW`) is the last one accepted; when all
    eligible steps together fall short, all are accepted and the difference is reported as
    ``shortfall_kw``. Raises ValueError when ``target_kw`` is not a finite number > 0 or
    ``price_cap`` is negative or NaN.
    """
    _validate_terms(target_kw, price_cap)
    eligible = np.flatnonzero(table.price <= price_cap)
    if len(eligible) == 0:
        nothing = np.empty(0, dtype=np.int64)
        nothing.setflags(write=False)
        return ClearingResult(
            accepted=nothing,
            clearing_price=None,
            accepted_kw=0.0,
            shortfall_kw=float(target_kw),
            offered_kw=0.0,
        )

    candidates, offered_kw = _prefix_candidates(table, eligible, target_kw)
    order = _merit_sort(table, candidates)
    cumulative = np.cumsum(table.expected_kw[order])
    nominal = np.cumsum(table.kw[order])
    if len(candidates) == len(eligible):
        offered_kw = float(nominal[-1])  # the merit-order sum, equal to accepted_kw if short
    # First position whose running expected total meets the target; len(order) when none does.
    last = int(np.searchsorted(cumulative, target_kw - TARGET_TOLERANCE_KW, side="left"))
    if last < len(order):
        accepted = order[: last + 1]
        accepted_kw, expected_kw = float(nominal[last]), float(cumulative[last])
        shortfall_kw = 0.0
    else:  # only reachable when the candidates are all eligible steps (see _prefix_candidates)
        accepted = order
        accepted_kw, expected_kw = float(nominal[-1]), float(cumulative[-1])
        shortfall_kw = float(target_kw) - expected_kw

    accepted = accepted.astype(np.int64, copy=False)
    accepted.setflags(write=False)
    return ClearingResult(
        accepted=accepted,
        clearing_price=float(table.price[accepted[-1]]),
        accepted_kw=accepted_kw,
        shortfall_kw=shortfall_kw,
        offered_kw=offered_kw,
        expected_kw=expected_kw,
    )
