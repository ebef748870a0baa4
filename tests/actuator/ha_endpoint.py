"""A small real aiohttp server standing in for Home Assistant's actuator endpoint.

It speaks the HA side of the protocol with ``jeisson.actuator.protocol`` (challenge, proof check,
welcome / pending / auth_failed, commands) on 127.0.0.1, and lets tests see every frame a device
sends, send commands or raw frames, confirm a pending device with a typed key, and kill
connections abruptly or shut the whole server down.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from jeisson.actuator import protocol
from tests.helpers import free_port


class DeviceLink:
    """One device connection as the stand-in sees it."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, nonce: str) -> None:
        self.ws = ws
        self.request = request
        self.nonce = nonce
        self.hello: dict[str, Any] | None = None
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.sent_close_code: int | None = None

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(protocol.encode(message))

    async def send_raw(self, text: str) -> None:
        await self.ws.send_str(text)

    async def next(self, kind: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Return the next message (of type ``kind``, skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind or 'message'} from the device")
            message = await asyncio.wait_for(self.messages.get(), remaining)
            if kind is None or message["type"] == kind:
                return message

    async def command_off(self, duration_s: float, command_id: str | None = None) -> str:
        command_id = command_id or uuid.uuid4().hex
        await self.send(protocol.command_off(command_id, duration_s, time.time() + duration_s))
        return command_id

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (Home Assistant died)."""
        transport = self.request.transport
        assert transport is not None
        transport.abort()


class HAEndpoint:
    """The stand-in endpoint: confirmed device keys, every link, and the HTTP server."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.links: list[DeviceLink] = []
        self.new_links: asyncio.Queue[DeviceLink] = asyncio.Queue()
        self.report_interval_s = protocol.DEFAULT_REPORT_INTERVAL_S
        self.challenge_overrides: dict[str, Any] = {}
        self.autoping = True
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{protocol.WS_PATH}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(protocol.WS_PATH, self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            for link in self.links:
                if not link.closed.is_set():
                    link.abort()
            await self._runner.cleanup()
            self._runner = None

    async def next_link(self, timeout: float = 10.0) -> DeviceLink:
        return await asyncio.wait_for(self.new_links.get(), timeout)

    async def confirm(self, link: DeviceLink, typed_key: str) -> bool:
        """The user confirms a pending device by typing its key: check it, then welcome."""
        assert link.hello is not None
        key = protocol.parse_key(typed_key)
        if not protocol.check_device_proof(key, link.nonce, link.hello):
            return False
        self.keys[link.hello["device_id"]] = key
        await self._welcome(link, key)
        return True

    async def _welcome(self, link: DeviceLink, key: bytes) -> None:
        assert link.hello is not None
        proof = protocol.server_proof(key, link.nonce, link.hello["nonce"], link.hello["device_id"])
        await link.send(protocol.welcome(proof, time.time(), self.report_interval_s))

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=protocol.MAX_FRAME_BYTES, autoping=self.autoping)
        await ws.prepare(request)
        nonce = protocol.new_nonce()
        link = DeviceLink(ws, request, nonce)
        self.links.append(link)
        challenge = {**protocol.challenge(nonce, time.time()), **self.challenge_overrides}
        await ws.send_str(protocol.encode(challenge))
        await self.new_links.put(link)
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                try:
                    message = protocol.decode_from_device(frame.data)
                except protocol.ProtocolError as err:
                    await ws.send_str(protocol.encode(err.to_message()))
                    await ws.close(code=err.close_code())
                    break
                link.received.append(message)
                await link.messages.put(message)
                if message["type"] == protocol.HELLO:
                    await self._on_hello(link, message)
        finally:
            link.close_code = ws.close_code
            link.closed.set()
        return ws

    async def _on_hello(self, link: DeviceLink, hello: dict[str, Any]) -> None:
        link.hello = hello
        key = self.keys.get(hello["device_id"])
        if key is None:
            await link.send(protocol.pending("confirm this device in Home Assistant"))
        elif protocol.check_device_proof(key, link.nonce, hello):
            await self._welcome(link, key)
        else:
            await link.send(protocol.error(protocol.E_AUTH_FAILED, "wrong device key"))
            link.sent_close_code = protocol.CLOSE_AUTH_FAILED
            await link.ws.close(code=protocol.CLOSE_AUTH_FAILED)
