"""Fixtures for OpenADR: an aggregator whose OpenADR traffic is checked against the spec."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.aggregator.common import FAST
from tests.helpers import free_port

from .common import CheckedServer


@pytest.fixture(autouse=True)
def _oauth_over_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let oauthlib (inside openadr3-client) fetch tokens from a test server over plain HTTP."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.fixture
async def vtn_server(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[CheckedServer]:
    """Yield an aggregator on a free port whose OpenADR traffic must follow the spec."""
    running = CheckedServer(db_path=tmp_path / "vtn.db", port=free_port(), settings=FAST)
    running.session = http
    await running.start()
    yield running
    await running.stop()
    assert running.checker.violations == [], "\n".join(running.checker.violations)
    assert running.checker.jeisson_request_violations == []
