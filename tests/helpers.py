"""Helpers every test suite shares (host and Home Assistant side; nothing here imports HA)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
"""The top of the checkout (where pyproject.toml is)."""

WAIT_TIMEOUT_S = 20.0
"""How long :func:`wait_for` polls before failing (real servers run on their own clocks)."""
WAIT_POLL_S = 0.05


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = WAIT_TIMEOUT_S,
    what: str = "",
    poll: float = WAIT_POLL_S,
) -> None:
    """Poll ``condition`` (sync or async) until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(poll)
