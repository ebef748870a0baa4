"""Publishes Jeisson's own events to third-party VENs, and reads back what they deliver.

Every :data:`PUBLISH_INTERVAL_S` the publisher compares what each running Jeisson event asks of
the participating VENs (:func:`~aggregator.openadr.dispatch.shares`) with the OpenADR events it
published on Jeisson's VTN (program ``jeisson-dr``, owner ``jeisson``, filed under the Jeisson
event and the VEN client), and creates, updates or deletes them — each change one transaction,
then its webhook notifications. A cancelled Jeisson event's OpenADR events are deleted; a
completed one's stay, so the VENs' reports keep their event. Everything it needs is in the
database, so after a restart it carries on (events cancelled while it was down are swept at
start).

It reaches the negotiation only through the EventManager's public reads (``figures``, ``live``)
and the store's (``get_event``). As the :class:`~aggregator.participants.OutsideParticipants`
source it gives the operator's figures what the VENs were dispatched and report delivering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from aiohttp import web

from aggregator.app_keys import MANAGER, STORE
from aggregator.openadr.dispatch import (
    PROGRAM_NAME,
    SHARE_STEP_KW,
    EventView,
    Reading,
    delivered_now,
    delivered_over,
    event_request,
    published_share,
    readings,
    shares,
)
from aggregator.openadr.notifier import Notifier
from aggregator.openadr.schema import schema_errors
from aggregator.openadr.vtn_store import PUBLISHER, Participant, StoredObject, VtnStore
from aggregator.participants import NOTHING, OutsideFigures, OutsideShare
from aggregator.records import EventStatus
from jeisson.common.protocol import utc_now

_LOGGER = logging.getLogger(__name__)
PUBLISH_INTERVAL_S: Final = 1.0
PROGRAM_REQUEST: Final = {"programName": PROGRAM_NAME}
"""Its events carry their own payload descriptors: a program's cannot be read back by
openapi-core (the 3.1.0 discriminator names no schema) nor by openadr3-client (which refuses a
REPORT_PAYLOAD_DESCRIPTOR there)."""


class Publisher:
    """Keeps the VENs' OpenADR events in step with Jeisson's running events."""

    def __init__(self, app: web.Application, store: VtnStore, notifier: Notifier) -> None:
        """Publish for the aggregator ``app`` on the VTN's ``store``; call :meth:`start`."""
        self._app = app
        self._store = store
        self._notifier = notifier
        self._program_id: str | None = None
        self._running: set[str] = set()
        self._figures: dict[str, OutsideFigures] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Make Jeisson's program (when the database answers), then publish in the background."""
        try:
            await self._program()
        except Exception:  # the loop tries again
            _LOGGER.exception("Could not make Jeisson's OpenADR program yet")
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop publishing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        swept = False
        while True:
            try:
                if not swept:
                    await self._program()
                    await self._sweep()
                    swept = True
                await self.tick()
            except Exception:  # a failed tick changes nothing and is tried again
                _LOGGER.exception("Publishing to OpenADR VENs failed; retrying")
            await asyncio.sleep(PUBLISH_INTERVAL_S)

    # --- publishing ------------------------------------------------------------------------

    async def tick(self) -> None:
        """Publish what changed since the last tick."""
        manager = self._app[MANAGER]
        running = {item.event_id for item in manager.figures()}
        ended = self._running - running
        if not running and not ended:
            self._figures = {}
            return
        participants = await self._store.participants()
        published = await self._store.find_objects(
            "EVENT", owner=PUBLISHER, event_ids=running | ended
        )
        for event_id in running:
            state = manager.live(event_id)
            if state is None:
                continue
            view = EventView(
                state.record, state.committed_kw + state.pending_kw, state.open_round is not None
            )
            mine = {item.name: item for item in published if item.event_id == event_id}
            await self._publish(view, participants, mine)
        for event_id in ended:
            await self._withdraw_if_cancelled(
                event_id, [item for item in published if item.event_id == event_id]
            )
        self._figures = {event_id: await self.figures(event_id) for event_id in running}
        self._running = running  # only now: a failed tick looks at the ended events again

    async def _publish(
        self,
        event: EventView,
        participants: list[Participant],
        mine: dict[str | None, StoredObject],
    ) -> None:
        wanted = shares(event, participants)
        if wanted is None:
            return  # a market event without an outcome yet: nothing to say to VENs
        program_id = await self._program()
        for participant in participants:
            share = wanted[participant.client_id]
            existing = mine.pop(participant.client_id, None)
            body = event_request(program_id, event.record, participant, share)
            if existing is None:
                if share > 0:
                    await self._create(event.record.event_id, participant, body)
            elif (
                abs(published_share(existing.body) - share) >= SHARE_STEP_KW
                or existing.body.get("targets") != body["targets"]
            ):
                updated = await self._store.replace_object(existing, body)
                await self._notifier.changed(updated, "UPDATE")
        for gone in mine.values():  # its client was revoked or lost its capacity
            await self._delete(gone)

    async def _create(self, event_id: str, participant: Participant, body: dict[str, Any]) -> None:
        reasons = schema_errors("eventRequest", body)
        if reasons:  # never expected: Jeisson's own output is held to the spec
            _LOGGER.error("Not publishing an event that breaks the spec: %s", reasons)
            return
        stored = await self._store.insert_object(
            "EVENT", PUBLISHER, body, columns={"event_id": event_id, "name": participant.client_id}
        )
        await self._notifier.changed(stored, "CREATE")
        _LOGGER.info(
            "Event %s dispatched to VEN %s: %.2f kW",
            event_id,
            participant.ven_name,
            published_share(body),
            extra={"event_id": event_id},
        )

    async def _delete(self, stored: StoredObject) -> None:
        await self._store.delete_object(stored.object_id)
        await self._notifier.changed(stored, "DELETE")

    async def _withdraw_if_cancelled(self, event_id: str, objects: list[StoredObject]) -> None:
        if not objects:
            return
        record = await self._app[STORE].get_event(event_id)
        if record is None or record.status is EventStatus.CANCELLED:
            for stored in objects:
                await self._delete(stored)

    async def _sweep(self) -> None:
        """Withdraw what was published for events cancelled while the aggregator was down."""
        running = {item.event_id for item in self._app[MANAGER].figures()}
        published = await self._store.find_objects("EVENT", owner=PUBLISHER)
        finished: dict[str, list[StoredObject]] = {}
        for stored in published:
            if stored.event_id is not None and stored.event_id not in running:
                finished.setdefault(stored.event_id, []).append(stored)
        for event_id, objects in finished.items():
            await self._withdraw_if_cancelled(event_id, objects)

    async def _program(self) -> str:
        """Return the id of Jeisson's program on its VTN, creating the program the first time."""
        if self._program_id is None:
            found = await self._store.find_objects("PROGRAM", name=PROGRAM_NAME)
            if found:
                self._program_id = found[0].object_id
            else:
                stored = await self._store.insert_object("PROGRAM", PUBLISHER, PROGRAM_REQUEST)
                await self._notifier.changed(stored, "CREATE")
                self._program_id = stored.object_id
        return self._program_id

    # --- what the VENs add to the operator's figures ---------------------------------------

    async def figures(self, event_id: str) -> OutsideFigures:
        """Return what the VENs were dispatched for an event and report shedding now."""
        published = await self._store.find_objects("EVENT", owner=PUBLISHER, event_id=event_id)
        if not published:
            return NOTHING
        now = utc_now()
        items = []
        for stored in published:
            found = await self._readings(stored)
            items.append(
                OutsideShare(
                    participant_id=stored.name or "",
                    name=str(stored.body["targets"][0]),
                    committed_kw=published_share(stored.body),
                    delivered_kw=delivered_now(found, now),
                )
            )
        return OutsideFigures(tuple(items))

    async def delivered_over(self, event_id: str, start: datetime, end: datetime) -> float:
        """Return the mean kW the VENs report shedding for an event over ``[start, end)``."""
        published = await self._store.find_objects("EVENT", owner=PUBLISHER, event_id=event_id)
        total = 0.0
        for stored in published:
            total += delivered_over(await self._readings(stored), start, end)
        return total

    def running(self) -> Mapping[str, OutsideFigures]:
        """Return the VENs' figures of the running events as of the last tick."""
        return self._figures

    async def _readings(self, stored: StoredObject) -> list[Reading]:
        """Return what the VEN an event was published for reported on it (its own reports)."""
        reports = await self._store.find_objects(
            "REPORT", event_id=stored.object_id, owner=stored.name
        )
        return readings([item.body for item in reports], stored.body)
