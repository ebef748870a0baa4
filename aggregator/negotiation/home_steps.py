"""What a home's message (or its coming and going) does to an event, as pure functions.

Each function takes the event's state, the home and its message, and the
:class:`~aggregator.negotiation.model.Env`, and returns a
:class:`~aggregator.negotiation.model.StepResult`; a message that cannot be accepted raises
:class:`~jeisson.common.protocol.ProtocolError` and changes nothing. A repeated message returns a
result without changes: it is acknowledged again, nothing is written twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from aggregator.awarding import split_kw_by_rating
from aggregator.home_limits import bounded_commitment, first_step_beyond_rating
from aggregator.negotiation import messages
from aggregator.negotiation.machine import award_direct, eligible, lost_commitment
from aggregator.negotiation.model import Env, HomeView, Send, StepKind, StepResult
from aggregator.negotiation.state import KW_EPSILON, LIVE_AWARD, EventState
from aggregator.records import AwardRecord, AwardStatus, BidRecord, EventStatus
from aggregator.store import (
    Change,
    HomeCurtailed,
    Insert,
    OfferRecord,
    OptOutRecord,
    Update,
    Upsert,
)
from jeisson.common.protocol import AwardAck, Bid, ErrorCode, OptOut, ProtocolError


class RoundClosedError(ProtocolError):
    """A bid for a round that takes no bids (any more): refused unless it was stored before."""

    def __init__(self, bid: Bid) -> None:
        """Refuse ``bid`` with ``deadline_passed``."""
        super().__init__(
            ErrorCode.DEADLINE_PASSED,
            f"round {bid.round} of event {bid.event_id} takes no more bids",
            bid.id,
        )
        self.bid = bid


def accept_bid(state: EventState, home_id: str, bid: Bid, env: Env) -> StepResult:
    """Take a home's bid in the open round (received at ``env.now``)."""
    open_now = state.open_round
    if open_now is None or open_now.round != bid.round:
        raise RoundClosedError(bid)
    if home_id not in state.offered_in(open_now.round):
        raise ProtocolError(ErrorCode.INVALID_STATE, "this home was not offered this round", bid.id)
    previous = state.open_bids.get(home_id)
    if previous is not None and previous.message_id == bid.id:
        return StepResult(StepKind.BID, state)  # a re-sent bid: stored already
    if env.now > open_now.deadline:
        raise ProtocolError(
            ErrorCode.DEADLINE_PASSED,
            f"the bid deadline of round {bid.round} ({open_now.deadline.isoformat()}) has passed",
            bid.id,
        )
    if home_id in state.opted_out:
        raise ProtocolError(ErrorCode.INVALID_STATE, "this home opted out of the event", bid.id)
    _check_bid_loads(state, home_id, bid, env)
    record = BidRecord(
        event_id=bid.event_id,
        round=bid.round,
        home_id=home_id,
        message_id=bid.id,
        steps=tuple(bid.steps),
        received_at=env.now,
    )
    return StepResult(StepKind.BID, state.with_bid(record), (Upsert(record),))


def _check_bid_loads(state: EventState, home_id: str, bid: Bid, env: Env) -> None:
    view = env.homes.get(home_id)
    curtailable = view.curtailable if view is not None else frozenset()
    inventory = view.loads if view is not None else {}
    unavailable = state.unavailable_loads(home_id) if state.awards_by_home.get(home_id) else set()
    for step in bid.steps:
        for load in step.loads:
            if load not in curtailable:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_LOAD,
                    f"load {load!r} is not a curtailable load of this home",
                    bid.id,
                )
            if load in unavailable:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    f"load {load!r} was already awarded or given back in this event",
                    bid.id,
                )
    beyond = first_step_beyond_rating(bid.steps, inventory)
    if beyond is not None:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"steps.{beyond}.kw {bid.steps[beyond].kw} exceeds what its loads' rated kW leaves",
            bid.id,
        )
    if view is not None:
        _check_levels(bid, view, power_up=state.is_power_up)


