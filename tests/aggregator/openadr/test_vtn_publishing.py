"""Jeisson's own events published to third-party VENs, and their reports counted as delivery.

Two VENs — ElaadNL's openadr3-client VEN client, as a heat pump's or a battery's controller
would run it — were given capacities of 2 and 3 kW; a third has none. A market event for 8 kW on
one scripted home that bids 3 kW leaves 5 kW short: the VENs are dispatched 2 and 3 kW (their
OpenADR events, targeted at each, in program ``jeisson-dr``), one reports shedding 2 kW, and the
operator's event shows 8 kW committed and those 2 kW delivered. Each VEN sees, hears of and
reports on its own event only; business logic cannot change Jeisson's events; cancelling the
Jeisson event withdraws them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openadr3_client.oadr310.models.report.report import NewReport
from openadr3_client.oadr310.models.ven.ven import NewVenVenRequest
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion

from aggregator.openadr.dispatch import PROGRAM_NAME
from tests.aggregator.common import HomeFactory, bids
from tests.aggregator.openadr.common import VTN_ON_BOTH_DATABASES, CheckedServer
from tests.helpers import free_port, wait_for

CAPACITIES = {"heat-pump-1": 2.0, "battery-2": 3.0}


class Callbacks:
    """A real HTTP endpoint standing in for the VENs' webhook receivers."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def _take(self, request: web.Request) -> web.Response:
        self.received.setdefault(request.match_info["ven"], []).append(await request.json())
        return web.json_response({})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{ven}", self._take)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def url(self, ven: str) -> str:
        return f"http://127.0.0.1:{self.port}/{ven}"

    def events(self, ven: str) -> list[tuple[str, str]]:
        """Return (operation, eventName) of the event notifications a VEN received."""
        return [
            (item["operation"], item["object"]["eventName"])
            for item in self.received.get(ven, [])
            if item["objectType"] == "EVENT"
        ]


@pytest.fixture
async def callbacks() -> AsyncIterator[Callbacks]:
    receiver = Callbacks()
    await receiver.start()
    yield receiver
    assert receiver.runner is not None
    await receiver.runner.cleanup()


@dataclass
class ThirdPartyVen:
    """A VEN: openadr3-client's VEN client, and a raw bearer token of the same client."""

    name: str
    client: Any
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def events(self) -> list[Any]:
        return list(await asyncio.to_thread(self.client.events.get_events, None, None, None))


async def third_party_ven(
    server: CheckedServer, http: aiohttp.ClientSession, name: str, capacity: float | None
) -> ThirdPartyVen:
    """Register a VEN through openadr3-client, on a client the operator made for it."""
    body: dict[str, Any] = {"name": name, "role": "ven"}
    if capacity is not None:
        body["capacity_kw"] = capacity
    _, made = await server.request("POST", "/api/v1/openadr/clients", body, expect=201)
    client = await asyncio.to_thread(
        VirtualEndNodeHttpClientFactory.create_http_ven_client,
        vtn_base_url=server.vtn_url,
        client_id=made["client_id"],
        client_secret=made["client_secret"],
        allow_insecure_http=True,
        version=OADRVersion.OADR_310,
    )
    await asyncio.to_thread(client.vens.create_ven, NewVenVenRequest(ven_name=name))
    form = {
        "grant_type": "client_credentials",
        "client_id": made["client_id"],
        "client_secret": made["client_secret"],
    }
    async with http.post(f"{server.vtn_url}/auth/token", data=form) as response:
        token = (await response.json())["access_token"]
    return ThirdPartyVen(name, client, token)


async def subscribe(
    server: CheckedServer, http: aiohttp.ClientSession, ven: ThirdPartyVen, callbacks: Callbacks
) -> None:
    """Subscribe a VEN to event changes with a webhook (raw HTTP: openadr3-client's 3.1
    subscriptions use the wrong operation names)."""
    subscription = {
        "clientName": ven.name,
        "objectOperations": [
            {
                "objects": ["EVENT"],
                "operations": ["CREATE", "UPDATE", "DELETE"],
                "callbackUrl": callbacks.url(ven.name),
            }
        ],
    }
    url = f"{server.vtn_url}/subscriptions"
    async with http.post(url, json=subscription, headers=ven.auth) as response:
        assert response.status == 201


def payload(event: Any, kind: str) -> float:
    (interval,) = event.intervals
    return float(next(item.values[0] for item in interval.payloads if item.type == kind))


