"""When statements are settled: after the late-telemetry window, once, then only corrections.

A background task (:meth:`Settler.run`) looks every :data:`POLL_INTERVAL` for finished events
whose end lies more than ``settle_after`` (the program's late-telemetry window, 24 h by
default) in the past and that have no statement yet. Each is settled with the events it
overlaps (:func:`~aggregator.settlement.attribution.overlap_groups`) once the whole group is
finished and past the window; the statements and the homes' new reliability scores are stored
in one transaction, then listeners are told (to send homes their statements).

Reads never compute: the REST API serves stored statements. The operator may settle an event
at once (:meth:`Settler.settle`, e.g. before the window ends) and settle it again later; a run
that changes nobody's payment stores nothing, one that does stores a new version whose lines
show the previous payment (a correction). Several aggregator processes may run settlers on one
database: a version is a primary key, so one process's insert wins and the other's is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from aggregator.records import EventRecord, EventStatus
from aggregator.settlement.attribution import overlap_groups
from aggregator.settlement.baselines import BaselineMethod
from aggregator.settlement.grid import SampleColumns, lead_time
from aggregator.settlement.program import ProgramSettings
from aggregator.settlement.reliability import RECENT_EVENTS
from aggregator.settlement.report import EventSettlement
from aggregator.settlement.repository import SettlementRepository
from aggregator.settlement.service import (
    GroupInputs,
    SettlementUnavailableError,
    baseline_config,
    commitments,
    compute_group_off_loop,
    home_profile,
    settlement_grid,
    valid_history,
)
from aggregator.settlement.statements import Statement, build_statement
from aggregator.store import StoreUnavailableError
from jeisson.common.protocol import utc_now

_LOGGER = logging.getLogger(__name__)

POLL_INTERVAL: Final = timedelta(minutes=1)
"""How often the settler looks for events due."""
FIRST_REASON: Final = "first statement"

type StatementListener = Callable[[Sequence[Statement]], Awaitable[object]]


class Settler:
    """Settles events into stored statements: on a timer, or when the operator asks."""

    def __init__(
        self,
        repository: SettlementRepository,
        *,
        clock: Callable[[], datetime] = utc_now,
        poll_interval: timedelta = POLL_INTERVAL,
    ) -> None:
        """Settle through ``repository``; ``clock`` gives the time (tests move it)."""
        self.repository = repository
        self._clock = clock
        self._poll = poll_interval
        self._lock = asyncio.Lock()
        self._listeners: list[StatementListener] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, listener: StatementListener) -> Callable[[], None]:
        """Call ``listener`` with every batch of stored statements; return the unsubscriber."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def start(self) -> None:
        """Start the background settlement loop."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="jeisson settler")

    async def stop(self) -> None:
        """Stop the background loop (a settlement in progress finishes first)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self) -> None:
        """Settle what is due, forever, every poll interval."""
        while True:
            try:
                await self.settle_due()
            except asyncio.CancelledError:
                raise
            except (OSError, SQLAlchemyError, StoreUnavailableError) as err:
                # The database is away (or the process out of descriptors): one line, no trace.
                _LOGGER.warning(
                    "Settlement run failed (%s); retrying in %s", type(err).__name__, self._poll
                )
            except Exception:
                _LOGGER.exception("Settlement run failed; retrying in %s", self._poll)
            await asyncio.sleep(self._poll.total_seconds())

    async def settle_due(self) -> list[Statement]:
        """Settle every finished event past the late-telemetry window that has no statement."""
        program = await self.repository.program()
        now = self._clock()
        stored: list[Statement] = []
        for event_id in await self.repository.events_to_settle(now - program.settle_after):
            event = await self.repository.store.get_event(event_id)
            if event is None:
                continue
            group = await self.group_of(event, program)
            if not all(self._due(member, program, now) for member in group):
                continue
            try:
                stored += await self._settle_group(group, program, FIRST_REASON)
            except SettlementUnavailableError as err:
                _LOGGER.warning("Event %s cannot be settled: %s", event_id, err)
        return stored

    async def settle(self, event_id: str, reason: str = "") -> list[Statement]:
        """Settle an event (and its group) now; return the versions stored (none: unchanged)."""
        event = await self.repository.store.get_event(event_id)
        if event is None:
            raise KeyError(event_id)
        program = await self.repository.program()
        group = await self.group_of(event, program)
        now = self._clock()
        for member in group:
            if not (member.status.is_terminal and member.end <= now):
                raise SettlementUnavailableError(
                    f"event {member.event_id} has not finished yet"
                    + ("" if member is event else f" (it overlaps {event_id})")
                )
        return await self._settle_group(group, program, reason or "settled by the operator")

    async def preview(self, event_id: str, method: BaselineMethod | None = None) -> EventSettlement:
        """Compute an event's settlement without storing it (e.g. another baseline method)."""
        event = await self.repository.store.get_event(event_id)
        if event is None:
            raise KeyError(event_id)
        if not event.status.is_terminal and event.end > self._clock():
            raise SettlementUnavailableError("the event has not ended yet")
        program = await self.repository.program()
        group = await self.group_of(event, program)
        reports = await self._compute(group, program, method)
        return next(report for report in reports if report.event_id == event_id)

    async def group_of(self, event: EventRecord, program: ProgramSettings) -> list[EventRecord]:
        """Return the events settled together with ``event`` (itself included), by start."""
        if event.status is EventStatus.CANCELLED:
            return [event]  # cancelled events are settled alone (docs/settlement.md)
        lead = lead_time(baseline_config(event))
        low, high = event.start, event.end
        while True:
            around = [
                other
                for other in await self.repository.events_touching(low - lead, high + lead)
                if other.status is not EventStatus.CANCELLED
            ]
            if all(other.event_id != event.event_id for other in around):
                around.append(event)
            group = next(
                found
                for found in overlap_groups(around, lead)
                if any(member.event_id == event.event_id for member in found)
            )
            start = min(member.start for member in group)
            end = max(member.end for member in group)
            if (start, end) == (low, high):
                return group
            low, high = start, end

    @staticmethod
    def _due(event: EventRecord, program: ProgramSettings, now: datetime) -> bool:
        return event.status.is_terminal and event.end + program.settle_after <= now

    async def _compute(
        self,
        group: Sequence[EventRecord],
        program: ProgramSettings,
        method: BaselineMethod | None = None,
    ) -> list[EventSettlement]:
        store = self.repository.store
        config = baseline_config(group[0], method)
        grid = settlement_grid(program, group, config)
        held = [commitments(await store.awards_for(event.event_id)) for event in group]
        home_ids = sorted({home_id for per_event in held for home_id in per_event})
        homes = {home.home_id: home for home in await store.list_homes()} if home_ids else {}
        rows = await self.repository.telemetry(home_ids, grid.time_ranges())
        group_ids = {event.event_id for event in group}
        others = [
            (other.start, other.end)
            for other in await self.repository.events_touching(
                grid.start - timedelta(days=program.history_days + 2), grid.start
            )
            if other.event_id not in group_ids and other.status is not EventStatus.CANCELLED
        ]
        inputs = GroupInputs(
            program=program,
            events=list(group),
            config=config,
            grid=grid,
            home_ids=home_ids,
            committed=held,
            profiles=[home_profile(homes.get(home_id)) for home_id in home_ids],
            telemetry=SampleColumns.from_rows(rows, home_ids),
            valid_days=valid_history(grid, program.calendar, others),
        )
        return await compute_group_off_loop(inputs)

    async def _settle_group(
        self, group: Sequence[EventRecord], program: ProgramSettings, reason: str
    ) -> list[Statement]:
        async with self._lock:
            reports = await self._compute(group, program)
            now = self._clock()
            new_lines = [
                (home.home_id, report.event_id, now, home.delivered_kwh, home.committed_kw)
                for report in reports
                for home in report.homes
            ]
            windows = {event.event_id: (event.start, event.end) for event in group}
            reliability = await self.repository.recompute_reliability(
                sorted({line[0] for line in new_lines}),
                [
                    (home_id, event_id, at, delivered, kw * _hours(windows[event_id]))
                    for home_id, event_id, at, delivered, kw in new_lines
                ],
                RECENT_EVENTS,
            )
            scores = {item.home_id: item.score for item in reliability}
            group_ids = [event.event_id for event in group]
            statements: list[Statement] = []
            for report in reports:
                previous = await self.repository.statement(report.event_id)
                others = [event_id for event_id in group_ids if event_id != report.event_id]
                why = reason
                if previous is not None and reason == FIRST_REASON:
                    why = f"correction: settled together with {', '.join(others)}"
                elif previous is not None:
                    why = f"correction: {reason}"
                statement = build_statement(
                    report,
                    previous=previous,
                    settled_at=now,
                    reason=why,
                    group_events=group_ids,
                    timezone=program.calendar.timezone,
                    window=windows[report.event_id],
                    reliability=scores,
                )
                if statement is not None:
                    statements.append(statement)
            if not statements:
                return []
            try:
                await self.repository.save_statements(statements, reliability)
            except IntegrityError:
                _LOGGER.info("Events %s were settled by another process", group_ids)
                return []
        _LOGGER.info(
            "Settled %s",
            ", ".join(f"{item.event_id} v{item.version}" for item in statements),
        )
        for listener in list(self._listeners):
            try:
                await listener(statements)
            except Exception:
                _LOGGER.exception("A statement listener failed")
        return statements


def _hours(window: tuple[datetime, datetime]) -> float:
    return (window[1] - window[0]).total_seconds() / 3600