def _check_levels(bid: Bid, view: HomeView, *, power_up: bool) -> None:
    """Refuse partial steps whose levels exceed the load's rating or run the wrong way.

    The protocol already holds each load's levels monotonic; here they must fall in a shed
    event and rise in a power-up event, and stay within the load's rated power.
    """
    last: dict[str, float] = {}
    for step in bid.steps:
        if step.level_kw is None:
            continue
        (load,) = step.loads
        rated = view.loads[load].rated_kw
        if step.level_kw > rated:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"load {load!r}: level {step.level_kw} kW is above its rated {rated} kW",
                bid.id,
            )
        before = last.get(load)
        if before is not None and (step.level_kw > before) != power_up:
            way = "rise" if power_up else "fall"
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"load {load!r}: levels must {way} in this event",
                bid.id,
            )
        last[load] = step.level_kw


def ack_award(state: EventState, home_id: str, ack: AwardAck, env: Env) -> StepResult:
    """Record a home's answer to its award: only acknowledged awards count as committed."""
    award = state.awards.get(ack.award_id)
    if award is None or award.home_id != home_id:
        raise ProtocolError(ErrorCode.UNKNOWN_AWARD, "unknown award", ack.id)
    if award.status is not AwardStatus.SENT:
        if award.status in (AwardStatus.ACKED, AwardStatus.DECLINED):
            return StepResult(StepKind.AWARD_ACK, state)  # a repeated answer changes nothing
        raise ProtocolError(
            ErrorCode.INVALID_STATE, f"award is {award.status}; do not curtail for it", ack.id
        )
    deadline = state.ack_deadlines.get(award.round)
    if deadline is not None and env.now > deadline:
        raise ProtocolError(
            ErrorCode.INVALID_STATE,
            "award expired unacknowledged; do not curtail for it",
            ack.id,
        )
    if not ack.accepted:
        declined = replace(award, status=AwardStatus.DECLINED)
        state = lost_commitment(state.with_award(declined))
        return StepResult(
            StepKind.AWARD_ACK,
            state,
            (Update(declined),),
            note=f"home {home_id} declined its award",
            home_id=home_id,
        )
    acked = replace(award, status=AwardStatus.ACKED, acked_at=env.now)
    if not state.is_market:
        # What the home takes on is bounded by its own curtailable loads' rated kW.
        view = env.homes.get(home_id)
        inventory = view.loads if view is not None else {}
        curtailable = view.curtailable if view is not None else frozenset()
        loads = list(dict.fromkeys(load for load in ack.loads if load in curtailable))
        kw = bounded_commitment(ack.kw, loads, inventory) if loads else 0.0
        acked = replace(
            acked, kw=kw, load_kw=split_kw_by_rating(kw, loads, inventory) if loads else {}
        )
        if kw < award.kw - KW_EPSILON:  # took on less than expected: award more homes
            return StepResult(
                StepKind.AWARD_ACK,
                lost_commitment(state.with_award(acked)),
                (Update(acked), Update(HomeCurtailed(home_id, env.now))),
            )
    return StepResult(
        StepKind.AWARD_ACK,
        state.with_award(acked),
        (Update(acked), Update(HomeCurtailed(home_id, env.now))),
    )


def opt_out(state: EventState, home_id: str, message: OptOut, env: Env) -> StepResult:
    """Take a home out of the event (or one load out of its awards); re-negotiate the loss."""
    own = state.awards_of(home_id)
    live = [award for award in own if award.status in LIVE_AWARD]
    load_id = message.load_id
    if load_id is not None:
        holding = [award for award in live if load_id in award.load_kw]
        if not holding:
            if any(load_id in award.load_kw for award in own):
                return StepResult(StepKind.OPT_OUT, state)  # no longer held: harmless repeat
            raise ProtocolError(
                ErrorCode.UNKNOWN_LOAD,
                f"load {load_id!r} is not under an award of this home",
                message.id,
            )
        if all(load_id in award.opted_out_loads for award in holding):
            return StepResult(StepKind.OPT_OUT, state)  # a repeat
        live = holding
    elif home_id in state.opted_out:
        return StepResult(StepKind.OPT_OUT, state)  # a repeat
    record = OptOutRecord(
        event_id=state.event_id,
        home_id=home_id,
        load_id=load_id or "",
        reason=message.reason.value,
        message_id=message.id,
        at=env.now,
    )
    changes: list[Change] = [Insert(record, if_absent=True)]
    if load_id is None:
        state = replace(
            state,
            opted_out=state.opted_out.insert(home_id),
            open_bids=state.open_bids.discard(home_id),  # its bid no longer stands
        )
    updated = [_opt_out_award(award, load_id) for award in live]
    state = state.with_awards(updated)
    changes.extend(Update(award) for award in updated)
    if live:
        state = lost_commitment(state)
    what = f"load {load_id}" if load_id else "the event"
    return StepResult(
        StepKind.OPT_OUT,
        state,
        tuple(changes),
        note=f"home {home_id} opted out of {what} ({message.reason})",
        home_id=home_id,
    )


