"""Event records the cluster tests share (test modules never import each other)."""

from __future__ import annotations

from datetime import timedelta

from aggregator.records import EventRecord, EventStatus
from aggregator.store import new_id
from jeisson.common.protocol import EventKind, utc_now


def an_event(status: EventStatus = EventStatus.NEGOTIATING) -> EventRecord:
    """Return an event record starting in a minute."""
    now = utc_now()
    return EventRecord(
        event_id=new_id("evt"),
        name="test",
        kind=EventKind.MARKET,
        status=status,
        target_kw=10.0,
        price_cap=0.4,
        start=now + timedelta(minutes=1),
        end=now + timedelta(minutes=2),
        bid_window_s=5.0,
        restore_stagger_s=1.0,
        currency="EUR",
        created_at=now,
    )
