"""The operator REST API and enrolment against a real aggregator."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
import pytest

from jeisson.client import HomeClient, enroll
from jeisson.common.errors import AuthenticationFailed, InvalidEnrollmentCode
from jeisson.common.protocol import Inventory, utc_now

from .common import RunningServer

OPERATOR_ROUTES = [
    ("GET", "/api/v1/homes"),
    ("POST", "/api/v1/homes"),
    ("POST", "/api/v1/homes/home_x/code"),
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/events"),
    ("GET", "/api/v1/events/evt_x"),
    ("POST", "/api/v1/events/evt_x/cancel"),
    ("GET", "/api/v1/events/evt_x/settlement"),
    ("POST", "/api/v1/events/evt_x/settlement"),
    ("GET", "/api/v1/events/evt_x/settlement/versions"),
    ("GET", "/api/v1/events/evt_x/settlement/preview"),
    ("GET", "/api/v1/homes/home_x/ledger"),
    ("GET", "/api/v1/reliability"),
    ("GET", "/api/v1/settlement/program"),
    ("PUT", "/api/v1/settlement/program"),
    ("GET", "/api/v1/stream"),
]


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES)
async def test_operator_routes_need_a_valid_operator_token(
    server: RunningServer, http: aiohttp.ClientSession, method: str, path: str
) -> None:
    async with http.request(method, server.url + path) as response:
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"
    status, _ = await server.request(method, path, token="not-a-token")
    assert status == 401
    # A home token is not an operator token either.
    _, code = await server.add_home()
    home_token = (await enroll(http, server.url, code)).token
    status, _ = await server.request(method, path, token=home_token)
    assert status == 401


async def test_enrolment_code_works_once(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    home_id, code = await server.add_home("Casa Ñuñoa")
    enrolled = await enroll(http, server.url, code.lower().replace("-", " "))
    assert enrolled.home_id == home_id
    assert enrolled.aggregator_id.startswith("agg_")
    assert len(enrolled.token) >= 40
    assert enrolled.name == "Casa Ñuñoa"  # the operator's name, for the home to show
    client = HomeClient(
        server.url,
        enrolled.token,
        session=http,
        software_version="test",
        inventory_provider=lambda: Inventory(loads=[]),
    )
    try:
        hello = await client.connect()
    finally:
        await client.close()
    assert hello.home_name == "Casa Ñuñoa"

    async with http.post(server.url + "/api/v1/enroll", json={"code": code}) as response:
        assert response.status == 409
        assert (await response.json())["error"] == "code_used"
    with pytest.raises(InvalidEnrollmentCode):
        await enroll(http, server.url, code)
    async with http.post(server.url + "/api/v1/enroll", json={"code": "ZZZZ-ZZZZ-ZZZZ"}) as r:
        assert r.status == 404
    async with http.post(server.url + "/api/v1/enroll", json={"nope": 1}) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"


async def test_tokens_are_stored_only_as_hashes(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    _, code = await server.add_home()
    token = (await enroll(http, server.url, code)).token
    raw = server.db_path.read_bytes()
    for secret in (token, code, server.operator_token):
        assert secret.encode() not in raw


async def test_new_code_reenrols_and_revokes_the_old_token(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    from jeisson.client import HomeClient
    from jeisson.common.protocol import Inventory

    home_id, code = await server.add_home()
    old = await enroll(http, server.url, code)
    _, body = await server.request("POST", f"/api/v1/homes/{home_id}/code", expect=201)
    new = await enroll(http, server.url, body["code"])
    assert new.home_id == home_id
    assert new.token != old.token

    client = HomeClient(
        server.url,
        old.token,
        session=http,
        software_version="t",
        inventory_provider=lambda: Inventory(loads=[]),
    )
    with pytest.raises(AuthenticationFailed):
        await client.connect()
    await client.close()
    status, _ = await server.request("POST", "/api/v1/homes/home_unknown/code")
    assert status == 404


async def test_homes_are_listed_without_secrets(server: RunningServer) -> None:
    home_id, _ = await server.add_home("Flat 3")
    _, body = await server.request("GET", "/api/v1/homes", expect=200)
    (home,) = body["homes"]
    assert home["home_id"] == home_id
    assert home["name"] == "Flat 3"
    assert home["connected"] is False
    assert home["enrolled"] is False
    assert not {"token", "token_hash", "code"} & set(home)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"end_offset": -1}, "end must be after start"),
        ({"start_offset": 0.2}, "bid window"),
        ({"target_kw": 0}, "target_kw > 0"),
        ({"target_kw": -5}, "greater than or equal to 0"),
        ({"price_cap": "cheap"}, "price_cap"),
        ({"end_offset": 90_000}, "24 hours"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_invalid_event_requests_get_400_with_the_reason(
    server: RunningServer, changes: dict[str, object], reason: str
) -> None:
    now = utc_now()
    start = now + timedelta(seconds=float(changes.pop("start_offset", 60)))  # type: ignore[arg-type]
    end = start + timedelta(seconds=float(changes.pop("end_offset", 600)))  # type: ignore[arg-type]
    body = {
        "target_kw": 5,
        "price_cap": 0.4,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "bid_window_s": 30,
        **changes,
    }
    status, payload = await server.request("POST", "/api/v1/events", body)
    assert status == 400
    assert payload["error"] == "invalid_request"
    assert reason in payload["message"]


async def test_events_are_listed_newest_first(server: RunningServer) -> None:
    first = await server.create_event(name="first")
    second = await server.create_event(name="second")
    _, body = await server.request("GET", "/api/v1/events?limit=10", expect=200)
    assert [event["id"] for event in body["events"]] == [second["id"], first["id"]]
    status, _ = await server.request("GET", "/api/v1/events?limit=abc")
    assert status == 400
    status, body = await server.request("GET", "/api/v1/events/evt_missing")
    assert status == 404


async def test_openapi_describes_every_route_and_health_answers(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(server.url + "/api/v1/openapi.json") as response:
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    for method, path in OPERATOR_ROUTES:
        template = path.replace("home_x", "{home_id}").replace("evt_x", "{event_id}")
        assert method.lower() in document["paths"][template]
        assert document["paths"][template][method.lower()]["security"]
    assert "EventBody" in document["components"]["schemas"]
    assert "/api/v1/enroll" in document["paths"]
    async with http.get(server.url + "/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"
