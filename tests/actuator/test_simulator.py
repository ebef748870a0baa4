"""``python -m actuator`` as a real process against a real aiohttp stand-in for Home Assistant."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from jeisson.actuator import protocol
from tests.helpers import wait_for

from .common import KEY
from .ha_endpoint import HAEndpoint

ROOT = Path(__file__).resolve().parents[2]
StartSimulator = Callable[[str, str, Path], Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[StartSimulator]:
    processes: list[asyncio.subprocess.Process] = []
    logs: list[BinaryIO] = []

    async def start(url: str, transport: str, state_file: Path) -> asyncio.subprocess.Process:
        log = (tmp_path / f"sim-{len(processes)}.log").open("wb")
        logs.append(log)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "actuator",
            "--url",
            url,
            "--device-id",
            "sim-1",
            "--key",
            protocol.format_key(KEY),
            "--name",
            "Pool pump",
            "--rated-kw",
            "1.5",
            "--state-file",
            str(state_file),
            "--transport",
            transport,
            "--backoff-max",
            "0.3",
            "--heartbeat",
            "5",
            cwd=ROOT,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()
    for log in logs:
        log.close()


def _hold(state_file: Path) -> object:
    try:
        return json.loads(state_file.read_text())["hold"]
    except (OSError, ValueError):
        return "unreadable"


async def test_simulator_restores_on_time_after_home_assistant_dies(
    ha: HAEndpoint, simulator: StartSimulator, transport: str, tmp_path: Path
) -> None:
    ha.keys["sim-1"] = KEY
    ha.report_interval_s = 1
    state_file = tmp_path / "state.json"
    process = await simulator(ha.url, transport, state_file)

    link = await ha.next_link(timeout=15)
    hello = await link.next(protocol.HELLO, timeout=10)
    assert hello["device_id"] == "sim-1"
    assert hello["name"] == "Pool pump"
    assert hello["rated_kw"] == 1.5
    assert hello["state"]["relay"] == "on"
    report = await link.next(protocol.STATE, timeout=5)
    assert 1400 <= report["state"]["power_w"] <= 1600
    assert report["state"]["power_measured"] is True

    command_id = await link.command_off(2.0)
    ack = await link.next(protocol.ACK)
    sent = time.monotonic()
    assert ack["state"]["relay"] == "off"
    assert _hold(state_file) not in (None, "unreadable")

    link.abort()  # Home Assistant dies mid-event, no close frame
    await ha.stop()
    await wait_for(lambda: _hold(state_file) is None, timeout=6, what="restore by the device")
    elapsed = time.monotonic() - sent
    assert 1.8 <= elapsed <= 3.5, elapsed

    await ha.start()  # Home Assistant comes back: the device reconnects and says what it did
    back = await ha.next_link(timeout=10)
    hello = await back.next(protocol.HELLO, timeout=10)
    assert hello["state"]["relay"] == "on"
    assert hello["state"]["cause"] == "failsafe"
    assert hello["state"]["hold"] is None
    await back.send(protocol.command_off(command_id, 60, time.time() + 60))  # stale retransmit
    assert (await back.next(protocol.ACK))["duplicate"] is True

    assert process.returncode is None
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 10) == 0
    output = (tmp_path / "sim-0.log").read_text()
    assert "load restored by the device" in output
    assert "Traceback" not in output
    assert protocol.format_key(KEY) not in output
    assert KEY.hex() not in output


async def test_simulator_boots_into_a_persisted_hold_and_restores_it(
    ha: HAEndpoint, simulator: StartSimulator, transport: str, tmp_path: Path
) -> None:
    ha.keys["sim-1"] = KEY
    state_file = tmp_path / "state.json"
    state_file.write_text(
        json.dumps(
            {
                "format": 1,
                "hold": {
                    "command_id": "c-old",
                    "until": time.time() + 2,
                    "until_wall": time.time() + 2,
                },
                "recent": ["c-old"],
            }
        )
    )
    await simulator(ha.url, transport, state_file)
    link = await ha.next_link(timeout=15)
    hello = await link.next(protocol.HELLO, timeout=10)
    assert hello["state"]["relay"] == "off"
    assert hello["state"]["cause"] == "boot"
    assert hello["state"]["hold"]["command_id"] == "c-old"
    assert 0 < hello["state"]["hold"]["remaining_s"] <= 2
    restored = await link.next(protocol.STATE, timeout=5)
    while restored["state"]["relay"] != "on":
        restored = await link.next(protocol.STATE, timeout=5)
    assert restored["state"]["cause"] == "failsafe"
    assert _hold(state_file) is None


async def test_simulator_with_a_wrong_key_is_rejected_and_keeps_its_load_on(
    ha: HAEndpoint, simulator: StartSimulator, tmp_path: Path
) -> None:
    ha.keys["sim-1"] = bytes(16)
    process = await simulator(ha.url, "aiohttp", tmp_path / "state.json")
    link = await ha.next_link(timeout=15)
    hello = await link.next(protocol.HELLO, timeout=10)
    await wait_for(link.closed.is_set, what="rejection")
    assert link.sent_close_code == protocol.CLOSE_AUTH_FAILED
    assert hello["state"]["relay"] == "on"
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 10) == 0
    output = (tmp_path / "sim-0.log").read_text()
    assert "auth_failed" in output
