"""Fixtures for the WiFi actuator tests: the stand-in Home Assistant endpoint and devices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest

from actuator.device import Device
from actuator.session import ActuatorClient, Settings

from .common import FAST, TRANSPORTS
from .ha_endpoint import HAEndpoint

if TYPE_CHECKING:
    pass


@pytest.fixture
async def ha() -> AsyncIterator[HAEndpoint]:
    endpoint = HAEndpoint()
    await endpoint.start()
    yield endpoint
    await endpoint.stop()


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def start_client() -> AsyncIterator[Callable[..., ActuatorClient]]:
    """Start ActuatorClients as tasks; cancel them after the test."""
    tasks: list[asyncio.Task[None]] = []

    def start(
        device: Device, url: str, transport: str = "aiohttp", settings: Settings = FAST
    ) -> ActuatorClient:
        async def resolve() -> str:
            return url

        client = ActuatorClient(device, resolve, TRANSPORTS[transport], settings=settings)
        tasks.append(asyncio.get_running_loop().create_task(client.run()))
        return client

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
