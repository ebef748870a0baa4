"""One Jeisson WiFi actuator's websocket as Home Assistant sees it: frames, refusals, acks.

A :class:`DeviceConnection` wraps the ``aiohttp`` websocket a device opened on the endpoint. It
decodes every frame with :func:`jeisson.actuator.protocol.decode_from_device`, refuses bad ones the
way the protocol says (``error`` frame, then the matching close code), sends commands and matches
their ``ack`` (or ``error``) by ``reply_to``. Whoever owns the device right now (the endpoint while
it waits for the user, the home's :class:`~.wifi_devices.WifiHub` once paired) receives its messages
through the :class:`ConnectionOwner` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from jeisson.actuator import protocol

type Message = dict[str, Any]

TRANSPORT_MAX_MSG_BYTES = protocol.MAX_FRAME_BYTES * 16
"""Largest frame aiohttp reads at all; frames between this and the protocol's 4096-byte limit
are read so the device gets a ``frame_too_large`` error before the close (1009)."""
CLOSE_GOING_AWAY = 1001
"""Close code when Home Assistant stops serving a device (entry unloaded, device removed)."""


_CLOSE_CODES: dict[str, int] = {
    protocol.E_HANDSHAKE_TIMEOUT: protocol.CLOSE_HANDSHAKE_TIMEOUT,
    protocol.E_REPLACED: protocol.CLOSE_REPLACED,
    protocol.E_BUSY: protocol.CLOSE_TRY_LATER,
    protocol.E_IGNORED: protocol.CLOSE_IGNORED,
}
"""Close codes of the errors only Home Assistant sends (the rest: ``ProtocolError.close_code``)."""


def close_code(error: protocol.ProtocolError) -> int:
    """Return the websocket close code that goes with ``error`` (docs/wifi-actuator.md)."""
    return _CLOSE_CODES.get(error.code) or error.close_code()


def replaced_error() -> protocol.ProtocolError:
    """Return the error that ends a connection a newer one of the same device replaced."""
    return protocol.ProtocolError(
        protocol.E_REPLACED, "a newer connection of this device took over"
    )


class ConnectionLostError(Exception):
    """The connection closed before the device answered."""


class DeviceRefusedError(Exception):
    """The device answered a command with an ``error`` frame."""

    def __init__(self, code: str, message: str) -> None:
        """Record the device's error code and message."""
        super().__init__(f"{code}: {message}")
        self.code = code


class ConnectionOwner(Protocol):
    """Who handles a connection's messages and its end."""

    def async_on_message(self, conn: DeviceConnection, message: Message) -> None:
        """Handle a validated ``state`` (or a stray ``error``) from the device."""

    def async_on_closed(self, conn: DeviceConnection) -> None:
        """Forget ``conn``: it is closed."""


class DeviceConnection:
    """A device's websocket: handshake data, sending, receiving and command round trips."""

    def __init__(self, ws: web.WebSocketResponse, nonce: str, peer: str | None) -> None:
        """Wrap a prepared websocket; ``nonce`` is the one sent in this connection's challenge."""
        self.ws = ws
        self.nonce = nonce
        self.peer = peer or "?"
        self.hello: Message | None = None
        self.owner: ConnectionOwner | None = None
        self._waiting: dict[str, asyncio.Future[Message]] = {}

    @property
    def device_id(self) -> str | None:
        """Return the id the device gave in its ``hello`` (None before it)."""
        return None if self.hello is None else str(self.hello["device_id"])

    @property
    def closed(self) -> bool:
        """Return True once the websocket is closing or closed."""
        return self.ws.closed

    async def send(self, message: Message) -> None:
        """Send one message (raises ConnectionLostError when the socket is gone)."""
        try:
            await self.ws.send_str(protocol.encode(message))
        except (ConnectionError, RuntimeError) as err:
            raise ConnectionLostError(str(err)) from err

    async def receive(self, wait_s: float | None = None) -> Message | None:
        """Return the next valid message; None once the connection closed.

        Raises ``TimeoutError`` after ``wait_s`` seconds without a frame (pings included) and
        :class:`~jeisson.actuator.protocol.ProtocolError` for a frame the protocol refuses.
        """
        frame = await self.ws.receive(timeout=wait_s)
        if frame.type is WSMsgType.TEXT:
            return protocol.decode_from_device(frame.data)
        if frame.type is WSMsgType.BINARY:
            raise protocol.ProtocolError(
                protocol.E_INVALID_MESSAGE, "binary frames are not part of the protocol"
            )
        return None

    async def refuse(self, error: protocol.ProtocolError) -> None:
        """Tell the device why (``error`` frame), then close with the code that goes with it."""
        with contextlib.suppress(ConnectionLostError, protocol.ProtocolError):
            await self.send(error.to_message())
        await self.close(close_code(error))

    async def close(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Close the websocket (once) and fail every command still waiting for its ack."""
        self.fail_waiting()
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.close(code=code)

    def fail_waiting(self) -> None:
        """Fail the commands that can no longer be answered."""
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ConnectionLostError("connection closed"))

    async def request(self, command: Message, wait_s: float) -> Message:
        """Send ``command`` and return its ``ack`` (raises on error, close or timeout)."""
        command_id = str(command["id"])
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future
        try:
            await self.send(command)
            async with asyncio.timeout(wait_s):
                return await future
        finally:
            self._waiting.pop(command_id, None)

    def resolve(self, message: Message) -> bool:
        """Deliver an ``ack`` or ``error`` to the command it answers; return True if it did."""
        reply_to = message.get("reply_to")
        future = self._waiting.get(reply_to) if isinstance(reply_to, str) else None
        if future is None or future.done():
            return False
        if message["type"] == protocol.ACK:
            future.set_result(message)
        else:
            future.set_exception(DeviceRefusedError(message["code"], message["message"]))
        return True
