"""Statements reach homes over the real websocket: schema 2 homes get and store them, schema 1
homes keep working without them, and a sample's ``measured`` flag is stored and paid by.
"""

from __future__ import annotations

from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import update

from aggregator import tables
from aggregator.app_keys import SETTLER
from aggregator.records import AwardRecord, AwardStatus, EventRecord, EventStatus
from aggregator.settlement.reliability import Reliability
from jeisson.common.protocol import (
    SCHEMA_VERSION,
    EventKind,
    HomeHello,
    Inventory,
    Sample,
    Statement,
    Telemetry,
    dump_message,
    utc_now,
)
from tests.helpers import wait_for

from .common import (
    HomeFactory,
    RawHome,
    RunningServer,
    bids,
    enrolled_token,
    event_status,
    raw_home,
    water_heater_and_ev,
)

START = (utc_now() - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
"""An event that ended a couple of hours ago: its samples are within what a home may still send."""
END = START + timedelta(hours=1)
INTERVAL = timedelta(minutes=15)


async def enrolled_long_ago(server: RunningServer, home_id: str) -> None:
    """Date the home's enrolment before the samples it sends (they must not predate it)."""
    async with server.store.engine.begin() as conn:
        await conn.execute(
            update(tables.homes)
            .where(tables.homes.c.home_id == home_id)
            .values(enrolled_at=START - timedelta(days=1))
        )


async def stored_event(server: RunningServer, event_id: str, *home_ids: str) -> None:
    """A completed 18:00-19:00 event (pre-event-average baseline) with a 3 kW award per home."""
    await server.store.insert_event(
        EventRecord(
            event_id=event_id,
            name=event_id,
            kind=EventKind.MARKET,
            status=EventStatus.COMPLETED,
            target_kw=5.0,
            price_cap=0.4,
            start=START,
            end=END,
            bid_window_s=30,
            restore_stagger_s=60,
            currency="EUR",
            created_at=START - timedelta(hours=2),
            baseline_method="pre_event_average",
        )
    )
    await server.store.insert_awards(
        [
            AwardRecord(
                award_id=f"awd_{home_id}",
                event_id=event_id,
                round=1,
                home_id=home_id,
                kw=3.0,
                price=0.2,
                status=AwardStatus.ACKED,
                sent_at=START - timedelta(minutes=30),
                load_kw={"wh": 3.0},
                acked_at=START - timedelta(minutes=29),
            )
            for home_id in home_ids
        ]
    )


def day_samples(*, measured_in_event: bool | None) -> list[Sample]:
    """3 kW from 14:00, 1 kW during the event (measured or estimated), one sample a quarter."""
    samples = []
    ts = START - timedelta(hours=4) + timedelta(minutes=7)
    while ts < END + INTERVAL:
        inside = START <= ts < END
        samples.append(
            Sample(
                ts=ts,
                power_kw=1.0 if inside else 3.0,
                measured=measured_in_event if inside else None,
            )
        )
        ts += INTERVAL
    return samples


async def test_a_home_receives_its_statement_and_acknowledges_it_once_stored(
    server: RunningServer, make_home: HomeFactory
) -> None:
    home = await make_home()
    await enrolled_long_ago(server, home.home_id)
    await server.stop()  # the home reconnects to a server that reads its enrolment again
    await server.start()
    await wait_for(lambda: home.client.connected, what="reconnected")
    await stored_event(server, "evt_paid", home.home_id)
    await home.client.send_telemetry(day_samples(measured_in_event=False))

    [statement] = await server.runner.app[SETTLER].settle("evt_paid")  # type: ignore[union-attr]
    await wait_for(lambda: bool(home.of_type(Statement)), what="the statement")

    [received] = home.of_type(Statement)
    assert received.id == "statement-evt_paid-v1"
    assert (received.event_id, received.version) == ("evt_paid", 1)
    assert received.delivered_kwh == pytest.approx(2.0)  # 3 - 1 kW for an hour
    assert received.data_quality == "estimated"  # the home said its figures were estimates
    assert received.paid_kwh == pytest.approx(1.0)  # estimates paid at half
    assert received.payment == pytest.approx(0.2)
    assert received.baseline == "pre_event_average"
    assert received.reliability == pytest.approx(statement.lines[0].detail["reliability"])
    repository = server.runner.app[SETTLER].repository  # type: ignore[union-attr]
    assert len(await repository.unacknowledged(home.home_id, 10)) == 1

    await home.client.ack_statement(received)

    assert await repository.unacknowledged(home.home_id, 10) == []


async def test_unacknowledged_statements_are_sent_again_on_each_connection(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    home_id, token = await enrolled_token(server, http)
    await enrolled_long_ago(server, home_id)
    async with raw_home(server, http, token) as first:
        await first.handshake()
        await stored_event(server, "evt_again", home_id)
        await first.send(dump_message(Telemetry(samples=day_samples(measured_in_event=True))))
        assert (await first.receive_type("ack"))["type"] == "ack"
        await server.request("POST", "/api/v1/events/evt_again/settlement", expect=201)
        statement = await first.receive_type("statement")
        assert statement["id"] == "statement-evt_again-v1"
        assert statement["data_quality"] == "measured"

    async with raw_home(server, http, token) as second:
        await second.handshake()
        again = await second.receive_type("statement")
        assert again["id"] == statement["id"]  # not acknowledged: sent again, same id
        await second.send(
            {
                "type": "statement_ack",
                "id": "sa-1",
                "reply_to": again["id"],
                "event_id": "evt_again",
                "version": 1,
            }
        )
        assert (await second.receive_type("ack"))["reply_to"] == "sa-1"
        await second.send(
            {
                "type": "statement_ack",
                "id": "sa-2",
                "reply_to": "statement-evt_nope-v1",
                "event_id": "evt_nope",
                "version": 1,
            }
        )
        refused = await second.receive_type("error")
        assert (refused["reply_to"], refused["code"]) == ("sa-2", "unknown_event")

    async with raw_home(server, http, token) as third:
        await third.handshake()
        await _no_statement_before_an_ack(third)


async def test_a_schema_1_home_keeps_working_and_gets_no_statement(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    home_id, token = await enrolled_token(server, http)
    await enrolled_long_ago(server, home_id)
    async with raw_home(server, http, token) as old:
        hello = await old.receive()
        assert hello["schema_version"] == SCHEMA_VERSION
        await old.send(dump_message(HomeHello(schema_version=1, software_version="old")))
        assert (await old.receive())["type"] == "ack"
        await old.send(dump_message(Inventory(loads=water_heater_and_ev())))
        assert (await old.receive())["type"] == "ack"
        await stored_event(server, "evt_old", home_id)
        # A schema 1 batch: no "measured" in its samples.
        await old.send(dump_message(Telemetry(samples=day_samples(measured_in_event=None))))
        assert (await old.receive_type("ack"))["type"] == "ack"

        _, statement = await server.request("POST", "/api/v1/events/evt_old/settlement", expect=201)
        assert statement["homes"][0]["data_quality"] == "measured"  # not said: as before
        assert statement["homes"][0]["paid_kwh"] == pytest.approx(2.0)
        await _no_statement_before_an_ack(old)


async def _no_statement_before_an_ack(home: RawHome) -> None:
    """Send inventory again and check the next frame is its ack (no statement came first)."""
    inventory = Inventory(loads=water_heater_and_ev())
    await home.send(dump_message(inventory))
    frame = await home.receive()
    assert (frame["type"], frame.get("reply_to")) == ("ack", inventory.id)


async def test_clearing_counts_bid_kw_times_each_homes_stored_reliability(
    server: RunningServer, make_home: HomeFactory
) -> None:
    # Four homes bid 3 kW at the same price; two of them delivered half of what they committed
    # in past events (stored score 0.5). A 4 kW target: the reliable homes go first (6 expected
    # kW, enough). An 8 kW target: 3 + 3 + 1.5 + 1.5 = 9 expected kW needs all four.
    homes = [await make_home(bids((3.0, 0.20, ["wh"]))) for _ in range(4)]
    shaky = {homes[0].home_id, homes[1].home_id}
    repository = server.runner.app[SETTLER].repository  # type: ignore[union-attr]
    await repository.save_statements(
        [], [Reliability(home_id, 0.5, 4, 4.0, 8.0) for home_id in sorted(shaky)]
    )
    await server.stop()  # the aggregator reads the scores when it starts
    await server.start()
    for home in homes:
        await wait_for(lambda home=home: home.client.connected, what="reconnected")

    small = await server.create_event(target_kw=4.0)
    await event_status(server, small["id"], "committed")
    awarded = {award["home_id"] for award in (await server.event(small["id"]))["awards"]}
    assert len(awarded) == 2
    assert not awarded & shaky

    large = await server.create_event(target_kw=8.0)
    await event_status(server, large["id"], "committed")
    detail = await server.event(large["id"])
    assert {award["home_id"] for award in detail["awards"]} == {home.home_id for home in homes}
    assert detail["rounds"][0]["accepted_kw"] == pytest.approx(12.0)  # 9 expected kW
