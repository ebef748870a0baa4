"""The hardware shim's pure parts: clock trust, relay pin levels, PZEM-004T and HLW8012 maths."""

from __future__ import annotations

import time

import pytest

from actuator import hal

from .common import ManualClock


def test_wall_clock_is_trusted_only_when_plausible_or_synced() -> None:
    unset = ManualClock(wall=None)  # an ESP32 RTC after power loss
    assert unset.wall() is None
    unset.sync(1_800_000_000.0)
    assert unset.wall() == pytest.approx(1_800_000_000.0)
    unset.advance(5)
    assert unset.wall() == pytest.approx(1_800_000_005.0)

    skewed = ManualClock(wall=1_800_000_000.0)
    assert skewed.wall() == 1_800_000_000.0
    skewed.sync(1_800_000_120.0)  # Home Assistant's clock is two minutes ahead
    assert skewed.wall() == pytest.approx(1_800_000_120.0)


def test_system_clock() -> None:
    clock = hal.SystemClock()
    first = clock.monotonic()
    assert clock.monotonic() >= first
    assert clock.wall() == pytest.approx(time.time(), abs=1)


@pytest.mark.parametrize(
    ("load_on", "load_on_nc", "active_low", "level"),
    [
        # Load on the normally-closed contact: the coil is energised only to cut it.
        (True, True, False, 0),
        (False, True, False, 1),
        (True, True, True, 1),
        (False, True, True, 0),
        # Load on the normally-open contact.
        (True, False, False, 1),
        (False, False, False, 0),
        (True, False, True, 0),
        (False, False, True, 1),
    ],
)
def test_relay_pin_level(load_on: bool, load_on_nc: bool, active_low: bool, level: int) -> None:
    assert hal.relay_pin_level(load_on, load_on_nc, active_low) == level


def test_modbus_crc_and_pzem_request() -> None:
    # The well-known PZEM-004T v3 "read all" request to the general address.
    assert hal.pzem_request() == bytes.fromhex("f8040000000a6464")
    assert hal.modbus_crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS check value


def _pzem_answer(power_tenths: int, address: int = hal.PZEM_DEFAULT_ADDRESS) -> bytes:
    registers = [2301, 0x1234, 0, power_tenths & 0xFFFF, power_tenths >> 16, 99, 0, 500, 95, 0]
    body = bytes((address, 4, 20)) + b"".join(r.to_bytes(2, "big") for r in registers)
    crc = hal.modbus_crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def test_pzem_answers_are_decoded_and_checked() -> None:
    assert hal.pzem_power_w(_pzem_answer(12345)) == pytest.approx(1234.5)
    assert hal.pzem_power_w(_pzem_answer(0x12345)) == pytest.approx(7456.5)  # high word used
    broken = bytearray(_pzem_answer(12345))
    broken[9] ^= 1
    assert hal.pzem_power_w(bytes(broken)) is None
    assert hal.pzem_power_w(_pzem_answer(10)[:-1]) is None
    assert hal.pzem_power_w(_pzem_answer(10, address=1)) is None
    assert hal.pzem_power_w(b"") is None


def test_hlw8012_power() -> None:
    assert hal.hlw8012_power_w(50, 10.0, 3.4) == pytest.approx(17.0)
    assert hal.hlw8012_power_w(5, 0.0, 3.4) is None


def test_simulated_load_follows_the_relay() -> None:
    relay = hal.SimulatedRelay()
    load = hal.SimulatedLoad(relay, 1000.0, variation=0.05)
    readings = [load.read_w() for _ in range(50)]
    assert all(r is not None and 950 <= r <= 1050 for r in readings)
    relay.set(False)
    assert load.read_w() == 0.0
    assert relay.switch_count == 1
