"""Jeisson's VEN on a VTN that offers webhooks: it subscribes, and acts on notifications at once.

The utility's VTN is a Jeisson aggregator's (it sends webhooks), driven by openadr3-client's
business-logic client. The VEN reads the VTN in full at start and then every 200 s here (20 s x
the safety factor): an event followed within a second, with no full read in between (the VTN's
``last_poll_at`` unchanged), was followed because of its notification.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openadr3_client.oadr310.models.event.event import EventUpdate, NewEvent
from openadr3_client.oadr310.models.program.program import NewProgram

from aggregator.openadr import vtn as vtn_module
from jeisson.common.protocol import utc_now
from tests.aggregator.common import FAST
from tests.aggregator.openadr.common import VEN_ON_BOTH_DATABASES, CheckedServer, business_logic
from tests.helpers import free_port, wait_for

PROGRAM = "residential-peak"
NOTIFIED_WITHIN_S = 1.5
"""Much less than the 20 s a poll would take."""


def shed_event(program_id: str, kw: float) -> NewEvent:
    start = utc_now() + timedelta(minutes=10)
    return NewEvent.model_validate(
        {
            "programID": program_id,
            "eventName": "feeder 7",
            "intervalPeriod": {"start": start, "duration": "PT15M"},
            "intervals": [{"id": 0, "payloads": [{"type": "LOAD_SHED", "values": [kw]}]}],
        }
    )


async def follow_with_webhooks(
    jeisson: CheckedServer, utility: CheckedServer, poll_interval_s: float = 20
) -> dict[str, Any]:
    ven_id, ven_secret = await utility.add_client("jeisson-aggregator", "ven")
    _, vtn = await jeisson.request(
        "POST",
        "/api/v1/openadr/vtns",
        {
            "name": "utility",
            "base_url": utility.vtn_url,
            "client_id": ven_id,
            "client_secret": ven_secret,
            "programs": [{"program": PROGRAM, "bid_window_s": 1}],
            "poll_interval_s": poll_interval_s,
            "public_url": jeisson.url,
        },
        expect=201,
    )
    return dict(vtn)


async def shown(jeisson: CheckedServer, vtn_id: str) -> dict[str, Any]:
    _, vtn = await jeisson.request("GET", f"/api/v1/openadr/vtns/{vtn_id}", expect=200)
    return dict(vtn)


@VEN_ON_BOTH_DATABASES
async def test_notifications_are_acted_on_at_once_and_the_subscription_goes_with_the_vtn(
    vtn_server: CheckedServer, jeisson: CheckedServer, http: aiohttp.ClientSession
) -> None:
    utility = vtn_server
    bl = await business_logic(utility)
    program = await asyncio.to_thread(bl.programs.create_program, NewProgram(program_name=PROGRAM))
    vtn = await follow_with_webhooks(jeisson, utility)
    vtn_id = vtn["vtn_id"]
    assert vtn["callback_url"] == f"{jeisson.url}/api/v1/openadr/vtns/{vtn_id}/notifications"

    async def subscribed() -> bool:
        state = await shown(jeisson, vtn_id)
        return state["subscription_id"] is not None and state["last_poll_at"] is not None

    await wait_for(subscribed, timeout=10, what="a webhook subscription on the utility's VTN")
    polled_at = (await shown(jeisson, vtn_id))["last_poll_at"]
    # openadr3-client cannot read 3.1.0 subscriptions (it expects GET/POST/... operations).
    reader = await utility.client_token("auditor", "bl")
    (subscription,) = await utility.read(reader, "subscriptions")
    assert subscription["id"] == (await shown(jeisson, vtn_id))["subscription_id"]
    assert subscription["objectOperations"][0]["callbackUrl"] == vtn["callback_url"]
    assert subscription["objectOperations"][0]["operations"] == ["CREATE", "UPDATE", "DELETE"]

    async def link(status: str, not_event: str | None = None) -> bool:
        events = (await shown(jeisson, vtn_id))["events"]
        return bool(
            events
            and events[0]["status"] == status
            and events[0]["jeisson_event_id"] not in (None, not_event)
        )

    event = await asyncio.to_thread(bl.events.create_event, shed_event(program.id, 6.0))
    await wait_for(lambda: link("active"), timeout=NOTIFIED_WITHIN_S, what="created: followed")
    first = (await shown(jeisson, vtn_id))["events"][0]["jeisson_event_id"]
    assert (await jeisson.event(first))["target_kw"] == 6.0

    changed = shed_event(program.id, 9.0).model_dump(exclude_unset=True)
    await asyncio.to_thread(
        bl.events.update_event_by_id, event.id, EventUpdate.model_validate(changed)
    )
    await wait_for(
        lambda: link("active", not_event=first),
        timeout=NOTIFIED_WITHIN_S,
        what="changed: re-negotiated",
    )
    second = (await shown(jeisson, vtn_id))["events"][0]["jeisson_event_id"]
    assert (await jeisson.event(second))["target_kw"] == 9.0
    assert (await jeisson.event(first))["status"] == "cancelled"

    await asyncio.to_thread(bl.events.delete_event_by_id, event.id)
    await wait_for(lambda: link("cancelled"), timeout=NOTIFIED_WITHIN_S, what="deleted: cancelled")
    assert (await jeisson.event(second))["status"] == "cancelled"
    assert (await shown(jeisson, vtn_id))["last_poll_at"] == polled_at  # no full read meanwhile

    forged = {"objectType": "EVENT", "operation": "DELETE", "object": {}}
    for headers in ({}, {"Authorization": "Bearer guessed"}):
        async with http.post(vtn["callback_url"], json=forged, headers=headers) as response:
            assert response.status == 401

    # The token the VTN holds opens the echo (a VTN checking the callback, as the reference VTN
    # does), and a body that is no notification is refused yet makes the VEN read the VTN now.
    auth = {"Authorization": f"Bearer {subscription['objectOperations'][0]['bearerToken']}"}
    echo = vtn["callback_url"] + "/echo?echo=test_echo"
    async with http.get(echo, headers=auth) as response:
        assert (response.status, await response.json()) == (200, {"echo": "test_echo"})
    async with http.get(echo) as response:
        assert response.status == 401
    async with http.post(vtn["callback_url"], json='{"object_type": "EVENT"}', headers=auth) as r:
        assert r.status == 400
    await wait_for(
        lambda: _read_since(jeisson, vtn_id, polled_at), timeout=5, what="a full read at once"
    )

    await jeisson.request("DELETE", f"/api/v1/openadr/vtns/{vtn_id}", expect=200)
    assert await utility.read(reader, "subscriptions") == []


async def _read_since(jeisson: CheckedServer, vtn_id: str, polled_at: str) -> bool:
    return bool((await shown(jeisson, vtn_id))["last_poll_at"] != polled_at)


async def test_a_vtn_that_offers_no_webhooks_is_polled(
    jeisson: CheckedServer,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_webhooks(_request: web.Request, _client: object) -> web.Response:
        return web.json_response({"WEBHOOK": False})

    monkeypatch.setattr(vtn_module, "notifiers", no_webhooks)  # a VTN set up without webhooks
    utility = CheckedServer(db_path=tmp_path / "utility.db", port=free_port(), settings=FAST)
    utility.session = http
    await utility.start()
    try:
        bl = await business_logic(utility)
        program = await asyncio.to_thread(
            bl.programs.create_program, NewProgram(program_name=PROGRAM)
        )
        vtn = await follow_with_webhooks(jeisson, utility, poll_interval_s=0.5)
        await asyncio.to_thread(bl.events.create_event, shed_event(program.id, 5.0))

        async def followed() -> bool:
            events = (await shown(jeisson, vtn["vtn_id"]))["events"]
            return bool(events and events[0]["status"] == "active")

        await wait_for(followed, timeout=5, what="the event followed by polling")
        assert (await shown(jeisson, vtn["vtn_id"]))["subscription_id"] is None
        reader = await utility.client_token("auditor", "bl")
        assert await utility.read(reader, "subscriptions") == []
    finally:
        await utility.stop()
