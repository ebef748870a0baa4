"""The running-server fixtures the aggregator and browser tests share (conftests import them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import free_port

from .common import FAST, RunningServer


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """Yield an aiohttp session."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def server(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[RunningServer]:
    """Yield a started aggregator on a free port with a fresh SQLite database."""
    running = RunningServer(db_path=tmp_path / "aggregator.db", port=free_port(), settings=FAST)
    running.session = http
    await running.start()
    yield running
    await running.stop()
