"""Runs one event: its timers and its inbox, one transaction per step, state swapped after.

An :class:`EventDriver` owns one event's :class:`~aggregator.negotiation.state.EventState`.
Everything that changes it goes through the driver's single task, in order:

* home messages and operator actions are queued (:meth:`EventDriver.run`); the task takes all
  that is queued, computes each one's step from the state the previous one left (pure functions,
  :mod:`.home_steps`), commits all their writes in one transaction (group commit), and only then
  swaps the new state in, sends the messages and answers each caller. If the commit fails, the
  state stays as it was and every caller gets :class:`~aggregator.store.StoreUnavailableError`.
* timer steps (:func:`.machine.due_step`: clear, expire, activate, re-negotiate, complete) run
  when due; a step whose commit fails is tried again, recomputed from the unchanged state, after
  a jittered, doubling, bounded wait, until it succeeds. Until then :attr:`EventDriver.problem`
  says why (the operator sees it in the event's detail and in metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from aggregator.logs import Throttle
from aggregator.metrics import Metrics
from aggregator.negotiation import machine
from aggregator.negotiation.model import (
    Env,
    HomeLink,
    HomeView,
    NegotiationSettings,
    StepKind,
    StepResult,
)
from aggregator.negotiation.state import EventState
from aggregator.store import Change, Fence, GroupCommitter, StoreUnavailableError
from jeisson.common.protocol import ErrorCode, ProtocolError

_LOGGER = logging.getLogger(__name__)

type Compute = Callable[[EventState, Env], StepResult]

ERROR_LOG_INTERVAL_S: Final = 10.0
FAN_OUT_WARNING_SHARE: Final = 0.5
"""Share of a round's bid window that storing and queueing its offers may take unremarked."""
_OFFER_STEPS: Final = frozenset({StepKind.CREATE, StepKind.BEGIN, StepKind.OPEN_ROUND})


@dataclass(frozen=True, slots=True)
class StoreProblem:
    """Why an event's steps are not being stored, as the operator sees it."""

    since: datetime
    attempts: int
    step: str
    error: str
    retry_at: datetime | None
    """When the failed timer step is tried again (None: home messages failed)."""


@dataclass(slots=True)
class _Item:
    compute: Compute
    received_at: datetime
    future: asyncio.Future[StepResult]


