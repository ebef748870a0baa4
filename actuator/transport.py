"""Websocket transports that carry the actuator's frames to Home Assistant.

Two implementations of one small interface (``send``, ``receive``, ``ping``, ``close`` and an
``rx_count`` of frames received, pongs included, for liveness checks):

- :class:`AiohttpConnection`: aiohttp's websocket client (CPython, the simulator's default).
- :class:`MiniWebSocket`: a minimal RFC 6455 client over ``asyncio`` streams, written for
  MicroPython (which has no websocket client) using only what its ``asyncio`` offers
  (``open_connection``, ``readexactly``, ``readline``, ``write``/``drain``, ``Lock``). It also runs
  on CPython, which is how the host tests exercise it against a real aiohttp server; on an ESP32
  it cannot be tested here. It speaks ``ws://`` only (no TLS), sends masked text frames,
  reassembles fragmented text messages, answers pings, and refuses frames over
  ``protocol.MAX_FRAME_BYTES``.

Both raise :class:`TransportError` when a connection cannot be opened, and
:class:`MalformedFrame` for frames the protocol does not allow (binary, oversized).
"""

import asyncio
import binascii
import hashlib
import os

from actuator import FIRMWARE_VERSION
from jeisson.actuator import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    import aiohttp

    class Connection(Protocol):
        """An open websocket to Home Assistant."""

        rx_count: int

        async def send(self, text: str) -> None:
            """Send one text frame."""

        async def receive(self) -> "str | bytes | None":
            """Return the next text message (bytes when not UTF-8), or None once closed."""

        async def ping(self) -> None:
            """Send a ping frame."""

        async def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "") -> None:
            """Close the connection (idempotent)."""


OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_FIN = 0x80
_MASKED = 0x80
_OPCODE_BITS = 0x0F
_LENGTH_BITS = 0x7F
_LEN_16 = 126
_LEN_64 = 127
_MAX_16 = 0xFFFF
_MASK_BYTES = 4
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""RFC 6455's fixed GUID for ``Sec-WebSocket-Accept``."""
_MAX_HEADER_LINES = 64
_MAX_HEADER_LINE = 1024
_HTTP_SWITCHING = 101
DEFAULT_PORT = 80
CONNECT_TIMEOUT_S = 10.0
"""Seconds to open the TCP connection and finish the HTTP upgrade."""
CLOSE_GRACE_S = 2.0
"""Seconds aiohttp waits for the peer's close frame when closing."""


class TransportError(Exception):
    """The websocket could not be opened, or broke."""


class MalformedFrame(TransportError):
    """A frame the protocol forbids arrived; ``code`` is the protocol error code to send."""

    def __init__(self, code: str, message: str) -> None:
        """Record the protocol error code."""
        super().__init__(message)
        self.code = code


# --- aiohttp (CPython) ---------------------------------------------------------------------


class AiohttpConnection:
    """A websocket opened with aiohttp (CPython only)."""

    def __init__(
        self, session: "aiohttp.ClientSession", ws: "aiohttp.ClientWebSocketResponse"
    ) -> None:
        """Wrap an open websocket and the client session that owns it."""
        self._session = session
        self._ws = ws
        self.rx_count = 0

    @classmethod
    async def open(cls, url: str) -> "AiohttpConnection":
        """Connect to ``url`` (``ws://`` or ``wss://``); raise :class:`TransportError`."""
        import aiohttp  # noqa: PLC0415 - not on MicroPython

        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(connect=CONNECT_TIMEOUT_S))
        try:
            ws = await session.ws_connect(
                url,
                autoping=False,  # pings and pongs are counted here, answered in receive()
                max_msg_size=protocol.MAX_FRAME_BYTES,
                timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_GRACE_S),
                headers={"User-Agent": "jeisson-actuator/" + FIRMWARE_VERSION},
            )
        except (aiohttp.ClientError, OSError) as err:
            await session.close()
            raise TransportError(str(err) or type(err).__name__) from err
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def send(self, text: str) -> None:
        """Send one text frame; raise :class:`TransportError` when the socket is gone."""
        try:
            await self._ws.send_str(text)
        except (ConnectionError, RuntimeError) as err:
            raise TransportError("connection lost while sending") from err

    async def receive(self) -> "str | bytes | None":
        """Return the next text message, or None once the connection is closed."""
        import aiohttp  # noqa: PLC0415

        while True:
            msg = await self._ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.rx_count += 1
                return str(msg.data)
            if msg.type == aiohttp.WSMsgType.PING:
                self.rx_count += 1
                await self._ws.pong(msg.data)
                continue
            if msg.type == aiohttp.WSMsgType.PONG:
                self.rx_count += 1
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                raise MalformedFrame(protocol.E_INVALID_MESSAGE, "binary frames are not allowed")
            error = msg.data if msg.type == aiohttp.WSMsgType.ERROR else None
            if isinstance(error, aiohttp.WebSocketError) and (
                error.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            ):
                raise MalformedFrame(protocol.E_FRAME_TOO_LARGE, "frame too large")
            return None  # CLOSE, CLOSING, CLOSED or a broken stream

    async def ping(self) -> None:
        """Send a ping frame."""
        try:
            await self._ws.ping()
        except (ConnectionError, RuntimeError) as err:
            raise TransportError("connection lost while pinging") from err

    async def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        """Close the websocket and its client session."""
        try:
            await self._ws.close(code=code, message=reason.encode())
        finally:
            await self._session.close()


