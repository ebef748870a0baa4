"""Support of the WiFi actuator tests: the endpoint on a real socket, devices, raw clients.

Devices are the project's real reference device: ``python -m actuator`` as a subprocess
(:class:`SimulatorProcess`), or its ``Device`` + ``ActuatorClient`` session loop run as a task
in the test's event loop (:class:`SimDevice`, fast timings). Raw websocket clients speak the
protocol by hand for the malformed and hostile cases.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from actuator.device import Device, DeviceInfo
from actuator.hal import JsonFileStore, SimulatedLoad, SimulatedRelay, SystemClock
from actuator.session import ActuatorClient, Settings
from actuator.transport import AiohttpConnection
from custom_components.jeisson.const import DOMAIN
from custom_components.jeisson.wifi_endpoint import pairing_unique_id
from jeisson.actuator import protocol
from tests.helpers import CHECKOUT, wait_for

ROOT = CHECKOUT
ENTRY_ID = "01JEISSONTESTENTRY000000000"
STORE_KEY = f"{DOMAIN}.wifi_devices.{ENTRY_ID}"
KEY = bytes(range(16))
KEY_TEXT = protocol.format_key(KEY)
OTHER_KEY = bytes(range(100, 116))
FAST = Settings(
    tick_s=0.02,
    heartbeat_s=5.0,
    handshake_timeout_s=2.0,
    backoff_base_s=0.05,
    backoff_max_s=0.2,
    rejected_backoff_s=0.3,
)


def paired_record(
    device_id: str, *, key: bytes = KEY, name: str = "Water heater", rated_kw: float = 2.0
) -> dict[str, Any]:
    """Return a paired device as the hub stores it."""
    return {
        "device_id": device_id,
        "name": name,
        "firmware": "0.1.0",
        "rated_kw": rated_kw,
        "meter": True,
        "model": "test",
        "key": key.hex(),
        "manual_off": False,
    }


def store_paired(hass_storage: dict[str, Any], *records: dict[str, Any]) -> None:
    """Pre-pair devices with the test entry (its store as a previous run left it)."""
    hass_storage[STORE_KEY] = {
        "version": 1,
        "minor_version": 1,
        "key": STORE_KEY,
        "data": {"devices": list(records)},
    }


def stored_devices(hass_storage: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the paired devices the hub saved."""
    return list(hass_storage[STORE_KEY]["data"]["devices"])


async def serve(hass: HomeAssistant, aiohttp_client: ClientSessionGenerator) -> str:
    """Serve Home Assistant's HTTP app on 127.0.0.1; return the actuator endpoint's URL.

    Components that register HTTP views (config, diagnostics) must be set up before.
    """
    client = await aiohttp_client(hass.http.app)
    return f"ws://{client.host}:{client.port}{protocol.WS_PATH}"


@pytest.fixture
async def endpoint_url(
    hass: HomeAssistant, aiohttp_client: ClientSessionGenerator, loaded_entry: MockConfigEntry
) -> str:
    """The loaded home's actuator endpoint on a real socket."""
    return await serve(hass, aiohttp_client)


@dataclass
class SimDevice:
    """A reference device (real device logic and session loop) running as a task."""

    device: Device
    relay: SimulatedRelay
    client: ActuatorClient
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Stop the session loop (the device 'loses power')."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


StartDevice = Callable[..., SimDevice]


@pytest.fixture
async def start_device(hass: HomeAssistant) -> AsyncIterator[StartDevice]:
    """Start reference devices in the test's loop; stop them after the test."""
    started: list[SimDevice] = []

    def start(
        url: str,
        device_id: str,
        *,
        key: bytes = KEY,
        name: str = "Water heater",
        rated_kw: float = 2.0,
        store: JsonFileStore | None = None,
    ) -> SimDevice:
        relay = SimulatedRelay()
        info = DeviceInfo(device_id, name, rated_kw, key, model="test")
        device = Device(
            info,
            relay,
            SystemClock(),
            store or JsonFileStore(None),
            meter=SimulatedLoad(relay, rated_kw * 1000.0),
        )
        device.boot()

        async def resolve() -> str:
            return url

        client = ActuatorClient(device, resolve, AiohttpConnection.open, settings=FAST)
        task = asyncio.get_running_loop().create_task(client.run())
        sim = SimDevice(device, relay, client, task)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@dataclass
