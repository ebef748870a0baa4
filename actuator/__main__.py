r"""``python -m actuator``: the Jeisson WiFi actuator simulator (CPython).

Runs the reference device's code with a simulated relay and load::

    python -m actuator --url ws://HOST:8123/api/jeisson/actuator --device-id ID --key KEY \
        --name NAME --rated-kw 2.0 [--state-file F]

Without ``--url`` it finds Home Assistant through zeroconf. ``--new-key`` prints a fresh random
key and exits. The key may also come from the ``JEISSON_ACTUATOR_KEY`` environment variable
(keeps it out of the process list). Exit with Ctrl-C or SIGTERM.
"""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from actuator import mdns
from actuator.device import Device, DeviceInfo
from actuator.hal import JsonFileStore, SimulatedLoad, SimulatedRelay, SystemClock
from actuator.session import ActuatorClient, Settings
from actuator.transport import AiohttpConnection, MiniWebSocket, TransportError
from jeisson.actuator import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from actuator.transport import Connection

KEY_ENV = "JEISSON_ACTUATOR_KEY"
"""Environment variable that may hold the device key instead of ``--key``."""
DISCOVERY_TIMEOUT_S = 3.0

log = logging.getLogger("actuator")


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m actuator",
        description="Jeisson WiFi actuator simulator: a simulated relay and load that connect "
        "to Home Assistant's Jeisson endpoint.",
    )
    parser.add_argument("--new-key", action="store_true", help="print a fresh key and exit")
    parser.add_argument(
        "--url",
        help="Home Assistant's endpoint, ws://HOST:8123"
        + protocol.WS_PATH
        + " (default: find it through zeroconf)",
    )
    parser.add_argument("--device-id", help="unique id, 1-64 of A-Z a-z 0-9 _ . : -")
    parser.add_argument("--key", help="device key (32-64 hex digits; or $" + KEY_ENV + ")")
    parser.add_argument("--name", help="name shown in Home Assistant")
    parser.add_argument("--rated-kw", type=float, help="the load's rated power in kW")
    parser.add_argument("--state-file", help="where the hold survives restarts (default: none)")
    parser.add_argument(
        "--no-meter", action="store_true", help="no power meter: report rated power when on"
    )
    parser.add_argument(
        "--transport",
        choices=("aiohttp", "mini"),
        default="aiohttp",
        help="websocket client: aiohttp, or the minimal one the ESP32 uses (ws:// only)",
    )
    parser.add_argument("--model", default="Jeisson simulator", help="model shown in HA")
    parser.add_argument("--heartbeat", type=float, default=20.0, help="seconds between pings")
    parser.add_argument("--backoff-max", type=float, default=60.0, help="longest reconnect wait")
    parser.add_argument(
        "--rejected-backoff",
        type=float,
        default=60.0,
        help="wait after Home Assistant rejects the key or version",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    return parser


def _device_info(args: argparse.Namespace, parser: argparse.ArgumentParser) -> DeviceInfo:
    """Return the device's identity from the arguments, or exit with a usage error."""
    missing = [
        flag
        for flag, value in (
            ("--device-id", args.device_id),
            ("--name", args.name),
            ("--rated-kw", args.rated_kw),
        )
        if value is None
    ]
    key_text = args.key or os.environ.get(KEY_ENV)
    if not key_text:
        missing.append("--key")
    if missing:
        parser.error("missing " + ", ".join(missing))
    try:
        return DeviceInfo(
            args.device_id,
            args.name,
            args.rated_kw,
            protocol.parse_key(key_text or ""),
            model=args.model,
        )
    except ValueError as err:
        parser.error(str(err))
    raise AssertionError("unreachable")  # parser.error exits


def _resolver(url: "str | None") -> Callable[[], Awaitable[str]]:
    """Return the coroutine function that yields Home Assistant's URL (fixed or discovered)."""

    async def fixed() -> str:
        assert url is not None  # noqa: S101 - chosen only with a URL
        return url

    async def discovered() -> str:
        found = await mdns.discover(DISCOVERY_TIMEOUT_S)
        if found is None:
            raise TransportError("no Home Assistant answered the zeroconf query")
        log.info("found Home Assistant at %s", found)
        return found

    return fixed if url else discovered


def _connector(name: str) -> "Callable[[str], Awaitable[Connection]]":
    """Return the function that opens a websocket with the chosen transport."""
    return MiniWebSocket.open if name == "mini" else AiohttpConnection.open


async def run(args: argparse.Namespace, info: DeviceInfo) -> None:
    """Boot the simulated device and keep it connected until cancelled."""
    relay = SimulatedRelay()
    meter = None if args.no_meter else SimulatedLoad(relay, info.rated_kw * 1000.0)
    device = Device(info, relay, SystemClock(), JsonFileStore(args.state_file), meter=meter)
    device.boot()
    client = ActuatorClient(
        device,
        _resolver(args.url),
        _connector(args.transport),
        settings=Settings(
            heartbeat_s=args.heartbeat,
            backoff_max_s=args.backoff_max,
            rejected_backoff_s=args.rejected_backoff,
        ),
    )
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await client.run()
    log.info("stopped")


def main(argv: "Sequence[str] | None" = None) -> int:
    """Run the simulator; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.new_key:
        print(protocol.format_key(protocol.generate_key()))
        return 0
    info = _device_info(args, parser)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    log.info(
        "simulated actuator %s (%s, %.2f kW), firmware %s",
        info.device_id,
        info.name,
        info.rated_kw,
        info.firmware,
    )
    asyncio.run(run(args, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
