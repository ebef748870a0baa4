"""``jeisson-aggregator openadr client|vtn ...`` against a running aggregator."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp

from tests.aggregator.openadr.common import CheckedServer


async def run_cli(
    server: CheckedServer, *args: str, env: dict[str, str] | None = None, ok: bool = True
) -> str:
    """Run ``jeisson-aggregator openadr ARGS`` as the operator; return what it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator.cli",
        "openadr",
        *args,
        env={
            **os.environ,
            "JEISSON_URL": server.url,
            "JEISSON_OPERATOR_TOKEN": server.operator_token,
            **(env or {}),
        },
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert (process.returncode == 0) is ok, err.decode()
    return out.decode() if ok else err.decode()


async def test_a_client_made_on_the_command_line_gets_a_token_until_revoked(
    vtn_server: CheckedServer, http: aiohttp.ClientSession
) -> None:
    printed = await run_cli(
        vtn_server, "client", "add", "--name", "pool-pump", "--role", "ven", "--capacity-kw", "2.5"
    )
    fields = dict(line.split(":", 1) for line in printed.splitlines())
    client_id = fields["client_id"].strip()
    secret = fields["client_secret"].split()[0]
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    async with http.post(f"{vtn_server.vtn_url}/auth/token", data=form) as response:
        assert response.status == 200
    listed = await run_cli(vtn_server, "client", "list")
    assert f"{client_id}  ven  active   pool-pump  (2.5 kW)" in listed
    await run_cli(vtn_server, "client", "revoke", client_id)
    async with http.post(f"{vtn_server.vtn_url}/auth/token", data=form) as response:
        assert response.status == 401
    assert "revoked" in await run_cli(vtn_server, "client", "list")


async def test_a_utility_vtn_is_added_listed_and_removed_on_the_command_line(
    vtn_server: CheckedServer,
) -> None:
    secret_env = {"JEISSON_VTN_CLIENT_SECRET": "s3cret-from-the-environment"}
    add = ("vtn", "add", "--name", "utility", "--base-url", f"{vtn_server.url}/nowhere")
    programs = ("--program", "residential-peak", "--program", "ev-nights", "--kind", "direct")
    options = ("--price-cap", "0.3", "--simple-levels", "0,2,4,8", "--poll-interval", "600")
    printed = await run_cli(
        vtn_server, *add, *programs, *options, "--client-id", "jeisson", "--json", env=secret_env
    )
    added = json.loads(printed)
    assert added["has_secret"]
    assert "s3cret" not in printed
    assert [(item["program"], item["kind"]) for item in added["programs"]] == [
        ("residential-peak", "direct"),
        ("ev-nights", "direct"),
    ]
    assert added["programs"][0]["default_price_cap"] == 0.3
    assert added["programs"][0]["simple_levels_kw"] == [0, 2, 4, 8]

    listed = await run_cli(vtn_server, "vtn", "list")
    assert added["vtn_id"] in listed
    assert "residential-peak,ev-nights" in listed
    (as_json,) = json.loads(await run_cli(vtn_server, "vtn", "list", "--json"))["vtns"]
    assert (as_json["vtn_id"], as_json["programs"]) == (added["vtn_id"], added["programs"])
    shown = await run_cli(vtn_server, "vtn", "show", added["vtn_id"])
    assert "no events" in shown
    assert "no reports sent" in shown

    again = await run_cli(vtn_server, *add, *programs, env=secret_env, ok=False)
    assert "409" in again
    no_secret = await run_cli(vtn_server, *add, "--program", "p", "--client-id", "x", ok=False)
    assert "JEISSON_VTN_CLIENT_SECRET" in no_secret

    await run_cli(vtn_server, "vtn", "remove", added["vtn_id"])
    assert "no VTNs followed" in await run_cli(vtn_server, "vtn", "list")
