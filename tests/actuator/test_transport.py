"""The minimal websocket client (the ESP32's transport), run on CPython against real servers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web

from actuator.transport import (
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    MalformedFrame,
    MiniWebSocket,
    TransportError,
    accept_value,
    encode_frame,
    mask_payload,
    parse_ws_url,
)
from jeisson.actuator import protocol
from tests.helpers import free_port


def test_accept_value_matches_rfc6455_example() -> None:
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parse_ws_url() -> None:
    assert parse_ws_url("ws://ha.local:8123/api/jeisson/actuator") == (
        "ha.local",
        8123,
        "/api/jeisson/actuator",
    )
    assert parse_ws_url("ws://10.0.0.2") == ("10.0.0.2", 80, "/")
    assert parse_ws_url("ws://[fe80::1]:8123/x") == ("fe80::1", 8123, "/x")
    for bad in ("wss://ha:8123/x", "http://ha/x", "ws://:8123/x", "ws://ha:0/x"):
        with pytest.raises(ValueError):  # noqa: PT011 - the messages vary
            parse_ws_url(bad)


def test_frames_and_masks() -> None:
    mask = bytes((1, 2, 3, 4))
    assert mask_payload(mask_payload(b"hello world", mask), mask) == b"hello world"
    assert encode_frame(OP_TEXT, b"hi", None) == b"\x81\x02hi"
    assert encode_frame(OP_TEXT, b"x" * 200, None)[:4] == b"\x81\x7e\x00\xc8"
    assert encode_frame(OP_TEXT, b"x" * 70000, None)[:10] == b"\x81\x7f" + (70000).to_bytes(
        8, "big"
    )
    masked = encode_frame(OP_TEXT, b"hi", mask)
    assert masked[1] == 0x82
    assert masked[2:6] == mask


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data == "close-please":
                    await ws.close(code=4321)
                else:
                    await ws.send_str("echo:" + msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"ws://127.0.0.1:{port}"
    await runner.cleanup()


async def test_mini_client_talks_to_aiohttp(echo_server: str) -> None:
    ws = await MiniWebSocket.open(echo_server + "/ws")
    await ws.send("hello")
    assert await ws.receive() == "echo:hello"
    long_text = "é" * 1500  # 3000 bytes: the 16-bit length form, masked
    await ws.send(long_text)
    assert await ws.receive() == "echo:" + long_text
    await ws.ping()
    await ws.send("again")
    assert await ws.receive() == "echo:again"
    assert ws.rx_count >= 4  # the pong counted too
    await ws.send("close-please")
    assert await ws.receive() is None  # the server's close is answered and reported
    with pytest.raises(TransportError):
        await ws.send("late")


async def test_mini_client_reports_refusals(echo_server: str) -> None:
    with pytest.raises(TransportError, match="404"):
        await MiniWebSocket.open(echo_server + "/nowhere")
    with pytest.raises(TransportError, match="cannot connect"):
        await MiniWebSocket.open(f"ws://127.0.0.1:{free_port()}/ws")
    with pytest.raises(TransportError, match="ws://"):
        await MiniWebSocket.open("wss://127.0.0.1/ws")


async def _raw_server(
    script: list[bytes], received: asyncio.Queue[tuple[int, bytes]]
) -> tuple[asyncio.Server, int]:
    """A hand-made websocket server: upgrades, sends ``script``, records client frames."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key = ""
        while (line := (await reader.readline()).decode().strip()) != "":
            if line.lower().startswith("sec-websocket-key:"):
                key = line.split(":", 1)[1].strip()
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_value(key) + "\r\n\r\n"
            ).encode()
        )
        for frame in script:
            writer.write(frame)
        await writer.drain()
        try:
            while True:
                head = await reader.readexactly(2)
                assert head[1] & 0x80, "client frames must be masked"
                mask = await reader.readexactly(4)
                payload = await reader.readexactly(head[1] & 0x7F)
                await received.put((head[0] & 0x0F, mask_payload(payload, mask)))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    return server, port


async def test_mini_client_reassembles_fragments_and_answers_pings() -> None:
    received: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    script = [
        bytes((OP_TEXT, 3)) + b"hel",  # not final
        encode_frame(OP_PING, b"p1", None),  # a control frame between fragments
        encode_frame(OP_CONTINUATION, b"lo", None),
    ]
    server, port = await _raw_server(script, received)
    async with server:
        ws = await MiniWebSocket.open(f"ws://127.0.0.1:{port}/")
        assert await ws.receive() == "hello"
        assert await asyncio.wait_for(received.get(), 5) == (OP_PONG, b"p1")
        await ws.send("masked")
        assert await asyncio.wait_for(received.get(), 5) == (OP_TEXT, b"masked")
        await ws.close()


async def test_mini_client_refuses_binary_and_oversized_frames() -> None:
    for frame, code in (
        (encode_frame(0x2, b"bin", None), protocol.E_INVALID_MESSAGE),
        (encode_frame(OP_TEXT, os.urandom(protocol.MAX_FRAME_BYTES + 1), None), "frame_too_large"),
    ):
        server, port = await _raw_server([frame], asyncio.Queue())
        async with server:
            ws = await MiniWebSocket.open(f"ws://127.0.0.1:{port}/")
            with pytest.raises(MalformedFrame) as caught:
                await ws.receive()
            assert caught.value.code == code
            await ws.close()


async def test_invalid_utf8_is_left_for_the_protocol_to_refuse() -> None:
    server, port = await _raw_server([encode_frame(OP_TEXT, b"\xff\xfe", None)], asyncio.Queue())
    async with server:
        ws = await MiniWebSocket.open(f"ws://127.0.0.1:{port}/")
        frame = await ws.receive()
        assert frame == b"\xff\xfe"
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.decode_from_server(frame)
        assert caught.value.code == protocol.E_INVALID_JSON
        await ws.close()
