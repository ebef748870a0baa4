"""Write failures injected into a real SQLite store at every step of a negotiation.

A SQLAlchemy hook makes the first execution of every distinct write statement of the
negotiation fail (as a full disk or an I/O error would), mid-transaction: the event's creation,
its round and offers, bids, the clearing (round, awards, event), acknowledgements, the
rotation stamp, opt-outs, telemetry, home hellos and inventories, completion. Afterwards
nothing acknowledged is missing, nothing is stored twice, no event is stuck, and every home was
told the truth.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine

from aggregator.records import AwardStatus, EventStatus
from jeisson.common.errors import RequestRejected
from jeisson.common.protocol import Award, Cancel, EventEnd, OptOutReason, Sample, utc_now
from tests.helpers import wait_for

from .common import HomeFactory, RunningServer, bids

NEGOTIATION_WRITES = ("events", "rounds", "round_offers", "bids", "awards", "opt_outs")
HOME_COLUMNS = ("last_seen_at", "loads", "last_curtailed_at")


class WriteFaults:
    """Fails writes of a real SQLite engine, as an I/O error would, inside the transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.sync_engine
        self.seen: set[str] = set()
        self.failed: list[str] = []
        self.fail_next = 0
        """Fail this many more negotiation writes, whatever they are."""
        sa_event.listen(self._engine, "before_cursor_execute", self._before)

    def remove(self) -> None:
        sa_event.remove(self._engine, "before_cursor_execute", self._before)

    @staticmethod
    def is_negotiation_write(statement: str) -> bool:
        words = statement.split()
        verb, table = words[0].upper(), (words[2] if words[0].upper() == "INSERT" else words[1])
        if verb not in ("INSERT", "UPDATE"):
            return False
        if table == "homes":  # hello, inventory and rotation; not enrolment
            return verb == "UPDATE" and any(column in statement for column in HOME_COLUMNS)
        return table in (*NEGOTIATION_WRITES, "telemetry_batches", "telemetry")

    def _before(self, *args: Any) -> None:
        statement: str = args[2]
        if not self.is_negotiation_write(statement):
            return
        if self.fail_next > 0:
            self.fail_next -= 1
        elif statement in self.seen:
            return
        self.seen.add(statement)
        self.failed.append(statement)
        raise sqlite3.OperationalError("injected: disk I/O error")

    def tables_failed(self) -> set[str]:
        return {
            words[2] if words[0] == "INSERT" else words[1]
            for words in (statement.split() for statement in self.failed)
        }


@pytest.fixture
def faults(server: RunningServer) -> Iterator[WriteFaults]:
    injected = WriteFaults(server.store.engine)
    yield injected
    injected.remove()


async def create_event_retrying(server: RunningServer, **body: Any) -> tuple[dict[str, Any], int]:
    """Create an event as an operator would: again after each 503. Return it and the 503s."""
    for refused in range(20):
        status, answer = await server.request("POST", "/api/v1/events", body)
        if status == 201:
            return dict(answer), refused
        assert status == 503, answer
        assert answer["error"] == "store_unavailable"
    pytest.fail("the event was never created")


