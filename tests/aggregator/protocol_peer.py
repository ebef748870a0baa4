"""A minimal protocol peer for the home client tests: a real aiohttp server on 127.0.0.1.

It speaks the documented websocket session (``docs/protocol.md``) with the models of
``jeisson.common.protocol`` and serves the enrolment endpoint, so ``jeisson.client`` can be tested
against real sockets before the aggregator exists. It is not the aggregator: no storage, no
negotiation — just the session sequence, acks, errors and close codes, plus knobs that let a test
hold acks, refuse requests, send server messages and drop connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from aiohttp import WSMsgType, hdrs, web

from jeisson.common.protocol import (
    HOME_MESSAGE_TYPES,
    MAX_FRAME_BYTES,
    MIN_SUPPORTED_SCHEMA_VERSION,
    SCHEMA_VERSION,
    Ack,
    ErrorCode,
    ErrorMessage,
    HomeHello,
    HomeMessage,
    ProtocolError,
    ServerHello,
    ServerMessage,
    dump_message,
    parse_message,
    utc_now,
)

TOKEN = "home-secret-token-7f3a9c"
HOME_ID = "home-42"
AGGREGATOR_ID = "agg-test"
CLOSE_UNSUPPORTED_VERSION = 4001
CLOSE_REPLACED = 4002
WAIT_TIMEOUT = 5.0


@dataclass
class PeerConnection:
    """One home connection as the peer sees it."""

    ws: web.WebSocketResponse
    received: list[HomeMessage] = field(default_factory=list)
    pings: int = 0

    async def send(self, message: ServerMessage) -> None:
        """Send one protocol message to the home."""
        await self.ws.send_str(dump_message(message))

    async def close(self, code: int) -> None:
        """Close the connection with ``code``."""
        await self.ws.close(code=code)


@dataclass
class ProtocolPeer:
    """The server side of the session sequence, with test knobs."""

    token: str = TOKEN
    base_url: str = ""
    """Set by the test fixture once the server listens."""
    schema_version: int = SCHEMA_VERSION
    min_supported_schema_version: int = MIN_SUPPORTED_SCHEMA_VERSION
    accepted_home_versions: range = range(MIN_SUPPORTED_SCHEMA_VERSION, SCHEMA_VERSION + 1)
    heartbeat_interval: float = 30.0
    autoping: bool = True
    hold: set[str] = field(default_factory=set)
    """Message types whose ack is held back in :attr:`held` until the test answers."""
    reject: dict[str, ErrorCode] = field(default_factory=dict)
    """Message types answered with an error of this code instead of an ack."""
    refuse_connections: int = 0
    """How many upcoming upgrade requests are refused with HTTP 503."""
    first_frame: str | None = None
    """Raw text sent instead of ``server_hello`` (to test a misbehaving server)."""
    close_after_inventory: int | None = None
    """Close code used right after acking the inventory (then reset to None)."""
    enrollment_codes: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Enrolment code → (home_id, token); a used code answers 409, an unknown one 404."""
    received: list[HomeMessage] = field(default_factory=list)
    held: list[HomeMessage] = field(default_factory=list)
    connections: list[PeerConnection] = field(default_factory=list)
    refused: int = 0
    _used_codes: set[str] = field(default_factory=set)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        """Return the aiohttp application serving the websocket and enrolment endpoints."""
        application = web.Application()
        application.router.add_get("/api/v1/ws", self._websocket)
        application.router.add_post("/api/v1/enroll", self._enroll)
        return application

    @property
    def current(self) -> PeerConnection:
        """Return the newest connection."""
        return self.connections[-1]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds (checked whenever the peer's state changes)."""
        async with asyncio.timeout(WAIT_TIMEOUT), self._changed:
            await self._changed.wait_for(predicate)

    def of_type(self, message_type: str) -> list[HomeMessage]:
        """Return every received message of ``message_type``, oldest first."""
        return [message for message in self.received if message.type == message_type]

    async def answer(self, message: HomeMessage, error: ErrorCode | None = None) -> None:
        """Answer a held message on the current connection with an ack (or an error)."""
        reply: ServerMessage = (
            Ack(reply_to=message.id)
            if error is None
            else ErrorMessage(reply_to=message.id, code=error, message=f"refused: {error}")
        )
        await self.current.send(reply)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _enroll(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            code = body["code"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "invalid request"}, status=400)
        if code in self._used_codes:
            return web.json_response({"error": "code already used"}, status=409)
        if code not in self.enrollment_codes:
            return web.json_response({"error": "unknown code"}, status=404)
        self._used_codes.add(code)
        home_id, token = self.enrollment_codes[code]
        return web.json_response(
            {"home_id": home_id, "token": token, "aggregator_id": AGGREGATOR_ID}
        )

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_connections > 0:
            self.refuse_connections -= 1
            self.refused += 1
            await self._notify()
            raise web.HTTPServiceUnavailable
        if request.headers.get(hdrs.AUTHORIZATION) != f"Bearer {self.token}":
            raise web.HTTPUnauthorized
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, autoping=self.autoping)
        await ws.prepare(request)
        previous = self.connections[-1] if self.connections else None
        connection = PeerConnection(ws)
        self.connections.append(connection)
        if previous is not None and not previous.ws.closed:
            await previous.close(CLOSE_REPLACED)
        if self.first_frame is not None:
            await ws.send_str(self.first_frame)
        else:
            await self._send_hello(connection)
        await self._notify()
        async for frame in ws:
            if frame.type is WSMsgType.PING:
                connection.pings += 1
                await self._notify()
            elif frame.type is WSMsgType.TEXT:
                await self._handle(connection, frame.data)
        await self._notify()
        return ws

    async def _send_hello(self, connection: PeerConnection) -> None:
        await connection.send(
            ServerHello(
                schema_version=self.schema_version,
                min_supported_schema_version=self.min_supported_schema_version,
                server_version="peer-1.0",
                aggregator_id=AGGREGATOR_ID,
                home_id=HOME_ID,
                heartbeat_interval=self.heartbeat_interval,
                server_time=utc_now(),
            )
        )

    async def _handle(self, connection: PeerConnection, data: str) -> None:
        try:
            # allowed= guarantees a home message type.
            message = cast(HomeMessage, parse_message(data, allowed=HOME_MESSAGE_TYPES))
        except ProtocolError as err:
            await connection.send(
                ErrorMessage(reply_to=err.reply_to, code=err.code, message=err.message)
            )
            return
        connection.received.append(message)
        self.received.append(message)
        await self._notify()
        if isinstance(message, HomeHello) and (
            message.schema_version not in self.accepted_home_versions
        ):
            await connection.send(
                ErrorMessage(
                    reply_to=message.id,
                    code=ErrorCode.UNSUPPORTED_VERSION,
                    message="this aggregator does not speak your schema version",
                )
            )
            await connection.close(CLOSE_UNSUPPORTED_VERSION)
            return
        if message.type in self.hold:
            self.held.append(message)
            await self._notify()
            return
        if message.type in self.reject:
            code = self.reject[message.type]
            await connection.send(
                ErrorMessage(reply_to=message.id, code=code, message=f"refused: {code}")
            )
            return
        await connection.send(Ack(reply_to=message.id))
        if message.type == "inventory" and self.close_after_inventory is not None:
            close_code, self.close_after_inventory = self.close_after_inventory, None
            await connection.close(close_code)
