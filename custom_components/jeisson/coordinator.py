"""Push coordinator: turns aggregator messages into bids, awards and entity state.

The :class:`JeissonCoordinator` subscribes to the :class:`~jeisson.client.HomeClient` (the only
way this integration talks to the aggregator), answers offers with bids built from the
homeowner's terms, hands awards to the :class:`~.event_runner.EventRunner`, fires a bus event
for every lifecycle step and publishes a :class:`JeissonState` snapshot to the entities. What it
sends through the client's outbox (award acks, opt-outs, telemetry, statement acks) is saved
by the :class:`~.outbox.OutboxStore` whenever it changes. Settled statements are kept in the
:class:`~.statements.StatementBook` (stored before they are acknowledged).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.storage import Store
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from jeisson.client import HomeClient
from jeisson.common.errors import CannotConnect, JeissonError, RequestTimeout
from jeisson.common.protocol import (
    Award,
    BidStep,
    Cancel,
    EventEnd,
    HomeEventStatus,
    Offer,
    OptOutReason,
    Sample,
    ServerMessage,
    Statement,
)

from .actuators import Actuator
from .bidding import bid_kw, build_steps
from .const import (
    ATTR_DEVICE_ID,
    ATTR_ENTRY_ID,
    CONF_HOME_NAME,
    CONF_PARTICIPATING,
    DOMAIN,
    EVENT_AWARDED,
    EVENT_BID,
    EVENT_OFFERED,
    EVENT_SETTLED,
    LOGGER,
    OFFER_GRACE,
    STALE_AFTER,
)
from .event_runner import EventRunner, RunnerHooks
from .executors import can_act, executor_for
from .models import LoadConfig, loads_from_options, participating_from_options
from .outbox import OutboxStore
from .schedule import HeldEvent, Outcome
from .statements import SettledEvent, StatementBook

type JeissonConfigEntry = ConfigEntry[JeissonRuntimeData]


class DRStatus(StrEnum):
    """The home's demand-response status (the DR status sensor's states)."""

    NOT_PARTICIPATING = "not_participating"
    IDLE = "idle"
    OFFERED = "offered"
    AWARDED = "awarded"
    ACTIVE = "active"
    RESTORING = "restoring"


@dataclass(frozen=True, kw_only=True, slots=True)
class CalendarItem:
    """One event as shown on the calendar."""

    event_id: str
    award_id: str
    start: datetime
    end: datetime
    kind: str
    status: str
    outcome: str | None
    committed_kw: float
    price: float
    currency: str
    loads: tuple[str, ...]
    """The loads' names (their ids for loads removed since)."""
    settled: SettledEvent | None = None
    """The event's statement, once the aggregator settled it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class JeissonState:
    """What the entities show, rebuilt on every change."""

    connected: bool
    stale: bool
    """True when disconnected for longer than STALE_AFTER."""
    participating: bool
    status: DRStatus
    committed_kw: float
    delivered_kw: float
    earnings: float
    """The live estimate: held kW x time x price, counted by this home."""
    currency: str | None
    settled_earnings: float = 0.0
    """What the aggregator settled (final statements), in ``settled_currency``."""
    settled_currency: str | None = None
    last_settled: SettledEvent | None = None
    next_event_start: datetime | None
    event_active: bool
    held: dict[str, datetime] = field(default_factory=dict)
    """Load id → when Jeisson will give it back (window end or scheduled restore)."""
    calendar: tuple[CalendarItem, ...] = ()


@dataclass(kw_only=True)
class JeissonRuntimeData:
    """What a loaded entry holds (``entry.runtime_data``)."""

    client: HomeClient
    coordinator: JeissonCoordinator
    runner: EventRunner
    outbox: OutboxStore
    statements: StatementBook


def _calendar_item(
    event: HeldEvent, settled: SettledEvent | None, names: Mapping[str, str]
) -> CalendarItem:
    return CalendarItem(
        event_id=event.event_id,
        award_id=event.award_id,
        start=event.window_start,
        end=event.window_end,
        kind=event.kind.value,
        status=event.status.value,
        outcome=event.outcome.value if event.outcome else None,
        committed_kw=event.committed_kw,
        price=event.price,
        currency=event.currency,
        loads=tuple(names.get(load_id, load_id) for load_id in event.loads),
        settled=settled,
    )


class JeissonCoordinator(DataUpdateCoordinator[JeissonState]):
    """Pushes the home's DR state to its entities and negotiates on its behalf."""

    config_entry: JeissonConfigEntry

    client: HomeClient

    def __init__(
        self,
        hass: HomeAssistant,
        entry: JeissonConfigEntry,
        store: Store[dict[str, Any]],
        outbox: OutboxStore,
        statements: StatementBook,
    ) -> None:
        """Create the coordinator and its event runner (no polling: every update is pushed)."""
        super().__init__(hass, LOGGER, config_entry=entry, name=DOMAIN)
        self.outbox = outbox
        self.statements = statements
        self.runner = EventRunner(
            hass,
            store,
            RunnerHooks(
                loads=lambda: self.loads,
                actuator=self.actuator,
                fire=self.fire,
                changed=self.async_publish,
                send_opt_out=self.send_opt_out,
                send_telemetry=self.send_telemetry,
            ),
            create_task=lambda target, name: entry.async_create_task(hass, target, name),
        )
        self._offers: dict[str, Offer] = {}
        self._bid_kw: dict[str, dict[str, float]] = {}
        """Per event, the kW each load bid last: what the aggregator counts it at."""
        self._connected = False
        self._stale = False
        self.device_id: str | None = None
        self._unsub_stale: CALLBACK_TYPE | None = None
        self._offer_timers: dict[str, CALLBACK_TYPE] = {}
        self._applied: tuple[dict[str, LoadConfig], bool] = (self.loads, self.participating)
        self._loads_listeners: list[Callable[[], Awaitable[None]]] = []

    # --- wiring -----------------------------------------------------------------------------

    @callback
    def async_attach(self, client: HomeClient) -> Callable[[], None]:
        """Use ``client`` (connected) and subscribe to it; return a function that unsubscribes."""
        self.client = client
        self.outbox.async_bind(lambda: client.queued_messages)
        self._connected = client.connected
        if not self._connected:
            self._start_stale_timer()
        self.data = self._build_state()
        if self._connected:
            self._follow_home_name()
        unsub_messages = self.client.subscribe(self._on_message)
        unsub_connection = self.client.subscribe_connection(self._on_connection)
        device = dr.async_get(self.hass).async_get_device_by_identifier(
            (DOMAIN, self.config_entry.unique_id or self.config_entry.entry_id),
            self.config_entry.entry_id,
        )
        self.device_id = device.id if device else None

        def _unsubscribe() -> None:
            unsub_messages()
            unsub_connection()
            self._cancel_stale_timer()
            for cancel in self._offer_timers.values():
                cancel()
            self._offer_timers.clear()

        return _unsubscribe

    @property
    def loads(self) -> dict[str, LoadConfig]:
        """Return the configured loads (read live from the entry options)."""
        return loads_from_options(self.config_entry.options)

    @property
    def participating(self) -> bool:
        """Return whether the home takes part in demand response."""
        return participating_from_options(self.config_entry.options)

    def actuator(self, load: LoadConfig) -> Actuator:
        """Return the actuator of ``load``."""
        return executor_for(self.hass, load)

    def is_available(self, load: LoadConfig) -> bool:
        """Return True when ``load``'s actuator can be commanded."""
        return can_act(self.actuator(load))

    @callback
    def fire(self, event_type: str, payload: dict[str, Any]) -> None:
        """Fire a lifecycle bus event carrying the entry and device ids."""
        self.hass.bus.async_fire(
            event_type,
            {ATTR_ENTRY_ID: self.config_entry.entry_id, ATTR_DEVICE_ID: self.device_id, **payload},
        )

    @callback
    def async_publish(self) -> None:
        """Rebuild the state snapshot and push it to the entities."""
        self.async_set_updated_data(self._build_state())

    def _spawn(self, target: Coroutine[Any, Any, None], name: str) -> None:
        """Run a request to the aggregator in the background (cancelled on unload)."""
        self.config_entry.async_create_background_task(self.hass, target, name)

    async def _guard(self, what: str, request: Coroutine[Any, Any, object]) -> None:
        try:
            await request
        except JeissonError as err:
            LOGGER.warning("Could not %s: %s", what, err)

    async def _queued(self, what: str, request: Coroutine[Any, Any, object]) -> None:
        """Run a request the client keeps in its outbox until acknowledged; save the outbox."""
        try:
            await request
        except (CannotConnect, RequestTimeout) as err:
            # Still in the outbox: re-sent after the next connect (or the next start).
            LOGGER.debug("%s is queued for the aggregator: %s", what.capitalize(), err)
        except JeissonError as err:
            LOGGER.warning("The aggregator refused %s: %s", what, err)
        finally:
            self.outbox.async_schedule_save()

    def _send_queued(self, what: str, request: Coroutine[Any, Any, object], name: str) -> None:
        """Start a queued request (the client queues it at once) and save the outbox soon."""
        self._spawn(self._queued(what, request), name)
        self.outbox.async_schedule_save()

    @callback
    def send_opt_out(self, event_id: str, load_id: str | None, reason: OptOutReason) -> None:
        """Report an opt-out (queued by the client while disconnected)."""
        self._send_queued(
            "the opt-out",
            self.client.opt_out(event_id, load_id, reason),
            f"jeisson opt-out {event_id}",
        )

    @callback
    def send_telemetry(self, samples: Sequence[Sample], event_id: str | None) -> None:
        """Send a telemetry batch (queued by the client while disconnected)."""
        self._send_queued(
            "telemetry", self.client.send_telemetry(samples, event_id), "jeisson telemetry"
        )

    @callback
    def send_inventory(self) -> None:
        """Send the current loads and participation to the aggregator."""
        if self.client.connected:
            self._spawn(
                self._guard("send the inventory", self.client.send_inventory()),
                "jeisson inventory",
            )

    # --- homeowner actions ------------------------------------------------------------------

    async def async_set_participating(self, participating: bool) -> None:
        """Switch participation; switching it off also opts out of open events."""
        self.hass.config_entries.async_update_entry(
            self.config_entry,
            options={**self.config_entry.options, CONF_PARTICIPATING: participating},
        )
        await self.async_apply_options()

    @callback
    def async_listen_loads(self, listener: Callable[[], Awaitable[None]]) -> CALLBACK_TYPE:
        """Call ``listener`` whenever the loads change (the switch platform follows them)."""
        self._loads_listeners.append(listener)
        return partial(self._loads_listeners.remove, listener)

    async def async_apply_options(self) -> None:
        """Apply changed options without reloading the entry (WiFi links and timers stay).

        The aggregator gets the new inventory, participation switched off opts out of open
        events, the load entities follow the loads and the runner watches the new actuators.
        Called by the entry's update listener; does nothing when loads and participation are
        as last applied (the terms the aggregator is not told about are read live).
        """
        loads, participating = self.loads, self.participating
        if (loads, participating) == self._applied:
            return
        was_participating = self._applied[1]
        self._applied = (loads, participating)
        self.send_inventory()
        if was_participating and not participating:
            await self.runner.async_opt_out(None, OptOutReason.USER)
        for listener in list(self._loads_listeners):
            await listener()
        self.runner.async_loads_changed()

    async def async_opt_out(self, event_id: str | None = None) -> list[str]:
        """Opt out of one event (or every open one); return the event ids opted out of."""
        return await self.runner.async_opt_out(event_id, OptOutReason.USER)

    # --- messages ---------------------------------------------------------------------------

    @callback
    def _on_message(self, message: ServerMessage) -> None:
        """Dispatch a server message without blocking the client's reader."""
        handler: Coroutine[Any, Any, None] | None = None
        if isinstance(message, Offer):
            handler = self._handle_offer(message)
        elif isinstance(message, Award):
            handler = self._handle_award(message)
        elif isinstance(message, Cancel):
            handler = self.runner.async_finish_event(
                message.event_id, Outcome.CANCELLED, message.reason
            )
        elif isinstance(message, EventEnd):
            handler = self.runner.async_finish_event(message.event_id, Outcome.COMPLETED)
        elif isinstance(message, Statement):
            handler = self._handle_statement(message)
        if handler is not None:
            self.config_entry.async_create_task(
                self.hass, handler, f"jeisson {message.type} {message.id}"
            )

    def bid_steps(self, offer: Offer) -> list[BidStep]:
        """Return the step curve this home bids for ``offer``."""
        if not self.participating:
            return []
        committed = self.runner.committed_loads(
            offer.window_start, offer.window_end, offer.event_id
        )
        return build_steps(
            self.loads.values(),
            window_start=offer.window_start,
            window_end=offer.window_end,
            price_cap=offer.price_cap,
            tz=dt_util.get_default_time_zone(),
            is_available=lambda load: load.load_id not in committed and self.is_available(load),
            recent_kw=self.runner.recent_power.mean_kw,
            power_up=offer.is_power_up,
        )

    async def _handle_offer(self, offer: Offer) -> None:
        self._offers[offer.event_id] = offer
        # Without an award shortly after the deadline the offer went elsewhere: show idle again.
        if cancel := self._offer_timers.pop(offer.event_id, None):
            cancel()
        self._offer_timers[offer.event_id] = async_call_later(
            self.hass,
            max(0.0, (offer.bid_deadline - dt_util.utcnow()).total_seconds())
            + OFFER_GRACE.total_seconds(),
            partial(self._on_offer_expired, offer.event_id),
        )
        self.fire(
            EVENT_OFFERED,
            {
                "event_id": offer.event_id,
                "round": offer.round,
                "kind": offer.kind.value,
                "window_start": offer.window_start.isoformat(),
                "window_end": offer.window_end.isoformat(),
                "price_cap": offer.price_cap,
                "currency": offer.currency,
                "bid_deadline": offer.bid_deadline.isoformat(),
            },
        )
        self.async_publish()
        LOGGER.debug(
            "Offer for event %s round %s: %s to %s, cap %s %s/kWh, bids due by %s",
            offer.event_id,
            offer.round,
            offer.window_start.isoformat(),
            offer.window_end.isoformat(),
            offer.price_cap,
            offer.currency,
            offer.bid_deadline.isoformat(),
        )
        steps = self.bid_steps(offer)
        try:
            await self.client.send_bid(offer, steps)
        except JeissonError as err:
            LOGGER.warning("Could not bid on event %s: %s", offer.event_id, err)
            return
        per_load: dict[str, float] = {}
        for step in steps:
            for load_id in step.loads:
                per_load[load_id] = per_load.get(load_id, 0.0) + step.kw / len(step.loads)
        self._bid_kw[offer.event_id] = per_load
        LOGGER.debug(
            "Bid on event %s round %s: %s kW in %d steps %s",
            offer.event_id,
            offer.round,
            round(bid_kw(steps), 3),
            len(steps),
            [(step.loads, step.kw, step.price) for step in steps],
        )
        self.fire(
            EVENT_BID,
            {
                "event_id": offer.event_id,
                "round": offer.round,
                "kw": round(bid_kw(steps), 3),
                "steps": [step.model_dump(exclude_none=True) for step in steps],
            },
        )

    async def _handle_award(self, award: Award) -> None:
        self._offers.pop(award.event_id, None)
        decision = await self.runner.async_take_award(
            award, is_available=self.is_available, bid_kw=self._bid_kw.pop(award.event_id, {})
        )
        LOGGER.debug(
            "Award %s for event %s (%s): loads %s, %s kW at %s %s/kWh, %s to %s; %s%s",
            award.award_id,
            award.event_id,
            award.kind.value,
            decision.loads,
            round(decision.kw, 3),
            award.price,
            award.currency,
            award.window_start.isoformat(),
            award.window_end.isoformat(),
            "accepted" if decision.accepted else "declined",
            "" if decision.new else " (known already)",
        )
        self._send_queued(
            "the award acknowledgement",
            self.client.ack_award(
                award, accepted=decision.accepted, loads=decision.loads, kw=decision.kw
            ),
            f"jeisson award ack {award.award_id}",
        )
        # A re-sent award (after a reconnect, or one taken before a restart) is acknowledged
        # again but announced once.
        if decision.accepted and decision.new:
            self.fire(
                EVENT_AWARDED,
                {
                    "event_id": award.event_id,
                    "award_id": award.award_id,
                    "kind": award.kind.value,
                    "loads": decision.loads,
                    "kw": round(decision.kw, 3),
                    "price": award.price,
                    "currency": award.currency,
                    "window_start": award.window_start.isoformat(),
                    "window_end": award.window_end.isoformat(),
                },
            )

    async def _handle_statement(self, statement: Statement) -> None:
        """Keep a settled statement (stored first), then acknowledge it and announce it."""
        new = await self.statements.async_add(statement)
        LOGGER.debug(
            "Statement v%s for event %s: %s %s for %s kWh paid%s",
            statement.version,
            statement.event_id,
            statement.payment,
            statement.currency,
            statement.paid_kwh,
            "" if new else " (known already)",
        )
        self._send_queued(
            "the statement acknowledgement",
            self.client.ack_statement(statement),
            f"jeisson statement ack {statement.event_id} v{statement.version}",
        )
        if not new:
            return  # a re-sent statement already kept: acknowledged again, announced once
        self.fire(
            EVENT_SETTLED,
            {
                "event_id": statement.event_id,
                "version": statement.version,
                "payment": statement.payment,
                "correction": round(statement.correction, 6),
                "currency": statement.currency,
                "delivered_kwh": statement.delivered_kwh,
                "paid_kwh": statement.paid_kwh,
                "data_quality": statement.data_quality.value,
                "baseline": statement.baseline,
                "reliability": statement.reliability,
            },
        )
        self.async_publish()

    # --- connection -------------------------------------------------------------------------

    @callback
    def _on_connection(self, connected: bool) -> None:
        """Track the connection (the client logs lost/restored once each, at info)."""
        if connected == self._connected:
            return
        self._connected = connected
        self._cancel_stale_timer()
        # The client re-sent its outbox on connecting; save what is left once the acks are in.
        self.outbox.async_schedule_save()
        if connected:
            self._stale = False
            LOGGER.debug("Aggregator connection restored")
            self._follow_home_name()
        else:
            LOGGER.debug("Aggregator connection lost; the home keeps its schedule")
            self._start_stale_timer()
        self.async_publish()

    @callback
    def _follow_home_name(self) -> None:
        """Title the home (entry and device) after the name the operator gives it.

        Only while the user keeps the name last received: a title the user chose stays. An entry
        enrolled before the aggregator sent names just learns it (its title stays too).
        """
        hello = self.client.server_hello
        name = hello.home_name if hello is not None else None
        entry = self.config_entry
        known = entry.data.get(CONF_HOME_NAME)
        if not name or name == known:
            return
        data = {**entry.data, CONF_HOME_NAME: name}
        if known is None or entry.title != known:
            self.hass.config_entries.async_update_entry(entry, data=data)
            return
        LOGGER.debug("The operator renamed the home %r to %r", known, name)
        self.hass.config_entries.async_update_entry(entry, data=data, title=name)
        registry = dr.async_get(self.hass)
        if self.device_id is not None and registry.async_get(self.device_id) is not None:
            registry.async_update_device(self.device_id, name=name)

    @callback
    def _on_offer_expired(self, event_id: str, _now: datetime) -> None:
        self._offer_timers.pop(event_id, None)
        self._offers.pop(event_id, None)
        self.async_publish()

    def _start_stale_timer(self) -> None:
        self._unsub_stale = async_call_later(self.hass, STALE_AFTER, self._on_stale)

    @callback
    def _on_stale(self, _now: datetime) -> None:
        self._unsub_stale = None
        self._stale = True
        self.async_publish()

    def _cancel_stale_timer(self) -> None:
        if self._unsub_stale is not None:
            self._unsub_stale()
            self._unsub_stale = None

    @callback
    def mark_disconnected(self) -> None:
        """Mark the connection gone for good (auth failed, protocol mismatch)."""
        self._on_connection(False)

    # --- state ------------------------------------------------------------------------------

    def _build_state(self) -> JeissonState:
        now = dt_util.utcnow()
        schedule = self.runner.schedule
        open_events = schedule.open_events()
        statuses = {event.status for event in open_events}
        status = DRStatus.IDLE
        if not self.participating:
            status = DRStatus.NOT_PARTICIPATING
        elif HomeEventStatus.ACTIVE in statuses:
            status = DRStatus.ACTIVE
        elif HomeEventStatus.RESTORING in statuses:
            status = DRStatus.RESTORING
        elif HomeEventStatus.AWARDED in statuses:
            status = DRStatus.AWARDED
        elif self._offers:
            status = DRStatus.OFFERED
        held: dict[str, datetime] = {}
        for event in open_events:
            for load_id in event.held_loads():
                held[load_id] = event.window_end
            held.update(event.restore_at)
        upcoming = [event.window_start for event in open_events if event.window_start > now]
        rated_kw = {load_id: load.rated_kw for load_id, load in self.loads.items()}
        return JeissonState(
            connected=self._connected,
            stale=self._stale,
            participating=self.participating,
            status=status,
            committed_kw=round(
                sum(
                    event.remaining_kw(rated_kw)
                    for event in open_events
                    if event.status in (HomeEventStatus.AWARDED, HomeEventStatus.ACTIVE)
                ),
                3,
            ),
            delivered_kw=round(self.runner.shed_kw(), 3),
            earnings=round(schedule.earnings_total, 4),
            currency=schedule.currency,
            settled_earnings=round(self.statements.total(), 4),
            settled_currency=self.statements.currency,
            last_settled=self.statements.latest,
            next_event_start=min(upcoming) if upcoming else None,
            event_active=HomeEventStatus.ACTIVE in statuses,
            held=held,
            calendar=tuple(
                _calendar_item(
                    event,
                    self.statements.events.get(event.event_id),
                    {load_id: load.name for load_id, load in self.loads.items()},
                )
                for event in sorted(schedule.events.values(), key=lambda e: e.window_start)
                if event.outcome is not Outcome.REJECTED
            ),
        )
