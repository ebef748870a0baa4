"""The negotiation's lifecycle as pure functions: (state, env) -> StepResult.

No I/O, no clock, no randomness beyond fresh ids: each function returns the next
:class:`~aggregator.negotiation.state.EventState`, the rows to write (one transaction) and the
messages to send once they are written. :mod:`.driver` decides *when* (timers), commits, and
only then swaps the state and sends. Home messages (bids, acks, opt-outs, reconnects) are
:mod:`.home_steps`.

Lifecycle: ``draft -> negotiating -> committed -> active -> completed`` (or ``cancelled``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Final

from rpds import HashTrieMap, HashTrieSet

from aggregator.awarding import clear_round
from aggregator.negotiation import messages
from aggregator.negotiation.model import (
    Env,
    HomeView,
    InvalidTransitionError,
    Send,
    StepKind,
    StepResult,
)
from aggregator.negotiation.state import KW_EPSILON, EventState
from aggregator.records import (
    AwardRecord,
    AwardStatus,
    BidRecord,
    EventRecord,
    EventStatus,
    RoundRecord,
    RoundStatus,
    new_id,
)
from aggregator.store import Change, Insert, OfferRecord, Update

_NEVER: Final = datetime.min.replace(tzinfo=UTC)
"""Sorts homes never curtailed before every other."""
MAX_MESSAGE_KW: Final = 10_000.0
"""The largest kW a protocol message carries (``Kilowatts``)."""

# --- building a state ---------------------------------------------------------------------------


def restore(
    record: EventRecord,
    *,
    rounds: Iterable[RoundRecord],
    offered: dict[int, set[str]],
    open_bids: Iterable[BidRecord],
    awards: list[AwardRecord],
    opted_out: Iterable[str],
    unacked_deadline: datetime,
) -> EventState:
    """Rebuild an unfinished event from what the store holds (after a restart).

    Awards sent but not acknowledged get ``unacked_deadline``: their homes reconnect first.
    """
    opted = HashTrieSet(opted_out)
    state = EventState(
        record=record,
        rounds=HashTrieMap({item.round: item for item in rounds}),
        offered=HashTrieMap({number: HashTrieSet(homes) for number, homes in offered.items()}),
        opted_out=opted,
    ).with_awards(awards)
    bids = {bid.home_id: bid for bid in open_bids if bid.home_id not in opted}
    deadlines = {
        award.round: unacked_deadline for award in awards if award.status is AwardStatus.SENT
    }
    return replace(state, open_bids=HashTrieMap(bids), ack_deadlines=HashTrieMap(deadlines))


def eligible(state: EventState, home: HomeView) -> bool:
    """Return True when a connected home should be offered the event's current round."""
    if not home.participating or home.home_id in state.opted_out:
        return False
    if state.is_power_up and not home.speaks_flex:
        return False  # an older home would read a power-up offer as a call to shed
    if not state.awards_by_home.get(home.home_id):
        return bool(home.curtailable)
    return bool(home.curtailable - state.unavailable_loads(home.home_id))


# --- operator steps -----------------------------------------------------------------------------


def create(record: EventRecord, env: Env) -> StepResult:
    """Store a new event and start it in the same transaction (round 1, or direct awards)."""
    started = begin(EventState(record=record), env)
    changes = tuple(
        Insert(change.row)
        if isinstance(change, Update) and isinstance(change.row, EventRecord)
        else change
        for change in started.changes
    )
    return replace(started, kind=StepKind.CREATE, changes=changes, note=f"created; {started.note}")


def begin(state: EventState, env: Env) -> StepResult:
    """Start a draft event: open round 1 (market) or award every eligible home (direct)."""
    if state.record.status is not EventStatus.DRAFT:
        raise InvalidTransitionError(f"event {state.event_id} is already {state.record.status}")
    if state.is_market:
        negotiating = state.with_record(status=EventStatus.NEGOTIATING)
        return open_round(negotiating, 1, state.record.target_kw, env, kind=StepKind.BEGIN)
    committed = state.with_record(status=EventStatus.COMMITTED, current_round=1)
    committed, changes, sends = dispatch_direct(committed, env)
    return StepResult(
        StepKind.BEGIN,
        committed,
        (Update(committed.record), *changes),
        tuple(sends),
        f"direct event committed; {len(sends)} homes awarded",
    )


