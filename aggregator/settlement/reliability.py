"""Each home's reliability: how much of what it commits it delivers, with a prior for new homes.

After every statement, a home's score is recomputed from its :data:`RECENT_EVENTS` most recent
settled events (latest statement version of each):

    r_i   = min(1, delivered kWh_i / committed kWh_i)         (one event's delivery ratio)
    score = (ALPHA + Σ r_i) / (ALPHA + BETA + n)

This is the mean of a Beta(ALPHA, BETA) prior updated with the ratios as fractional successes:
a home with no history scores the prior mean ALPHA / (ALPHA + BETA) = 0.8, and each event moves
it by at most 1 / (ALPHA + BETA + n). Five events of full delivery lift a new home to 0.9;
five of nothing sink it to 0.4. Clearing counts a bid's kW times this score
(:mod:`aggregator.clearing`), so a fleet with unreliable homes procures enough *expected* kW.
Committed energy is the committed kW times the event's duration; a ratio above 1 (delivered
more than committed) is capped so over-delivery in one event does not excuse a miss in another.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

PRIOR_ALPHA: Final = 4.0
PRIOR_BETA: Final = 1.0
PRIOR_SCORE: Final = PRIOR_ALPHA / (PRIOR_ALPHA + PRIOR_BETA)
"""The score of a home without settled events (0.8)."""
RECENT_EVENTS: Final = 10
"""How many of a home's most recent settled events count."""


@dataclass(frozen=True, slots=True)
class Reliability:
    """A home's reliability score and what it rests on."""

    home_id: str
    score: float
    events: int
    """Settled events counted (at most :data:`RECENT_EVENTS`)."""
    delivered_kwh: float
    committed_kwh: float

    def to_json_dict(self) -> dict[str, object]:
        """Return the score as JSON-ready data."""
        return {
            "home_id": self.home_id,
            "score": self.score,
            "events": self.events,
            "delivered_kwh": self.delivered_kwh,
            "committed_kwh": self.committed_kwh,
            "prior": PRIOR_SCORE,
        }


def delivery_ratio(delivered_kwh: float, committed_kwh: float) -> float | None:
    """Return one event's ratio in [0, 1], or None when nothing was committed."""
    if committed_kwh <= 0:
        return None
    return min(1.0, max(0.0, delivered_kwh / committed_kwh))


def score(ratios: Iterable[float]) -> float:
    """Return the posterior mean reliability from delivery ratios (most recent first)."""
    recent = list(ratios)[:RECENT_EVENTS]
    return (PRIOR_ALPHA + sum(recent)) / (PRIOR_ALPHA + PRIOR_BETA + len(recent))


def reliability_of(home_id: str, events: Iterable[tuple[float, float]]) -> Reliability:
    """Return a home's reliability from its ``(delivered kWh, committed kWh)``, newest first."""
    counted = [
        (delivered, committed)
        for delivered, committed in events
        if delivery_ratio(delivered, committed) is not None
    ][:RECENT_EVENTS]
    ratios = [delivery_ratio(delivered, committed) or 0.0 for delivered, committed in counted]
    return Reliability(
        home_id=home_id,
        score=score(ratios),
        events=len(counted),
        delivered_kwh=sum(delivered for delivered, _ in counted),
        committed_kwh=sum(committed for _, committed in counted),
    )
