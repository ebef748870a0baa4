"""The floor under a round: what a bare aiohttp websocket server spends per frame, per home.

``scripts/bench floor`` (or ``python -m tests.benchmarks.scale.floor --homes 4000``) starts a
server that does nothing but what every websocket server must: an aiohttp ``WebSocketResponse``
per home (autoping, as Jeisson's), a text frame parsed with ``json.loads`` and answered with a
small frame, and a frame serialised once and sent to every home. No validation, no state, no
database. The homes are :mod:`~tests.benchmarks.scale.rawsocket` clients in this process, pinned
to the other core; the server is pinned to core 0 like the real one, and its CPU is read from
``/proc``.

Three figures, per home (the last: the server's resident memory after the homes connected,
less before):

- *send*: one frame broadcast to every home (an offer, an award);
- *request-reply*: the home sends a frame and waits for the answer (a bid and its ``ack``);
- *RSS*: what an idle connected websocket costs the bare server.

A Jeisson round costs each awarded home at least 2 sends (offer, award) and 2 request-replies
(bid + ack, award_ack + ack): ``floor = 2 x send + 2 x request-reply``. That is what the
framework spends before any of Jeisson's own work; the scale benchmark's CPU per home per round
is compared with it in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Final

import aiohttp
from aiohttp import WSMsgType, web

from tests.benchmarks.scale.common import (
    pin_to,
    proc_sample,
    raise_fd_limit,
    server_preexec,
    simulator_cores,
)
from tests.benchmarks.scale.rawsocket import RawWebSocket
from tests.helpers import free_port

ACK: Final = '{"id":"m_0123456789abcdef","reply_to":"%s","type":"ack"}'
OFFER: Final = json.dumps(
    {
        "id": "offer-evt_0123456789abcdef-1",
        "type": "offer",
        "event_id": "evt_0123456789abcdef",
        "round": 1,
        "window_start": "2026-12-05T18:00:00+00:00",
        "window_end": "2026-12-05T19:00:00+00:00",
        "price_cap": 0.4,
        "currency": "EUR",
        "bid_deadline": "2026-12-05T17:02:00+00:00",
    }
)
BID: Final = json.dumps(
    {
        "id": "bid-0001",
        "type": "bid",
        "reply_to": "offer-evt_0123456789abcdef-1",
        "event_id": "evt_0123456789abcdef",
        "round": 1,
        "steps": [
            {"kw": 3.0, "price": 0.12, "loads": ["wh"]},
            {"kw": 1.5, "price": 0.17, "loads": ["pp"]},
        ],
    }
)
CONNECT_AT_ONCE: Final = 64


# --- the server (a child process) --------------------------------------------------------------


def floor_app() -> web.Application:
    """Return the bare server: ``/ws`` per home, ``POST /broadcast`` sends one frame to all."""
    sockets: set[web.WebSocketResponse] = set()

    async def home(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        sockets.add(ws)
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    frame = json.loads(message.data)
                    await ws.send_str(ACK % frame["id"])
        finally:
            sockets.discard(ws)
        return ws

    async def broadcast(request: web.Request) -> web.Response:
        text = await request.text()
        for ws in list(sockets):
            await ws.send_str(text)
        return web.json_response({"sent": len(sockets)})

    app = web.Application()
    app.router.add_get("/ws", home)
    app.router.add_post("/broadcast", broadcast)
    return app


def serve(port: int) -> None:
    """Run the bare server until killed."""
    web.run_app(floor_app(), host="127.0.0.1", port=port, print=None, access_log=None)


# --- the homes and the measurement (this process) ----------------------------------------------


class Home:
    """A raw websocket that counts the frames it receives."""

    def __init__(self) -> None:
        """Start with nothing received."""
        self.received = 0
        self.socket: RawWebSocket | None = None

    def on_text(self, _text: str) -> None:
        """Count a frame."""
        self.received += 1


async def _connect(port: int, count: int) -> list[Home]:
    loop = asyncio.get_running_loop()
    homes = [Home() for _ in range(count)]
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def one(home: Home) -> None:
        async with gate:
            _, protocol = await loop.create_connection(
                lambda: RawWebSocket("127.0.0.1", port, "/ws", "floor", home.on_text),
                "127.0.0.1",
                port,
            )
            await protocol.opened
            home.socket = protocol

    await asyncio.gather(*(one(home) for home in homes))
    return homes


async def _until(homes: list[Home], count: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while any(home.received < count for home in homes):
        if time.monotonic() > deadline:
            raise TimeoutError("homes did not get their frames")
        await asyncio.sleep(0.01)


async def measure(homes_count: int, rounds: int) -> dict[str, object]:
    """Start the bare server, connect the homes, measure both figures ``rounds`` times."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.benchmarks.scale.floor",
        "--serve",
        str(port),
        preexec_fn=server_preexec,
    )
    try:
        pin_to(simulator_cores())
        raise_fd_limit()
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.post(f"http://127.0.0.1:{port}/broadcast", data="{}"):
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            rss_before = proc_sample(server.pid).rss_bytes
            homes = await _connect(port, homes_count)
            await asyncio.sleep(1.0)
            rss_kib = (proc_sample(server.pid).rss_bytes - rss_before) / 1024 / homes_count
            sends, replies = [], []
            expected = 0
            for _ in range(rounds):
                before = proc_sample(server.pid)
                async with http.post(f"http://127.0.0.1:{port}/broadcast", data=OFFER) as answer:
                    assert (await answer.json())["sent"] == homes_count
                expected += 1
                await _until(homes, expected)
                after = proc_sample(server.pid)
                sends.append((after.cpu_s - before.cpu_s) * 1000 / homes_count)

                await asyncio.sleep(0.2)
                before = proc_sample(server.pid)
                for home in homes:
                    assert home.socket is not None
                    home.socket.send_text(BID)
                expected += 1
                await _until(homes, expected)
                after = proc_sample(server.pid)
                replies.append((after.cpu_s - before.cpu_s) * 1000 / homes_count)
                await asyncio.sleep(0.2)
            for home in homes:
                if home.socket is not None:
                    home.socket.close()
    finally:
        server.kill()
        await server.wait()
    send = statistics.median(sends)
    reply = statistics.median(replies)
    return {
        "homes": homes_count,
        "rounds": rounds,
        "send_ms_per_home": [round(value, 4) for value in sends],
        "request_reply_ms_per_home": [round(value, 4) for value in replies],
        "floor_ms_per_home_round": round(2 * send + 2 * reply, 4),
        "rss_kib_per_home": round(rss_kib, 1),
    }


def main() -> None:
    """Run the measurement (or, with ``--serve PORT``, be the server)."""
    parser = argparse.ArgumentParser(prog="scripts/bench floor", description=__doc__.split("\n")[0])
    parser.add_argument("--homes", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    print(json.dumps(asyncio.run(measure(args.homes, args.rounds))))


if __name__ == "__main__":
    main()