class EventDriver:
    """The single writer of one event's state."""

    def __init__(
        self,
        state: EventState,
        *,
        committer: GroupCommitter,
        link: HomeLink,
        homes: Mapping[str, HomeView],
        settings: NegotiationSettings,
        clock: Callable[[], datetime],
        metrics: Metrics,
        on_committed: Callable[[StepResult], None],
        fence: Fence | None = None,
    ) -> None:
        """Drive ``state`` (already stored); ``on_committed`` sees every committed step.

        ``fence`` (clusters): every transaction carries it, so once another process took the
        event's lease over, this driver's writes are refused by the database.
        """
        self._state = state
        self._fence: tuple[Change, ...] = () if fence is None else (fence,)
        self._committer = committer
        self._link = link
        self._homes = homes
        self._settings = settings
        self._now = clock
        self._metrics = metrics
        self._on_committed = on_committed
        self._inbox: list[_Item] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._problem: StoreProblem | None = None
        self._retry_at: datetime | None = None
        self._throttle = Throttle(ERROR_LOG_INTERVAL_S)

    @property
    def state(self) -> EventState:
        """Return the event's committed state."""
        return self._state

    @property
    def problem(self) -> StoreProblem | None:
        """Return why steps are failing to be stored, or None when they are not."""
        return self._problem

    @property
    def finished(self) -> bool:
        """Return True once the event completed or was cancelled."""
        return self._state.record.status.is_terminal

    def start(self) -> None:
        """Start the driver's task."""
        self._task = asyncio.create_task(self._loop(), name=f"event-{self._state.event_id}")

    async def stop(self) -> None:
        """Stop the task (what is stored stays for the next start)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_inbox(lambda: StoreUnavailableError("the aggregator is stopping"))

    async def wait_finished(self) -> None:
        """Wait until the driver's task has ended."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    def deliver(self, result: StepResult) -> None:
        """Send and report a step committed before the driver started (the event's creation)."""
        self._committed(result.state, [result])

    async def run(self, compute: Compute) -> StepResult:
        """Take a step computed from the latest state; return once it is committed.

        Raises what ``compute`` raises (nothing changed), or StoreUnavailableError (nothing
        stored, nothing changed), or ProtocolError ``unknown_event`` once the event is over.
        """
        if self.finished or self._task is None:
            raise self._event_over()
        future: asyncio.Future[StepResult] = asyncio.get_running_loop().create_future()
        self._inbox.append(_Item(compute, self._now(), future))
        self._wake.set()
        return await future

    # --- the task ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        try:
            while not self.finished:
                if self._inbox:
                    await self._take_inbox()
                    continue
                now = self._now()
                due = machine.next_due(self._state, now)
                if self._retry_at is not None:
                    due = max(due, self._retry_at)
                delay = (due - now).total_seconds()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=delay)
                    continue
                await self._take_due_step(now)
        finally:
            self._fail_inbox(self._event_over)

    async def _take_inbox(self) -> None:
        """Compute every queued step in order, commit them together, then apply them."""
        items, self._inbox = self._inbox, []
        state = self._state
        taken: list[tuple[_Item, StepResult]] = []
        changes: list[Change] = []
        for item in items:
            if item.future.cancelled():
                continue
            env = Env(item.received_at, self._settings, self._homes)
            try:
                result = item.compute(state, env)
            except Exception as err:  # refused: this caller's problem, nothing changed
                item.future.set_exception(err)
                continue
            state = result.state
            changes.extend(result.changes)
            taken.append((item, result))
        if not taken:
            return
        try:
            await self._committer.commit([*self._fence, *changes])
        except StoreUnavailableError as err:
            self._store_failed(taken[0][1].kind, err, retry_at=None)
            for item, _result in taken:
                if not item.future.done():
                    item.future.set_exception(StoreUnavailableError(str(err)))
            return
        self._committed(state, [result for _item, result in taken])
        for item, result in taken:
            if not item.future.done():
                item.future.set_result(result)

    async def _take_due_step(self, now: datetime) -> None:
        """Take the timer step due now; on a failed commit, schedule another try."""
        started = time.perf_counter()
        result = machine.due_step(self._state, Env(now, self._settings, self._homes))
        if result is None:
            # Nothing due after all (a clock step): wait for the next wake-up or a second.
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            return
        if result.kind is StepKind.CLEAR:
            self._metrics.clearing_seconds.observe(time.perf_counter() - started)
        try:
            await self._committer.commit([*self._fence, *result.changes])
        except StoreUnavailableError as err:
            attempts = self._problem.attempts if self._problem is not None else 0
            wait_s = self._backoff(attempts)
            self._store_failed(result.kind, err, retry_at=now + timedelta(seconds=wait_s))
            return
        self._committed(result.state, [result])
        if result.kind in _OFFER_STEPS:
            self._check_fan_out(started)

    # --- after a commit ----------------------------------------------------------------------

    def _committed(self, state: EventState, results: Sequence[StepResult]) -> None:
        """Swap the committed state in, then send and report what the steps produced."""
        if self._problem is not None:
            _LOGGER.info(
                "Event %s: storing works again after %d failed tries",
                state.event_id,
                self._problem.attempts,
                extra={"event_id": state.event_id},
            )
        self._problem = None
        self._retry_at = None
        self._state = state
        for result in results:
            for send in result.sends:
                if len(send.home_ids) == 1:
                    (home_id,) = send.home_ids
                    self._link.send(home_id, send.message)
                else:
                    self._link.broadcast(send.home_ids, send.message)
            if result.kind is StepKind.CLEAR:
                cleared = state.rounds[state.record.current_round]
                self._metrics.round_seconds.observe(
                    (self._now() - cleared.opened_at).total_seconds()
                )
            if result.note:
                _LOGGER.info(
                    "Event %s %s",
                    state.event_id,
                    result.note,
                    extra={
                        "event_id": state.event_id,
                        "round": result.round,
                        "home_id": result.home_id,
                    },
                )
            self._on_committed(result)

    def _check_fan_out(self, started: float) -> None:
        """Warn when storing and queueing a round's offers used up half of its bid window."""
        open_now = self._state.open_round
        if open_now is None:
            return
        elapsed = time.perf_counter() - started
        window = (open_now.deadline - open_now.opened_at).total_seconds()
        if elapsed > window * FAN_OUT_WARNING_SHARE:
            offered = len(self._state.offered_in(open_now.round))
            _LOGGER.warning(
                "Event %s round %d: the offers to %d homes took %.3f s to store and queue, "
                "more than half of the %.3f s the homes have to bid",
                self._state.event_id,
                open_now.round,
                offered,
                elapsed,
                window,
                extra={"event_id": self._state.event_id, "round": open_now.round},
            )

    # --- failures ----------------------------------------------------------------------------

    def _store_failed(
        self, kind: StepKind, err: StoreUnavailableError, retry_at: datetime | None
    ) -> None:
        previous = self._problem
        self._problem = StoreProblem(
            since=previous.since if previous is not None else self._now(),
            attempts=(previous.attempts if previous is not None else 0) + 1,
            step=kind.value,
            error=str(err),
            retry_at=retry_at,
        )
        if retry_at is not None:
            self._retry_at = retry_at
        self._metrics.step_failures.labels(kind.value).inc()
        if count := self._throttle.ready():
            _LOGGER.warning(
                "Event %s: %s not stored (%s); %s (%d failures since the last report)",
                self._state.event_id,
                kind.value,
                err,
                f"retrying at {retry_at.isoformat()}" if retry_at else "homes told to re-send",
                count,
                extra={"event_id": self._state.event_id},
            )

    def _backoff(self, attempts: int) -> float:
        """Return the wait before the next try: doubling, capped, jittered (50-100 %)."""
        settings = self._settings
        ceiling = min(settings.retry_max_s, settings.retry_base_s * 2.0 ** min(attempts, 16))
        return float(ceiling * random.uniform(0.5, 1.0))

    def _event_over(self) -> ProtocolError:
        return ProtocolError(
            ErrorCode.UNKNOWN_EVENT, f"event {self._state.event_id!r} is not running"
        )

    def _fail_inbox(self, error: Callable[[], Exception]) -> None:
        items, self._inbox = self._inbox, []
        for item in items:
            if not item.future.done():
                item.future.set_exception(error())
