"""The event lifecycle: offers, clearing rounds, awards, delivery, re-negotiation, end and cancel.

:class:`EventManager` owns every unfinished event. Each event has a driver task that sleeps until
its next milestone (bid deadline, ack deadline, start, end) or until something wakes it (all bids
in, commitment lost), then takes one step. Every step persists its state change through the
store *before* sending anything to homes. After a restart :meth:`EventManager.start` loads the
unfinished events and their drivers carry on from the stored state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from aggregator.awarding import clear_round, split_kw_by_rating
from aggregator.event_state import KW_EPSILON, DeliverySample, EventState
from aggregator.metrics import EventFigures, Metrics
from aggregator.records import (
    AwardRecord,
    AwardStatus,
    BidRecord,
    EventRecord,
    EventStatus,
    HomeRecord,
    RoundRecord,
    RoundStatus,
)
from aggregator.store import (
    GroupCommitter,
    Insert,
    OfferRecord,
    Store,
    TelemetryBatch,
    new_id,
)
from jeisson.common.protocol import (
    Award,
    AwardAck,
    Bid,
    Cancel,
    ErrorCode,
    EventEnd,
    EventKind,
    HeldAward,
    Load,
    Offer,
    OptOut,
    ProtocolError,
    ServerMessage,
    Telemetry,
    utc_now,
)

_LOGGER = logging.getLogger(__name__)


class HomeLink(Protocol):
    """How the negotiation reaches connected homes (implemented by the session registry)."""

    def is_connected(self, home_id: str) -> bool:
        """Return True when the home has a live session."""

    def send(self, home_id: str, message: ServerMessage) -> bool:
        """Queue a message for a home; return False when it is not connected."""

    def broadcast(self, home_ids: Iterable[str], message: ServerMessage) -> int:
        """Queue one message for many homes (serialised once); return how many got it."""


@dataclass(frozen=True, slots=True)
class NegotiationSettings:
    """Timing knobs of the negotiation (seconds)."""

    ack_timeout_s: float = 15.0
    """An award not acknowledged within this time is not committed."""
    drop_grace_s: float = 60.0
    """A home disconnected this long during an event has dropped off: its award is lost."""
    renegotiation_window_s: float = 10.0
    """Bid window of a re-negotiation round."""
    max_rounds: int = 10
    telemetry_stale_s: float = 30.0
    """A home's delivery figure older than this no longer counts as delivered."""
    min_offer_lead_s: float = 1.0
    """A home that connects later than this before a bid deadline gets no offer."""


@dataclass(frozen=True, slots=True)
class EventRequest:
    """A validated request to create an event."""

    name: str
    kind: EventKind
    target_kw: float
    price_cap: float
    start: datetime
    end: datetime
    bid_window_s: float
    restore_stagger_s: float
    currency: str
    baseline_method: str | None = None


class EventNotFoundError(LookupError):
    """No event has that id."""


class InvalidTransitionError(RuntimeError):
    """The event cannot do that from its current status."""


@dataclass(frozen=True, slots=True)
class HomeView:
    """What the negotiation knows of a connected home."""

    home_id: str
    participating: bool
    loads: dict[str, Load]
    last_curtailed_at: datetime | None

    @classmethod
    def of(cls, home: HomeRecord) -> HomeView:
        """Build the view from a stored home."""
        return cls(
            home_id=home.home_id,
            participating=home.participating,
            loads={load.load_id: load for load in home.loads},
            last_curtailed_at=home.last_curtailed_at,
        )

    @property
    def curtailable(self) -> set[str]:
        """Return the ids of loads the homeowner lets Jeisson curtail."""
        return {load_id for load_id, load in self.loads.items() if load.curtailable}


def offer_message_id(event_id: str, round_number: int) -> str:
    """Return the (stable) id of an event round's offer, so re-sends are recognised."""
    return f"offer-{event_id}-{round_number}"


