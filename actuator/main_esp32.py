"""MicroPython entry point of the reference actuator on an ESP32 relay board.

On the board, ``main.py`` holds ``from actuator.main_esp32 import main; main()``. This reads
``/config.json`` (see ``docs/wifi-actuator.md``), switches the relay to the boot state at
once, starts the fail-safe ticker, joins the WiFi network, finds Home Assistant (``url`` in the
config, else zeroconf) and runs the same device loop as the simulator over the minimal
websocket client. MicroPython only: it imports ``machine`` and ``network``.

The device key lives in ``/key.txt``; on first boot a random one is written there. Until Home
Assistant has accepted the device once, every boot prints the key on the serial console so the
user can type it into Home Assistant's confirmation dialog (or print it on a label).
"""

import asyncio
import json
import os

from actuator import mdns
from actuator.device import Device, DeviceInfo
from actuator.hal import Hlw8012, JsonFileStore, PinButton, PinRelay, Pzem004t, TicksClock
from actuator.log import get_logger
from actuator.session import ActuatorClient
from actuator.transport import MiniWebSocket, TransportError
from jeisson.actuator import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONFIG_FILE = "/config.json"
KEY_FILE = "/key.txt"
PAIRED_FILE = "/paired"
STATE_FILE = "/state.json"
WIFI_TIMEOUT_S = 20
WIFI_POLL_S = 0.25
DISCOVERY_TIMEOUT_S = 3.0
DEFAULT_WATCHDOG_S = 30
_MS = 1000

log = get_logger("actuator")


def _exists(path: str) -> bool:
    """Return True when ``path`` exists on the flash filesystem."""
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def load_key() -> bytes:
    """Return the device key from ``KEY_FILE``, creating a random one on first boot."""
    if _exists(KEY_FILE):
        with open(KEY_FILE) as handle:
            return protocol.parse_key(handle.read())
    key = protocol.generate_key()
    with open(KEY_FILE, "w") as handle:
        handle.write(protocol.format_key(key))
    return key


def _mark_paired() -> None:
    """Remember that Home Assistant accepted the device (stop printing the key at boot)."""
    if not _exists(PAIRED_FILE):
        with open(PAIRED_FILE, "w") as handle:
            handle.write("1")


def _default_device_id() -> str:
    """Return ``jeisson-`` followed by the WiFi MAC address in hex."""
    import binascii  # noqa: PLC0415

    import network  # noqa: PLC0415

    mac = network.WLAN(network.STA_IF).config("mac")
    return "jeisson-" + binascii.hexlify(mac).decode()


def _meter(config: "dict[str, Any]", clock: TicksClock) -> "Pzem004t | Hlw8012 | None":
    """Return the power meter the config names, if any."""
    kind = config.get("meter", "none")
    if kind == "pzem004t":
        return Pzem004t(config.get("pzem_uart", 2), config["pzem_tx"], config["pzem_rx"])
    if kind == "hlw8012":
        return Hlw8012(config["hlw_cf_pin"], config["hlw_watts_per_hz"], clock)
    return None


class _Watchdog:
    """The ESP32 hardware watchdog: resets the board if the ticker stops for too long."""

    def __init__(self, timeout_s: int) -> None:
        """Start the watchdog (it cannot be stopped again)."""
        import machine  # noqa: PLC0415

        self._wdt = machine.WDT(timeout=timeout_s * _MS)

    def feed(self) -> None:
        """Postpone the reset."""
        self._wdt.feed()


async def _wifi(ssid: str, password: str) -> None:
    """Join the WiFi network (if not joined) and try to set the clock over NTP."""
    import network  # noqa: PLC0415

    wlan = network.WLAN(network.STA_IF)
    if wlan.isconnected():
        return
    wlan.active(True)
    wlan.connect(ssid, password)
    waited = 0.0
    while not wlan.isconnected():
        if waited >= WIFI_TIMEOUT_S:
            raise TransportError("WiFi " + ssid + " not joined")
        await asyncio.sleep(WIFI_POLL_S)
        waited += WIFI_POLL_S
    log.info("WiFi joined: %s", wlan.ifconfig()[0])
    try:
        import ntptime  # noqa: PLC0415

        ntptime.settime()  # Home Assistant's welcome sets the clock too
    except (ImportError, OSError):
        log.info("NTP not reached; the clock is set by Home Assistant")


def main() -> None:
    """Boot the actuator from ``/config.json`` and run it forever."""
    with open(CONFIG_FILE) as handle:
        config = json.load(handle)
    clock = TicksClock()
    relay = PinRelay(
        config["relay_pin"],
        load_on_nc=config.get("load_on_nc", True),
        active_low=config.get("relay_active_low", False),
    )
    key = load_key()
    info = DeviceInfo(
        config.get("device_id") or _default_device_id(),
        config["name"],
        config["rated_kw"],
        key,
        model=config.get("model", "ESP32 relay"),
    )
    device = Device(info, relay, clock, JsonFileStore(STATE_FILE), meter=_meter(config, clock))
    device.boot()
    if not _exists(PAIRED_FILE):
        # The serial console is the out-of-band channel for the key (physical access only).
        print("Jeisson actuator", info.device_id, "key:", protocol.format_key(key))

    async def resolve() -> str:
        await _wifi(config["wifi_ssid"], config["wifi_password"])
        url = config.get("url") or await mdns.discover(DISCOVERY_TIMEOUT_S)
        if not url:
            raise TransportError("Home Assistant not found through zeroconf")
        return str(url)

    button_pin = config.get("button_pin")
    client = ActuatorClient(
        device,
        resolve,
        MiniWebSocket.open,
        button=PinButton(button_pin) if button_pin is not None else None,
        watchdog=_Watchdog(config.get("watchdog_s", DEFAULT_WATCHDOG_S)),
        on_welcome=_mark_paired,
    )
    asyncio.run(client.run())
