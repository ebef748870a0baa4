"""Connects a simulated home to an aggregator: answers offers and awards, streams telemetry.

:class:`HomeAgent` drives one :class:`~aggregator.simulation.home.VirtualHome` through a
:class:`~jeisson.client.HomeClient` (the same client the Home Assistant integration uses):
each offer gets a bid after a short think time, each award an ack, and accepted awards are carried
out on the home's own clock -- relays open at window start and close, staggered, at window end
even if the aggregator is gone; ``cancel``/``event_end`` restore at once (staggered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from typing import Any, Final

from aggregator.simulation.home import Holding, VirtualHome
from jeisson.client import HomeClient
from jeisson.common.errors import JeissonError
from jeisson.common.protocol import (
    MAX_SAMPLES_PER_TELEMETRY,
    Award,
    Cancel,
    EventEnd,
    HomeEventStatus,
    Offer,
    OptOutReason,
    Sample,
    ServerMessage,
    utc_now,
)

_LOGGER = logging.getLogger(__name__)

BID_DELAY_SHARE: Final = 0.25
"""A home answers an offer within this share of the time left before the deadline."""
_LIVE: Final = frozenset({HomeEventStatus.AWARDED, HomeEventStatus.ACTIVE})


class HomeAgent:
    """The behaviour of one virtual home towards its aggregator."""

    def __init__(self, home: VirtualHome) -> None:
        """Wrap a home; call :meth:`attach` to connect it to a client."""
        self.home = home
        self.client: HomeClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._executors: dict[str, asyncio.Task[None]] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self._telemetry: asyncio.Task[None] | None = None

    def attach(self, client: HomeClient) -> None:
        """Answer the aggregator through ``client`` and stream telemetry through it."""
        self.detach()
        self.client = client
        self._unsubscribe.append(client.subscribe(self._on_message))
        if self._telemetry is None:
            self._telemetry = self._spawn(self._stream_telemetry(), "sim-telemetry")

    def detach(self) -> None:
        """Stop talking to the aggregator; the home still carries out what it holds."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self.client = None

    async def close(self) -> None:
        """Stop every task of this home (timers, restores, telemetry)."""
        self.detach()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._telemetry = None

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            _LOGGER.error("%s: %s failed", self.home.name, task.get_name(), exc_info=error)

    def _on_message(self, message: ServerMessage) -> None:
        match message:
            case Offer():
                self._spawn(self._answer_offer(message), "sim-bid")
            case Award():
                self._spawn(self._answer_award(message), "sim-award")
            case Cancel() | EventEnd():
                self.end_event(message.event_id, message.type)
            case _:
                pass

    async def _answer_offer(self, offer: Offer) -> None:
        home = self.home
        time_left = (offer.bid_deadline - utc_now()).total_seconds()
        delay_cap = min(home.timing.bid_delay_max_s, max(0.0, time_left) * BID_DELAY_SHARE)
        await asyncio.sleep(home.rng.uniform(0.0, delay_cap))
        steps = home.bid_steps(offer)
        client = self.client
        if client is None:
            return
        try:
            await client.send_bid(offer, steps)
        except JeissonError as err:
            _LOGGER.warning("%s: bid for %s not taken: %s", home.name, offer.event_id, err)
            return
        _LOGGER.info(
            "%s: offer %s round %d -> bid %d steps, %.1f kW",
            home.name,
            offer.event_id,
            offer.round,
            len(steps),
            sum(step.kw for step in steps),
        )

    async def _answer_award(self, award: Award) -> None:
        home = self.home
        plan = home.plan_ack(award)
        holding = home.take(award, plan)
        if holding is not None and award.award_id not in self._executors:
            self._executors[award.award_id] = self._spawn(
                self._carry_out(holding), f"sim-award-{award.award_id}"
            )
        client = self.client
        if client is None:
            return
        try:
            await client.ack_award(award, accepted=plan.accepted, loads=plan.loads, kw=plan.kw)
        except JeissonError as err:
            _LOGGER.warning("%s: ack of %s not delivered yet: %s", home.name, award.award_id, err)
            return
        _LOGGER.info(
            "%s: award %s round %d -> %s %s (%.1f kW at %.3f)",
            home.name,
            award.award_id,
            award.round,
            "accepted" if plan.accepted else "declined",
            ",".join(plan.loads) or "-",
            plan.kw,
            award.price,
        )

    async def _carry_out(self, holding: Holding) -> None:
        """Switch off at window start and restore at window end, on the home's own clock."""
        award = holding.award
        await asyncio.sleep(max(0.0, (award.window_start - utc_now()).total_seconds()))
        switched = self.home.switch_off(award.award_id)
        if switched:
            _LOGGER.info(
                "%s: switched off %s for %s", self.home.name, ",".join(switched), award.event_id
            )
        await asyncio.sleep(max(0.0, (award.window_end - utc_now()).total_seconds()))
        self._executors.pop(award.award_id, None)
        await self._restore(award.award_id, "window over")

    async def _restore(self, award_id: str, why: str) -> None:
        home = self.home
        stagger = home.holdings[award_id].award.restore_stagger_s
        restored = await home.restore(award_id, stagger)
        if restored:
            _LOGGER.info(
                "%s: restored %s (%s) over %.1f s",
                home.name,
                ",".join(record.load_id for record in restored),
                why,
                max(record.delay_s for record in restored),
            )

    def end_event(self, event_id: str, why: str) -> None:
        """Stop every award of an event now (event end or cancel): restore, staggered."""
        for award_id, holding in self.home.holdings.items():
            if holding.award.event_id != event_id or holding.status not in _LIVE:
                continue
            executor = self._executors.pop(award_id, None)
            if executor is not None:
                executor.cancel()
            self._spawn(self._restore(award_id, why), f"sim-restore-{award_id}")

    async def opt_out(self, event_id: str, load_id: str | None = None) -> None:
        """Opt out of an event (or one load): take the loads back, then tell the aggregator.

        Raises the client's errors except NotConnected (the opt-out is queued and re-sent).
        """
        restored = self.home.release(event_id, load_id)
        _LOGGER.info(
            "%s: opted out of %s%s; switched on %s",
            self.home.name,
            event_id,
            f" load {load_id}" if load_id else "",
            ",".join(restored) or "nothing",
        )
        if self.client is not None:
            await self.client.opt_out(event_id, load_id, OptOutReason.USER)

    async def _stream_telemetry(self) -> None:
        """Sample the appliances and send batches: often while curtailing, rarely otherwise."""
        home = self.home
        loop = asyncio.get_running_loop()
        batch: list[Sample] = []
        batch_event: str | None = None
        await asyncio.sleep(home.rng.uniform(0.0, home.timing.idle_sample_s))
        last_report = last_sample = loop.time()
        while True:
            now = loop.time()
            sample, event_id = home.sample(now - last_sample)
            last_sample = now
            timing = home.timing
            report_s = timing.event_report_s if event_id else timing.idle_report_s
            if event_id != batch_event:
                # Curtailment started or ended: report the change at once.
                if batch:
                    self._send_batch(batch, batch_event)
                batch, last_report = [], now - report_s
            batch.append(sample)
            batch_event = event_id
            if now - last_report >= report_s or len(batch) >= MAX_SAMPLES_PER_TELEMETRY:
                self._send_batch(batch, batch_event)
                batch, last_report = [], now
            home.changed.clear()
            with suppress(TimeoutError):
                sample_s = timing.event_sample_s if event_id else timing.idle_sample_s
                await asyncio.wait_for(home.changed.wait(), timeout=sample_s)

    def _send_batch(self, samples: Sequence[Sample], event_id: str | None) -> None:
        """Send a batch without holding up sampling (a slow ack must not skew the clock)."""
        client = self.client
        if client is not None:
            self._spawn(self._deliver(client, list(samples), event_id), "sim-telemetry-send")

    async def _deliver(
        self, client: HomeClient, samples: list[Sample], event_id: str | None
    ) -> None:
        try:
            await client.send_telemetry(samples, event_id)
        except JeissonError as err:
            _LOGGER.debug("%s: telemetry queued or lost: %s", self.home.name, err)