class EventManager:
    """Runs every unfinished event; the operator API and home sessions call into it."""

    def __init__(
        self,
        store: Store,
        link: HomeLink,
        settings: NegotiationSettings | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        metrics: Metrics | None = None,
        committer: GroupCommitter | None = None,
    ) -> None:
        """Create a manager; call :meth:`start` to resume stored events."""
        self._store = store
        self._committer = committer or GroupCommitter(store)
        self._metrics = metrics or Metrics()
        self._link = link
        self._settings = settings or NegotiationSettings()
        self._now = clock
        self._events: dict[str, EventState] = {}
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._homes: dict[str, HomeView] = {}
        self._drop_timers: dict[str, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def settings(self) -> NegotiationSettings:
        """Return the timing settings."""
        return self._settings

    # --- lifecycle of the manager ---------------------------------------------------------

    async def start(self) -> None:
        """Load unfinished events from the store and resume them."""
        for record in await self._store.unfinished_events():
            state = EventState(record=record)
            for round_record in await self._store.rounds_for(record.event_id):
                state.rounds[round_record.round] = round_record
            for award in await self._store.awards_for(record.event_id):
                state.add_award(award)
            state.opted_out_homes = await self._store.homes_opted_out(record.event_id)
            state.offered = await self._store.offered_homes(record.event_id)
            open_round = state.open_round
            if open_round is not None:
                for bid in await self._store.bids_for(record.event_id, open_round.round):
                    state.open_bids[bid.home_id] = bid
            resumed_deadline = self._now() + timedelta(
                seconds=max(self._settings.ack_timeout_s, self._settings.drop_grace_s)
            )
            for award in state.awards.values():
                if award.status is AwardStatus.SENT:
                    state.ack_deadlines[award.round] = resumed_deadline
            self._events[record.event_id] = state
            self._start_driver(state)
            _LOGGER.info(
                "Resumed event %s (%s)",
                record.event_id,
                record.status,
                extra={"event_id": record.event_id},
            )
        # Every home is disconnected after a restart: those holding awards get the grace period.
        for state in self._events.values():
            for award in state.awards.values():
                if award.status is AwardStatus.ACKED:
                    self._arm_drop_timer(award.home_id)

    async def stop(self) -> None:
        """Stop every driver and timer (the stored state is kept for the next start)."""
        for handle in self._drop_timers.values():
            handle.cancel()
        self._drop_timers.clear()
        tasks = [*self._drivers.values(), *self._background]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drivers.clear()
        self._background.clear()

    # --- operator actions -----------------------------------------------------------------

    async def create_event(self, request: EventRequest) -> EventRecord:
        """Persist a new event as a draft and start negotiating it."""
        record = EventRecord(
            event_id=new_id("evt"),
            name=request.name,
            kind=request.kind,
            status=EventStatus.DRAFT,
            target_kw=request.target_kw,
            price_cap=request.price_cap,
            start=request.start,
            end=request.end,
            bid_window_s=request.bid_window_s,
            restore_stagger_s=request.restore_stagger_s,
            currency=request.currency,
            created_at=self._now(),
            baseline_method=request.baseline_method,
        )
        await self._store.insert_event(record)
        state = EventState(record=record)
        self._events[record.event_id] = state
        _LOGGER.info(
            "Event %s created: %s %.1f kW %s..%s cap %.3f",
            record.event_id,
            record.kind,
            record.target_kw,
            record.start.isoformat(),
            record.end.isoformat(),
            record.price_cap,
            extra={"event_id": record.event_id},
        )
        async with state.lock:
            await self._begin(state)
        self._start_driver(state)
        return state.record

    async def cancel_event(self, event_id: str, reason: str = "") -> EventRecord:
        """Cancel an event: persist it, then tell every home involved to restore."""
        state = self._events.get(event_id)
        if state is None:
            record = await self._store.get_event(event_id)
            if record is None:
                raise EventNotFoundError(event_id)
            raise InvalidTransitionError(f"event {event_id} is already {record.status}")
        async with state.lock:
            if state.record.status.is_terminal:
                raise InvalidTransitionError(f"event {event_id} is already {state.record.status}")
            open_round = state.open_round
            if open_round is not None:
                await self._store.update_round(
                    state.set_round(open_round, status=RoundStatus.ABANDONED)
                )
            for award in list(state.awards.values()):
                if award.status is AwardStatus.SENT:
                    await self._store.update_award(
                        state.set_award(award, status=AwardStatus.CANCELLED)
                    )
            await self._store.update_event(
                state.set_record(status=EventStatus.CANCELLED, cancel_reason=reason or None)
            )
            recipients = {award.home_id for award in state.awards.values()}
            if open_round is not None:
                recipients.update(state.offered.get(open_round.round, ()))
            self._link.broadcast(
                recipients, Cancel(id=f"cancel-{event_id}", event_id=event_id, reason=reason)
            )
            _LOGGER.info(
                "Event %s cancelled (%d homes told)",
                event_id,
                len(recipients),
                extra={"event_id": event_id},
            )
            self._finish(state)
            return state.record

    def live(self, event_id: str) -> EventState | None:
        """Return the live state of an unfinished event (None once finished)."""
        return self._events.get(event_id)

    def delivered_kw(self, state: EventState) -> float:
        """Return the kW homes currently report shedding for an event."""
        stale = timedelta(seconds=self._settings.telemetry_stale_s)
        return state.delivered_kw(self._now(), stale)

    def figures(self) -> list[EventFigures]:
        """Return the live figures of every running event (for metrics and dashboards)."""
        return [
            EventFigures(
                event_id=state.event_id,
                status=state.record.status.value,
                target_kw=state.record.target_kw,
                committed_kw=state.committed_kw,
                delivered_kw=self.delivered_kw(state),
            )
            for state in self._events.values()
        ]

    def flexible_kw(self) -> float:
        """Return the curtailable kW of the connected, participating homes."""
        return sum(
            sum(home.loads[load].rated_kw for load in home.curtailable)
            for home in self._homes.values()
            if home.participating and self._link.is_connected(home.home_id)
        )

    # --- home events ----------------------------------------------------------------------

    async def home_ready(self, home: HomeRecord, held: Iterable[HeldAward]) -> None:
        """Bring a home that said hello and sent its inventory up to date with every event."""
        view = HomeView.of(home)
        self._homes[home.home_id] = view
        timer = self._drop_timers.pop(home.home_id, None)
        if timer is not None:
            timer.cancel()
        for state in list(self._events.values()):
            async with state.lock:
                await self._catch_up(state, view)
        for held_award in held:
            self._reconcile_held(home.home_id, held_award)

    def home_inventory_changed(self, home: HomeRecord) -> None:
        """Refresh what the negotiation knows of a connected home's loads."""
        self._homes[home.home_id] = HomeView.of(home)

    def home_disconnected(self, home_id: str) -> None:
        """Start a disconnected home's drop-off grace period if it holds awards."""
        self._homes.pop(home_id, None)
        if any(
            award.status is AwardStatus.ACKED
            for state in self._events.values()
            for award in state.awards_of(home_id)
        ):
            self._arm_drop_timer(home_id)

    async def handle_bid(self, home_id: str, bid: Bid) -> None:
        """Validate and persist a bid; clearing starts early once every offered home answered."""
        state = self._state_for(bid.event_id, bid.id)
        async with state.lock:
            open_round = state.open_round
            if open_round is None or open_round.round != bid.round:
                if await self._is_stored_bid(home_id, bid):
                    return  # a re-sent bid of a round already cleared: harmless
                raise ProtocolError(
                    ErrorCode.DEADLINE_PASSED,
                    f"round {bid.round} of event {bid.event_id} takes no more bids",
                    bid.id,
                )
            if home_id not in state.offered.get(open_round.round, ()):
                raise ProtocolError(
                    ErrorCode.INVALID_STATE, "this home was not offered this round", bid.id
                )
            previous = state.open_bids.get(home_id)
            if previous is not None and previous.message_id == bid.id:
                return  # a re-sent bid: already stored
            self._check_bid_loads(state, home_id, bid)
            record = BidRecord(
                event_id=bid.event_id,
                round=bid.round,
                home_id=home_id,
                message_id=bid.id,
                steps=tuple(bid.steps),
                received_at=self._now(),
            )
            await self._store.save_bid(record)
            state.open_bids[home_id] = record
            if self._all_bids_in(state):
                state.wake.set()

    async def handle_award_ack(self, home_id: str, ack: AwardAck) -> None:
        """Record an award acknowledgement: only acknowledged awards count as committed."""
        state = self._state_for(ack.event_id, ack.id)
        async with state.lock:
            award = state.awards.get(ack.award_id)
            if award is None or award.home_id != home_id:
                raise ProtocolError(ErrorCode.UNKNOWN_AWARD, "unknown award", ack.id)
            if award.status is not AwardStatus.SENT:
                if award.status in (AwardStatus.ACKED, AwardStatus.DECLINED):
                    return  # a repeated ack changes nothing
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    f"award is {award.status}; do not curtail for it",
                    ack.id,
                )
            if not ack.accepted:
                await self._store.update_award(state.set_award(award, status=AwardStatus.DECLINED))
                self._lost_commitment(state)
                return
            now = self._now()
            changes: dict[str, object] = {"status": AwardStatus.ACKED, "acked_at": now}
            if not state.is_market:
                inventory = self._homes[home_id].loads if home_id in self._homes else {}
                loads = [load for load in ack.loads if load in inventory]
                changes["kw"] = ack.kw if loads else 0.0
                changes["load_kw"] = split_kw_by_rating(ack.kw, loads, inventory) if loads else {}
            await self._store.update_award(state.set_award(award, **changes))
            await self._store.set_last_curtailed(home_id, now)
            if home_id in self._homes:
                view = self._homes[home_id]
                self._homes[home_id] = HomeView(
                    view.home_id, view.participating, view.loads, last_curtailed_at=now
                )

    async def handle_opt_out(self, home_id: str, opt_out: OptOut) -> None:
        """Persist an opt-out and re-negotiate the commitment it loses."""
        state = self._state_for(opt_out.event_id, opt_out.id)
        async with state.lock:
            live = [
                award
                for award in state.awards_of(home_id)
                if award.status in (AwardStatus.SENT, AwardStatus.ACKED)
            ]
            if opt_out.load_id is not None and not any(
                opt_out.load_id in award.load_kw for award in live
            ):
                if any(opt_out.load_id in award.load_kw for award in state.awards_of(home_id)):
                    return  # already opted out or no longer held: harmless repeat
                raise ProtocolError(
                    ErrorCode.UNKNOWN_LOAD,
                    f"load {opt_out.load_id!r} is not under an award of this home",
                    opt_out.id,
                )
            is_new = await self._store.record_opt_out(
                opt_out.event_id, home_id, opt_out.load_id, opt_out.reason.value, opt_out.id
            )
            if not is_new:
                return
            if opt_out.load_id is None:
                state.opted_out_homes.add(home_id)
                state.open_bids.pop(home_id, None)  # its bid in an open round no longer stands
                state.delivery.pop(home_id, None)  # it restores now: stop counting its shed
            for award in live:
                await self._apply_opt_out(state, award, opt_out.load_id)
            _LOGGER.info(
                "Home %s opted out of event %s%s (%s)",
                home_id,
                opt_out.event_id,
                f" load {opt_out.load_id}" if opt_out.load_id else "",
                opt_out.reason,
                extra={"event_id": opt_out.event_id, "home_id": home_id},
            )
            if live:
                self._lost_commitment(state)

    async def handle_telemetry(self, home_id: str, telemetry: Telemetry) -> None:
        """Persist a telemetry batch and update the event's live delivery figure."""
        batch = TelemetryBatch(
            home_id, telemetry.id, telemetry.event_id, tuple(telemetry.samples), self._now()
        )
        receipt = await self._committer.commit([batch])
        if batch.key not in receipt.stored_telemetry or telemetry.event_id is None:
            return
        state = self._events.get(telemetry.event_id)
        if state is None:
            return
        latest = max(telemetry.samples, key=lambda sample: sample.ts)
        known = state.delivery.get(home_id)
        if known is None or latest.ts >= known.ts:
            state.delivery[home_id] = DeliverySample(ts=latest.ts, shed_kw=latest.shed_kw)

    # --- the driver -----------------------------------------------------------------------

    def _start_driver(self, state: EventState) -> None:
        task = asyncio.create_task(self._drive(state), name=f"event-{state.event_id}")
        self._drivers[state.event_id] = task

    async def _drive(self, state: EventState) -> None:
        """Take the event's steps as they fall due, until it completes or is cancelled."""
        while self._is_running(state):
            due = self._next_due(state)
            delay = (due - self._now()).total_seconds()
            if delay > 0:
                state.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.wake.wait(), timeout=delay)
                continue
            async with state.lock:
                if not self._is_running(state):
                    return
                try:
                    await self._step(state)
                except Exception:
                    _LOGGER.exception(
                        "Event %s: step failed; retrying",
                        state.event_id,
                        extra={"event_id": state.event_id},
                    )
                    await asyncio.sleep(1)

    @staticmethod
    def _is_running(state: EventState) -> bool:
        """Return True while the event is neither completed nor cancelled."""
        return not state.record.status.is_terminal

    def _next_due(self, state: EventState) -> datetime:
        """Return when the event's next step is due (now when it is due already)."""
        now = self._now()
        record = state.record
        candidates = [record.end]
        if record.status in (EventStatus.DRAFT,):
            candidates.append(now)
        if record.status is EventStatus.COMMITTED:
            candidates.append(record.start)
        open_round = state.open_round
        if open_round is not None:
            candidates.append(now if self._all_bids_in(state) else open_round.deadline)
        candidates.extend(state.ack_deadlines.values())
        if state.needs_round:
            candidates.append(now)
        return min(candidates)

    async def _step(self, state: EventState) -> None:
        """Take whichever step is due now (the caller holds the event's lock)."""
        now = self._now()
        if now >= state.record.end:
            await self._complete(state)
            return
        if state.record.status is EventStatus.DRAFT:
            await self._begin(state)
            return
        open_round = state.open_round
        if open_round is not None and (now >= open_round.deadline or self._all_bids_in(state)):
            await self._clear(state, open_round)
            return
        for round_number, deadline in list(state.ack_deadlines.items()):
            if now >= deadline:
                await self._expire_unacked(state, round_number)
                return
        if state.record.status is EventStatus.COMMITTED and now >= state.record.start:
            await self._store.update_event(state.set_record(status=EventStatus.ACTIVE))
            _LOGGER.info("Event %s active", state.event_id, extra={"event_id": state.event_id})
            return
        if state.needs_round:
            state.needs_round = False
            if self._may_renegotiate(state):
                await self._open_round(state, state.record.current_round + 1, state.shortfall_kw)

    # --- steps ----------------------------------------------------------------------------

    async def _begin(self, state: EventState) -> None:
        """Start a draft event: open round 1 (market) or award every home (direct)."""
        if state.record.status is not EventStatus.DRAFT:
            return
        if state.is_market:
            await self._store.update_event(state.set_record(status=EventStatus.NEGOTIATING))
            await self._open_round(state, 1, state.record.target_kw)
        else:
            await self._store.update_event(
                state.set_record(status=EventStatus.COMMITTED, current_round=1)
            )
            for home in list(self._homes.values()):
                await self._award_direct(state, home)

    def _eligible(self, state: EventState, home: HomeView) -> bool:
        """Return True when a home should be offered the event's current round."""
        if not home.participating or home.home_id in state.opted_out_homes:
            return False
        if not self._link.is_connected(home.home_id):
            return False
        return bool(home.curtailable - state.unavailable_loads(home.home_id))

    async def _open_round(self, state: EventState, number: int, target_kw: float) -> None:
        """Persist a new round and send its offer to every eligible connected home."""
        now = self._now()
        window_s = (
            state.record.bid_window_s if number == 1 else self._settings.renegotiation_window_s
        )
        deadline = min(now + timedelta(seconds=window_s), state.record.end)
        offered = {home.home_id for home in self._homes.values() if self._eligible(state, home)}
        record = RoundRecord(
            event_id=state.event_id,
            round=number,
            status=RoundStatus.OPEN,
            target_kw=target_kw,
            opened_at=now,
            deadline=deadline,
        )
        await self._store.write(
            [
                Insert(record),
                *(Insert(OfferRecord(state.event_id, number, home_id)) for home_id in offered),
            ]
        )
        state.rounds[number] = record
        state.offered[number] = offered
        state.open_bids.clear()
        await self._store.update_event(state.set_record(current_round=number))
        self._link.broadcast(offered, self._offer(state, record))
        _LOGGER.info(
            "Event %s round %d: %.1f kW offered to %d homes, deadline %s",
            state.event_id,
            number,
            target_kw,
            len(offered),
            deadline.isoformat(),
            extra={"event_id": state.event_id, "round": number},
        )

    def _offer(self, state: EventState, record: RoundRecord) -> Offer:
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
        )

    async def _clear(self, state: EventState, open_round: RoundRecord) -> None:
        """Clear the open round, persist its awards, then send them."""
        now = self._now()
        bids = list(state.open_bids.values())
        started = time.perf_counter()
        outcome = clear_round(
            event_id=state.event_id,
            round_number=open_round.round,
            bids=bids,
            target_kw=open_round.target_kw,
            price_cap=state.record.price_cap,
            last_curtailed={
                home_id: view.last_curtailed_at for home_id, view in self._homes.items()
            },
            inventories={home_id: view.loads for home_id, view in self._homes.items()},
            now=now,
        )
        self._metrics.clearing_seconds.observe(time.perf_counter() - started)
        result = outcome.result
        await self._store.update_round(
            state.set_round(
                open_round,
                status=RoundStatus.CLEARED,
                cleared_at=now,
                clearing_price=result.clearing_price,
                offered_kw=result.offered_kw,
                accepted_kw=result.accepted_kw,
                shortfall_kw=result.shortfall_kw,
                bids=len(bids),
                steps=outcome.steps,
            )
        )
        await self._store.insert_awards(outcome.awards)
        for award in outcome.awards:
            state.add_award(award)
        if outcome.awards:
            state.ack_deadlines[open_round.round] = now + timedelta(
                seconds=self._settings.ack_timeout_s
            )
        if state.record.status is EventStatus.NEGOTIATING:
            await self._store.update_event(
                state.set_record(status=EventStatus.COMMITTED, clearing_price=result.clearing_price)
            )
        state.open_bids.clear()
        for award in outcome.awards:
            self._link.send(award.home_id, self._award_message(state, award))
        self._metrics.round_seconds.observe((self._now() - open_round.opened_at).total_seconds())
        _LOGGER.info(
            "Event %s round %d cleared: %d bids, %d steps, %.1f kW accepted at %s, "
            "shortfall %.1f kW",
            state.event_id,
            open_round.round,
            len(bids),
            outcome.steps,
            result.accepted_kw,
            result.clearing_price,
            result.shortfall_kw,
            extra={"event_id": state.event_id, "round": open_round.round},
        )

    def _award_message(self, state: EventState, award: AwardRecord) -> Award:
        return Award(
            id=award.award_id,
            event_id=state.event_id,
            award_id=award.award_id,
            round=award.round,
            kind=state.record.kind,
            loads=list(award.loads),
            kw=award.kw,
            price=award.price,
            window_start=max(state.record.start, award.sent_at),
            window_end=state.record.end,
            restore_stagger_s=state.record.restore_stagger_s,
            currency=state.record.currency,
        )

    async def _award_direct(self, state: EventState, home: HomeView) -> None:
        """Award a direct event to one home: it sheds what its terms allow at the incentive."""
        if state.awards_of(home.home_id) or not self._eligible(state, home):
            return
        award = AwardRecord(
            award_id=new_id("awd"),
            event_id=state.event_id,
            round=1,
            home_id=home.home_id,
            kw=0.0,
            price=state.record.price_cap,
            status=AwardStatus.SENT,
            sent_at=self._now(),
        )
        await self._store.insert_awards([award])
        state.add_award(award)
        state.ack_deadlines.setdefault(
            1, self._now() + timedelta(seconds=self._settings.ack_timeout_s)
        )
        self._link.send(home.home_id, self._award_message(state, award))

    async def _expire_unacked(self, state: EventState, round_number: int) -> None:
        """Mark a round's unacknowledged awards expired; their kW is re-negotiated."""
        del state.ack_deadlines[round_number]
        expired = [
            award
            for award in state.awards.values()
            if award.round == round_number and award.status is AwardStatus.SENT
        ]
        for award in expired:
            await self._store.update_award(state.set_award(award, status=AwardStatus.EXPIRED))
        if expired:
            _LOGGER.info(
                "Event %s round %d: %d awards expired unacknowledged",
                state.event_id,
                round_number,
                len(expired),
                extra={"event_id": state.event_id, "round": round_number},
            )
            self._lost_commitment(state)

    async def _complete(self, state: EventState) -> None:
        """End the event at its end time and tell the homes involved."""
        for award in list(state.awards.values()):
            if award.status is AwardStatus.SENT:
                await self._store.update_award(state.set_award(award, status=AwardStatus.EXPIRED))
        open_round = state.open_round
        if open_round is not None:
            await self._store.update_round(
                state.set_round(open_round, status=RoundStatus.ABANDONED)
            )
        await self._store.update_event(state.set_record(status=EventStatus.COMPLETED))
        recipients = {award.home_id for award in state.awards.values()}
        self._link.broadcast(
            recipients, EventEnd(id=f"end-{state.event_id}", event_id=state.event_id)
        )
        _LOGGER.info(
            "Event %s completed: committed %.1f kW of %.1f kW",
            state.event_id,
            state.committed_kw,
            state.record.target_kw,
            extra={"event_id": state.event_id},
        )
        self._finish(state)

    def _finish(self, state: EventState) -> None:
        """Forget a finished event (its driver exits on the terminal status)."""
        self._events.pop(state.event_id, None)
        self._drivers.pop(state.event_id, None)
        state.wake.set()

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _all_bids_in(state: EventState) -> bool:
        """Return True when every home offered the open round has bid (and some were)."""
        open_round = state.open_round
        offered = state.offered.get(open_round.round, ()) if open_round is not None else ()
        return bool(offered) and len(state.open_bids) >= len(offered)

    def _state_for(self, event_id: str, message_id: str) -> EventState:
        state = self._events.get(event_id)
        if state is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_EVENT, f"event {event_id!r} is not running", message_id
            )
        return state

    async def _is_stored_bid(self, home_id: str, bid: Bid) -> bool:
        stored = await self._store.bid_message_id(bid.event_id, bid.round, home_id)
        return stored == bid.id

    def _check_bid_loads(self, state: EventState, home_id: str, bid: Bid) -> None:
        view = self._homes.get(home_id)
        curtailable = view.curtailable if view is not None else set()
        unavailable = state.unavailable_loads(home_id)
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

    async def _apply_opt_out(
        self, state: EventState, award: AwardRecord, load_id: str | None
    ) -> None:
        if load_id is None:
            await self._store.update_award(state.set_award(award, status=AwardStatus.OPTED_OUT))
            return
        if load_id not in award.load_kw or load_id in award.opted_out_loads:
            return
        opted = (*award.opted_out_loads, load_id)
        status = AwardStatus.OPTED_OUT if set(opted) >= set(award.load_kw) else award.status
        await self._store.update_award(state.set_award(award, opted_out_loads=opted, status=status))

    def _lost_commitment(self, state: EventState) -> None:
        """Flag that commitment was lost, so the driver tries a re-negotiation round."""
        if state.is_market:
            state.needs_round = True
            state.wake.set()

    def _may_renegotiate(self, state: EventState) -> bool:
        record = state.record
        if record.status not in (EventStatus.COMMITTED, EventStatus.ACTIVE):
            return False
        if state.open_round is not None or record.current_round >= self._settings.max_rounds:
            return False
        if state.shortfall_kw <= KW_EPSILON:
            return False
        time_left = (record.end - self._now()).total_seconds()
        return time_left > 2 * self._settings.renegotiation_window_s

    async def _catch_up(self, state: EventState, home: HomeView) -> None:
        """Send a (re)connected home what it is owed for one event."""
        if state.record.status.is_terminal:
            return
        open_round = state.open_round
        lead = timedelta(seconds=self._settings.min_offer_lead_s)
        if (
            open_round is not None
            and self._eligible(state, home)
            and open_round.deadline - self._now() > lead
        ):
            offered = state.offered.setdefault(open_round.round, set())
            if home.home_id not in offered:
                await self._store.write(
                    [Insert(OfferRecord(state.event_id, open_round.round, home.home_id), True)]
                )
                offered.add(home.home_id)
            if home.home_id not in state.open_bids:
                self._link.send(home.home_id, self._offer(state, open_round))
        for award in state.awards_of(home.home_id):
            if award.status is AwardStatus.SENT:
                self._link.send(home.home_id, self._award_message(state, award))
        if not state.is_market and state.record.status in (
            EventStatus.COMMITTED,
            EventStatus.ACTIVE,
        ):
            await self._award_direct(state, home)

    def _reconcile_held(self, home_id: str, held: HeldAward) -> None:
        """Tell a home to stop an award it holds for an event that is over or unknown."""
        if held.event_id in self._events:
            return
        self._spawn(self._tell_event_over(home_id, held.event_id))

    async def _tell_event_over(self, home_id: str, event_id: str) -> None:
        record = await self._store.get_event(event_id)
        if record is not None and record.status is EventStatus.CANCELLED:
            message: ServerMessage = Cancel(
                id=f"cancel-{event_id}", event_id=event_id, reason=record.cancel_reason or ""
            )
        else:
            message = EventEnd(id=f"end-{event_id}", event_id=event_id)
        self._link.send(home_id, message)

    def _arm_drop_timer(self, home_id: str) -> None:
        if home_id in self._drop_timers:
            return
        loop = asyncio.get_running_loop()
        self._drop_timers[home_id] = loop.call_later(
            self._settings.drop_grace_s,
            lambda: self._spawn(self._home_dropped(home_id)),
        )

    async def _home_dropped(self, home_id: str) -> None:
        """Mark the awards of a home that stayed away past the grace period as lost."""
        self._drop_timers.pop(home_id, None)
        if self._link.is_connected(home_id):
            return
        for state in list(self._events.values()):
            async with state.lock:
                lost = [
                    award for award in state.awards_of(home_id) if award.status is AwardStatus.ACKED
                ]
                for award in lost:
                    await self._store.update_award(state.set_award(award, status=AwardStatus.LOST))
                if lost:
                    _LOGGER.info(
                        "Event %s: home %s dropped off",
                        state.event_id,
                        home_id,
                        extra={"event_id": state.event_id, "home_id": home_id},
                    )
                    self._lost_commitment(state)

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
