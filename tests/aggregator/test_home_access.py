"""What the operator can take away: codes, home tokens, homes, operator tokens.

On both databases for the store; against a real server on 127.0.0.1 for the sessions: a
revoked, suspended or removed home is cut off at once (close 4005) and cannot come back with
its token; a new code voids the older ones; re-enrolment closes whoever held the old token.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from aggregator.records import HomeRecord, HomeStatus
from aggregator.store import EnrolmentRejected, Store
from jeisson.client import enroll
from jeisson.common.const import CLOSE_REVOKED
from jeisson.common.errors import InvalidEnrollmentCode
from jeisson.common.protocol import utc_now

from .common import RunningServer, enrolled_token, raw_home


async def cli(*args: str, token: str | None = None, url: str | None = None) -> tuple[int, str, str]:
    """Run ``jeisson-aggregator`` in a subprocess; return exit code, stdout and stderr."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("JEISSON_")}
    if token is not None:
        env["JEISSON_OPERATOR_TOKEN"] = token
    if url is not None:
        env["JEISSON_URL"] = url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# --- the store, on SQLite and PostgreSQL -------------------------------------------------------


async def test_a_new_code_voids_the_older_ones(store: Store) -> None:
    home, first = await store.add_home("home")
    second = await store.new_enrolment_code(home.home_id)
    assert second is not None
    with pytest.raises(EnrolmentRejected) as refused:
        await store.enroll(first)
    assert refused.value.reason is EnrolmentRejected.Reason.EXPIRED
    enrolled = await store.enroll(second)
    assert await store.home_for_token(enrolled.token) is not None


async def test_revoking_suspending_and_removing_a_home(store: Store) -> None:
    home, code = await store.add_home("home")
    token = (await store.enroll(code)).token
    spare = await store.new_enrolment_code(home.home_id)
    assert spare is not None

    suspended = await store.suspend_home(home.home_id, suspended=True)
    assert suspended is not None
    assert suspended.status is HomeStatus.SUSPENDED
    resumed = await store.suspend_home(home.home_id, suspended=False)
    assert resumed is not None
    assert resumed.status is HomeStatus.ACTIVE

    revoked = await store.revoke_home_token(home.home_id)
    assert revoked is not None
    assert await store.home_for_token(token) is None
    with pytest.raises(EnrolmentRejected):
        await store.enroll(spare)  # outstanding codes went with the token

    again = await store.new_enrolment_code(home.home_id)
    assert again is not None
    token = (await store.enroll(again)).token
    removed = await store.remove_home(home.home_id)
    assert removed is not None
    assert removed.status is HomeStatus.REMOVED
    assert await store.home_for_token(token) is None
    assert await store.new_enrolment_code(home.home_id) is None
    assert await store.suspend_home(home.home_id, suspended=True) == removed  # stays removed
    assert await store.remove_home("home_nope") is None


async def test_operator_tokens_are_listed_expire_and_are_revoked(store: Store) -> None:
    record, token = await store.issue_operator_token("ops", utc_now() + timedelta(days=1))
    _, stale = await store.issue_operator_token("old", utc_now() - timedelta(seconds=1))
    assert await store.operator_token_is_valid(token)
    assert not await store.operator_token_is_valid(stale)

    listed = await store.operator_tokens()
    assert [item.name for item in listed] == ["ops", "old"]
    assert all(token not in repr(item) for item in listed)

    revoked = await store.revoke_operator_token(record.token_id)
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert not await store.operator_token_is_valid(token)
    assert await store.revoke_operator_token("op_nope") is None


# --- against the server ------------------------------------------------------------------------


async def closed_with(home: object) -> int | None:
    """Read until the server closes the websocket; return its close code."""
    ws = home.ws  # type: ignore[attr-defined]
    while True:
        message = await ws.receive(timeout=5)
        if message.type is aiohttp.WSMsgType.CLOSE:
            return int(message.data)
        if message.type is aiohttp.WSMsgType.CLOSED:
            return ws.close_code  # type: ignore[no-any-return]


async def connect_status(server: RunningServer, http: aiohttp.ClientSession, token: str) -> int:
    """Return the HTTP status a websocket upgrade with ``token`` gets (101 when accepted)."""
    try:
        async with http.ws_connect(
            server.url + "/api/v1/ws", headers={"Authorization": f"Bearer {token}"}
        ):
            return 101
    except aiohttp.WSServerHandshakeError as err:
        return err.status


