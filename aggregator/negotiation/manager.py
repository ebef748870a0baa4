"""The negotiation's public face: what the operator API and home sessions call.

:class:`EventManager` keeps one :class:`~aggregator.negotiation.driver.EventDriver` per unfinished
event, the registry of connected homes, and each event's live delivery figures. It turns
operator actions and home messages into steps (:mod:`.machine`, :mod:`.home_steps`) run by the
event's driver, and resumes stored events after a restart (:meth:`EventManager.start`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Final

from aggregator.metrics import EventFigures, Metrics
from aggregator.negotiation import home_steps, machine, messages
from aggregator.negotiation.driver import Compute, EventDriver, StoreProblem
from aggregator.negotiation.homes import HomeRegistry
from aggregator.negotiation.model import (
    Env,
    EventNotFoundError,
    EventRequest,
    HomeLink,
    HomeView,
    InvalidTransitionError,
    NegotiationSettings,
    StepResult,
)
from aggregator.negotiation.state import DeliverySample, EventState
from aggregator.records import AwardStatus, EventRecord, EventStatus, HomeRecord, new_id
from aggregator.settlement.attribution import live_shed_by_event
from aggregator.shortfall import DeliveryWatch, ShortfallRule
from aggregator.store import (
    Change,
    Fence,
    GroupCommitter,
    HomeCurtailed,
    Store,
    StoreUnavailableError,
    TelemetryBatch,
    Update,
)
from jeisson.common.protocol import (
    SCHEMA_VERSION,
    AwardAck,
    Bid,
    ErrorCode,
    HeldAward,
    HomeEventStatus,
    OptOut,
    OptOutReason,
    ProtocolError,
    ServerMessage,
    Telemetry,
    utc_now,
)

_LOGGER = logging.getLogger(__name__)

BACKGROUND_RETRIES: Final = 8
"""Tries of a reconnect catch-up or a drop-off whose write failed, before giving up."""


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
        reliability: Callable[[str], float] | None = None,
    ) -> None:
        """Create a manager; call :meth:`start` to resume stored events.

        ``reliability`` gives a home's reliability score, which clearing counts its bid kW
        times (every home 1.0 when None).
        """
        self._store = store
        self._link = link
        self._settings = settings or NegotiationSettings()
        self._now = clock
        self._metrics = metrics or Metrics()
        self._committer = committer or GroupCommitter(store)
        self._homes = HomeRegistry(reliability)
        self._drivers: dict[str, EventDriver] = {}
        self._delivery: dict[str, dict[str, DeliverySample]] = {}
        self._watch = DeliveryWatch(
            ShortfallRule(
                grace=timedelta(seconds=self._settings.shortfall_grace_s),
                sustained=timedelta(seconds=self._settings.shortfall_sustained_s),
            )
        )
        self._background: set[asyncio.Task[None]] = set()

    @property
    def settings(self) -> NegotiationSettings:
        """Return the timing settings."""
        return self._settings

    # --- lifecycle of the manager ------------------------------------------------------------

    async def start(self) -> None:
        """Load unfinished events from the store and resume them."""
        for record in await self._store.unfinished_events():
            self._start_driver(await self._restore(record))
            _LOGGER.info(
                "Resumed event %s (%s)",
                record.event_id,
                record.status,
                extra={"event_id": record.event_id},
            )
        # Every home is disconnected after a restart: those holding awards get the grace period.
        for driver in self._drivers.values():
            for award in driver.state.awards.values():
                if award.status is AwardStatus.ACKED:
                    self._arm_drop_timer(award.home_id)

    async def _restore(self, record: EventRecord) -> EventState:
        """Return a stored unfinished event's state, read back from the store."""
        grace = max(self._settings.ack_timeout_s, self._settings.drop_grace_s)
        rounds = await self._store.rounds_for(record.event_id)
        open_bids = (
            await self._store.bids_for(record.event_id, record.current_round)
            if any(item.round == record.current_round for item in rounds)
            else []
        )
        return machine.restore(
            record,
            rounds=rounds,
            offered=await self._store.offered_homes(record.event_id),
            open_bids=open_bids,
            awards=await self._store.awards_for(record.event_id),
            opted_out=await self._store.homes_opted_out(record.event_id),
            unacked_deadline=self._now() + timedelta(seconds=grace),
        )

    async def stop(self) -> None:
        """Stop every driver and timer (the stored state is kept for the next start)."""
        self._homes.cancel_timers()
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        for driver in list(self._drivers.values()):
            await driver.stop()
        self._drivers.clear()

    # --- operator actions --------------------------------------------------------------------

    async def create_event(self, request: EventRequest) -> EventRecord:
        """Store a new event and start negotiating it, in one transaction.

        Raises StoreUnavailableError when it could not be stored (nothing was).
        """
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
            direction=request.direction,
        )
        env = self._env()
        known = dict(env.homes)
        result = machine.create(record, env)
        await self._committer.commit([*result.changes, *self._claim(record.event_id)])
        fence = await self._claimed(record.event_id)
        driver = self._start_driver(result.state, started=result, fence=fence)
        # Homes that became ready while the event was being stored missed its first step.
        for home_id, view in list(self._homes.views.items()):
            if known.get(home_id) is not view:
                self._spawn(self._catch_up_quietly(driver, view))
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
        return driver.state.record

    async def cancel_event(self, event_id: str, reason: str = "") -> EventRecord:
        """Cancel an event: store it, then tell every home involved to restore.

        Raises StoreUnavailableError when the cancel could not be stored (the event runs on
        unchanged; cancelling again may succeed).
        """
        driver = self._drivers.get(event_id)
        if driver is None:
            record = await self._store.get_event(event_id)
            if record is None:
                raise EventNotFoundError(event_id)
            raise InvalidTransitionError(f"event {event_id} is already {record.status}")
        try:
            result = await driver.run(lambda state, env: machine.cancel(state, reason, env))
        except ProtocolError as err:  # finished meanwhile
            raise InvalidTransitionError(f"event {event_id} is no longer running") from err
        return result.state.record

    def live(self, event_id: str) -> EventState | None:
        """Return the live state of an unfinished event (None once finished)."""
        driver = self._drivers.get(event_id)
        return driver.state if driver is not None else None

    def problem(self, event_id: str) -> StoreProblem | None:
        """Return why an unfinished event's steps are not being stored, if they are not."""
        driver = self._drivers.get(event_id)
        return driver.problem if driver is not None else None

    def delivered_kw(self, state: EventState) -> float:
        """Return the kW homes currently report shedding for an event."""
        stale = timedelta(seconds=self._settings.telemetry_stale_s)
        return state.delivered_kw(self._delivery.get(state.event_id, {}), self._now(), stale)

    def figures(self) -> list[EventFigures]:
        """Return the live figures of every running event (for metrics and dashboards)."""
        return [
            EventFigures(
                event_id=driver.state.event_id,
                status=driver.state.record.status.value,
                target_kw=driver.state.record.target_kw,
                committed_kw=driver.state.committed_kw,
                delivered_kw=self.delivered_kw(driver.state),
                store_failing=driver.problem is not None,
            )
            for driver in self._drivers.values()
        ]

    def flexible_kw(self) -> float:
        """Return the curtailable kW of the connected, participating homes."""
        return self._homes.flexible_kw()

    # --- home events -------------------------------------------------------------------------

    async def home_ready(
        self, home: HomeRecord, held: Iterable[HeldAward], schema_version: int = SCHEMA_VERSION
    ) -> None:
        """Bring a home that said hello and sent its inventory up to date with every event.

        ``schema_version`` is what the home said in its hello (power-up events are offered only
        to homes that speak :data:`~jeisson.common.protocol.FLEX_SCHEMA_VERSION`).
        """
        held = list(held)
        await self._catch_up_all(self._homes.ready(home, schema_version), still_held(held))
        over = [award.event_id for award in held if award.event_id not in self._drivers]
        if over:
            self._spawn(self._tell_events_over(home.home_id, list(dict.fromkeys(over))))

    async def _catch_up_all(self, view: HomeView, held: Mapping[str, frozenset[str]]) -> None:
        """Bring one ready home up to date with every event driven here."""
        for driver in list(self._drivers.values()):
            catch_up = partial(_catch_up, home=view, held=held)
            try:
                await driver.run(catch_up)
            except StoreUnavailableError:
                self._retry_later(driver, catch_up, lambda: view.home_id in self._homes.views)
            except ProtocolError:
                continue  # the event ended meanwhile

    def home_inventory_changed(self, home: HomeRecord) -> None:
        """Refresh what the negotiation knows of a connected home's loads."""
        self._homes.changed(home)

    def reliability_changed(self, home_ids: Iterable[str]) -> None:
        """Read the reliability of these homes again (settlement stored new scores)."""
        self._homes.rescore(home_ids)

    def home_disconnected(self, home_id: str) -> None:
        """Start a disconnected home's drop-off grace period if it holds awards."""
        self._homes.gone(home_id)
        if any(
            award.status is AwardStatus.ACKED
            for driver in self._drivers.values()
            for award in driver.state.awards_of(home_id)
        ):
            self._arm_drop_timer(home_id)

    async def handle_bid(self, home_id: str, bid: Bid) -> None:
        """Store a bid (refused after its round's deadline); clearing starts once all are in."""
        driver = self._driver_for(bid.event_id, bid.id)
        try:
            await self._run(driver, partial(_accept_bid, home_id=home_id, bid=bid), bid.id)
        except home_steps.RoundClosedError:
            stored = await self._store.bid_message_id(bid.event_id, bid.round, home_id)
            if stored != bid.id:
                raise
            # A re-sent bid of a round already cleared: it was stored, acknowledge it again.

    async def handle_award_ack(self, home_id: str, ack: AwardAck) -> None:
        """Record an award acknowledgement: only acknowledged awards count as committed."""
        driver = self._driver_for(ack.event_id, ack.id)
        await self._run(driver, partial(_ack_award, home_id=home_id, ack=ack), ack.id)

    async def handle_opt_out(self, home_id: str, opt_out: OptOut) -> None:
        """Store an opt-out and re-negotiate the commitment it loses."""
        driver = self._driver_for(opt_out.event_id, opt_out.id)
        await self._run(driver, partial(_opt_out, home_id=home_id, message=opt_out), opt_out.id)

    async def handle_telemetry(self, home_id: str, telemetry: Telemetry) -> None:
        """Store a telemetry batch; update the live delivery figures; watch for shortfalls.

        A batch naming an event the home never acknowledged an award in is stored without the
        event (it still counts as the home's measurements) and credits nothing. A batch names
        one event but reports the whole home: each running event the home holds
        awards in is credited with the shed of *its* awarded loads
        (:func:`~aggregator.settlement.attribution.live_shed_by_event`); a home that reports no
        per-load figures credits the event it names, as before. Held loads reported on for a
        sustained period are released like an opt-out (:mod:`aggregator.shortfall`).
        """
        telemetry = await self.vetted_telemetry(home_id, telemetry)
        batch = TelemetryBatch(
            home_id, telemetry.id, telemetry.event_id, tuple(telemetry.samples), self._now()
        )
        receipt = await self._committer.commit([batch], linger=self._settings.telemetry_linger_s)
        if batch.key in receipt.stored_telemetry:
            self.credit_telemetry(home_id, telemetry)

    async def vetted_telemetry(self, home_id: str, telemetry: Telemetry) -> Telemetry:
        """Return the batch without its ``event_id`` unless the home acknowledged an award in it.

        Such a batch is stored as the home's measurements (baselines) but credits no event.
        """
        event_id = telemetry.event_id
        if event_id is None or await self._acked_in(home_id, event_id):
            return telemetry
        return telemetry.model_copy(update={"event_id": None})

    def credit_telemetry(self, home_id: str, telemetry: Telemetry) -> None:
        """Credit a stored telemetry batch to the events driven here; watch for shortfalls.

        The event a batch names is credited only while the home holds an acknowledged award in
        it here, and never with more than that award's kW.
        """
        if not telemetry.samples:
            return
        held = self._held_loads(home_id)
        levels = self._held_levels(home_id)
        latest = max(telemetry.samples, key=lambda sample: sample.ts)
        if latest.loads and held:
            credited = live_shed_by_event(latest.shed_kw, latest.loads, held, levels)
        elif (named := telemetry.event_id) is not None and (
            holding := self._held_kw(home_id, named)
        ) > 0:
            credited = {named: min(latest.shed_kw, holding)}
        else:
            credited = {}
        for event_id, shed_kw in credited.items():
            samples = self._delivery.get(event_id)
            if samples is None:
                continue
            known = samples.get(home_id)
            if known is None or latest.ts >= known.ts:
                samples[home_id] = DeliverySample(ts=latest.ts, shed_kw=shed_kw)
        self._watch_delivery(home_id, held, levels, telemetry)

    async def _acked_in(self, home_id: str, event_id: str) -> bool:
        """Return True when the home acknowledged an award of the event (its samples count)."""
        driver = self._drivers.get(event_id)
        if driver is not None:
            return any(award.acked_at is not None for award in driver.state.awards_of(home_id))
        return await self._store.home_acked_in(event_id, home_id)

    def _held_loads(self, home_id: str) -> dict[str, dict[str, float]]:
        """Return, per running shed event, the home's acknowledged loads still held and their kW.

        Power-up events are left out: their loads run *more*, which per-load figures do not
        attribute; they are credited with the shed the home reports for the event it names.
        """
        held: dict[str, dict[str, float]] = {}
        for event_id, driver in self._drivers.items():
            if driver.state.record.status is not EventStatus.ACTIVE or driver.state.is_power_up:
                continue
            loads = {
                load_id: kw
                for award in driver.state.awards_of(home_id)
                if award.status is AwardStatus.ACKED
                for load_id, kw in award.load_kw.items()
                if load_id not in award.opted_out_loads
            }
            if loads:
                held[event_id] = loads
        return held

    def _held_kw(self, home_id: str, event_id: str) -> float:
        """Return the kW of the loads a home holds under acknowledged awards of a running event."""
        driver = self._drivers.get(event_id)
        if driver is None or driver.state.record.status is not EventStatus.ACTIVE:
            return 0.0
        return sum(
            kw
            for award in driver.state.awards_of(home_id)
            if award.status is AwardStatus.ACKED
            for load_id, kw in award.load_kw.items()
            if load_id not in award.opted_out_loads
        )

    def _held_levels(self, home_id: str) -> dict[str, float]:
        """Return the level of each load a running event holds at a partial step."""
        return {
            load_id: level
            for driver in self._drivers.values()
            if driver.state.record.status is EventStatus.ACTIVE
            for award in driver.state.awards_of(home_id)
            if award.status is AwardStatus.ACKED
            for load_id, level in award.load_levels.items()
        }

    def _watch_delivery(
        self,
        home_id: str,
        held: dict[str, dict[str, float]],
        levels: dict[str, float],
        telemetry: Telemetry,
    ) -> None:
        """Release held loads reported on for a sustained period (re-negotiated like opt-outs)."""
        now = self._now()
        for event_id, loads in held.items():
            for sample in sorted(telemetry.samples, key=lambda item: item.ts):
                self._watch.observe(
                    event_id, home_id, loads, sample.ts, sample.loads, levels=levels
                )
            start = self._drivers[event_id].state.record.start
            for short in self._watch.shortfalls(event_id, start, now):
                if short.home_id != home_id:
                    continue
                self._watch.forget(event_id, home_id, short.load_id)
                _LOGGER.info(
                    "Home %s: load %s of event %s seen on since %s; releasing it",
                    home_id,
                    short.load_id,
                    event_id,
                    short.on_since.isoformat(),
                    extra={"home_id": home_id, "event_id": event_id},
                )
                release = OptOut(
                    id=f"shortfall-{new_id('r')}",
                    event_id=event_id,
                    load_id=short.load_id,
                    reason=OptOutReason.SHORTFALL,
                )
                self._spawn(self._release(home_id, release))

    async def _release(self, home_id: str, release: OptOut) -> None:
        """Run a shortfall release (an opt-out the aggregator makes); log what fails."""
        try:
            await self.handle_opt_out(home_id, release)
        except (ProtocolError, StoreUnavailableError) as err:
            _LOGGER.warning("Could not release %s of home %s: %s", release.load_id, home_id, err)

    # --- helpers -----------------------------------------------------------------------------

    def _env(self) -> Env:
        return Env(self._now(), self._settings, self._homes.views)

    def _claim(self, event_id: str) -> list[Change]:
        """Return what makes this process a new event's coordinator (nothing: one process)."""
        del event_id
        return []

    async def _claimed(self, event_id: str) -> Fence | None:
        """Return the fence a new event's writes carry, once it is stored (None: one process)."""
        del event_id
        return None

    def _start_driver(
        self, state: EventState, started: StepResult | None = None, fence: Fence | None = None
    ) -> EventDriver:
        driver = EventDriver(
            state,
            committer=self._committer,
            link=self._link,
            homes=self._homes.views,
            settings=self._settings,
            clock=self._now,
            metrics=self._metrics,
            on_committed=self._committed,
            fence=fence,
        )
        self._drivers[state.event_id] = driver
        self._delivery.setdefault(state.event_id, {})
        if started is not None:
            driver.deliver(started)
        driver.start()
        return driver

    def _committed(self, result: StepResult) -> None:
        """React to a committed step outside the event: homes' rotation, finished events."""
        for change in result.changes:
            if isinstance(change, Update) and isinstance(change.row, HomeCurtailed):
                self._homes.curtailed(change.row.home_id, change.row.last_curtailed_at)
        if result.state.record.status.is_terminal:
            self._drivers.pop(result.state.event_id, None)
            self._delivery.pop(result.state.event_id, None)
            self._watch.forget(result.state.event_id)

    def _driver_for(self, event_id: str, message_id: str) -> EventDriver:
        driver = self._drivers.get(event_id)
        if driver is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_EVENT, f"event {event_id!r} is not running", message_id
            )
        return driver

    @staticmethod
    async def _run(driver: EventDriver, compute: Compute, message_id: str) -> StepResult:
        """Run a home's step; errors that answer no message get the message's id."""
        try:
            return await driver.run(compute)
        except ProtocolError as err:
            if err.reply_to is None:
                err.reply_to = message_id
            raise

    def _arm_drop_timer(self, home_id: str) -> None:
        self._homes.arm_drop_timer(
            home_id,
            self._settings.drop_grace_s,
            lambda: self._spawn(self._home_dropped(home_id)),
        )

    async def _home_dropped(self, home_id: str) -> None:
        """Mark the awards of a home that stayed away past the grace period as lost."""
        if self._link.is_connected(home_id):
            return
        drop = partial(_drop_home, home_id=home_id)
        for driver in list(self._drivers.values()):
            try:
                await driver.run(drop)
            except StoreUnavailableError:
                self._retry_later(driver, drop, lambda: not self._link.is_connected(home_id))
            except ProtocolError:
                continue

    async def _catch_up_quietly(self, driver: EventDriver, home: HomeView) -> None:
        catch_up = partial(_catch_up, home=home)
        try:
            await driver.run(catch_up)
        except StoreUnavailableError:
            self._retry_later(driver, catch_up, lambda: home.home_id in self._homes.views)
        except ProtocolError:
            return  # the event is over already

    def _retry_later(
        self, driver: EventDriver, compute: Compute, still: Callable[[], bool]
    ) -> None:
        """Try a step whose write failed again, a few times, while it still makes sense."""

        async def retry() -> None:
            for attempt in range(BACKGROUND_RETRIES):
                await asyncio.sleep(min(self._settings.retry_max_s, 0.5 * 2**attempt))
                if not still() or driver.finished:
                    return
                with contextlib.suppress(StoreUnavailableError):
                    await driver.run(compute)
                    return

        self._spawn(retry())

    async def _tell_events_over(self, home_id: str, event_ids: list[str]) -> None:
        """Tell a home, in order, to stop awards it holds for events that are over or unknown."""
        for event_id in event_ids:
            record = await self._store.get_event(event_id)
            # Only a home that was in the event learns why it was cancelled.
            if (
                record is not None
                and record.status is EventStatus.CANCELLED
                and await self._store.home_acked_in(event_id, home_id, acked=False)
            ):
                message: ServerMessage = messages.cancel(event_id, record.cancel_reason or "")
            else:
                message = messages.event_end(event_id)
            self._link.send(home_id, message)

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


# Steps with the home's message bound, as the driver calls them: (state, env) -> result.
def _accept_bid(state: EventState, env: Env, *, home_id: str, bid: Bid) -> StepResult:
    return home_steps.accept_bid(state, home_id, bid, env)


def _ack_award(state: EventState, env: Env, *, home_id: str, ack: AwardAck) -> StepResult:
    return home_steps.ack_award(state, home_id, ack, env)


def _opt_out(state: EventState, env: Env, *, home_id: str, message: OptOut) -> StepResult:
    return home_steps.opt_out(state, home_id, message, env)


def _catch_up(
    state: EventState,
    env: Env,
    *,
    home: HomeView,
    held: Mapping[str, frozenset[str]] | None = None,
) -> StepResult:
    return home_steps.catch_up(state, home, env, held)


def still_held(held: Iterable[HeldAward]) -> dict[str, frozenset[str]]:
    """Map the awards a home says it still executes to the loads it still holds."""
    return {
        award.award_id: frozenset(award.loads)
        for award in held
        if award.status in (HomeEventStatus.AWARDED, HomeEventStatus.ACTIVE)
    }


def _drop_home(state: EventState, env: Env, *, home_id: str) -> StepResult:
    return home_steps.drop_home(state, home_id, env)