async def test_a_write_failure_at_every_step_loses_nothing_and_tells_every_home(
    server: RunningServer, make_home: HomeFactory, faults: WriteFaults
) -> None:
    cheap = await make_home(bids((3.0, 0.10, ["wh"])))
    middle = await make_home(bids((3.0, 0.20, ["wh"])))
    backup = await make_home(bids((3.0, 0.30, ["wh"])))
    now = utc_now()
    event, refused = await create_event_retrying(
        server,
        target_kw=6.0,
        price_cap=0.4,
        bid_window_s=2.0,
        restore_stagger_s=0.5,
        start=(now + timedelta(seconds=4)).isoformat(),
        end=(now + timedelta(seconds=16)).isoformat(),
    )
    assert refused >= 3  # the event, its round and its offers each failed once
    assert len(await server.store.list_events()) == 1  # a refused create left nothing behind

    async def acked(home_id: str) -> bool:
        detail = await server.event(event["id"])
        return any(a["home_id"] == home_id and a["status"] == "acked" for a in detail["awards"])

    await wait_for(lambda: acked(cheap.home_id), timeout=20, what="award acked despite faults")
    await wait_for(lambda: acked(middle.home_id), timeout=20, what="second award acked")
    # Not stored the first time: the home is told so (no ack), keeps them and sends them again.
    with pytest.raises(RequestRejected, match="internal_error"):
        await cheap.client.send_telemetry(
            [Sample(ts=utc_now(), power_kw=1.0, shed_kw=3.0)], event_id=event["id"]
        )
    with pytest.raises(RequestRejected, match="internal_error"):
        await cheap.client.opt_out(event["id"], reason=OptOutReason.USER)
    await wait_for(lambda: not cheap.client.queued_messages, timeout=10, what="both stored")
    await wait_for(lambda: bool(backup.of_type(Award)), timeout=20, what="re-negotiated award")
    await wait_for(lambda: acked(backup.home_id), timeout=20, what="backup award acked")

    async def completed() -> bool:
        return (await server.event(event["id"]))["status"] == "completed"

    await wait_for(completed, timeout=30, what="event completed")
    for home in (cheap, middle, backup):
        await wait_for(lambda home=home: bool(home.of_type(EventEnd)), what="event_end")
        await wait_for(lambda home=home: not home.client.queued_messages, what="outbox empty")

    # Every kind of negotiation write failed once somewhere along the way.
    assert faults.tables_failed() >= {*NEGOTIATION_WRITES, "homes", "telemetry_batches"}
    print(  # the figures docs/reliability.md quotes (pytest -s)
        f"\n{len(faults.failed)} write statements failed once each "
        f"({len(faults.tables_failed())} tables); the create was refused {refused} times"
    )
    # What the homes were acknowledged is exactly what is stored.
    awards = await server.store.awards_for(event["id"])
    statuses = {award.home_id: award.status for award in awards}
    assert statuses == {
        cheap.home_id: AwardStatus.OPTED_OUT,
        middle.home_id: AwardStatus.ACKED,
        backup.home_id: AwardStatus.ACKED,
    }
    assert all(award.acked_at is not None for award in awards)
    stored_bids = await server.store.bids_for(event["id"], 1)
    assert {bid.home_id for bid in stored_bids} == {cheap.home_id, middle.home_id, backup.home_id}
    assert await server.store.telemetry_count(cheap.home_id) == 1
    stored = await server.store.get_event(event["id"])
    assert stored is not None
    assert stored.status is EventStatus.COMPLETED
    assert (await server.event(event["id"]))["store_error"] is None


async def test_a_cancel_that_cannot_be_stored_changes_nothing_and_can_be_retried(
    server: RunningServer, make_home: HomeFactory, faults: WriteFaults
) -> None:
    home = await make_home(bids((3.0, 0.10, ["wh"])))
    event, _ = await create_event_retrying(
        server,
        target_kw=3.0,
        price_cap=0.4,
        bid_window_s=1.0,
        start=(utc_now() + timedelta(seconds=2)).isoformat(),
        end=(utc_now() + timedelta(seconds=30)).isoformat(),
    )

    async def committed() -> bool:
        detail = await server.event(event["id"])
        return detail["status"] == "committed" and detail["committed_kw"] == 3.0

    await wait_for(committed, timeout=20, what="award committed")
    faults.fail_next = 1

    status, answer = await server.request(
        "POST", f"/api/v1/events/{event['id']}/cancel", {"reason": "grid recovered"}
    )

    assert status == 503
    assert answer["error"] == "store_unavailable"
    detail = await server.event(event["id"])
    assert detail["status"] in ("committed", "active")  # nothing half-done
    stored = await server.store.get_event(event["id"])
    assert stored is not None
    assert not stored.status.is_terminal
    assert not home.of_type(Cancel)

    _, cancelled = await server.request(
        "POST", f"/api/v1/events/{event['id']}/cancel", {"reason": "grid recovered"}, expect=200
    )
    assert cancelled["status"] == "cancelled"
    await wait_for(lambda: bool(home.of_type(Cancel)), what="cancel reaches the home")
    stored = await server.store.get_event(event["id"])
    assert stored is not None
    assert stored.status is EventStatus.CANCELLED
