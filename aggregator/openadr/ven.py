"""Jeisson as a VEN: follow a utility's VTN, negotiate its events, report back per interval.

One :class:`VenRunner` per configured VTN polls it (every ``poll_interval_s``): it registers
Jeisson's VEN once, reads the mapped programs' events, and for each event creates the Jeisson
event :func:`~aggregator.openadr.mapping.plan_event` asks for (through the EventManager, as the
operator API does). An event that changes is re-planned: the Jeisson event is cancelled and a
new one created (a Jeisson event's target and window are fixed once negotiated); an event that
disappears cancels its Jeisson event. Once an interval has ended (and the homes'
last telemetry had time to arrive), its report is sent with the figures the database holds
(``delivery``); once: reports sent are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, Final

from aiohttp import web
from pydantic import ValidationError

from aggregator.api import EventBody
from aggregator.app_keys import MANAGER
from aggregator.negotiation import EventNotFoundError, InvalidTransitionError
from aggregator.openadr.delivery import span_figures
from aggregator.openadr.mapping import (
    EventPlan,
    NotMappable,
    ProgramMapping,
    interval_windows,
    plan_event,
    report_body,
)
from aggregator.openadr.secret_box import SecretBox
from aggregator.openadr.ven_client import VtnClient, VtnError
from aggregator.openadr.ven_store import EventLink, VenStore, VtnConfig
from aggregator.openadr.ven_webhook import SAFETY_POLL_FACTOR, Notification, Subscription
from jeisson.common.protocol import EventKind, utc_now

_LOGGER = logging.getLogger(__name__)
ACTIVE: Final = "active"
CANCELLED: Final = "cancelled"
IGNORED: Final = "ignored"
MIN_LEAD_S: Final = 2.0
MAX_QUEUED_NOTIFICATIONS: Final = 100
UNSUBSCRIBE_TIMEOUT_S: Final = 10.0
_WAKE: Final = Notification("", "", {})
"""Queued to wake a runner that should stop."""
DEFAULT_REPORT_DELAY: Final = timedelta(seconds=30)
"""For events of a program no longer mapped: how long after an interval its report waits."""


class VenRunner:
    """Follows one utility VTN."""

    def __init__(
        self, app: web.Application, store: VenStore, config: VtnConfig, box: SecretBox
    ) -> None:
        """Prepare to follow ``config`` for the aggregator ``app``."""
        self._app = app
        self._store = store
        self._config = config
        self._box = box
        self._ven_id: str | None = config.remote_ven_id
        self._mappings: dict[str, ProgramMapping] = {}
        """The mapping of each followed program, by the program's id on the VTN."""
        self._subscription = Subscription(store, config)
        self._inbox: asyncio.Queue[Notification] = asyncio.Queue(maxsize=MAX_QUEUED_NOTIFICATIONS)
        self._poll_now = False
        self._unsubscribe = asyncio.Event()

    def notify(self, notification: Notification) -> bool:
        """Queue a notification from the VTN (False: too many queued; the poll catches up)."""
        try:
            self._inbox.put_nowait(notification)
        except asyncio.QueueFull:
            self._poll_now = True
            return False
        return True

    async def run(self) -> None:
        """Follow the VTN until cancelled: notifications at once, full polls on a timer.

        Without a webhook subscription the VTN is read in full every ``poll_interval_s``; with
        one, every ``SAFETY_POLL_FACTOR`` times that (a safety net), while reports are still
        checked every ``poll_interval_s``. A failed step is recorded and retried.
        """
        secret = self._box.open(self._config.secret_box) if self._config.secret_box else None
        loop = asyncio.get_running_loop()
        async with VtnClient(
            self._config.base_url, self._config.client_id, secret, self._config.token_url
        ) as vtn:
            next_poll = loop.time()
            while not self._unsubscribe.is_set():
                if self._poll_now or loop.time() >= next_poll:
                    self._poll_now = False
                    factor = SAFETY_POLL_FACTOR if self._subscription.active else 1
                    next_poll = loop.time() + self._config.poll_interval_s * factor
                    await self._step(self.poll(vtn), record=True)
                else:
                    await self._step(self._report_due(vtn))
                try:
                    notification = await asyncio.wait_for(
                        self._inbox.get(), timeout=self._config.poll_interval_s
                    )
                except TimeoutError:
                    continue
                await self._step(self._handle(notification))
            with contextlib.suppress(VtnError):
                await self._subscription.remove(vtn)

    def unsubscribe(self) -> None:
        """Ask the runner to delete its webhook subscription on the VTN, then to stop."""
        self._unsubscribe.set()
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(_WAKE)

    async def _step(self, step: Coroutine[Any, Any, None], *, record: bool = False) -> None:
        """Run one step; record a full poll's outcome, and any failure (retried later)."""
        try:
            await step
            if record:
                await self._store.note_poll(
                    self._config.vtn_id, error=None, remote_ven_id=self._ven_id
                )
        except VtnError as err:
            _LOGGER.warning("VTN %s: %s", self._config.name, err)
            await self._note_failure(str(err))
        except Exception as err:  # keep following: retried at the next step
            _LOGGER.exception("VTN %s: a step failed", self._config.name)
            await self._note_failure(f"{type(err).__name__}: {err}"[:500])

    async def _note_failure(self, error: str) -> None:
        with contextlib.suppress(Exception):  # the database may be what failed
            await self._store.note_poll(self._config.vtn_id, error=error)

    async def poll(self, vtn: VtnClient) -> None:
        """Read the VTN in full: register, keep the subscription, follow events, report."""
        if self._ven_id is None:
            self._ven_id = await vtn.register_ven(self._config.ven_name)
        await self._subscription.ensure(vtn)
        programs = await vtn.search("/programs", "program")
        links = {
            link.remote_event_id: link for link in await self._store.links(self._config.vtn_id)
        }
        seen: set[str] = set()
        for mapping in self._config.programs:
            for program in programs:
                if mapping.program not in (program["programName"], program["id"]):
                    continue
                self._mappings[program["id"]] = mapping
                for event in await vtn.search("/events", "event", programID=program["id"]):
                    seen.add(event["id"])
                    await self._follow(event, mapping, links.get(event["id"]))
        for link in links.values():
            if link.status == ACTIVE and link.remote_event_id not in seen:
                await self._cancel(link, "the utility withdrew the event")
        await self._report_due(vtn)

    async def _handle(self, notification: Notification) -> None:
        """Act on a notification at once: follow a created or changed event, cancel a deleted one.

        Anything else (a program changed, an event of a program not known yet) asks for a full
        poll, which reads the VTN as it is now.
        """
        if notification is _WAKE:
            return
        if notification.object_type != "EVENT":
            self._poll_now = True
            return
        event = notification.object
        link = next(
            (
                item
                for item in await self._store.links(self._config.vtn_id)
                if item.remote_event_id == event["id"]
            ),
            None,
        )
        if notification.operation == "DELETE":
            if link is not None and link.status == ACTIVE:
                await self._cancel(link, "the utility deleted the event")
            return
        mapping = self._mappings.get(event["programID"])
        if mapping is None:
            self._poll_now = True
            return
        await self._follow(event, mapping, link)

    async def _follow(
        self, event: dict[str, Any], mapping: ProgramMapping, link: EventLink | None
    ) -> None:
        try:
            plan = plan_event(event, mapping)
        except NotMappable as err:
            if link is None or link.status == ACTIVE:
                if link is not None:
                    await self._cancel(link, f"the utility changed the event: {err}")
                await self._save(event, None, "", IGNORED, str(err))
            return
        if link is not None and link.fingerprint == plan.fingerprint:
            if link.event != event:
                await self._save(event, link.jeisson_event_id, plan.fingerprint, link.status)
            return
        if link is not None and link.status == ACTIVE:
            await self._cancel(link, "the utility changed the event")
        if plan.end <= utc_now():
            await self._save(event, None, plan.fingerprint, IGNORED, "the event is over")
            return
        try:
            record = await self._app[MANAGER].create_event(self._request(plan, mapping))
        except ValidationError as err:
            await self._save(event, None, plan.fingerprint, IGNORED, str(err)[:500])
            return
        _LOGGER.info(
            "Utility event %s became Jeisson event %s (%.1f kW)",
            event["id"],
            record.event_id,
            plan.target_kw,
        )
        await self._save(event, record.event_id, plan.fingerprint, ACTIVE)

    @staticmethod
    def _request(plan: EventPlan, mapping: ProgramMapping) -> Any:
        """Return the EventManager's request, validated as the operator API validates it."""
        now = utc_now()
        start = max(plan.start, now + timedelta(seconds=MIN_LEAD_S))
        lead = (start - now).total_seconds()
        return EventBody(
            name=plan.name,
            kind=EventKind(mapping.kind),
            target_kw=plan.target_kw,
            price_cap=plan.price_cap,
            start=start,
            end=plan.end,
            bid_window_s=max(1.0, min(mapping.bid_window_s, lead - 1.0)),
            restore_stagger_s=mapping.restore_stagger_s,
            currency=plan.currency,
        ).to_request()

    async def _save(
        self,
        event: dict[str, Any],
        jeisson_event_id: str | None,
        fingerprint: str,
        status: str,
        note: str | None = None,
    ) -> None:
        await self._store.save_link(
            EventLink(
                vtn_id=self._config.vtn_id,
                remote_event_id=event["id"],
                remote_program_id=event["programID"],
                fingerprint=fingerprint,
                status=status,
                event=event,
                jeisson_event_id=jeisson_event_id,
                note=note,
            )
        )

    async def _cancel(self, link: EventLink, reason: str) -> None:
        if link.jeisson_event_id is not None:
            with contextlib.suppress(EventNotFoundError, InvalidTransitionError):
                await self._app[MANAGER].cancel_event(link.jeisson_event_id, reason)
            _LOGGER.info("Jeisson event %s cancelled: %s", link.jeisson_event_id, reason)
        await self._save(link.event, link.jeisson_event_id, link.fingerprint, CANCELLED, reason)

    async def _report_due(self, vtn: VtnClient) -> None:
        """Report every interval that ended (and whose telemetry had time to arrive).

        The figures come from the database (:mod:`.delivery`), so an interval that ended while
        the aggregator was down is reported with what the homes measured once it is back.
        """
        now = utc_now()
        reported = await self._store.reported(self._config.vtn_id)
        for link in await self._store.links(self._config.vtn_id):
            if link.jeisson_event_id is None or link.status != ACTIVE:
                continue
            mapping = self._mappings.get(link.remote_program_id)
            delay = timedelta(seconds=mapping.report_delay_s) if mapping else DEFAULT_REPORT_DELAY
            for interval in interval_windows(link.event):
                key = (link.remote_event_id, interval.interval_id)
                if key in reported or now < interval.end + delay:
                    continue
                figures = await span_figures(
                    self._app, link.jeisson_event_id, interval.start, interval.end
                )
                if figures is None:
                    continue
                body = report_body(
                    link.event,
                    self._config.ven_name,
                    interval,
                    figures.committed_kw,
                    figures.delivered_kw,
                )
                report_id = await vtn.post_report(body)
                await self._store.save_report(
                    self._config.vtn_id,
                    link.remote_event_id,
                    interval.interval_id,
                    report_id=report_id,
                    committed_kw=figures.committed_kw,
                    delivered_kw=figures.delivered_kw,
                )


