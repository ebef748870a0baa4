"""Fixtures for OpenADR: an aggregator whose OpenADR traffic is checked against the spec.

Each server runs on SQLite unless a test parametrizes it indirectly with ``"postgresql"``
(``VTN_ON_BOTH_DATABASES``, ``VEN_ON_BOTH_DATABASES`` in common.py): the key tests run on both
backends, the rest on SQLite only, which keeps the suite quick.
"""

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


def _database_url(request: pytest.FixtureRequest) -> str | None:
    """Return a server's database: None for its SQLite file, else a fresh PostgreSQL one."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        return None
    assert backend == "postgresql", backend
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def vtn_database(request: pytest.FixtureRequest) -> str | None:
    """Return the database of ``vtn_server`` (SQLite unless parametrized indirectly)."""
    return _database_url(request)


@pytest.fixture
def ven_database(request: pytest.FixtureRequest) -> str | None:
    """Return the database of ``jeisson`` (SQLite unless parametrized indirectly)."""
    return _database_url(request)


@pytest.fixture
async def vtn_server(
    vtn_database: str | None, tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[CheckedServer]:
    """Yield an aggregator on a free port whose OpenADR traffic must follow the spec."""
    running = CheckedServer(
        db_path=tmp_path / "vtn.db",
        db_url=vtn_database,
        port=free_port(),
        settings=FAST,
    )
    running.session = http
    await running.start()
    yield running
    await running.stop()
    assert running.checker.violations == [], "\n".join(running.checker.violations)
    assert running.checker.jeisson_request_violations == []


@pytest.fixture
async def jeisson(
    ven_database: str | None,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[CheckedServer]:
    """Yield an aggregator that follows a utility's VTN (its secret key file in tmp_path)."""
    monkeypatch.setenv("JEISSON_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    running = CheckedServer(
        db_path=tmp_path / "jeisson.db",
        db_url=ven_database,
        port=free_port(),
        settings=FAST,
    )
    running.session = http
    await running.start()
    yield running
    await running.stop()
    assert running.checker.violations == []


@pytest.fixture
def server(vtn_server: CheckedServer) -> CheckedServer:
    """Make the OpenADR-checked aggregator the ``server`` that ``make_home`` enrols homes on."""
    return vtn_server