def cancel(state: EventState, reason: str, env: Env) -> StepResult:
    """Cancel the event: abandon its open round, withdraw unacknowledged awards, tell homes."""
    if state.record.status.is_terminal:
        raise InvalidTransitionError(f"event {state.event_id} is already {state.record.status}")
    del env
    changes: list[Change] = []
    recipients = set(state.awards_by_home.keys())
    open_now = state.open_round
    if open_now is not None:
        abandoned = _with_status(open_now, RoundStatus.ABANDONED)
        state = state.with_round(abandoned)
        changes.append(Update(abandoned))
        recipients.update(state.offered_in(open_now.round))
    withdrawn = [
        _award_status(award, AwardStatus.CANCELLED)
        for award in state.awards.values()
        if award.status is AwardStatus.SENT
    ]
    state = state.with_awards(withdrawn)
    changes.extend(Update(award) for award in withdrawn)
    state = state.with_record(status=EventStatus.CANCELLED, cancel_reason=reason or None)
    changes.append(Update(state.record))
    return StepResult(
        StepKind.CANCEL,
        _closed(state),
        tuple(changes),
        (Send(recipients, messages.cancel(state.event_id, reason)),),
        f"cancelled ({len(recipients)} homes told)",
    )


# --- the timers ---------------------------------------------------------------------------------


def next_due(state: EventState, now: datetime) -> datetime:
    """Return when the event's next step is due (``now`` when it is due already)."""
    record = state.record
    candidates = [record.end]
    if record.status is EventStatus.DRAFT or state.needs_round:
        candidates.append(now)
    if record.status is EventStatus.COMMITTED:
        candidates.append(record.start)
    open_now = state.open_round
    if open_now is not None:
        candidates.append(now if state.all_bids_in else open_now.deadline)
    candidates.extend(state.ack_deadlines.values())
    return min(candidates)


def due_step(state: EventState, env: Env) -> StepResult | None:
    """Return whichever step is due now, or None when nothing is.

    In this order: the end, a draft's start, clearing (deadline passed or every bid in),
    expiring unacknowledged awards, activation at the start, a re-negotiation round.
    """
    now = env.now
    record = state.record
    open_now = state.open_round
    expiring = [number for number, deadline in state.ack_deadlines.items() if now >= deadline]
    step: StepResult | None = None
    if record.status.is_terminal:
        step = None
    elif now >= record.end:
        step = complete(state, env)
    elif record.status is EventStatus.DRAFT:
        step = begin(state, env)
    elif open_now is not None and (now >= open_now.deadline or state.all_bids_in):
        step = clear(state, env)
    elif expiring:
        step = expire_unacked(state, min(expiring), env)
    elif record.status is EventStatus.COMMITTED and now >= record.start:
        active = state.with_record(status=EventStatus.ACTIVE)
        step = StepResult(StepKind.ACTIVATE, active, (Update(active.record),), note="active")
    elif state.needs_round:
        step = renegotiate(state, env)
    return step


def open_round(
    state: EventState,
    number: int,
    target_kw: float,
    env: Env,
    *,
    kind: StepKind = StepKind.OPEN_ROUND,
) -> StepResult:
    """Open a round: store it and its offers, then send one offer to every eligible home.

    The bid window starts when the offers are out: the deadline is ``now`` plus the time the
    offers are given to reach the homes (:meth:`NegotiationSettings.offer_lead`, growing with
    the number offered) plus the window, and never after the event's end.
    """
    settings = env.settings
    window_s = state.record.bid_window_s if number == 1 else settings.renegotiation_window_s
    offered = [home.home_id for home in env.homes.values() if eligible(state, home)]
    lead_s = settings.offer_lead(len(offered))
    deadline = min(env.now + timedelta(seconds=lead_s + window_s), state.record.end)
    record = RoundRecord(
        event_id=state.event_id,
        round=number,
        status=RoundStatus.OPEN,
        target_kw=target_kw,
        opened_at=env.now,
        deadline=deadline,
    )
    state = replace(
        state.with_round(record).with_record(current_round=number),
        offered=state.offered.insert(number, HashTrieSet(offered)),
        open_bids=HashTrieMap(),
    )
    changes: list[Change] = [Update(state.record), Insert(record)]
    changes.extend(Insert(OfferRecord(state.event_id, number, home_id)) for home_id in offered)
    return StepResult(
        kind,
        state,
        tuple(changes),
        (Send(offered, messages.offer(state, record)),),
        f"round {number}: {target_kw:.1f} kW offered to {len(offered)} homes, "
        f"deadline {deadline.isoformat()}",
        round=number,
    )


