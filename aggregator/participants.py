"""Participants outside the home fleet in Jeisson's events: third-party OpenADR VENs.

The negotiation counts homes. A source registered under :data:`OUTSIDE_PARTICIPANTS` (the
OpenADR publisher, ``aggregator.openadr.publisher``) adds what the others were dispatched and
reported delivering, so the operator's figures of an event — its detail in the REST API and the
CLI, the dashboard's live view, the metrics — count them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from aggregator.metrics import EventFigures


@dataclass(frozen=True, slots=True)
class OutsideShare:
    """One outside participant's part in an event."""

    participant_id: str
    name: str
    committed_kw: float
    """What it was dispatched to shed."""
    delivered_kw: float
    """What its latest reports say it sheds now."""

    def view(self, digits: int) -> dict[str, Any]:
        """Return the JSON view (kW rounded to ``digits``)."""
        return {
            "client_id": self.participant_id,
            "ven_name": self.name,
            "committed_kw": round(self.committed_kw, digits),
            "delivered_kw": round(self.delivered_kw, digits),
        }


@dataclass(frozen=True, slots=True)
class OutsideFigures:
    """What outside participants add to one event."""

    shares: tuple[OutsideShare, ...]

    @property
    def committed_kw(self) -> float:
        """Return the kW they were dispatched to shed."""
        return sum(share.committed_kw for share in self.shares)

    @property
    def delivered_kw(self) -> float:
        """Return the kW they report shedding now."""
        return sum(share.delivered_kw for share in self.shares)


NOTHING = OutsideFigures(())


class OutsideParticipants(Protocol):
    """A source of outside participants' figures."""

    async def figures(self, event_id: str) -> OutsideFigures:
        """Return what outside participants add to an event (read from the database)."""

    async def delivered_over(self, event_id: str, start: datetime, end: datetime) -> float:
        """Return the mean kW they report shedding for an event over ``[start, end)``."""

    def running(self) -> Mapping[str, OutsideFigures]:
        """Return their figures for the running events, as of the source's last update."""


OUTSIDE_PARTICIPANTS = web.AppKey("outside_participants", OutsideParticipants)


async def outside_figures(app: web.Application, event_id: str) -> OutsideFigures:
    """Return what outside participants add to an event (nothing without a source)."""
    source = app.get(OUTSIDE_PARTICIPANTS)
    return NOTHING if source is None else await source.figures(event_id)


async def outside_delivered_over(
    app: web.Application, event_id: str, start: datetime, end: datetime
) -> float:
    """Return the mean kW outside participants report shedding for an event over a span."""
    source = app.get(OUTSIDE_PARTICIPANTS)
    return 0.0 if source is None else await source.delivered_over(event_id, start, end)


def running_outside(app: web.Application) -> Mapping[str, OutsideFigures]:
    """Return what outside participants add to the running events (as of their last update)."""
    source = app.get(OUTSIDE_PARTICIPANTS)
    return {} if source is None else source.running()


def with_outside(app: web.Application, figures: Iterable[EventFigures]) -> list[EventFigures]:
    """Return running events' live figures with the outside participants' kW added."""
    running = running_outside(app)
    return [
        replace(
            item,
            committed_kw=item.committed_kw + running[item.event_id].committed_kw,
            delivered_kw=item.delivered_kw + running[item.event_id].delivered_kw,
        )
        if item.event_id in running
        else item
        for item in figures
    ]
