"""Jeisson's VEN against the OpenADR Alliance's reference VTN (run by hand, never in CI).

CI cannot fetch the reference VTN (it is not on the package index). To run this test, start one
on 127.0.0.1 (docs/openadr.md, "Against the reference VTN", says how) and point
``JEISSON_REFERENCE_VTN`` at its base URL, e.g. ``http://127.0.0.1:18480/openadr3/3.1.0``. Its
pre-configured clients are used unless ``JEISSON_REFERENCE_BL`` / ``JEISSON_REFERENCE_VEN`` give
others as ``client_id:secret``.

The utility side is raw HTTP (openadr3-client's token request, HTTP Basic, is refused by the
reference VTN, which wants the 3.1.0 form fields). A Jeisson aggregator with simulated homes
follows the reference VTN with a public URL (so it subscribes to webhooks); the utility's event
becomes a negotiated Jeisson event and both interval reports come back to the reference VTN.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from aggregator.simulation.fleet import Fleet, FleetConfig
from aggregator.simulation.home import HomeTiming
from jeisson.common.protocol import utc_now
from tests.aggregator.openadr.common import CheckedServer
from tests.helpers import wait_for

REFERENCE = os.environ.get("JEISSON_REFERENCE_VTN", "")
BL = os.environ.get("JEISSON_REFERENCE_BL", "bl_client:1001")
VEN = os.environ.get("JEISSON_REFERENCE_VEN", "ven_client:999")
FAST_HOMES = FleetConfig(
    timing=HomeTiming(event_sample_s=0.2, event_report_s=0.4, bid_delay_max_s=0.1),
    backoff_base_s=0.05,
)

pytestmark = pytest.mark.skipif(
    not REFERENCE, reason="JEISSON_REFERENCE_VTN is not set (a reference VTN run by hand)"
)


class Utility:
    """The utility's business logic on the reference VTN, over raw HTTP."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.token = ""

    async def login(self) -> None:
        client_id, secret = BL.split(":", 1)
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        async with self.http.post(f"{REFERENCE}/auth/token", data=form) as response:
            assert response.status == 200, await response.text()
            self.token = (await response.json())["access_token"]

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(
            method, REFERENCE + path, json=body, headers=headers
        ) as response:
            assert response.status < 300, f"{method} {path}: {await response.text()}"
            return await response.json()


async def test_jeissons_ven_follows_the_reference_vtn_and_reports_back(
    jeisson: CheckedServer, http: aiohttp.ClientSession
) -> None:
    utility = Utility(http)
    await utility.login()
    program_name = f"jeisson-check-{uuid.uuid4().hex[:6]}"
    program = await utility.call("POST", "/programs", {"programName": program_name})
    client_id, secret = VEN.split(":", 1)
    _, vtn = await jeisson.request(
        "POST",
        "/api/v1/openadr/vtns",
        {
            "name": "reference",
            "base_url": REFERENCE,
            "client_id": client_id,
            "client_secret": secret,
            "ven_name": f"jeisson-{program_name}",
            "programs": [
                {
                    "program": program_name,
                    "bid_window_s": 1,
                    "restore_stagger_s": 0.5,
                    "report_delay_s": 0.5,
                }
            ],
            "poll_interval_s": 1,
            "public_url": jeisson.url,
        },
        expect=201,
    )

    async def shown() -> dict[str, Any]:
        _, body = await jeisson.request("GET", f"/api/v1/openadr/vtns/{vtn['vtn_id']}", expect=200)
        return dict(body)

    await wait_for(
        lambda: _polled(shown), timeout=15, what="a first full read of the reference VTN"
    )
    async with Fleet(jeisson.url, jeisson.operator_token, seed=4, config=FAST_HOMES) as fleet:
        homes = await fleet.start(6)
        target = round(sum(home.flexible_kw for home in homes) * 0.3, 1)
        start = utc_now() + timedelta(seconds=3)
        event = await utility.call(
            "POST",
            "/events",
            {
                "programID": program["id"],
                "eventName": "reference check",
                "intervalPeriod": {
                    "start": start.isoformat().replace("+00:00", "Z"),
                    "duration": "PT3S",
                },
                "intervals": [
                    {
                        "id": index,
                        "payloads": [
                            {"type": "DISPATCH_SETPOINT_RELATIVE", "values": [-target]},
                            {"type": "PRICE", "values": [0.3]},
                        ],
                    }
                    for index in range(2)
                ],
            },
        )

        async def negotiated() -> bool:
            events = (await shown())["events"]
            if not events or events[0]["jeisson_event_id"] is None:
                return False
            detail = await jeisson.event(events[0]["jeisson_event_id"])
            return bool(detail["committed_kw"] > 0 and detail["target_kw"] == target)

        await wait_for(negotiated, timeout=15, what="the reference VTN's event on the homes")

        async def two_reports() -> bool:
            reports = await utility.call("GET", f"/reports?eventID={event['id']}")
            return len(reports) == 2

        await wait_for(two_reports, timeout=20, what="a report per interval on the reference VTN")

    state = await shown()
    print("\nJeisson's view of the reference VTN:", state)
    reports = await utility.call("GET", f"/reports?eventID={event['id']}")
    print("Reports on the reference VTN:", reports)
    values = {
        report["resources"][0]["intervals"][0]["id"]: {
            item["type"]: item["values"][0]
            for item in report["resources"][0]["intervals"][0]["payloads"]
        }
        for report in reports
    }
    assert sorted(values) == [0, 1]
    assert all(item["LOAD_SHED_DELTA_AVAILABLE"] > 0 for item in values.values())
    assert any(item["DELTA_USAGE"] < 0 for item in values.values())


async def _polled(shown: Any) -> bool:
    return bool((await shown())["last_poll_at"])
