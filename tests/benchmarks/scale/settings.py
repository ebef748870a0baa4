"""How a scale benchmark run is shaped (sizes, windows, processes), and its result helpers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tests.benchmarks.scale.common import percentile

DEFAULT_CACHE: Final = Path(os.environ.get("JEISSON_BENCH_CACHE", "/var/cache/jeisson/bench"))


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Every knob of one run (the defaults are the full benchmark's)."""

    work_dir: Path
    cache_dir: Path = DEFAULT_CACHE
    idle_s: float = 60.0
    """Length of the measured idle window (telemetry at its real rate)."""
    rounds: int = 3
    """Market events negotiated per size (each one round, cancelled afterwards, untimed)."""
    homes_per_process: int = 4000
    in_flight: int = 64
    """Handshakes each simulator process has open at once during the first connect."""
    bid_window_s: float = 120.0
    """Long enough never to cut a round short: rounds clear when every home has bid."""
    target_share: float = 0.3
    """Event target as a share of the fleet's curtailable kW (4.5 kW a home)."""
    restart: bool = True
    round_timeout_s: float = 300.0
    connect_timeout_s: float = 600.0
    openleadr_polls: Sequence[float] = field(default=(10.0, 1.0))
    openleadr_rounds: int = 1
    openleadr_idle_s: float = 30.0
    profile: bool = False
    """Record the server with py-spy during each round (``profile.py``)."""


def spread(values: Sequence[float], origin: float) -> dict[str, Any]:
    """Return count, p50, p99 and max of ``values - origin`` (seconds, 3 decimals)."""
    shifted = [value - origin for value in values]

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "count": len(shifted),
        "p50_s": rounded(percentile(shifted, 0.50)),
        "p99_s": rounded(percentile(shifted, 0.99)),
        "max_s": rounded(max(shifted) if shifted else None),
    }
