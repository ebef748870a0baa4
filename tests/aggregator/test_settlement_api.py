"""Settlement of a stored event through the REST API (real server, real SQLite, real telemetry)."""

from __future__ import annotations

import csv
import io

import aiohttp
import pytest

from .common import RunningServer


async def test_a_statement_is_settled_once_then_served_as_stored(
    server: RunningServer, settled_event: dict[str, str]
) -> None:
    status, body = await server.request("GET", "/api/v1/events/evt_settle/settlement")
    assert status == 409
    assert body["error"] == "settlement_unavailable"
    assert "after the event ends" in body["message"]

    _, statement = await server.request("POST", "/api/v1/events/evt_settle/settlement", expect=201)
    assert statement["version"] == 1
    assert statement["reason"] == "settled by the operator"
    rows = {row["home_id"]: row for row in statement["homes"]}
    assert set(rows) == {settled_event["curtailing"], settled_event["steady"]}
    curtailing = rows[settled_event["curtailing"]]
    assert curtailing["baseline_kwh"] == pytest.approx(3.0)
    assert curtailing["measured_kwh"] == pytest.approx(0.5)
    assert curtailing["delivered_kwh"] == pytest.approx(2.5)
    assert curtailing["payment"] == pytest.approx(0.5)
    assert curtailing["correction"] == pytest.approx(0.5)
    assert curtailing["baseline_reason"].startswith("high-5-of-10 weekdays")
    assert rows[settled_event["steady"]]["payment"] == pytest.approx(0.0)
    assert statement["totals"]["delivered_kwh"] == pytest.approx(2.5)
    assert statement["payment"] == pytest.approx(0.5)
    assert statement["baseline_method"] == "residential"

    _, again = await server.request("GET", "/api/v1/events/evt_settle/settlement", expect=200)
    assert again == statement
    _, unchanged = await server.request("POST", "/api/v1/events/evt_settle/settlement", expect=200)
    assert unchanged["version"] == 1
    _, versions = await server.request(
        "GET", "/api/v1/events/evt_settle/settlement/versions", expect=200
    )
    assert [item["version"] for item in versions["versions"]] == [1]


async def test_statement_and_ledger_download_as_csv(
    server: RunningServer, http: aiohttp.ClientSession, settled_event: dict[str, str]
) -> None:
    await server.request("POST", "/api/v1/events/evt_settle/settlement", expect=201)
    headers = {"Authorization": f"Bearer {server.operator_token}"}
    url = server.url + "/api/v1/events/evt_settle/settlement?format=csv"
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/csv"
        assert "statement-evt_settle-v1.csv" in response.headers["Content-Disposition"]
        text = await response.text()
    header, *homes, totals = list(csv.reader(io.StringIO(text)))
    assert len(homes) == 2
    assert totals[2] == "TOTAL"
    assert float(totals[header.index("delivered_kwh")]) == pytest.approx(2.5)
    assert float(totals[header.index("payment")]) == pytest.approx(0.5)

    home = settled_event["curtailing"]
    _, ledger = await server.request("GET", f"/api/v1/homes/{home}/ledger", expect=200)
    assert [entry["amount"] for entry in ledger["entries"]] == [pytest.approx(0.5)]
    booked = ledger["entries"][0]["booked_at"]
    assert ledger["totals"] == [
        {"period": booked[:7], "currency": "EUR", "entries": 1, "amount": pytest.approx(0.5)}
    ]  # booked when settled (now), in the program's time zone (UTC here)
    async with http.get(
        f"{server.url}/api/v1/homes/{home}/ledger?format=csv", headers=headers
    ) as response:
        rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0][:3] == ["home_id", "booked_at", "period"]
    assert rows[-1][0] == "TOTAL"
    status, _ = await server.request("GET", "/api/v1/homes/home_nope/ledger")
    assert status == 404


async def test_a_preview_computes_another_baseline_without_storing_it(
    server: RunningServer, settled_event: dict[str, str]
) -> None:
    _, report = await server.request(
        "GET", "/api/v1/events/evt_settle/settlement/preview?baseline=pre_event_average",
        expect=200,
    )  # fmt: skip
    assert report["preview"] is True
    assert report["baseline_method"] == "pre_event_average"
    rows = {row["home_id"]: row for row in report["homes"]}
    assert rows[settled_event["curtailing"]]["delivered_kwh"] == pytest.approx(2.5)
    status, _ = await server.request("GET", "/api/v1/events/evt_settle/settlement")
    assert status == 409  # nothing was stored
    status, body = await server.request(
        "GET", "/api/v1/events/evt_settle/settlement/preview?baseline=guesswork"
    )
    assert status == 400
    assert "residential" in body["message"]


async def test_settlement_refuses_unknown_and_running_events(server: RunningServer) -> None:
    status, _ = await server.request("GET", "/api/v1/events/evt_nope/settlement")
    assert status == 404
    status, _ = await server.request("POST", "/api/v1/events/evt_nope/settlement")
    assert status == 404
    event = await server.create_event(target_kw=3.0)
    status, body = await server.request("POST", f"/api/v1/events/{event['id']}/settlement")
    assert status == 409
    assert body["error"] == "settlement_unavailable"


async def test_program_settings_are_stored_and_checked(
    server: RunningServer, settled_event: dict[str, str]
) -> None:
    _, program = await server.request("GET", "/api/v1/settlement/program", expect=200)
    assert program["timezone"] == "UTC"
    assert program["settle_after_s"] == 86_400
    body = {"timezone": "America/Santiago", "holiday_country": "CL", "estimated_pay_ratio": 0}
    _, changed = await server.request("PUT", "/api/v1/settlement/program", body, expect=200)
    assert changed["timezone"] == "America/Santiago"
    assert changed["estimated_pay_ratio"] == 0
    for bad in ({"timezone": "Mars/Olympus"}, {"holiday_country": "XX"}, {"timezone": 3}):
        status, error = await server.request("PUT", "/api/v1/settlement/program", bad)
        assert status == 400, bad
        assert error["error"] == "invalid_request"
    _, program = await server.request("GET", "/api/v1/settlement/program", expect=200)
    assert program["holiday_country"] == "CL"


async def test_reliability_is_shown_to_the_operator(
    server: RunningServer, settled_event: dict[str, str]
) -> None:
    _, before = await server.request("GET", "/api/v1/reliability", expect=200)
    scores = {row["home_id"]: row for row in before["homes"]}
    assert scores[settled_event["curtailing"]]["score"] == pytest.approx(1.0)  # the prior
    assert scores[settled_event["curtailing"]]["events"] == 0
    await server.request("POST", "/api/v1/events/evt_settle/settlement", expect=201)
    _, after = await server.request("GET", "/api/v1/reliability", expect=200)
    scores = {row["home_id"]: row for row in after["homes"]}
    # Committed 3 kW for 1 h, delivered 2.5 kWh: (4 + 2.5/3) / (4 + 1).
    assert scores[settled_event["curtailing"]]["score"] == pytest.approx((4 + 2.5 / 3) / 5)
    # Committed 2 kW, delivered nothing: (4 + 0) / 5.
    assert scores[settled_event["steady"]]["score"] == pytest.approx(4 / 5)