# --- minimal websocket client (MicroPython; also runs on CPython) --------------------------


def parse_ws_url(url: str) -> "tuple[str, int, str]":
    """Return ``(host, port, path)`` of a ``ws://`` URL; raise ``ValueError`` otherwise."""
    prefix = "ws://"
    if not url.startswith(prefix):
        raise ValueError("the minimal websocket client supports ws:// URLs only")
    rest = url[len(prefix) :]
    slash = rest.find("/")
    authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    port = DEFAULT_PORT
    if authority.startswith("["):  # [IPv6]:port
        end = authority.find("]")
        host = authority[1:end]
        if authority[end + 1 : end + 2] == ":":
            port = int(authority[end + 2 :])
    elif ":" in authority:
        colon = authority.rfind(":")
        host = authority[:colon]
        port = int(authority[colon + 1 :])
    else:
        host = authority
    if not host or not 0 < port <= _MAX_16:
        raise ValueError("bad host or port in " + url)
    return host, port, path


def _b64(data: bytes) -> str:
    """Return ``data`` in base64 without the trailing newline."""
    return binascii.b2a_base64(data).decode().strip()


def accept_value(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` a server must answer to ``Sec-WebSocket-Key: key``."""
    return _b64(hashlib.sha1(key.encode() + _WS_GUID).digest())  # noqa: S324 - RFC 6455


def upgrade_request(host: str, port: int, path: str, key: str) -> bytes:
    """Return the HTTP request that opens a websocket at ``path``."""
    lines = (
        "GET " + path + " HTTP/1.1",
        "Host: " + host + ":" + str(port),
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: " + key,
        "Sec-WebSocket-Version: 13",
        "User-Agent: jeisson-actuator/" + FIRMWARE_VERSION,
        "",
        "",
    )
    return "\r\n".join(lines).encode()


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """Return ``payload`` XOR-ed with the 4-byte ``mask`` (masking and unmasking alike)."""
    return bytes(payload[i] ^ mask[i & 3] for i in range(len(payload)))


def encode_frame(opcode: int, payload: bytes, mask: "bytes | None") -> bytes:
    """Return one final websocket frame; clients pass a random 4-byte ``mask``."""
    size = len(payload)
    mask_bit = _MASKED if mask is not None else 0
    if size < _LEN_16:
        head = bytes((_FIN | opcode, mask_bit | size))
    elif size <= _MAX_16:
        head = bytes((_FIN | opcode, mask_bit | _LEN_16)) + size.to_bytes(2, "big")
    else:
        head = bytes((_FIN | opcode, mask_bit | _LEN_64)) + size.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + mask_payload(payload, mask)


class MiniWebSocket:
    """A minimal websocket client over ``asyncio`` streams (MicroPython's transport)."""

    def __init__(self, reader: "asyncio.StreamReader", writer: "asyncio.StreamWriter") -> None:
        """Wrap the streams of an upgraded connection."""
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()
        self._closed = False
        self.rx_count = 0

    @classmethod
    async def open(cls, url: str) -> "MiniWebSocket":
        """Connect to ``url`` and upgrade to a websocket; raise :class:`TransportError`."""
        try:
            host, port, path = parse_ws_url(url)
        except ValueError as err:
            raise TransportError(str(err)) from err
        failure = ""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
            )
        except (OSError, asyncio.TimeoutError) as err:  # noqa: UP041 - MicroPython's differs
            failure = "cannot connect to " + host + ":" + str(port) + ": " + repr(err)
        if failure:
            raise TransportError(failure)
        connection = cls(reader, writer)
        try:
            await asyncio.wait_for(connection._upgrade(host, port, path), CONNECT_TIMEOUT_S)
        except (OSError, EOFError, ValueError, asyncio.TimeoutError) as err:  # noqa: UP041
            failure = "websocket upgrade failed: " + repr(err)
        if failure:
            await connection._drop()
            raise TransportError(failure)
        return connection

    async def _upgrade(self, host: str, port: int, path: str) -> None:
        """Send the HTTP upgrade and check the answer; raise ``ValueError`` when refused."""
        key = _b64(os.urandom(16))
        self._writer.write(upgrade_request(host, port, path, key))
        await self._writer.drain()
        status = (await self._reader.readline()).decode().split()
        if len(status) < 2 or status[1] != str(_HTTP_SWITCHING):
            raise ValueError("server answered: " + " ".join(status[1:]))
        accept = ""
        for _ in range(_MAX_HEADER_LINES):
            line = await self._reader.readline()
            if len(line) > _MAX_HEADER_LINE:
                raise ValueError("header line too long")
            text = line.decode().strip()
            if not text:
                break
            colon = text.find(":")
            if text[:colon].strip().lower() == "sec-websocket-accept":
                accept = text[colon + 1 :].strip()
        else:
            raise ValueError("too many header lines")
        if accept != accept_value(key):
            raise ValueError("bad Sec-WebSocket-Accept")

    async def _write_frame(self, opcode: int, payload: bytes) -> None:
        """Send one masked frame (one writer at a time)."""
        frame = encode_frame(opcode, payload, os.urandom(_MASK_BYTES))
        async with self._lock:
            self._writer.write(frame)
            await self._writer.drain()

    async def _read_frame(self) -> "tuple[bool, int, bytes]":
        """Return ``(fin, opcode, payload)`` of the next frame."""
        head = await self._reader.readexactly(2)
        fin = bool(head[0] & _FIN)
        opcode = head[0] & _OPCODE_BITS
        size = head[1] & _LENGTH_BITS
        if size == _LEN_16:
            size = int.from_bytes(await self._reader.readexactly(2), "big")
        elif size == _LEN_64:
            size = int.from_bytes(await self._reader.readexactly(8), "big")
        if size > protocol.MAX_FRAME_BYTES:
            raise MalformedFrame(protocol.E_FRAME_TOO_LARGE, "frame too large")
        mask = await self._reader.readexactly(_MASK_BYTES) if head[1] & _MASKED else None
        payload = await self._reader.readexactly(size) if size else b""
        if mask is not None:
            payload = mask_payload(payload, mask)
        return fin, opcode, payload

    async def send(self, text: str) -> None:
        """Send one text frame; raise :class:`TransportError` when the socket is gone."""
        if not self._closed:
            try:
                await self._write_frame(OP_TEXT, text.encode())
            except OSError:  # no exception chaining on MicroPython: raise below
                await self._drop()
        if self._closed:
            raise TransportError("connection lost")

    async def receive(self) -> "str | bytes | None":
        """Return the next text message (bytes if not UTF-8), or None once closed."""
        message = b""
        in_text = False
        while not self._closed:
            try:
                fin, opcode, payload = await self._read_frame()
            except (EOFError, OSError):
                await self._drop()
                return None
            self.rx_count += 1
            if opcode == OP_PING:
                await self._write_frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:  # echo the peer's code (RFC 6455 section 5.5.1)
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
                await self.close(code or protocol.CLOSE_NORMAL)
                return None
            elif opcode == OP_TEXT or (opcode == OP_CONTINUATION and in_text):
                message += payload
                if len(message) > protocol.MAX_FRAME_BYTES:
                    raise MalformedFrame(protocol.E_FRAME_TOO_LARGE, "message too large")
                if fin:
                    return _text(message)
                in_text = True
            elif opcode != OP_PONG:
                raise MalformedFrame(protocol.E_INVALID_MESSAGE, "only text frames are allowed")
        return None

    async def ping(self) -> None:
        """Send a ping frame."""
        if not self._closed:
            try:
                await self._write_frame(OP_PING, b"")
            except OSError:
                await self._drop()
        if self._closed:
            raise TransportError("connection lost")

    async def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame (best effort) and close the socket."""
        if self._closed:
            return
        try:  # noqa: SIM105 - no contextlib on MicroPython
            await self._write_frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode()[:120])
        except OSError:
            pass
        await self._drop()

    async def _drop(self) -> None:
        """Close the socket without a close frame."""
        self._closed = True
        self._writer.close()
        try:  # noqa: SIM105 - no contextlib on MicroPython
            await self._writer.wait_closed()
        except OSError:
            pass


def _text(data: bytes) -> "str | bytes":
    """Return ``data`` decoded as UTF-8, or the bytes themselves when they are not UTF-8."""
    try:
        return data.decode()
    except ValueError:  # UnicodeDecodeError; left to the protocol to refuse
        return data
