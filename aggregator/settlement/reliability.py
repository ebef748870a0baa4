"""Each home's reliability: how much of what it commits it delivers, with a prior for new homes.

After every statement, a home's score is recomputed from its :data:`RECENT_EVENTS` most recent
settled events (latest statement version of each):

    r_i   = min(1, delivered kWh_i / committed kWh_i)         (one event's delivery ratio)
    score = (ALPHA + Σ r_i) / (ALPHA + BETA + n)

This is the mean of a Beta(ALPHA, BETA) pseudo-count prior updated with the ratios as fractional
successes. The prior is ALPHA = 4 pseudo-events of full delivery and BETA = 0 of failure: a home
with no history scores 1.0 (clearing counts its bid in full, as before scores existed), a home
that keeps delivering stays at 1.0 (never ranked below a newcomer), and evidence of shortfall
weighs in at once: one event of nothing gives 0.8, five give 4/9 = 0.44. Clearing counts a
bid's kW times this score (:mod:`aggregator.clearing`), so a fleet with unreliable homes
procures enough *expected* kW. Committed energy is the committed kW times the event's duration;
a ratio above 1 (delivered more than committed) is capped so over-delivery in one event does not
excuse a miss in another.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

PRIOR_ALPHA: Final = 4.0
"""Pseudo-events of full delivery every home starts with."""
PRIOR_BETA: Final = 0.0
"""Pseudo-events of failure every home starts with (none: new homes are trusted)."""
PRIOR_SCORE: Final = PRIOR_ALPHA / (PRIOR_ALPHA + PRIOR_BETA)
"""The score of a home without settled events (1.0)."""
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


class ReliabilityScores:
    """Every home's score in memory, for clearing: the stored ones, the prior for the rest.

    Loaded once at start (:meth:`replace`), then updated with each settlement's new scores
    (:meth:`update`), so clearing a round never waits for the database.
    """

    def __init__(self, prior: float = PRIOR_SCORE) -> None:
        """Start with no stored scores; homes without one count ``prior``."""
        self._scores: dict[str, float] = {}
        self._prior = prior

    def score(self, home_id: str) -> float:
        """Return a home's score (the prior when it has no settled event)."""
        return self._scores.get(home_id, self._prior)

    def replace(self, scores: Iterable[Reliability]) -> None:
        """Use these stored scores (and the prior for every other home)."""
        self._scores = {item.home_id: item.score for item in scores}

    def update(self, scores: Iterable[Reliability]) -> list[str]:
        """Take new scores; return the ids of the homes whose score changed."""
        changed = []
        for item in scores:
            if self._scores.get(item.home_id) != item.score:
                self._scores[item.home_id] = item.score
                changed.append(item.home_id)
        return changed