class SimulatorProcess:
    """``python -m actuator`` as a real process, with its state file and log."""

    process: asyncio.subprocess.Process
    state_file: Path
    log_file: Path
    logs: list[Any] = field(default_factory=list)

    def hold(self) -> Any:
        """Return the hold the device persisted (None: the load is on), or 'unreadable'."""
        try:
            return json.loads(self.state_file.read_text())["hold"]
        except (OSError, ValueError, KeyError):
            return "unreadable"

    def output(self) -> str:
        """Return what the simulator logged."""
        return self.log_file.read_text(errors="replace")

    async def stop(self) -> int:
        """Stop it with SIGTERM (as a user would); return its exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        for handle in self.logs:
            handle.close()
        return int(self.process.returncode or 0)


StartSimulator = Callable[..., Any]


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[StartSimulator]:
    """Start ``python -m actuator`` processes; stop them after the test."""
    started: list[SimulatorProcess] = []

    async def start(
        url: str,
        device_id: str,
        *,
        key: bytes = KEY,
        name: str = "Pool pump",
        rated_kw: float = 1.5,
    ) -> SimulatorProcess:
        index = len(started)
        state_file = tmp_path / f"{device_id}-{index}.json"
        log_file = tmp_path / f"{device_id}-{index}.log"
        log = log_file.open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "actuator",
            "--url",
            url,
            "--device-id",
            device_id,
            "--name",
            name,
            "--rated-kw",
            str(rated_kw),
            "--state-file",
            str(state_file),
            "--backoff-max",
            "0.3",
            "--rejected-backoff",
            "0.5",
            "--heartbeat",
            "5",
            cwd=ROOT,
            env={"JEISSON_ACTUATOR_KEY": protocol.format_key(key), "PATH": "/usr/bin:/bin"},
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        sim = SimulatorProcess(process, state_file, log_file, [log])
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


# --- raw protocol clients ----------------------------------------------------------------


@dataclass
class RawDevice:
    """A hand-driven websocket client: sends exactly the frames a test asks for."""

    session: aiohttp.ClientSession
    ws: aiohttp.ClientWebSocketResponse
    challenge: dict[str, Any]
    nonce: str = field(default_factory=protocol.new_nonce)

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message."""
        await self.ws.send_str(json.dumps(message))

    async def next(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """Return the next JSON message, or None when the server closed."""
        frame = await self.ws.receive(timeout=timeout)
        if frame.type is aiohttp.WSMsgType.TEXT:
            return dict(json.loads(frame.data))
        return None

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; return its close code."""
        deadline = time.monotonic() + timeout
        while not self.ws.closed and time.monotonic() < deadline:
            await self.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        return self.ws.close_code

    def hello(
        self, device_id: str, key: bytes = KEY, *, name: str = "Raw device", **fields: Any
    ) -> dict[str, Any]:
        """Return a valid ``hello`` answering this connection's challenge (fields override)."""
        proof = protocol.device_proof(key, self.challenge["nonce"], self.nonce, device_id)
        message = protocol.hello(
            device_id=device_id,
            name=name,
            rated_kw=1.0,
            firmware="raw-1",
            nonce=self.nonce,
            proof=proof,
            state_payload=protocol.state_payload(
                relay="on",
                power_w=1000.0,
                power_measured=True,
                hold=None,
                cause="boot",
                uptime_s=1.0,
            ),
            meter=True,
        )
        message.update(fields)
        return message

    async def close(self) -> None:
        """Close the client side."""
        await self.ws.close()
        await self.session.close()


@pytest.fixture
async def raw_device(hass: HomeAssistant) -> AsyncIterator[Callable[[str], Any]]:
    """Open raw websocket clients; close them after the test."""
    opened: list[RawDevice] = []

    async def connect(url: str, *, peer: str | None = None) -> RawDevice:
        """Connect; ``peer`` is the address a trusted proxy forwards (``X-Forwarded-For``)."""
        session = aiohttp.ClientSession()
        headers = {"X-Forwarded-For": peer} if peer else {}
        try:
            ws = await session.ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError:
            await session.close()
            raise
        frame = await ws.receive(timeout=5)
        raw = RawDevice(session, ws, json.loads(frame.data))
        opened.append(raw)
        return raw

    yield connect
    for raw in opened:
        await raw.close()


# --- flows -------------------------------------------------------------------------------


def pairing_flows(hass: HomeAssistant, device_id: str) -> list[dict[str, Any]]:
    """Return the discovered flows in progress for ``device_id``."""
    return [
        dict(flow)
        for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if flow["context"].get("unique_id") == pairing_unique_id(device_id)
    ]


async def wait_for_pairing_flow(hass: HomeAssistant, device_id: str) -> dict[str, Any]:
    """Wait until the device's discovered flow asks for its key; return it."""
    await wait_for(lambda: bool(pairing_flows(hass, device_id)), what=f"flow for {device_id}")
    return pairing_flows(hass, device_id)[0]


async def pair(hass: HomeAssistant, device_id: str, key_text: str = KEY_TEXT) -> dict[str, Any]:
    """Confirm the device's discovered flow with ``key_text``; return the flow result."""
    flow = await wait_for_pairing_flow(hass, device_id)
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"key": key_text})
    return dict(result)


def state_of(hass: HomeAssistant, entity_id: str) -> str | None:
    """Return an entity's state (None when it does not exist)."""
    state = hass.states.get(entity_id)
    return None if state is None else state.state
