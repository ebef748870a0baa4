"""Helpers the WiFi actuator tests share: keys, fast settings, transports, devices, a clock.

Fixtures live in conftest.py; test modules import these (never each other).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from actuator.device import Device, DeviceInfo
from actuator.hal import Clock, JsonFileStore, SimulatedLoad, SimulatedRelay, SystemClock
from actuator.session import Settings
from actuator.transport import AiohttpConnection, MiniWebSocket

if TYPE_CHECKING:
    from actuator.transport import Connection

KEY = bytes(range(16))
OTHER_KEY = bytes(range(100, 116))
FAST = Settings(
    tick_s=0.02,
    heartbeat_s=5.0,
    handshake_timeout_s=2.0,
    backoff_base_s=0.05,
    backoff_max_s=0.2,
    rejected_backoff_s=0.3,
)
TRANSPORTS: dict[str, Callable[[str], Awaitable[Connection]]] = {
    "aiohttp": AiohttpConnection.open,
    "mini": MiniWebSocket.open,
}


class ManualClock(Clock):
    """A clock the test moves by hand (monotonic and wall time advance together)."""

    def __init__(self, wall: float | None = 1_800_000_000.0) -> None:
        super().__init__()
        self.mono = 1000.0
        self.raw = wall if wall is not None else 100.0  # 100: an ESP32 RTC after power loss

    def monotonic(self) -> float:
        return self.mono

    def raw_wall(self) -> float:
        return self.raw

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.raw += seconds


def make_device(
    *,
    device_id: str = "dev-1",
    key: bytes = KEY,
    clock: Clock | None = None,
    store: JsonFileStore | None = None,
    meter: bool = True,
    rated_kw: float = 2.0,
) -> tuple[Device, SimulatedRelay]:
    relay = SimulatedRelay()
    info = DeviceInfo(device_id, "Water heater", rated_kw, key, model="test")
    device = Device(
        info,
        relay,
        clock or SystemClock(),
        store or JsonFileStore(None),
        meter=SimulatedLoad(relay, rated_kw * 1000.0) if meter else None,
    )
    device.boot()
    return device, relay