def clear(state: EventState, env: Env) -> StepResult:
    """Clear the open round in merit order; store its result and awards; send the awards."""
    open_now = state.open_round
    if open_now is None:
        raise InvalidTransitionError(f"event {state.event_id} has no open round")
    bids = [bid for bid in state.open_bids.values() if bid.home_id not in state.opted_out]
    outcome = clear_round(
        event_id=state.event_id,
        round_number=open_now.round,
        bids=bids,
        target_kw=open_now.target_kw,
        price_cap=state.record.price_cap,
        last_curtailed={home_id: view.last_curtailed_at for home_id, view in env.homes.items()},
        inventories={home_id: view.loads for home_id, view in env.homes.items()},
        now=env.now,
        reliability={home_id: view.reliability for home_id, view in env.homes.items()},
    )
    result = outcome.result
    cleared = RoundRecord(
        event_id=open_now.event_id,
        round=open_now.round,
        status=RoundStatus.CLEARED,
        target_kw=open_now.target_kw,
        opened_at=open_now.opened_at,
        deadline=open_now.deadline,
        cleared_at=env.now,
        clearing_price=result.clearing_price,
        offered_kw=result.offered_kw,
        accepted_kw=result.accepted_kw,
        shortfall_kw=result.shortfall_kw,
        bids=len(bids),
        steps=outcome.steps,
    )
    state = state.with_round(cleared).with_awards(outcome.awards)
    changes: list[Change] = [Update(cleared)]
    changes.extend(Insert(award) for award in outcome.awards)
    if state.record.status is EventStatus.NEGOTIATING:
        state = state.with_record(
            status=EventStatus.COMMITTED, clearing_price=result.clearing_price
        )
        changes.append(Update(state.record))
    deadlines = state.ack_deadlines
    if outcome.awards:
        ack_by = env.now + timedelta(seconds=env.settings.ack_timeout_s)
        deadlines = deadlines.insert(open_now.round, ack_by)
    state = replace(state, open_bids=HashTrieMap(), ack_deadlines=deadlines)
    sends = tuple(Send((award.home_id,), messages.award(state, award)) for award in outcome.awards)
    return StepResult(
        StepKind.CLEAR,
        state,
        tuple(changes),
        sends,
        f"round {open_now.round} cleared: {len(bids)} bids, {outcome.steps} steps, "
        f"{result.accepted_kw:.1f} kW accepted at {result.clearing_price}, "
        f"shortfall {result.shortfall_kw:.1f} kW",
        round=open_now.round,
    )


def expire_unacked(state: EventState, round_number: int, env: Env) -> StepResult:
    """Mark a round's unacknowledged awards expired; their kW is re-negotiated."""
    del env
    expired = [
        _award_status(award, AwardStatus.EXPIRED)
        for award in state.awards.values()
        if award.round == round_number and award.status is AwardStatus.SENT
    ]
    state = replace(
        state.with_awards(expired), ack_deadlines=state.ack_deadlines.discard(round_number)
    )
    if expired:
        state = lost_commitment(state)
    return StepResult(
        StepKind.EXPIRE,
        state,
        tuple(Update(award) for award in expired),
        note=f"round {round_number}: {len(expired)} awards expired unacknowledged"
        if expired
        else "",
        round=round_number,
    )


def complete(state: EventState, env: Env) -> StepResult:
    """End the event at its end time and tell the homes involved."""
    del env
    expired = [
        _award_status(award, AwardStatus.EXPIRED)
        for award in state.awards.values()
        if award.status is AwardStatus.SENT
    ]
    state = state.with_awards(expired)
    changes: list[Change] = [Update(award) for award in expired]
    open_now = state.open_round
    if open_now is not None:
        abandoned = _with_status(open_now, RoundStatus.ABANDONED)
        state = state.with_round(abandoned)
        changes.append(Update(abandoned))
    state = state.with_record(status=EventStatus.COMPLETED)
    changes.append(Update(state.record))
    recipients = set(state.awards_by_home.keys())
    return StepResult(
        StepKind.COMPLETE,
        _closed(state),
        tuple(changes),
        (Send(recipients, messages.event_end(state.event_id)),),
        f"completed: committed {state.committed_kw:.1f} kW of {state.record.target_kw:.1f} kW",
    )


