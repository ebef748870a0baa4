"""One process's part of a cluster: the negotiation's manager, wired to NATS and the leases.

:class:`ClusterManager` is an :class:`~aggregator.negotiation.EventManager` whose drivers run
only the events this process coordinates (their lease holder, :mod:`.leadership`), each write
carrying the lease's fence. Around it:

* the homes held here are announced to every process (:mod:`.directory`); every process knows
  every connected home, so a coordinator offers to the whole fleet and catches up homes that
  arrive anywhere;
* messages for homes go through :class:`~aggregator.cluster.delivery.ClusterLink` to the process
  holding each home;
* a home's bid, award ack or opt-out for an event coordinated elsewhere is forwarded to the
  coordinator (:mod:`.forwarding`) and acknowledged to the home only once the coordinator
  stored it; telemetry is stored where it arrives and its latest shed is sent on to the
  coordinators (published, at most once: the next batch makes good a lost one);
* an operator's cancel reaching any process goes to the event's coordinator (:mod:`.operator`);
  an event coordinated elsewhere is read from the database for the operator views
  (:mod:`.views`); live figures are shared (:mod:`.figures`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from aggregator.cluster.bus import Bus, BusUnavailableError
from aggregator.cluster.delivery import ClusterLink, LocalHomes
from aggregator.cluster.directory import HomeDirectory
from aggregator.cluster.figures import ClusterFigures
from aggregator.cluster.forwarding import EventInbox, Forwarder
from aggregator.cluster.leadership import Leadership
from aggregator.cluster.leases import LeaseStore
from aggregator.cluster.operator import OperatorDesk
from aggregator.cluster.presence import ClusterRegistry
from aggregator.cluster.settings import ClusterSettings
from aggregator.cluster.views import RemoteViews
from aggregator.metrics import EventFigures, Metrics
from aggregator.negotiation import EventManager, NegotiationSettings, messages
from aggregator.negotiation.manager import still_held
from aggregator.negotiation.model import (
    HomeView,
    StepResult,
)
from aggregator.negotiation.state import EventState
from aggregator.records import AwardStatus, EventRecord, EventStatus, HomeRecord
from aggregator.store import (
    Change,
    Fence,
    GroupCommitter,
    Store,
    TelemetryBatch,
)
from jeisson.common.protocol import (
    SCHEMA_VERSION,
    AwardAck,
    Bid,
    HeldAward,
    OptOut,
    ServerMessage,
    Telemetry,
    dump_message,
    utc_now,
)

_LOGGER = logging.getLogger(__name__)


class ClusterManager(EventManager):
    """The negotiation of one process of a cluster (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        local: LocalHomes,
        cluster: ClusterSettings,
        settings: NegotiationSettings | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        metrics: Metrics | None = None,
        committer: GroupCommitter | None = None,
        reliability: Callable[[str], float] | None = None,
    ) -> None:
        """Create the manager of one process; :meth:`start` joins the cluster."""
        self.cluster = cluster
        self._bus = Bus(cluster)
        self._local = local
        self._directory = HomeDirectory(
            self._bus, cluster.node_id, self, cluster.heartbeat_s, cluster.node_ttl_s
        )
        self._cluster_link = ClusterLink(
            self._bus, self._directory, local, cluster.request_timeout_s
        )
        super().__init__(
            store,
            self._cluster_link,
            settings,
            clock=clock,
            metrics=metrics,
            committer=committer,
            reliability=reliability,
        )
        self._forwarder = Forwarder(
            self._bus,
            self._event_running,
            patience_s=cluster.forward_patience_s,
            timeout_s=cluster.request_timeout_s,
        )
        self._inbox = EventInbox(self._bus, _Coordinator(self))
        self._leadership = Leadership(
            LeaseStore(store, cluster.node_id, cluster.lease_ttl_s), cluster, self._inbox
        )
        self._figures = ClusterFigures(
            self._bus,
            cluster.node_id,
            self.own_figures,
            interval_s=cluster.heartbeat_s,
            ttl_s=cluster.node_ttl_s,
        )
        self._connections: dict[str, tuple[str, int]] = {}
        """home id → the directory's id of its connection here, and its schema version."""
        self._desk = OperatorDesk(
            self._bus,
            store,
            cluster,
            drives=lambda event_id: event_id in self._drivers,
            cancel_here=self._cancel_here,
        )
        self._views = RemoteViews(store, self._restore, self._figures.coordinators)

    @property
    def node_id(self) -> str:
        """Return this process's id in the cluster."""
        return self.cluster.node_id

    @property
    def cluster_homes(self) -> int:
        """Return how many homes are connected to the whole cluster."""
        return len(self._directory)

    def online(self) -> Mapping[str, HomeView]:
        """Return the homes connected to any process of the cluster, by id."""
        return self._homes.views

    def coordinates(self, event_id: str) -> bool:
        """Return True when this process coordinates the event."""
        return event_id in self._drivers

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the cluster; events are taken as their leases come free (never all at once)."""
        await self._bus.connect()
        await self._directory.start()
        await self._cluster_link.start()
        if isinstance(self._local, ClusterRegistry):
            await self._local.join(self._bus, self.node_id)
        await self._figures.start()
        await self._leadership.start(self)
        self._views.start()
        _LOGGER.info(
            "Joined the cluster %s as %s", self.cluster.subject_prefix, self.cluster.node_id
        )

    async def stop(self) -> None:
        """Stop driving, hand the leases over, leave the cluster."""
        await self._views.stop()
        await self._leadership.pause()
        await self._desk.close_all()
        await super().stop()
        await self._leadership.hand_over()
        await self._figures.stop()
        await self._forwarder.close()
        await self._cluster_link.stop()
        if isinstance(self._local, ClusterRegistry):
            await self._local.leave()
        await self._directory.stop()
        await self._bus.close()

    # --- leadership (the Coordination protocol) ------------------------------------------------

    async def adopt(self, event_id: str, fence: Fence) -> bool:
        """Load an event whose lease this process took and drive it under ``fence``."""
        record = await self._store.get_event(event_id)
        if record is None:
            return False
        if record.status.is_terminal:
            await self._repeat_end(record)
            return False
        old = self._drivers.pop(event_id, None)
        if old is not None:
            await old.stop()
        driver = self._start_driver(await self._restore(record), fence=fence)
        await self._desk.open(event_id)
        for award in driver.state.awards.values():
            if award.status is AwardStatus.ACKED and not self._link.is_connected(award.home_id):
                self._arm_drop_timer(award.home_id)
        # What the previous coordinator sent last may not have reached every home: send again.
        for view in list(self._homes.views.values()):
            self._spawn(self._catch_up_quietly(driver, view))
        self._spawn(self._figures.publish())
        return True

    async def relinquish(self, event_id: str) -> None:
        """Stop driving an event another process took over."""
        await self._desk.close(event_id)
        driver = self._drivers.pop(event_id, None)
        self._delivery.pop(event_id, None)
        if driver is not None:
            await driver.stop()

    def _claim(self, event_id: str) -> list[Change]:
        return [self._leadership.claim(event_id)]

    async def _claimed(self, event_id: str) -> Fence | None:
        fence = await self._leadership.claimed(event_id)
        await self._desk.open(event_id)
        return fence

    def _committed(self, result: StepResult) -> None:
        super()._committed(result)
        if result.state.record.status.is_terminal:
            self._spawn(self._finish(result.state.event_id))

    async def _finish(self, event_id: str) -> None:
        """Give a finished event's lease up (its end or cancel is on its way to the homes).

        After a short grace: the request that finished it (a cancel from another process) is
        answered first, since closing a subscription stops the handlers it is running.
        """
        await asyncio.sleep(self.cluster.request_timeout_s)
        await self._desk.close(event_id)
        await self._leadership.finished(event_id)
        await self._figures.publish()

    async def _repeat_end(self, record: EventRecord) -> None:
        """Tell the homes of a finished event it is over (its coordinator died telling them)."""
        awards = await self._store.awards_for(record.event_id)
        homes = sorted({award.home_id for award in awards})
        message: ServerMessage = (
            messages.cancel(record.event_id, record.cancel_reason or "")
            if record.status is EventStatus.CANCELLED
            else messages.event_end(record.event_id)
        )
        self._link.broadcast(homes, message)

    # --- operator actions and views -----------------------------------------------------------

    async def cancel_event(self, event_id: str, reason: str = "") -> EventRecord:
        """Cancel an event here or at its coordinator, wherever that is."""
        if event_id in self._drivers:
            return await super().cancel_event(event_id, reason)
        try:
            return await self._desk.cancel(event_id, reason)
        finally:
            self._views.forget(event_id)

    async def _cancel_here(self, event_id: str, reason: str) -> EventRecord:
        return await super().cancel_event(event_id, reason)

    def live(self, event_id: str) -> EventState | None:
        """Return an unfinished event's state: live here, or as last read if run elsewhere."""
        state = super().live(event_id)
        return state if state is not None else self._views.get(event_id)

    def delivered_kw(self, state: EventState) -> float:
        """Return the kW homes report shedding for an event, wherever it is coordinated."""
        if state.event_id in self._drivers:
            return super().delivered_kw(state)
        return next(
            (item.delivered_kw for item in self.figures() if item.event_id == state.event_id),
            0.0,
        )

    # --- figures ---------------------------------------------------------------------------------

    def own_figures(self) -> list[EventFigures]:
        """Return the figures of the events coordinated here."""
        return super().figures()

    def figures(self) -> list[EventFigures]:
        """Return the live figures of every running event of the cluster."""
        figures = {item.event_id: item for item in self.own_figures()}
        for remote in self._figures.remote().values():
            for item in remote:
                figures.setdefault(item.event_id, item)
        return list(figures.values())

    # --- homes held here (what the sessions call) ----------------------------------------------

    async def home_ready(
        self, home: HomeRecord, held: Iterable[HeldAward], schema_version: int = SCHEMA_VERSION
    ) -> None:
        """Announce a ready home to the cluster; tell it which of its awards' events are over."""
        held = list(held)
        connection = self._directory.announce_ready(home, schema_version, still_held(held))
        self._connections[home.home_id] = (connection, schema_version)
        over = [award.event_id for award in held if award.event_id not in self._drivers]
        if over:
            self._spawn(self._tell_events_over(home.home_id, list(dict.fromkeys(over))))

    def home_inventory_changed(self, home: HomeRecord) -> None:
        """Announce a connected home's new inventory to the cluster."""
        known = self._connections.get(home.home_id)
        if known is not None:
            self._directory.announce_changed(home, *known)

    def home_disconnected(self, home_id: str) -> None:
        """Announce that a home's connection here closed."""
        known = self._connections.pop(home_id, None)
        if known is not None:
            self._directory.announce_gone(home_id, known[0])

    async def _tell_events_over(self, home_id: str, event_ids: list[str]) -> None:
        """Tell a home about the events among ``event_ids`` that are over (stored so)."""
        over: list[str] = []
        for event_id in event_ids:
            record = await self._store.get_event(event_id)
            if record is None or record.status.is_terminal:
                over.append(event_id)
        if over:
            await super()._tell_events_over(home_id, over)

    # --- the directory's listener: homes anywhere in the cluster --------------------------------

    def home_arrived(
        self, home: HomeRecord, schema_version: int, held: Mapping[str, frozenset[str]]
    ) -> None:
        """Track a home ready on some process; catch it up with the events driven here."""
        view = self._homes.ready(home, schema_version)
        if self._drivers:
            self._spawn(self._catch_up_all(view, held))

    def home_changed(self, home: HomeRecord) -> None:
        """Refresh a home's loads and participation."""
        super().home_inventory_changed(home)

    def home_left(self, home_id: str) -> None:
        """Forget a home connected nowhere; its awards here get the drop-off grace period."""
        super().home_disconnected(home_id)

    # --- home messages ----------------------------------------------------------------------------

    async def handle_bid(self, home_id: str, bid: Bid) -> None:
        """Store a bid here or at its event's coordinator."""
        if bid.event_id in self._drivers:
            await super().handle_bid(home_id, bid)
        else:
            await self._forwarder.forward(bid.event_id, home_id, bid)

    async def handle_award_ack(self, home_id: str, ack: AwardAck) -> None:
        """Store an award ack here or at its event's coordinator."""
        if ack.event_id in self._drivers:
            await super().handle_award_ack(home_id, ack)
        else:
            await self._forwarder.forward(ack.event_id, home_id, ack)

    async def handle_opt_out(self, home_id: str, opt_out: OptOut) -> None:
        """Store an opt-out here or at its event's coordinator."""
        if opt_out.event_id in self._drivers:
            await super().handle_opt_out(home_id, opt_out)
        else:
            await self._forwarder.forward(opt_out.event_id, home_id, opt_out)

    async def handle_telemetry(self, home_id: str, telemetry: Telemetry) -> None:
        """Store telemetry here; credit it here and at every other coordinator."""
        telemetry = await self.vetted_telemetry(home_id, telemetry)
        batch = TelemetryBatch(
            home_id, telemetry.id, telemetry.event_id, tuple(telemetry.samples), self._now()
        )
        receipt = await self._committer.commit([batch])
        if batch.key not in receipt.stored_telemetry or not telemetry.samples:
            return
        self.credit_telemetry(home_id, telemetry)
        # One publish per other coordinator, on the inbox of one event it drives.
        by_node = {node: event_id for event_id, node in self._figures.coordinators().items()}
        by_node.pop(self.node_id, None)
        if not by_node:
            return
        frame = dump_message(telemetry)
        for event_id in by_node.values():
            try:
                await self._bus.publish(
                    self._bus.subjects.inbox(event_id),
                    {"items": [{"home": home_id, "frame": frame}]},
                )
            except (BusUnavailableError, ValueError) as err:
                _LOGGER.debug("Telemetry not sent on to %s's coordinator: %s", event_id, err)

    async def _event_running(self, event_id: str) -> bool:
        record = await self._store.get_event(event_id)
        return record is not None and not record.status.is_terminal


class _Coordinator:
    """The coordinator's side of forwarded messages: this process's own drivers, never NATS."""

    def __init__(self, manager: ClusterManager) -> None:
        self._manager = manager

    async def handle_bid(self, home_id: str, bid: Bid) -> None:
        await EventManager.handle_bid(self._manager, home_id, bid)

    async def handle_award_ack(self, home_id: str, ack: AwardAck) -> None:
        await EventManager.handle_award_ack(self._manager, home_id, ack)

    async def handle_opt_out(self, home_id: str, opt_out: OptOut) -> None:
        await EventManager.handle_opt_out(self._manager, home_id, opt_out)

    def credit_telemetry(self, home_id: str, telemetry: Telemetry) -> None:
        self._manager.credit_telemetry(home_id, telemetry)
