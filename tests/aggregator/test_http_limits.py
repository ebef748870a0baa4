"""The aggregator's HTTP server under a flood of idle connections, out of descriptors, and on TLS.

Each test runs ``jeisson-aggregator serve`` as a real process with a low soft descriptor limit
(see :mod:`tests.aggregator.serve_process`) and talks to it over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aggregator.http_limits import FD_RESERVE
from aggregator.logs import FloodGuard
from jeisson.client import HomeClient, enroll
from jeisson.common.protocol import Inventory

from .serve_process import ServeProcess, self_signed

HEALTH_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture
async def started() -> AsyncIterator[list[ServeProcess]]:
    """Stop the servers a test started (SIGTERM), whatever happens."""
    servers: list[ServeProcess] = []
    yield servers
    for server in servers:
        await server.stop()


async def start(started: list[ServeProcess], server: ServeProcess) -> ServeProcess:
    """Start ``server`` and have it stopped after the test."""
    started.append(server)
    await server.start()
    return server


async def raw_request(port: int, request: bytes = HEALTH_REQUEST) -> tuple[int, dict[str, str]]:
    """Send one raw HTTP request on a new connection; return the status and headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers


async def open_idle(port: int, count: int) -> list[tuple[asyncio.StreamReader, Any]]:
    """Open ``count`` TCP connections that never send a byte."""
    return [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]


async def connected_home(server: ServeProcess, session: aiohttp.ClientSession) -> Any:
    """Enrol a home and open its websocket (the server's hello is read)."""
    enrollment = await enroll(session, server.url, await server.add_home(session))
    ws = await session.ws_connect(
        f"{server.url}/api/v1/ws", headers={"Authorization": f"Bearer {enrollment.token}"}
    )
    hello = json.loads((await ws.receive(timeout=10)).data)
    assert hello["type"] == "server_hello"
    return ws


async def test_connections_over_the_cap_get_503_and_a_connected_home_is_untouched(
    tmp_path: Path, started: list[ServeProcess]
) -> None:
    """The cap follows the descriptor limit; idle connections are cut at the header timeout."""
    server = await start(
        started, ServeProcess(tmp_path, ["--header-timeout", "2"], fd_limit=FD_RESERVE + 40)
    )
    assert server.cap == 40
    async with aiohttp.ClientSession() as session:
        home = await connected_home(server, session)
        idle = await open_idle(server.port, 80)

        status, headers = await raw_request(server.port)
        assert status == 503
        assert headers["Retry-After"] == "5"
        assert headers["Connection"] == "close"

        await home.send_str("{not json")  # the session is served: its error comes back
        error = json.loads((await home.receive(timeout=10)).data)
        assert (error["type"], error["code"]) == ("error", "invalid_json")

        # Idle connections are closed after the header timeout (those over the cap got their
        # 503 after a short wait for a request head); then /healthz answers again.
        async with asyncio.timeout(10):
            answers = [await reader.read() for reader, _writer in idle]
        assert server.cap - 3 <= answers.count(b"") <= server.cap - 1  # the home: 1 connection
        assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in answers if answer)
        assert (await raw_request(server.port))[0] == 200
        assert not home.closed
        await home.close()
    assert "Too many open files" not in server.log()
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics") as got:
        assert "jeisson_http_connections_refused_total" in await got.text()


async def test_a_request_head_trickling_in_does_not_extend_the_header_timeout(
    tmp_path: Path, started: list[ServeProcess]
) -> None:
    """A slowloris client is cut once the timeout is up, however it paces its bytes."""
    server = await start(started, ServeProcess(tmp_path, ["--header-timeout", "1"]))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    loop = asyncio.get_running_loop()
    opened = loop.time()
    closed_after = None
    for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            closed_after = loop.time() - opened
            break
        if reader.at_eof() or (await _eof_within(reader, 0.1)):
            closed_after = loop.time() - opened
            break
    writer.close()
    assert closed_after is not None
    assert 0.9 <= closed_after <= 3


async def _eof_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False


