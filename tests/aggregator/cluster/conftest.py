"""Fixtures of the cluster tests: the shared NATS server, a subject prefix per test."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from aggregator.cluster.bus import Bus
from aggregator.cluster.settings import ClusterSettings

NATS_URL = os.environ.get("JEISSON_TEST_NATS_URL", "nats://127.0.0.1:4222")
"""The NATS server the tests use; CI starts it (scripts/lib/services.sh). Never stopped by tests."""


def _nats_answers(url: str) -> bool:
    host_port = url.split("://", 1)[-1].split(",", maxsplit=1)[0]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 4222)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def nats_url() -> str:
    """Return the NATS URL; fail (never skip) when NATS is not running."""
    if not _nats_answers(NATS_URL):
        pytest.fail(
            f"NATS is needed at {NATS_URL} and is not answering. Start it (scripts/lib/services.sh "
            "does: nats-server -a 127.0.0.1 -p 4222 -js) or point JEISSON_TEST_NATS_URL at one."
        )
    return NATS_URL


@pytest.fixture
def prefix() -> str:
    """Return a subject prefix of this test's own, so tests never hear each other."""
    return f"jeisson-test.{uuid.uuid4().hex[:10]}"


def settings_for(nats_url: str, prefix: str, **overrides: float) -> ClusterSettings:
    """Return fast cluster settings for one node of a test cluster."""
    values: dict[str, float] = {
        "lease_ttl_s": 1.5,
        "sweep_interval_s": 0.2,
        "heartbeat_s": 0.2,
        "node_ttl_s": 0.8,
        "forward_patience_s": 3.0,
        "request_timeout_s": 0.5,
    }
    values.update(overrides)
    return ClusterSettings(nats_url=nats_url, subject_prefix=prefix, **values)  # type: ignore[arg-type]


@pytest.fixture
async def bus_factory(nats_url: str, prefix: str) -> AsyncIterator[object]:
    """Yield a factory of connected buses (one per simulated process), closed afterwards."""
    buses: list[Bus] = []

    async def make(settings: ClusterSettings | None = None) -> Bus:
        bus = Bus(settings or settings_for(nats_url, prefix))
        await bus.connect()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()
