"""Baselines for homes without enough data of their own: a comparison group of similar homes.

A home that enrolled an hour before an event has neither like-days nor the two pre-event hours
the pre-event average needs. Paying it nothing would be a silent penalty for joining; guessing
would pay noise. The standard answer (a *comparison group*, as programs do for new customers)
gives it the baseline of similar homes in the same event, per kW of declared load, scaled to
its own size:

* **Similar** means the same kinds of declared loads (e.g. "water heater + EV charger"): the
  baseline is the power of the declared loads (what telemetry reports), so homes with the same
  appliances draw alike per rated kW.
* The group's baseline is the **median**, interval by interval, of ``baseline_kw / declared_kw``
  over its homes that have a baseline of their own (X-of-Y or pre-event average); the median
  keeps one unusual home from setting everyone's baseline.
* A group needs :data:`MIN_GROUP_HOMES` homes; when the home's own kind has fewer, the whole
  fleet in the event (every home with its own baseline) is the group, if it is large enough.
  Otherwise the home keeps *no baseline* and its statement says why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from aggregator.settlement.baselines import BaselineOutcome, BaselineResult, ComparisonGroups

MIN_GROUP_HOMES: Final = 5
"""Fewest homes with a baseline of their own that make a comparison group."""
FLEET_LABEL: Final = "all homes in the event"

_OUTCOMES: Final = tuple(BaselineOutcome)
_OWN: Final = np.array(
    [
        _OUTCOMES.index(BaselineOutcome.X_OF_Y),
        _OUTCOMES.index(BaselineOutcome.PRE_EVENT_AVERAGE),
    ],
    dtype=np.int8,
)
_NONE: Final = np.int8(_OUTCOMES.index(BaselineOutcome.NO_BASELINE))
_GROUP: Final = np.int8(_OUTCOMES.index(BaselineOutcome.COMPARISON_GROUP))


def _group_profile(
    per_kw: npt.NDArray[np.float64], members: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64] | None:
    """Return the median per-kW baseline of ``members`` (None below MIN_GROUP_HOMES)."""
    if np.count_nonzero(members) < MIN_GROUP_HOMES:
        return None
    profile: npt.NDArray[np.float64] = np.median(per_kw[members], axis=0)
    return profile


def with_comparison_groups(
    result: BaselineResult,
    kinds: Sequence[str],
    declared_kw: npt.ArrayLike,
) -> BaselineResult:
    """Give homes without a baseline the scaled median baseline of similar homes.

    Args:
        result: baselines of every home of the event(s).
        kinds: per home, a label of its declared load kinds ("water heater + EV charger");
            homes with the same label are similar.
        declared_kw: per home, the rated kW of its declared loads (0: it cannot be scaled).

    Returns:
        ``result`` with :attr:`BaselineOutcome.COMPARISON_GROUP` baselines where a group was
        found (unchanged when every home has its own baseline).

    """
    size = np.asarray(declared_kw, dtype=np.float64)
    if size.shape != (result.homes,) or len(kinds) != result.homes:
        raise ValueError("kinds and declared_kw need one entry per home")
    lacking = (result.outcome_codes == _NONE) & (size > 0)
    if not lacking.any():
        return result
    own = np.isin(result.outcome_codes, _OWN) & (size > 0)
    per_kw = np.zeros(result.baseline_kw.shape, dtype=np.float64)
    np.divide(result.baseline_kw, size[:, None], out=per_kw, where=own[:, None])
    labels: list[str] = []
    members: list[int] = []
    group = np.full(result.homes, -1, dtype=np.int32)
    baseline = result.baseline_kw.copy()
    kind_array = np.asarray(kinds, dtype=object)
    fleet = _group_profile(per_kw, own)
    fleet_index: int | None = None
    for kind in sorted(set(kind_array[lacking].tolist())):
        wanted = lacking & (kind_array == kind)
        same_kind = own & (kind_array == kind)
        profile = _group_profile(per_kw, same_kind)
        if profile is not None:
            labels.append(kind)
            members.append(int(np.count_nonzero(same_kind)))
            index = len(labels) - 1
        elif fleet is not None:
            profile = fleet
            if fleet_index is None:
                labels.append(FLEET_LABEL)
                members.append(int(np.count_nonzero(own)))
                fleet_index = len(labels) - 1
            index = fleet_index
        else:
            continue
        group[wanted] = index
        baseline[wanted] = (size[wanted, None] * profile[None, :]).astype(baseline.dtype)
    found = group >= 0
    if not found.any():
        return result
    outcomes = result.outcome_codes.copy()
    outcomes[found] = _GROUP
    return dataclasses.replace(
        result,
        baseline_kw=baseline,
        outcome_codes=outcomes,
        comparison=ComparisonGroups(
            group=group, labels=tuple(labels), members=tuple(members), scale_kw=size
        ),
    )