def delta_usage_report(event_id: str, name: str, kw: float) -> NewReport:
    return NewReport.model_validate(
        {
            "eventID": event_id,
            "clientName": name,
            "resources": [
                {
                    "resourceName": "AGGREGATED_REPORT",
                    "intervals": [
                        {"id": 0, "payloads": [{"type": "DELTA_USAGE", "values": [-kw]}]}
                    ],
                }
            ],
        }
    )


@VTN_ON_BOTH_DATABASES
async def test_a_market_shortfall_is_dispatched_to_vens_and_their_reports_count(
    vtn_server: CheckedServer,
    make_home: HomeFactory,
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
) -> None:
    server = vtn_server
    vens = {name: await third_party_ven(server, http, name, kw) for name, kw in CAPACITIES.items()}
    bystander = await third_party_ven(server, http, "thermostat-3", None)
    for ven in vens.values():
        await subscribe(server, http, ven, callbacks)
    await make_home(bids((3.0, 0.1, ["wh"])))

    event = await server.create_event(target_kw=8.0, price_cap=0.4, name="feeder 3 peak")
    event_name = f"feeder 3 peak ({event['id']})"

    async def dispatched() -> bool:
        return [len(await ven.events()) for ven in vens.values()] == [1, 1]

    await wait_for(dispatched, timeout=10, what="an OpenADR event for each VEN")
    published = {}
    for name, ven in vens.items():
        (published[name],) = await ven.events()
        assert published[name].targets == (name,)
        assert published[name].event_name == event_name
        assert payload(published[name], "DISPATCH_SETPOINT_RELATIVE") == -CAPACITIES[name]
        assert payload(published[name], "PRICE") == 0.4
        program = await asyncio.to_thread(
            ven.client.programs.get_program_by_id, published[name].program_id
        )
        assert program.program_name == PROGRAM_NAME
    assert await bystander.events() == []
    await wait_for(lambda: all(callbacks.events(name) for name in vens), timeout=5, what="webhooks")
    assert {name: callbacks.events(name) for name in vens} == {
        name: [("CREATE", event_name)] for name in vens
    }

    async def counted(field: str, kw: float) -> bool:
        return bool((await server.event(event["id"]))[field] == kw)

    # The operator's figures of a running event count the VENs as of the publisher's last check
    # (each second), so that they need no query while the database is down.
    await wait_for(lambda: counted("committed_kw", 8.0), timeout=3, what="VENs committed")
    detail = await server.event(event["id"])
    assert detail["shortfall_kw"] == 0.0
    assert {item["ven_name"]: item["committed_kw"] for item in detail["vens"]} == CAPACITIES

    heat_pump, battery = vens["heat-pump-1"], vens["battery-2"]
    their_event = f"{server.vtn_url}/events/{published['battery-2'].id}"
    async with http.get(their_event, headers=heat_pump.auth) as response:
        assert response.status == 404
    foreign = delta_usage_report(published["battery-2"].id, heat_pump.name, 9.0)
    body = foreign.model_dump(mode="json", by_alias=True, exclude_none=True)
    async with http.post(f"{server.vtn_url}/reports", json=body, headers=heat_pump.auth) as r:
        assert r.status == 400
    server.checker.violations.clear()  # that request broke the spec on purpose

    await wait_for(
        lambda: _status_is(server, event["id"], "active"), timeout=10, what="the event under way"
    )
    report = delta_usage_report(published["heat-pump-1"].id, heat_pump.name, 2.0)
    await asyncio.to_thread(heat_pump.client.reports.create_report, report)
    # The scripted home sends no telemetry: all that is delivered is the heat pump's.
    await wait_for(lambda: counted("delivered_kw", 2.0), timeout=3, what="VEN delivery")
    detail = await server.event(event["id"])
    assert {item["ven_name"]: item["delivered_kw"] for item in detail["vens"]} == {
        "heat-pump-1": 2.0,
        "battery-2": 0.0,
    }

    bl_token = await server.client_token("utility", "bl")
    url = f"{server.vtn_url}/events/{published['battery-2'].id}"
    async with http.delete(url, headers={"Authorization": f"Bearer {bl_token}"}) as response:
        assert response.status == 403

    await server.request("POST", f"/api/v1/events/{event['id']}/cancel", {}, expect=200)

    async def withdrawn() -> bool:
        return [len(await ven.events()) for ven in vens.values()] == [0, 0]

    await wait_for(withdrawn, timeout=10, what="the VENs' events withdrawn")
    await wait_for(
        lambda: ("DELETE", event_name) in callbacks.events(battery.name), timeout=5, what="DELETE"
    )


async def _status_is(server: CheckedServer, event_id: str, status: str) -> bool:
    return bool((await server.event(event_id))["status"] == status)
