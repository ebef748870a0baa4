"""The REST API's answers to wrong input and to a database outage: clear 4xx/503, never a 500.

Types are strict (a number is a JSON number, a time an ISO 8601 string with an offset), free
text holds no control characters (a NUL used to reach PostgreSQL and fail there), and a
database that cannot be reached is a 503 with a JSON body and ``Retry-After``; the outage runs
on a PostgreSQL cluster of the test's own (tests/aggregator/own_postgres.py).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aggregator.store import EnrolmentRejected
from jeisson.client import enroll
from jeisson.common.protocol import utc_now
from tests.helpers import free_port

from .common import FAST, RunningServer, raw_home
from .own_postgres import OwnPostgres

DOCS = Path(__file__).resolve().parents[2] / "docs"


def event_body(**changes: Any) -> dict[str, Any]:
    """A valid market event request, with ``changes``."""
    start = utc_now() + timedelta(minutes=5)
    return {
        "target_kw": 5,
        "price_cap": 0.4,
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
        **changes,
    }


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"target_kw": "50"}, "target_kw: Input should be a valid number"),
        ({"target_kw": True}, "target_kw: Input should be a valid number"),
        ({"price_cap": "0.4"}, "price_cap: Input should be a valid number"),
        ({"bid_window_s": False}, "bid_window_s: Input should be a valid number"),
        ({"start": "1800000000"}, "start: Value error, must be an ISO 8601 date and time"),
        ({"start": 1800000000}, "start: Value error, must be an ISO 8601 date and time"),
        ({"end": "2027-01-01T10:00:00"}, "end: Input should have timezone info"),
        (
            {"start": "9999-12-31T23:00:00-05:00", "end": "9999-12-31T23:30:00-05:00"},
            "start: Value error, is out of range",
        ),
        (
            {"start": "2099-01-01T10:00:00Z", "end": "2099-01-01T11:00:00Z"},
            "starts at most 366 days ahead",
        ),
        ({"baseline": "x_of_y"}, "baseline x_of_y needs X and Y"),
        ({"name": "peak\u0000shave"}, "name: Value error, must not contain control characters"),
        ({"kind": "Market"}, "kind: Input should be 'market' or 'direct'"),
    ],
)
async def test_wrong_types_and_values_in_an_event_get_400_with_the_reason(
    server: RunningServer, changes: dict[str, Any], reason: str
) -> None:
    status, payload = await server.request("POST", "/api/v1/events", event_body(**changes))
    assert (status, payload["error"]) == (400, "invalid_request")
    assert reason in payload["message"]


async def test_nul_characters_are_refused_before_they_reach_the_database(
    tmp_path: Path, http: aiohttp.ClientSession, db_url: str
) -> None:
    """Home names, cancel reasons and a home's load names: 400 / invalid_message, not 500."""
    server = RunningServer(tmp_path / "a.db", free_port(), FAST, db_url=db_url, session=http)
    await server.start()
    try:
        status, payload = await server.request("POST", "/api/v1/homes", {"name": "Casa\u00001"})
        assert (status, payload["error"]) == (400, "invalid_request")
        event = await server.create_event()
        status, payload = await server.request(
            "POST", f"/api/v1/events/{event['id']}/cancel", {"reason": "grid\u0000ok"}
        )
        assert status == 400
        async with raw_home(server, http) as home:
            await home.handshake()
            load = {"load_id": "l1", "name": "Pump\u0000", "kind": "other", "rated_kw": 1.0}
            await home.send({"type": "inventory", "id": "inv-1", "loads": [load]})
            error = await home.receive_type("error")
            assert (error["code"], error["reply_to"]) == ("invalid_message", "inv-1")
            assert "loads.0.name" in error["message"]
        status, _ = await server.request("POST", "/api/v1/homes", {"name": "Casa 1"})
        assert status == 201
    finally:
        await server.stop()


async def test_enrolment_errors_are_the_documented_ones(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    documented = (DOCS / "protocol.md").read_text()
    row = next(line for line in documented.splitlines() if line.startswith("| 404 / 409 / 410"))
    assert {reason.value for reason in EnrolmentRejected.Reason} <= set(re.findall(r'"(\w+)"', row))
    _, code = await server.add_home("Casa")
    await enroll(http, server.url, code)
    for sent, status, error in (("NOPE-NOPE", 404, "invalid_code"), (code, 409, "code_used")):
        async with http.post(f"{server.url}/api/v1/enroll", json={"code": sent}) as response:
            assert response.status == status
            assert (await response.json())["error"] == error


@pytest.fixture
async def own_postgres() -> AsyncIterator[OwnPostgres]:
    """A PostgreSQL cluster of this test's own (stopped and removed afterwards)."""
    cluster = await OwnPostgres.create()
    try:
        await cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):  # stopped already
            await cluster.stop()
        cluster.remove()


async def test_a_database_outage_is_a_503_with_a_clear_body_and_the_api_comes_back(
    tmp_path: Path, http: aiohttp.ClientSession, own_postgres: OwnPostgres
) -> None:
    server = RunningServer(
        tmp_path / "unused.db", free_port(), FAST, db_url=own_postgres.url, session=http
    )
    await server.start()
    try:
        await server.request("GET", "/api/v1/homes", expect=200)
        await own_postgres.stop()
        for method, path, body in (
            ("GET", "/api/v1/homes", None),
            ("POST", "/api/v1/homes", {"name": "Casa"}),
            ("GET", "/api/v1/events", None),
            ("POST", "/api/v1/enroll", {"code": "ABCD-EFGH"}),
        ):
            async with http.request(
                method,
                server.url + path,
                json=body,
                headers={"Authorization": f"Bearer {server.operator_token}"},
            ) as response:
                assert response.status == 503, (path, await response.text())
                assert response.headers["Retry-After"] == "5"
                assert (await response.json())["error"] == "store_unavailable"
        async with http.get(server.url + "/healthz") as health:
            assert health.status == 503
            assert (await health.json())["status"] == "unhealthy"
        await own_postgres.start()
        for _ in range(50):
            status, _ = await server.request("GET", "/api/v1/homes")
            if status == 200:
                break
        assert status == 200
        await server.request("POST", "/api/v1/homes", {"name": "Casa"}, expect=201)
    finally:
        await server.stop()