async def test_suspending_closes_the_session_and_refuses_the_home_until_resumed(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    home_id, token = await enrolled_token(server, http)
    async with raw_home(server, http, token) as home:
        await home.handshake()
        _, view = await server.request("POST", f"/api/v1/homes/{home_id}/suspend", expect=200)
        assert view["status"] == "suspended"
        assert await closed_with(home) == CLOSE_REVOKED
    assert await connect_status(server, http, token) == 403
    _, page = await server.request("GET", "/api/v1/homes", expect=200)
    assert page["homes"][0]["suspended"] is True

    _, view = await server.request("POST", f"/api/v1/homes/{home_id}/resume", expect=200)
    assert view["status"] == "active"
    assert await connect_status(server, http, token) == 101


async def test_revoking_cuts_the_home_off_and_a_new_code_brings_it_back(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    home_id, token = await enrolled_token(server, http)
    _, old_code = await server.request("POST", f"/api/v1/homes/{home_id}/code", expect=201)
    async with raw_home(server, http, token) as home:
        await home.handshake()
        _, view = await server.request("POST", f"/api/v1/homes/{home_id}/revoke", expect=200)
        assert view["enrolled"] is False
        assert await closed_with(home) == CLOSE_REVOKED
    _, page = await server.request("GET", f"/api/v1/homes?q={home_id}", expect=200)
    assert page["homes"][0]["enrolled"] is False
    assert await connect_status(server, http, token) == 401
    with pytest.raises(InvalidEnrollmentCode):
        await enroll(http, server.url, old_code["code"])  # voided with the token

    _, fresh = await server.request("POST", f"/api/v1/homes/{home_id}/code", expect=201)
    new_token = (await enroll(http, server.url, fresh["code"])).token
    assert await connect_status(server, http, new_token) == 101


async def test_enrolling_again_closes_whoever_held_the_old_token(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    home_id, token = await enrolled_token(server, http)
    async with raw_home(server, http, token) as thief:
        await thief.handshake()
        _, code = await server.request("POST", f"/api/v1/homes/{home_id}/code", expect=201)
        await enroll(http, server.url, code["code"])
        assert await closed_with(thief) == CLOSE_REVOKED
    assert await connect_status(server, http, token) == 401


async def test_a_removed_home_is_cut_off_unlisted_and_stays_removed(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    home_id, token = await enrolled_token(server, http)
    async with raw_home(server, http, token) as home:
        await home.handshake()
        _, view = await server.request("DELETE", f"/api/v1/homes/{home_id}", expect=200)
        assert view["status"] == "removed"
        assert await closed_with(home) == CLOSE_REVOKED
    assert await connect_status(server, http, token) == 401
    _, page = await server.request("GET", "/api/v1/homes", expect=200)
    assert page["homes"] == []
    await server.request("DELETE", f"/api/v1/homes/{home_id}", expect=409)
    await server.request("POST", f"/api/v1/homes/{home_id}/code", expect=404)
    await server.request("POST", "/api/v1/homes/home_nope/suspend", expect=404)


async def test_operator_tokens_over_rest(server: RunningServer) -> None:
    _, issued = await server.request(
        "POST", "/api/v1/operator-tokens", {"name": "night shift", "expires_in_days": 1}, expect=201
    )
    assert issued["status"] == "live"
    assert issued["expires_at"] is not None
    _, listed = await server.request("GET", "/api/v1/operator-tokens", token=issued["token"])
    assert {item["name"] for item in listed["tokens"]} == {"tests", "night shift"}
    assert issued["token"] not in json.dumps(listed)
    assert listed["current_token_id"] == issued["token_id"]  # the token the request used
    _, by_tests = await server.request("GET", "/api/v1/operator-tokens")
    assert by_tests["current_token_id"] not in (None, issued["token_id"])

    await server.request("DELETE", f"/api/v1/operator-tokens/{issued['token_id']}", expect=200)
    status, _ = await server.request("GET", "/api/v1/operator-tokens", token=issued["token"])
    assert status == 401
    await server.request("DELETE", "/api/v1/operator-tokens/op_nope", expect=404)


async def test_the_cli_suspends_resumes_revokes_and_removes_homes(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    home_id, _ = await enrolled_token(server, http)
    code, out, _ = await cli(
        "home", "suspend", home_id, token=server.operator_token, url=server.url
    )
    assert code == 0
    assert "suspended" in out
    code, out, _ = await cli("home", "list", token=server.operator_token, url=server.url)
    assert "suspended" in out
    for action, status in (
        ("suspend", "suspended"),
        ("resume", "active"),
        ("revoke", "active"),
        ("remove", "removed"),
    ):
        code, out, err = await cli(
            "home", action, home_id, "--json", token=server.operator_token, url=server.url
        )
        assert code == 0, err
        assert json.loads(out)["status"] == status
    code, out, _ = await cli(
        "home", "suspend", home_id, token=server.operator_token, url=server.url
    )
    assert code != 0


async def test_the_cli_lists_and_revokes_operator_tokens(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    code, out, _ = await cli(
        "operator-token", "create", "--name", "a", "--expires-in", "30d", "--json", "--db", db
    )
    assert code == 0
    created = json.loads(out)
    code, out, _ = await cli("operator-token", "list", "--json", "--db", db)
    (listed,) = json.loads(out)["tokens"]
    assert listed["token_id"] == created["token_id"]
    assert "token" not in listed
    code, out, _ = await cli("operator-token", "revoke", created["token_id"], "--json", "--db", db)
    assert json.loads(out)["status"] == "revoked"
    code, out, _ = await cli("operator-token", "list", "--db", db)
    assert "revoked" in out


async def test_a_revocation_while_the_home_connects_closes_its_new_session(
    server: RunningServer, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token is looked up, then revoked before the session starts: it still closes."""
    home_id, token = await enrolled_token(server, http)
    store = server.store
    looked_up = store.home_for_token

    async def revoked_right_after(token: str) -> HomeRecord | None:
        home = await looked_up(token)
        await server.request("POST", f"/api/v1/homes/{home_id}/revoke", expect=200)
        return home

    monkeypatch.setattr(store, "home_for_token", revoked_right_after)
    async with raw_home(server, http, token) as home:
        assert await closed_with(home) == CLOSE_REVOKED
