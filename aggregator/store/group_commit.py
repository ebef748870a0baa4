"""Group commit: the writes of every request queued in the same moment share one transaction.

Home sessions and event drivers call :meth:`GroupCommitter.commit` with a step's changes and
wait. One writer task takes everything queued so far, writes it in one transaction
(:meth:`~aggregator.store.unit.Unit.apply`: one ``executemany`` per table and kind), then wakes
every caller: all of them succeed together, or all fail together with
:class:`StoreUnavailableError` and nothing of the batch is stored. While a transaction is in
flight the next batch builds up, so the batch size follows the load without a timer.

A request may *linger* (``commit(changes, linger=s)``: telemetry, whose ack can wait): it is
written with the next batch, or at the latest ``s`` seconds after it was queued. An idle fleet's
telemetry then shares transactions instead of taking one per batch; any request that does not
linger (a bid, an ack, a step) writes everything queued at once.

A batch refused for its data (a constraint or a value the database rejects), or for a stale
fencing token (:class:`~aggregator.store.errors.FencedError`, clusters only), is retried one
request at a time, so one bad request fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from sqlalchemy.exc import DataError, IntegrityError

from aggregator.logs import Throttle
from aggregator.store.changes import Change, Receipt
from aggregator.store.errors import FencedError, StoreUnavailableError
from aggregator.store.unit import Unit

_LOGGER = logging.getLogger(__name__)

MAX_BATCH_CHANGES: Final = 20_000
"""Changes per transaction at most (a burst beyond this is written in several)."""
CLOSE_TIMEOUT_S: Final = 10.0
"""How long closing waits for queued writes."""
ERROR_LOG_INTERVAL_S: Final = 10.0
"""A failing database is logged at most once per this many seconds (with a count)."""


class _Transactions(Protocol):
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Unit]: ...


class CommitObserver(Protocol):
    """What the committer reports (implemented by :class:`aggregator.metrics.Metrics`)."""

    def observe_commit(self, requests: int, changes: int, seconds: float) -> None:
        """Record one committed transaction."""

    def observe_store_failure(self, requests: int) -> None:
        """Record one failed transaction."""


@dataclass(slots=True)
class _Request:
    changes: Sequence[Change]
    future: asyncio.Future[Receipt]
    due: float
    """Loop time by which it is written (its queueing time unless it lingers)."""


class GroupCommitter:
    """The single writer of a store: batches requests into transactions."""

    def __init__(
        self,
        store: _Transactions,
        observer: CommitObserver | None = None,
        max_batch_changes: int = MAX_BATCH_CHANGES,
    ) -> None:
        """Write through ``store``; report to ``observer``."""
        self._store = store
        self._observer = observer
        self._max_batch = max_batch_changes
        self._queue: list[_Request] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._throttle = Throttle(ERROR_LOG_INTERVAL_S)

    async def commit(self, changes: Sequence[Change], *, linger: float = 0.0) -> Receipt:
        """Store ``changes`` (with whatever else is queued) and return once committed.

        ``linger``: seconds the write may wait for company (see the module). Raises
        :class:`StoreUnavailableError` when the transaction failed: nothing was stored.
        """
        if not changes:
            return Receipt()
        if self._closed:
            raise StoreUnavailableError("the store is closing")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Receipt] = loop.create_future()
        was_empty = not self._queue
        self._queue.append(_Request(changes, future, loop.time() + max(0.0, linger)))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="store-group-commit")
        if linger <= 0 or was_empty:  # a later-due request need not wake a lingering writer
            self._wake.set()
        return await future

    async def close(self) -> None:
        """Write what is queued, then stop the writer task."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        self._wake.set()
        try:
            await asyncio.wait_for(task, timeout=CLOSE_TIMEOUT_S)
        except TimeoutError:
            _LOGGER.warning("Store writer stopped with %d requests unwritten", len(self._queue))
        for request in self._queue:
            if not request.future.done():
                request.future.set_exception(StoreUnavailableError("the store is closing"))
        self._queue.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._queue:
                wait = min(request.due for request in self._queue) - loop.time()
                if wait > 0 and not self._closed:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
                    continue
                await self._write(self._take())
            if self._closed:
                return
            await self._wake.wait()
            self._wake.clear()

    def _take(self) -> list[_Request]:
        """Take the oldest queued requests, up to the batch limit (at least one)."""
        total = 0
        count = 0
        for request in self._queue:
            if count and total + len(request.changes) > self._max_batch:
                break
            total += len(request.changes)
            count += 1
        batch, self._queue = self._queue[:count], self._queue[count:]
        return [request for request in batch if not request.future.cancelled()]

    async def _write(self, batch: list[_Request]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        changes = [change for request in batch for change in request.changes]
        try:
            async with self._store.transaction() as unit:
                receipt = await unit.apply(changes)
        except (IntegrityError, DataError, FencedError) as err:
            if len(batch) > 1:
                for request in batch:
                    await self._write([request])
                return
            self._fail(batch, err)
            return
        except Exception as err:
            self._fail(batch, err)
            return
        if self._observer is not None:
            self._observer.observe_commit(len(batch), len(changes), time.perf_counter() - started)
        for request in batch:
            if not request.future.done():
                request.future.set_result(receipt)

    def _fail(self, batch: list[_Request], err: Exception) -> None:
        if isinstance(err, FencedError):  # not a database failure: this process lost a lease
            _LOGGER.info("Write refused: %s", err, extra={"event_id": err.event_id})
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(err)
                    request.future.exception()
            return
        if self._observer is not None:
            self._observer.observe_store_failure(len(batch))
        if count := self._throttle.ready():
            _LOGGER.error(
                "Store write failed (%d failures since the last report): %s: %s",
                count,
                type(err).__name__,
                str(err).splitlines()[0] if str(err) else "",
            )
        reason = f"storage unavailable: {type(err).__name__}"
        for request in batch:
            if not request.future.done():
                request.future.set_exception(StoreUnavailableError(reason))
                # A caller that went away (cancelled) never reads it; don't warn about that.
                request.future.exception()
