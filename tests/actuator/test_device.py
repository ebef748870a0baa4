"""The relay logic: holds, the fail-safe restore, idempotent commands, boot with persisted holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actuator.device import RECENT_COMMAND_IDS, DeviceInfo
from actuator.hal import JsonFileStore
from jeisson.actuator import protocol

from .common import KEY, ManualClock, make_device


def _off(command_id: str, duration_s: float, until: float = 1.8e9) -> dict[str, object]:
    return protocol.decode_from_server(
        protocol.encode(protocol.command_off(command_id, duration_s, until))
    )


def _on(command_id: str) -> dict[str, object]:
    return protocol.decode_from_server(protocol.encode(protocol.command_on(command_id)))


def test_off_switches_the_relay_off_and_reports_the_hold() -> None:
    clock = ManualClock()
    device, relay = make_device(clock=clock)
    assert relay.is_on()
    version = device.version
    ack = device.handle_command(_off("c1", 60, until=1.8e9 + 60))
    assert not relay.is_on()
    assert device.version > version
    assert ack["type"] == "ack"
    assert ack["reply_to"] == "c1"
    assert ack["duplicate"] is False
    state = ack["state"]
    assert state["relay"] == "off"
    assert state["power_w"] == 0.0
    assert state["cause"] == "command"
    assert state["hold"] == {"command_id": "c1", "until": 1.8e9 + 60, "remaining_s": 60.0}
    protocol.decode_from_device(protocol.encode(ack))  # a valid ack on the wire
    clock.advance(20)
    assert device.state_payload()["hold"]["remaining_s"] == 40.0


def test_the_device_restores_the_load_by_its_own_clock_with_no_controller() -> None:
    clock = ManualClock()
    store = JsonFileStore(None)
    device, relay = make_device(clock=clock, store=store)
    device.handle_command(_off("c1", 30))
    clock.advance(29.9)
    assert device.tick() is False
    assert not relay.is_on()
    clock.advance(0.1)
    assert device.tick() is True
    assert relay.is_on()
    state = device.state_payload()
    assert state["cause"] == "failsafe"
    assert state["hold"] is None
    assert (store.load() or {})["hold"] is None  # nothing left to restore after a reboot
    assert device.tick() is False


def test_off_uses_duration_not_the_controllers_wall_clock() -> None:
    """``until`` from a controller whose clock is hours off does not change the hold length."""
    clock = ManualClock()
    device, relay = make_device(clock=clock)
    device.handle_command(_off("c1", 10, until=clock.raw + 5 * 3600))
    clock.advance(10)
    device.tick()
    assert relay.is_on()


def test_a_repeated_command_id_is_acknowledged_and_changes_nothing() -> None:
    clock = ManualClock()
    device, relay = make_device(clock=clock)
    device.handle_command(_off("c1", 60))
    clock.advance(10)
    device.handle_command(_on("c2"))
    assert relay.is_on()
    version = device.version
    again = device.handle_command(_off("c1", 60))  # a late retransmission of the old off
    assert again["duplicate"] is True
    assert again["reply_to"] == "c1"
    assert relay.is_on()
    assert device.hold is None
    assert device.version == version
    assert relay.switch_count == 2


def test_on_cancels_the_hold() -> None:
    clock = ManualClock()
    device, relay = make_device(clock=clock)
    device.handle_command(_off("c1", 600))
    ack = device.handle_command(_on("c2"))
    assert relay.is_on()
    assert ack["state"]["hold"] is None
    assert ack["state"]["cause"] == "command"
    clock.advance(601)
    assert device.tick() is False  # the cancelled hold does not fire later


def test_a_new_off_replaces_the_hold_end() -> None:
    clock = ManualClock()
    device, relay = make_device(clock=clock)
    device.handle_command(_off("c1", 100))
    clock.advance(50)
    version = device.version
    device.handle_command(_off("c2", 10))
    assert device.version > version  # a new end time is reported at once
    clock.advance(10)
    assert device.tick() is True
    assert relay.is_on()


def test_local_button_overrides_the_hold() -> None:
    clock = ManualClock()
    device, relay = make_device(clock=clock)
    device.handle_command(_off("c1", 100))
    device.local_override()
    assert relay.is_on()
    assert device.state_payload()["cause"] == "local"
    assert device.hold is None


def test_boot_with_a_persisted_future_hold_stays_off_then_restores(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    clock = ManualClock()
    device, _relay = make_device(clock=clock, store=JsonFileStore(path))
    device.handle_command(_off("c1", 120, until=clock.raw + 120))
    saved = json.loads(Path(path).read_text())
    assert saved["hold"]["command_id"] == "c1"
    assert saved["hold"]["until_wall"] == pytest.approx(clock.raw + 120)

    clock.advance(30)  # power cut for 30 s; the device boots again
    rebooted, relay = make_device(clock=clock, store=JsonFileStore(path))
    assert not relay.is_on()
    state = rebooted.state_payload()
    assert state["cause"] == "boot"
    assert state["hold"]["command_id"] == "c1"
    assert state["hold"]["remaining_s"] == pytest.approx(90.0)
    clock.advance(89)
    assert rebooted.tick() is False
    clock.advance(1)
    assert rebooted.tick() is True
    assert relay.is_on()
    assert rebooted.state_payload()["cause"] == "failsafe"
    assert json.loads(Path(path).read_text())["hold"] is None


def test_boot_with_a_past_hold_restores_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    clock = ManualClock()
    device, _ = make_device(clock=clock, store=JsonFileStore(path))
    device.handle_command(_off("c1", 60))
    clock.advance(61)
    rebooted, relay = make_device(clock=clock, store=JsonFileStore(path))
    assert relay.is_on()
    assert rebooted.hold is None
    assert json.loads(Path(path).read_text())["hold"] is None


def test_boot_without_a_trusted_clock_restores_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    clock = ManualClock()
    device, _ = make_device(clock=clock, store=JsonFileStore(path))
    device.handle_command(_off("c1", 600))
    # Power loss on an ESP32: the RTC restarts near the epoch and nobody has set it yet.
    rebooted, relay = make_device(clock=ManualClock(wall=None), store=JsonFileStore(path))
    assert relay.is_on()
    assert rebooted.hold is None


@pytest.mark.parametrize(
    "hold",
    [
        {"command_id": "c1", "until": 1.0, "until_wall": 1_800_000_000.0 + 3 * 86400},
        {"command_id": "c1", "until": 1.0},
        {"command_id": "bad id", "until": 1.0, "until_wall": 1_800_000_100.0},
        "garbage",
    ],
)
def test_boot_with_an_implausible_or_unreadable_hold_restores(tmp_path: Path, hold: object) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"format": 1, "hold": hold, "recent": []}))
    _device, relay = make_device(clock=ManualClock(), store=JsonFileStore(str(path)))
    assert relay.is_on()


def test_boot_with_a_corrupt_state_file_restores(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{half a file")
    _device, relay = make_device(clock=ManualClock(), store=JsonFileStore(str(path)))
    assert relay.is_on()
    assert json.loads(path.read_text())["hold"] is None  # rewritten cleanly


def test_command_ids_survive_a_reboot(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    clock = ManualClock()
    device, _ = make_device(clock=clock, store=JsonFileStore(path))
    device.handle_command(_off("c1", 5))
    clock.advance(6)
    device.tick()
    rebooted, relay = make_device(clock=clock, store=JsonFileStore(path))
    assert rebooted.handle_command(_off("c1", 5))["duplicate"] is True
    assert relay.is_on()


def test_recent_ids_are_bounded() -> None:
    device, _ = make_device(clock=ManualClock())
    for i in range(RECENT_COMMAND_IDS + 5):
        device.handle_command(_on(f"c{i}"))
    assert device.handle_command(_on("c0"))["duplicate"] is False  # forgotten long ago
    assert device.handle_command(_on(f"c{RECENT_COMMAND_IDS + 4}"))["duplicate"] is True


def test_power_is_measured_or_falls_back_to_rated() -> None:
    clock = ManualClock()
    metered, _ = make_device(clock=clock, rated_kw=2.0)
    watts, measured = metered.power()
    assert measured
    assert 1940 <= watts <= 2060
    metered.handle_command(_off("c1", 10))
    assert metered.power() == (0.0, True)

    bare, _ = make_device(clock=clock, rated_kw=1.5, meter=False)
    assert bare.power() == (1500.0, False)
    bare.handle_command(_off("c1", 10))
    assert bare.power() == (0.0, False)
    assert bare.state_payload()["power_measured"] is False


def test_device_info_is_checked() -> None:
    for args, message in (
        (("bad id", "n", 1.0, KEY), "device id"),
        (("d", "", 1.0, KEY), "name"),
        (("d", "n", 0.0, KEY), "rated power"),
        (("d", "n", 101.0, KEY), "rated power"),
        (("d", "n", 1.0, b"short"), "key"),
    ):
        with pytest.raises(ValueError, match=message):
            DeviceInfo(*args)


def test_store_writes_atomically_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = JsonFileStore(str(path))
    assert store.load() is None
    store.save({"a": 1})
    store.save({"a": 2})
    assert store.load() == {"a": 2}
    assert not (tmp_path / "state.json.tmp").exists()
    path.write_text("[1]")
    assert store.load() is None