async def test_out_of_descriptors_waiting_clients_get_503_and_the_log_stays_small(
    tmp_path: Path, started: list[ServeProcess]
) -> None:
    """With the cap set above the descriptor limit, accept() fails: the spare descriptor answers.

    asyncio's own accept loop would log thousands of errors a second here (see http_limits).
    """
    fd_limit = 96
    server = await start(
        started,
        ServeProcess(
            tmp_path,
            ["--max-connections", "100000", "--header-timeout", "60"],
            fd_limit=fd_limit,
        ),
    )
    idle = await open_idle(server.port, 300)
    status, headers = await raw_request(server.port)
    assert (status, headers["Retry-After"]) == (503, "5")

    async def first_bytes(reader: asyncio.StreamReader) -> bytes:
        try:
            return await asyncio.wait_for(reader.read(64), 3)
        except TimeoutError:
            return b""  # accepted by the server, waiting for a request

    answers = await asyncio.gather(*(first_bytes(reader) for reader, _ in idle))
    refused = [answer for answer in answers if answer]
    assert len(refused) >= 300 - fd_limit
    assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in refused)
    await asyncio.sleep(3)  # a storm of retries would show in the log by now
    log = server.log()
    assert len(log) < 8_000, log[-2000:]
    assert "Traceback" not in log

    for _reader, writer in idle:
        writer.close()
    async with asyncio.timeout(20):
        while (await raw_request(server.port))[0] != 200:
            await asyncio.sleep(0.2)


async def test_tls_is_served_directly_to_homes_and_operators(
    tmp_path: Path, started: list[ServeProcess]
) -> None:
    """--tls-cert/--tls-key: REST over https, the home websocket over wss, plain http refused."""
    cert, key, client_tls = self_signed(tmp_path)
    server = await start(
        started, ServeProcess(tmp_path, ["--tls-cert", str(cert), "--tls-key", str(key)])
    )
    assert server.url.startswith("https://")
    connector = aiohttp.TCPConnector(ssl=client_tls)
    async with aiohttp.ClientSession(connector=connector) as session:
        enrollment = await enroll(session, server.url, await server.add_home(session))
        client = HomeClient(
            server.url,
            enrollment.token,
            session=session,
            software_version="test",
            inventory_provider=lambda: Inventory(loads=[]),
        )
        try:
            hello = await asyncio.wait_for(client.connect(), 10)
        finally:
            await client.close()
        assert hello.home_id == enrollment.home_id
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientError):
            await plain.get(f"http://127.0.0.1:{server.port}/healthz")


async def test_tls_needs_both_a_certificate_and_a_key(tmp_path: Path) -> None:
    """A certificate alone is refused with a clear message, before anything listens."""
    cert, _key, _client = self_signed(tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator.cli",
        "serve",
        "--tls-cert",
        str(cert),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode != 0
    assert "--tls-cert and --tls-key go together" in err.decode()


def test_flood_guard_lets_a_burst_through_then_counts(caplog: pytest.LogCaptureFixture) -> None:
    """Five lines of one message a minute; the next window's first line counts the rest."""
    now = [0.0]
    logger = logging.getLogger("jeisson.flood")
    guard = FloodGuard(burst=5, interval_s=60, clock=lambda: now[0])
    logger.addFilter(guard)
    try:
        with caplog.at_level(logging.ERROR, logger="jeisson.flood"):
            for second in range(120):
                now[0] = float(second)
                logger.error("accept failed: %s", "EMFILE")
            logger.error("another message")
    finally:
        logger.removeFilter(guard)
    assert [record.getMessage() for record in caplog.records] == [
        "accept failed: EMFILE",
        "accept failed: EMFILE",
        "accept failed: EMFILE",
        "accept failed: EMFILE",
        "accept failed: EMFILE",
        "accept failed: EMFILE [55 more like this were not logged]",
        "accept failed: EMFILE",
        "accept failed: EMFILE",
        "accept failed: EMFILE",
        "accept failed: EMFILE",
        "another message",
    ]