def renegotiate(state: EventState, env: Env) -> StepResult:
    """Open a round for the shortfall (a direct event: award more homes), if it may still."""
    state = replace(state, needs_round=False)
    if not may_renegotiate(state, env):
        return StepResult(StepKind.SKIP_ROUND, state)
    if not state.is_market:
        state, changes, sends = dispatch_direct(state, env)
        return StepResult(
            StepKind.DISPATCH,
            state,
            tuple(changes),
            tuple(sends),
            f"shortfall: {len(sends)} more homes awarded" if sends else "",
        )
    return open_round(state, state.record.current_round + 1, state.shortfall_kw, env)


def may_renegotiate(state: EventState, env: Env) -> bool:
    """Return True when a re-negotiation round is worth opening now."""
    record = state.record
    if record.status not in (EventStatus.COMMITTED, EventStatus.ACTIVE):
        return False
    if state.open_round is not None or record.current_round >= env.settings.max_rounds:
        return False
    if state.shortfall_kw <= KW_EPSILON:
        return False
    time_left = (record.end - env.now).total_seconds()
    return time_left > 2 * env.settings.renegotiation_window_s


# --- helpers ------------------------------------------------------------------------------------


def lost_commitment(state: EventState) -> EventState:
    """Flag that commitment was lost, so a re-negotiation round (or more homes) is tried."""
    return replace(state, needs_round=True)


def expected_kw(home: HomeView) -> float:
    """Return what a home is expected to shed in a direct event: its curtailable rated kW."""
    return min(MAX_MESSAGE_KW, sum(home.loads[load_id].rated_kw for load_id in home.curtailable))


def dispatch_direct(state: EventState, env: Env) -> tuple[EventState, list[Change], list[Send]]:
    """Award a direct event to just enough homes to meet its target.

    Homes least recently curtailed go first (the burden rotates), each counted for its
    :func:`expected_kw` until it acknowledges what it took on; awarding stops once what is
    committed and expected covers the target.
    """
    changes: list[Change] = []
    sends: list[Send] = []
    candidates = sorted(
        (home for home in env.homes.values() if not state.awards_by_home.get(home.home_id)),
        key=lambda home: (home.last_curtailed_at or _NEVER, home.home_id),
    )
    for home in candidates:
        if state.shortfall_kw <= KW_EPSILON:
            break
        state, change, send = award_direct(state, home, env)
        if change is not None and send is not None:
            changes.append(change)
            sends.append(send)
    return state, changes, sends


def award_direct(
    state: EventState, home: HomeView, env: Env
) -> tuple[EventState, Change | None, Send | None]:
    """Award a direct event to one home: it sheds what its terms allow at the incentive."""
    if state.awards_by_home.get(home.home_id) or not eligible(state, home):
        return state, None, None
    award = AwardRecord(
        award_id=new_id("awd"),
        event_id=state.event_id,
        round=1,
        home_id=home.home_id,
        kw=expected_kw(home),
        price=state.record.price_cap,
        status=AwardStatus.SENT,
        sent_at=env.now,
    )
    state = state.with_award(award)
    ack_by = env.now + timedelta(seconds=env.settings.ack_timeout_s)
    known = state.ack_deadlines.get(1)
    if known is None or known < ack_by:
        state = replace(state, ack_deadlines=state.ack_deadlines.insert(1, ack_by))
    return state, Insert(award), Send((home.home_id,), messages.award(state, award))


def _award_status(award: AwardRecord, status: AwardStatus) -> AwardRecord:
    return replace(award, status=status)


def _with_status(record: RoundRecord, status: RoundStatus) -> RoundRecord:
    return replace(record, status=status)


def _closed(state: EventState) -> EventState:
    """Return a finished event's state without what only a running event needs."""
    return replace(state, open_bids=HashTrieMap(), ack_deadlines=HashTrieMap(), needs_round=False)