def _opt_out_award(award: AwardRecord, load_id: str | None) -> AwardRecord:
    if load_id is None:
        return replace(award, status=AwardStatus.OPTED_OUT)
    opted = (*award.opted_out_loads, load_id)
    status = AwardStatus.OPTED_OUT if set(opted) >= set(award.load_kw) else award.status
    return replace(award, opted_out_loads=opted, status=status)


def catch_up(
    state: EventState, home: HomeView, env: Env, held: Mapping[str, frozenset[str]] | None = None
) -> StepResult:
    """Bring a (re)connected home up to date: the open offer, its unacknowledged awards.

    ``held`` maps the award ids the home says (in its hello) it is still executing to the loads
    it still holds (empty: all of them). An award marked lost while the home was away but still
    held is counted again, without the loads the home let go: a home keeps shedding on its own
    when the aggregator cannot hear it, so its return reconciles the record.
    """
    if state.record.status.is_terminal:
        return StepResult(StepKind.CATCH_UP, state)
    changes: list[Change] = []
    sends: list[Send] = []
    back = _still_held(state, home.home_id, held or {})
    if back:
        state = state.with_awards(back)
        changes.extend(Update(award) for award in back)
    open_now = state.open_round
    lead_s = (open_now.deadline - env.now).total_seconds() if open_now is not None else 0.0
    if open_now is not None and lead_s > env.settings.min_offer_lead_s and eligible(state, home):
        offered = state.offered_in(open_now.round)
        if home.home_id not in offered:
            state = replace(
                state, offered=state.offered.insert(open_now.round, offered.insert(home.home_id))
            )
            changes.append(Insert(OfferRecord(state.event_id, open_now.round, home.home_id), True))
        if home.home_id not in state.open_bids:
            sends.append(Send((home.home_id,), messages.offer(state, open_now)))
    sends.extend(
        Send((home.home_id,), messages.award(state, award))
        for award in state.awards_of(home.home_id)
        if award.status is AwardStatus.SENT
    )
    if (
        not state.is_market
        and state.record.status in (EventStatus.COMMITTED, EventStatus.ACTIVE)
        and state.shortfall_kw > KW_EPSILON
    ):
        state, change, send = award_direct(state, home, env)
        if change is not None and send is not None:
            changes.append(change)
            sends.append(send)
    note = f"home {home.home_id} came back still holding its award" if back else ""
    return StepResult(
        StepKind.CATCH_UP, state, tuple(changes), tuple(sends), note=note, home_id=home.home_id
    )


def _still_held(
    state: EventState, home_id: str, held: Mapping[str, frozenset[str]]
) -> list[AwardRecord]:
    """Return the home's lost awards it still holds, acknowledged again (for running events)."""
    if state.record.status not in (EventStatus.COMMITTED, EventStatus.ACTIVE):
        return []
    back = []
    for award in state.awards_of(home_id):
        if award.status is not AwardStatus.LOST or award.award_id not in held:
            continue
        loads = held[award.award_id]
        released = tuple(
            load_id
            for load_id in award.load_kw
            if load_id in award.opted_out_loads or (loads and load_id not in loads)
        )
        if set(released) >= set(award.load_kw):
            continue
        back.append(replace(award, status=AwardStatus.ACKED, opted_out_loads=released))
    return back


def drop_home(state: EventState, home_id: str, env: Env) -> StepResult:
    """Mark the acknowledged awards of a home that stayed away past its grace period lost."""
    del env
    lost = [
        replace(award, status=AwardStatus.LOST)
        for award in state.awards_of(home_id)
        if award.status is AwardStatus.ACKED
    ]
    if not lost:
        return StepResult(StepKind.DROP, state)
    return StepResult(
        StepKind.DROP,
        lost_commitment(state.with_awards(lost)),
        tuple(Update(award) for award in lost),
        note=f"home {home_id} dropped off",
        home_id=home_id,
    )
