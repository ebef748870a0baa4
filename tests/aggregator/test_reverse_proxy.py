"""The documented reverse-proxy configurations (docs/deploy/) in front of the real aggregator.

Debian's nginx and caddy run the files from docs/deploy/ with only the test's own addresses,
ports and certificate substituted (each substitution must match exactly once, so the test breaks
when the documented file changes shape); homes enrol over https:// and keep their session over
wss:// through the proxy. ``scripts/lib/proxy.sh`` installs both when they are missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from jeisson.client import HomeClient, enroll
from jeisson.common.protocol import Inventory
from tests.helpers import free_port

from .serve_process import ServeProcess, self_signed

DEPLOY: Final = Path(__file__).resolve().parents[2] / "docs" / "deploy"
UPSTREAM: Final = "127.0.0.1:8080"
READY_TIMEOUT_S: Final = 20.0


def substitute(text: str, replacements: dict[str, str]) -> str:
    """Replace each key (which must occur exactly once) by its value."""
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def require(program: str) -> str:
    """Return the path of ``program``; fail (never skip) when it is not installed."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is missing: run scripts/lib/proxy.sh (apt-get install {program})")
    return path


def read_log(log: Path) -> str:
    """Return what a proxy printed."""
    return log.read_text(errors="replace")


async def wait_listening(port: int, process: asyncio.subprocess.Process, log: Path) -> None:
    """Wait until something accepts connections on ``port``."""
    async with asyncio.timeout(READY_TIMEOUT_S):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"proxy exited: {read_log(log)}")
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


async def stop(process: asyncio.subprocess.Process) -> None:
    """Stop a proxy (SIGTERM, then SIGKILL)."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def start_nginx(workdir: Path, upstream_port: int, cert: Path, key: Path) -> tuple[int, Any]:
    """Run docs/deploy/nginx.conf in a main configuration of the test's own."""
    port = free_port()
    site = substitute(
        (DEPLOY / "nginx.conf").read_text(),
        {
            UPSTREAM: f"127.0.0.1:{upstream_port}",
            "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
            "listen 80;": f"listen 127.0.0.1:{free_port()};",
            "/etc/letsencrypt/live/dr.example.org/fullchain.pem": str(cert),
            "/etc/letsencrypt/live/dr.example.org/privkey.pem": str(key),
        },
    )
    (workdir / "site.conf").write_text(site)
    (workdir / "logs").mkdir()
    (workdir / "nginx.conf").write_text(
        "user root;\nworker_processes 1;\n"
        f"pid {workdir / 'nginx.pid'};\nerror_log {workdir / 'logs' / 'error.log'};\n"
        "events { worker_connections 256; }\n"
        f"http {{\n access_log off;\n include {workdir / 'site.conf'};\n}}\n"
    )
    log = workdir / "nginx.out"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            require("nginx"),
            "-p",
            str(workdir),
            "-c",
            str(workdir / "nginx.conf"),
            "-g",
            "daemon off;",
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    await wait_listening(port, process, log)
    return port, process


async def start_caddy(workdir: Path, upstream_port: int, cert: Path, key: Path) -> tuple[int, Any]:
    """Run docs/deploy/Caddyfile with the test's certificate instead of an automatic one."""
    port = free_port()
    caddyfile = substitute(
        (DEPLOY / "Caddyfile").read_text(),
        {
            UPSTREAM: f"127.0.0.1:{upstream_port}",
            "dr.example.org {": f"https://127.0.0.1:{port} {{\n\ttls {cert} {key}",
            "{\n\tservers {": "{\n\tadmin off\n\tauto_https disable_redirects\n\tservers {",
        },
    )
    (workdir / "Caddyfile").write_text(caddyfile)
    log = workdir / "caddy.out"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "XDG_DATA_HOME": str(workdir / "data"),
        "XDG_CONFIG_HOME": str(workdir / "config"),
    }
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            require("caddy"),
            "run",
            "--config",
            str(workdir / "Caddyfile"),
            "--adapter",
            "caddyfile",
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    await wait_listening(port, process, log)
    return port, process


@pytest.fixture
async def aggregator(tmp_path: Path) -> AsyncIterator[ServeProcess]:
    """The aggregator on plain http on the loopback, as the documented setups run it."""
    server = ServeProcess(tmp_path)
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("start_proxy", [start_nginx, start_caddy], ids=["nginx", "caddy"])
async def test_homes_enrol_and_connect_over_tls_through_the_documented_proxy(
    tmp_path: Path, aggregator: ServeProcess, start_proxy: Any
) -> None:
    """https:// for enrolment and REST, wss:// for the session, through the proxy."""
    workdir = tmp_path / "proxy"
    workdir.mkdir()
    cert, key, client_tls = self_signed(workdir)
    port, process = await start_proxy(workdir, aggregator.port, cert, key)
    url = f"https://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls)) as http:
            async with http.get(f"{url}/healthz") as health:
                assert health.status == 200
                assert (await health.json())["status"] == "ok"
            code = await add_home(http, url, aggregator.token)
            enrollment = await enroll(http, url, code)
            client = HomeClient(
                url,
                enrollment.token,
                session=http,
                software_version="test",
                inventory_provider=lambda: Inventory(loads=[]),
            )
            try:
                hello = await asyncio.wait_for(client.connect(), 10)
                assert hello.home_id == enrollment.home_id
                async with http.get(
                    f"{url}/healthz", headers={"Authorization": f"Bearer {aggregator.token}"}
                ) as health:
                    assert (await health.json())["homes_connected"] == 1
            finally:
                await client.close()
        async with aiohttp.ClientSession() as untrusting:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await untrusting.get(f"{url}/healthz")
    finally:
        await stop(process)


async def add_home(http: aiohttp.ClientSession, url: str, token: str) -> str:
    """Add a home through the proxy; return its enrolment code."""
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(f"{url}/api/v1/homes", json={"name": "home"}, headers=headers) as got:
        assert got.status == 201, await got.text()
        return str((await got.json())["code"])
