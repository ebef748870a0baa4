"""``jeisson-aggregator openadr client ...`` against a running aggregator."""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp

from tests.aggregator.openadr.common import CheckedServer


async def run_cli(server: CheckedServer, *args: str) -> str:
    env = {**os.environ, "JEISSON_URL": server.url, "JEISSON_OPERATOR_TOKEN": server.operator_token}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator.cli",
        "openadr",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_a_client_made_on_the_command_line_gets_a_token_until_revoked(
    vtn_server: CheckedServer, http: aiohttp.ClientSession
) -> None:
    printed = await run_cli(vtn_server, "client", "add", "--name", "pool-pump", "--role", "ven")
    fields = dict(line.split(":", 1) for line in printed.splitlines())
    client_id = fields["client_id"].strip()
    secret = fields["client_secret"].split()[0]
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    async with http.post(f"{vtn_server.vtn_url}/auth/token", data=form) as response:
        assert response.status == 200
    listed = await run_cli(vtn_server, "client", "list")
    assert f"{client_id}  ven  active   pool-pump" in listed
    await run_cli(vtn_server, "client", "revoke", client_id)
    async with http.post(f"{vtn_server.vtn_url}/auth/token", data=form) as response:
        assert response.status == 401
    assert "revoked" in await run_cli(vtn_server, "client", "list")