class VenService:
    """Runs a :class:`VenRunner` for every enabled VTN configuration."""

    def __init__(self, app: web.Application, store: VenStore) -> None:
        """Serve ``app``; call :meth:`start` once the aggregator is up."""
        self._app = app
        self._store = store
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._runners: dict[str, VenRunner] = {}
        self._box: SecretBox | None = None

    @property
    def box(self) -> SecretBox:
        """Return the secret box (the key file is read on first use)."""
        if self._box is None:
            self._box = SecretBox.from_environment()
        return self._box

    async def start(self) -> None:
        """Follow every enabled VTN."""
        for config in await self._store.list_vtns():
            self.follow(config)

    def follow(self, config: VtnConfig) -> None:
        """Start (or restart) following one VTN."""
        self.forget(config.vtn_id)
        if config.enabled:
            runner = VenRunner(self._app, self._store, config, self.box)
            self._runners[config.vtn_id] = runner
            self._tasks[config.vtn_id] = asyncio.create_task(runner.run())

    def notify(self, vtn_id: str, notification: Notification) -> bool:
        """Hand a VTN's notification to its runner (False: not followed, or too many queued)."""
        runner = self._runners.get(vtn_id)
        return runner is not None and runner.notify(notification)

    def forget(self, vtn_id: str) -> None:
        """Stop following one VTN (its subscription stays: a restart reuses it)."""
        self._runners.pop(vtn_id, None)
        task = self._tasks.pop(vtn_id, None)
        if task is not None:
            task.cancel()

    async def remove(self, vtn_id: str) -> None:
        """Stop following one VTN for good: its webhook subscription is deleted first."""
        runner = self._runners.pop(vtn_id, None)
        task = self._tasks.pop(vtn_id, None)
        if runner is None or task is None:
            return
        runner.unsubscribe()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=UNSUBSCRIBE_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()

    async def stop(self) -> None:
        """Stop every runner."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._runners.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
