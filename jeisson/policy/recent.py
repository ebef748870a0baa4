"""Each load's recent measured power: what a bid expects the load to move, not its rating.

A load's rating says what it *can* draw; what shedding it delivers is what it *does* draw. A
water heater cycling at 35 % of 4.5 kW sheds about 1.6 kW on average over an hour, and an 11 kW
charger charging a nearly full car at 3 kW sheds 3. :class:`RecentPower` keeps, per load, an
exponentially weighted mean of its measured power with a time constant of :data:`DEFAULT_SPAN`
(irregular sampling intervals are weighted by their length), in constant memory per load; a
load with no samples yet has no figure (a bid then counts its rating).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

DEFAULT_SPAN: Final = timedelta(minutes=60)
"""The mean's time constant: long enough to average a thermostat's duty cycle."""


@dataclass(slots=True)
class _Mean:
    kw: float
    """The mean so far."""
    last_kw: float
    """The last sample: it held from ``at`` until the next one."""
    at: datetime


class RecentPower:
    """The recent mean power of each load, from the samples the home takes anyway."""

    def __init__(self, span: timedelta = DEFAULT_SPAN) -> None:
        """Average over about ``span`` (the time constant)."""
        self._tau_s = span.total_seconds()
        self._means: dict[str, _Mean] = {}

    def add(self, ts: datetime, loads: Mapping[str, float]) -> None:
        """Record one sample of per-load power (kW) taken at ``ts`` (older samples: ignored)."""
        for load_id, kw in loads.items():
            mean = self._means.get(load_id)
            if mean is None:
                self._means[load_id] = _Mean(kw, kw, ts)
                continue
            seconds = (ts - mean.at).total_seconds()
            if seconds <= 0:
                continue
            # The previous sample's power held for ``seconds``: fold it in with that weight.
            weight = 1.0 - math.exp(-seconds / self._tau_s)
            mean.kw += (mean.last_kw - mean.kw) * weight
            mean.last_kw = kw
            mean.at = ts

    def mean_kw(self, load_id: str) -> float | None:
        """Return the load's recent mean power (None: never sampled)."""
        mean = self._means.get(load_id)
        return None if mean is None else mean.kw

    def latest_kw(self, load_id: str) -> float | None:
        """Return the load's last sampled power (None: never sampled)."""
        mean = self._means.get(load_id)
        return None if mean is None else mean.last_kw
