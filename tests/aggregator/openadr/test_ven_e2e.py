"""End to end: a utility event made with a third-party client is negotiated on simulated homes.

The utility's VTN is a Jeisson aggregator's VTN (``utility``; CI has no other VTN to run, see
docs/openadr.md) driven by ElaadNL's openadr3-client business-logic client. A second aggregator
(``jeisson``) with simulated homes follows it as a VEN. Every request Jeisson's VEN sends and
every response either VTN gives is checked against the official OpenADR 3.1.0 document.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import Any

from openadr3_client.oadr310.models.event.event import EventUpdate, NewEvent
from openadr3_client.oadr310.models.program.program import NewProgram

from aggregator.simulation.fleet import Fleet, FleetConfig
from aggregator.simulation.home import HomeTiming
from jeisson.common.protocol import utc_now
from tests.aggregator.openadr.common import VEN_ON_BOTH_DATABASES, CheckedServer, business_logic
from tests.helpers import wait_for

FAST_HOMES = FleetConfig(
    timing=HomeTiming(
        event_sample_s=0.2,
        event_report_s=0.4,
        idle_sample_s=1.0,
        idle_report_s=2.0,
        bid_delay_max_s=0.1,
    ),
    backoff_base_s=0.05,
)
PROGRAM = "residential-peak"


def utility_event(
    program_id: str, kw: float, start_in_s: float, interval_s: int, intervals: int = 2
) -> NewEvent:
    return NewEvent.model_validate(
        {
            "programID": program_id,
            "eventName": "feeder 12 peak",
            "intervalPeriod": {
                "start": utc_now() + timedelta(seconds=start_in_s),
                "duration": f"PT{interval_s}S",
            },
            "payloadDescriptors": [
                {
                    "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                    "payloadType": "PRICE",
                    "units": "KWH",
                    "currency": "EUR",
                }
            ],
            "intervals": [
                {
                    "id": index,
                    "payloads": [
                        {"type": "DISPATCH_SETPOINT_RELATIVE", "values": [kw]},
                        {"type": "PRICE", "values": [0.4]},
                    ],
                }
                for index in range(intervals)
            ],
        }
    )


async def follow(jeisson: CheckedServer, utility: CheckedServer, **program: Any) -> str:
    ven_id, ven_secret = await utility.add_client("jeisson-aggregator", "ven")
    _, vtn = await jeisson.request(
        "POST",
        "/api/v1/openadr/vtns",
        {
            "name": "utility",
            "base_url": utility.vtn_url,
            "client_id": ven_id,
            "client_secret": ven_secret,
            "programs": [
                {
                    "program": PROGRAM,
                    "bid_window_s": 1,
                    "restore_stagger_s": 0.5,
                    "report_delay_s": 0.5,
                    **program,
                }
            ],
            "poll_interval_s": 0.3,
        },
        expect=201,
    )
    assert "client_secret" not in vtn
    assert vtn["has_secret"]
    return str(vtn["vtn_id"])


async def links(jeisson: CheckedServer, vtn_id: str) -> dict[str, Any]:
    _, shown = await jeisson.request("GET", f"/api/v1/openadr/vtns/{vtn_id}", expect=200)
    return dict(shown)


@VEN_ON_BOTH_DATABASES
async def test_a_utility_event_is_negotiated_on_homes_and_reported_back(
    vtn_server: CheckedServer, jeisson: CheckedServer
) -> None:
    utility = vtn_server
    bl = await business_logic(utility)
    program = await asyncio.to_thread(bl.programs.create_program, NewProgram(program_name=PROGRAM))
    vtn_id = await follow(jeisson, utility)

    async with Fleet(jeisson.url, jeisson.operator_token, seed=4, config=FAST_HOMES) as fleet:
        homes = await fleet.start(6)
        target = round(sum(home.flexible_kw for home in homes) * 0.3, 1)
        event = await asyncio.to_thread(
            bl.events.create_event, utility_event(program.id, target, 2.5, 2)
        )

        async def negotiated() -> bool:
            shown = await links(jeisson, vtn_id)
            jeisson_id = shown["events"][0]["jeisson_event_id"] if shown["events"] else None
            if jeisson_id is None:
                return False
            detail = await jeisson.event(jeisson_id)
            return bool(detail["committed_kw"] > 0 and detail["target_kw"] == target)

        await wait_for(negotiated, timeout=15, what="the utility event negotiated on homes")

        async def two_reports() -> bool:
            found = await asyncio.to_thread(bl.reports.get_reports, None, None, None, None)
            return len(found) == 2

        await wait_for(two_reports, timeout=20, what="a report per interval")

    reports = await asyncio.to_thread(bl.reports.get_reports, None, None, None, None)
    shown = await links(jeisson, vtn_id)
    detail = await jeisson.event(shown["events"][0]["jeisson_event_id"])
    assert detail["price_cap"] == 0.4
    by_interval = {}
    for report in reports:
        assert report.event_id == event.id
        (interval,) = report.resources[0].intervals
        by_interval[interval.id] = {item.type: item.values[0] for item in interval.payloads}
    assert sorted(by_interval) == [0, 1]
    assert all(values["LOAD_SHED_DELTA_AVAILABLE"] > 0 for values in by_interval.values())
    assert any(values["DELTA_USAGE"] < 0 for values in by_interval.values())
    assert [item["interval"] for item in shown["reports"]] == [0, 1]


async def test_a_changed_event_is_renegotiated_and_a_withdrawn_one_cancelled(
    vtn_server: CheckedServer, jeisson: CheckedServer
) -> None:
    utility = vtn_server
    bl = await business_logic(utility)
    program = await asyncio.to_thread(bl.programs.create_program, NewProgram(program_name=PROGRAM))
    vtn_id = await follow(jeisson, utility)
    event = await asyncio.to_thread(
        bl.events.create_event, utility_event(program.id, 10.0, 600, 900)
    )

    async def link_status(status: str, count: int = 1) -> bool:
        events = (await links(jeisson, vtn_id))["events"]
        return (
            len(events) == 1
            and events[0]["status"] == status
            and bool(events[0]["jeisson_event_id"])
            and count > 0
        )

    await wait_for(lambda: link_status("active"), timeout=10, what="event followed")
    first = (await links(jeisson, vtn_id))["events"][0]["jeisson_event_id"]
    assert (await jeisson.event(first))["target_kw"] == 10.0

    changed = utility_event(program.id, 14.0, 600, 900).model_dump(exclude_unset=True)
    await asyncio.to_thread(
        bl.events.update_event_by_id, event.id, EventUpdate.model_validate(changed)
    )

    async def replaced() -> bool:
        events = (await links(jeisson, vtn_id))["events"]
        return bool(events and events[0]["jeisson_event_id"] not in (None, first))

    await wait_for(replaced, timeout=10, what="a new Jeisson event for the changed one")
    second = (await links(jeisson, vtn_id))["events"][0]["jeisson_event_id"]
    assert (await jeisson.event(first))["status"] == "cancelled"
    assert (await jeisson.event(second))["target_kw"] == 14.0

    await asyncio.to_thread(bl.events.delete_event_by_id, event.id)
    await wait_for(lambda: link_status("cancelled"), timeout=10, what="withdrawn event cancelled")
    assert (await jeisson.event(second))["status"] == "cancelled"


async def test_an_interval_that_ends_while_jeisson_is_down_is_reported_from_stored_telemetry(
    vtn_server: CheckedServer, jeisson: CheckedServer
) -> None:
    utility = vtn_server
    bl = await business_logic(utility)
    program = await asyncio.to_thread(bl.programs.create_program, NewProgram(program_name=PROGRAM))
    vtn_id = await follow(jeisson, utility)
    homes_config = dataclasses.replace(FAST_HOMES, backoff_max_s=0.3)
    async with Fleet(jeisson.url, jeisson.operator_token, seed=5, config=homes_config) as fleet:
        homes = await fleet.start(4)
        target = round(sum(home.flexible_kw for home in homes) * 0.3, 1)
        event = utility_event(program.id, target, start_in_s=2.5, interval_s=4, intervals=1)
        await asyncio.to_thread(bl.events.create_event, event)

        async def delivering() -> bool:
            events = (await links(jeisson, vtn_id))["events"]
            if not events or events[0]["jeisson_event_id"] is None:
                return False
            return bool((await jeisson.event(events[0]["jeisson_event_id"]))["delivered_kw"] > 0)

        await wait_for(delivering, timeout=15, what="homes delivering the utility's event")
        interval_end = event.interval_period.start + timedelta(seconds=4)
        await jeisson.stop()  # down before the interval ends: its report is owed
        await asyncio.sleep(max(0.0, (interval_end - utc_now()).total_seconds()) + 0.5)
        assert not await asyncio.to_thread(bl.reports.get_reports, None, None, None, None)
        restarted_at = utc_now()
        await jeisson.start()

        async def reported() -> bool:
            return bool(await asyncio.to_thread(bl.reports.get_reports, None, None, None, None))

        await wait_for(reported, timeout=15, what="the owed report after the restart")

    (report,) = await asyncio.to_thread(bl.reports.get_reports, None, None, None, None)
    (interval,) = report.resources[0].intervals
    values = {item.type: item.values[0] for item in interval.payloads}
    assert values["LOAD_SHED_DELTA_AVAILABLE"] > 0
    # Delivered comes from the telemetry stored before the stop (and any re-sent after it):
    # the in-memory samples of before would have reported 0.
    assert values["DELTA_USAGE"] < 0
    (sent,) = (await links(jeisson, vtn_id))["reports"]
    assert datetime.fromisoformat(sent["sent_at"]) > restarted_at
