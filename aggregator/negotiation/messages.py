"""The messages the negotiation sends homes, built from an event's state."""

from __future__ import annotations

from aggregator.negotiation.state import EventState
from aggregator.records import AwardRecord, RoundRecord
from jeisson.common.protocol import Award, Cancel, EventDirection, EventEnd, Offer


def offer_message_id(event_id: str, round_number: int) -> str:
    """Return the (stable) id of an event round's offer, so re-sends are recognised."""
    return f"offer-{event_id}-{round_number}"


def offer(state: EventState, record: RoundRecord) -> Offer:
    """Return a round's call for bids (the same for every home offered)."""
    return Offer(
        id=offer_message_id(state.event_id, record.round),
        event_id=state.event_id,
        round=record.round,
        kind=state.record.kind,
        window_start=max(state.record.start, record.deadline),
        window_end=state.record.end,
        price_cap=state.record.price_cap,
        bid_deadline=record.deadline,
        currency=state.record.currency,
        direction=_direction(state),
    )


def award(state: EventState, record: AwardRecord) -> Award:
    """Return the message telling a home what it was awarded."""
    return Award(
        id=record.award_id,
        event_id=state.event_id,
        award_id=record.award_id,
        round=record.round,
        kind=state.record.kind,
        loads=list(record.loads),
        kw=record.kw,
        price=record.price,
        window_start=max(state.record.start, record.sent_at),
        window_end=state.record.end,
        restore_stagger_s=state.record.restore_stagger_s,
        currency=state.record.currency,
        direction=_direction(state),
        levels=dict(record.load_levels) or None,
    )


def _direction(state: EventState) -> EventDirection | None:
    """Return the direction a message names: only power-up, so older homes read shed events."""
    return EventDirection.UP if state.is_power_up else None


def cancel(event_id: str, reason: str) -> Cancel:
    """Return the message telling homes an event was cancelled (restore now, staggered)."""
    return Cancel(id=f"cancel-{event_id}", event_id=event_id, reason=reason)


def event_end(event_id: str) -> EventEnd:
    """Return the message telling homes an event ended (restore, staggered)."""
    return EventEnd(id=f"end-{event_id}", event_id=event_id)
