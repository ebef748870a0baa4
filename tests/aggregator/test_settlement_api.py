"""Settlement of a stored event through the REST API (real server, real SQLite, real telemetry)."""

from __future__ import annotations

import csv
import io

import aiohttp
import pytest

from .common import RunningServer


async def test_settlement_pays_delivered_energy_at_the_award_price(
    server: RunningServer, settled_event: dict[str, str]
) -> None:
    _, report = await server.request("GET", "/api/v1/events/evt_settle/settlement", expect=200)
    rows = {row["home_id"]: row for row in report["homes"]}

    assert set(rows) == {settled_event["curtailing"], settled_event["steady"]}
    curtailing = rows[settled_event["curtailing"]]
    assert curtailing["baseline_kwh"] == pytest.approx(3.0)
    assert curtailing["measured_kwh"] == pytest.approx(0.5)
    assert curtailing["delivered_kwh"] == pytest.approx(2.5)
    assert curtailing["payment"] == pytest.approx(0.5)
    assert curtailing["baseline_reason"].startswith("high-5-of-10 weekdays")
    steady = rows[settled_event["steady"]]
    assert steady["delivered_kwh"] == pytest.approx(0.0)
    assert steady["payment"] == pytest.approx(0.0)
    assert report["totals"]["delivered_kwh"] == pytest.approx(2.5)
    assert report["totals"]["payment"] == pytest.approx(0.5)
    assert report["baseline_method"] == "residential"


async def test_settlement_downloads_as_csv(
    server: RunningServer, http: aiohttp.ClientSession, settled_event: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {server.operator_token}"}
    url = server.url + "/api/v1/events/evt_settle/settlement?format=csv"
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        text = await response.text()
    table = list(csv.reader(io.StringIO(text)))
    header, *homes, totals = table
    assert "delivered_kwh" in header
    assert len(homes) == 2
    column = header.index("delivered_kwh")
    assert float(totals[column]) == pytest.approx(2.5)


async def test_baseline_method_can_be_chosen_per_request(
    server: RunningServer, settled_event: dict[str, str]
) -> None:
    _, report = await server.request(
        "GET", "/api/v1/events/evt_settle/settlement?baseline=pre_event_average", expect=200
    )
    assert report["baseline_method"] == "pre_event_average"
    rows = {row["home_id"]: row for row in report["homes"]}
    assert rows[settled_event["curtailing"]]["delivered_kwh"] == pytest.approx(2.5)
    status, body = await server.request(
        "GET", "/api/v1/events/evt_settle/settlement?baseline=guesswork"
    )
    assert status == 400
    assert "residential" in body["message"]


async def test_settlement_refuses_unknown_and_running_events(server: RunningServer) -> None:
    status, _ = await server.request("GET", "/api/v1/events/evt_nope/settlement")
    assert status == 404
    event = await server.create_event(target_kw=3.0)
    status, body = await server.request("GET", f"/api/v1/events/{event['id']}/settlement")
    assert status == 409
    assert body["error"] == "settlement_unavailable"
