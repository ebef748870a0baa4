"""A TCP load balancer without stickiness, as an operator would put in front of a cluster.

Each accepted connection goes to the preferred backend if it answers, else to the next one that
does; nothing remembers where a client was before. Tests use one per home, so they can choose
where it lands (:meth:`Balancer.prefer`) and cut its connection (:meth:`Balancer.cut`), as a
restarted load balancer or a dead process would.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.helpers import free_port

CHUNK_BYTES = 65536


class Balancer:
    """Listens on 127.0.0.1:``port``; forwards each connection to one of ``backends``."""

    def __init__(self, backends: list[int], preferred: int) -> None:
        """Forward to ``backends`` (ports), trying ``preferred`` first."""
        self.backends = backends
        self.preferred = preferred
        self.port = free_port()
        self.last_backend: int | None = None
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """Return the base URL homes use."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
        await self.cut()

    def prefer(self, backend: int) -> None:
        """Send new connections to ``backend`` first."""
        self.preferred = backend

    async def cut(self) -> None:
        """Close every forwarded connection (the clients reconnect through the balancer)."""
        pipes = list(self._pipes)
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            order = [self.preferred] + [port for port in self.backends if port != self.preferred]
            for backend in order:
                try:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend)
                except OSError:
                    continue
                self.last_backend = backend
                pipes = [
                    asyncio.ensure_future(_pipe(reader, up_writer)),
                    asyncio.ensure_future(_pipe(up_reader, writer)),
                ]
                self._pipes.update(pipes)
                try:  # either side closing closes both, as a proxy does
                    await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for pipe in pipes:
                        pipe.cancel()
                    await asyncio.gather(*pipes, return_exceptions=True)
                    self._pipes.difference_update(pipes)
                    up_writer.close()
                return
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()
