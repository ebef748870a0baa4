"""The WiFi actuator endpoint against hostile and broken clients: refusals, timeouts, takeovers.

Every refused frame gets an ``error`` frame and the close code docs/wifi-actuator.md gives it,
ends only that connection, and leaves a connected reference device untouched.
"""

# ruff: noqa: F811 - the fixtures imported from wifi_support are parameters of the tests

from __future__ import annotations

import json
from typing import Any

import pytest
from homeassistant.core import HomeAssistant

from custom_components.jeisson.wifi_endpoint import get_router
from jeisson.actuator import protocol
from tests.helpers import wait_for

from .wifi_support import (
    endpoint_url,  # noqa: F401 - fixture
    paired_record,
    raw_device,  # noqa: F401 - fixture
    start_device,  # noqa: F401 - fixture
    state_of,
    store_paired,
)

GOOD = "good-1"
KNOWN = "raw-known"
GOOD_RELAY = "switch.water_heater_relay"
KNOWN_RELAY = "switch.raw_device_relay"
VALID_STATE = {
    "relay": "on",
    "power_w": 10.0,
    "power_measured": True,
    "hold": None,
    "cause": "boot",
    "uptime_s": 1.0,
}


@pytest.fixture
def default_loads(hass_storage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """No loads; two devices already paired with the home."""
    store_paired(
        hass_storage, paired_record(GOOD), paired_record(KNOWN, name="Raw device", rated_kw=1.0)
    )
    return {}


def _bad_first_frames(raw: Any) -> list[tuple[str, str | bytes, str, int]]:
    """(what, frame, error code, close code) sent instead of a hello."""
    return [
        ("not JSON", "{not json", protocol.E_INVALID_JSON, protocol.CLOSE_PROTOCOL),
        ("not an object", "[1, 2]", protocol.E_INVALID_MESSAGE, protocol.CLOSE_PROTOCOL),
        ("unknown type", '{"type": "reboot"}', protocol.E_UNKNOWN_TYPE, protocol.CLOSE_PROTOCOL),
        (
            "state before hello",
            json.dumps({"type": "state", "state": VALID_STATE}),
            protocol.E_INVALID_MESSAGE,
            protocol.CLOSE_PROTOCOL,
        ),
        ("binary", b"\x00\x01", protocol.E_INVALID_MESSAGE, protocol.CLOSE_PROTOCOL),
        (
            "too large",
            "x" * (protocol.MAX_FRAME_BYTES + 1),
            protocol.E_FRAME_TOO_LARGE,
            protocol.CLOSE_TOO_BIG,
        ),
        (
            "newer protocol",
            json.dumps(raw.hello("newer", protocol=2)),
            protocol.E_UNSUPPORTED_VERSION,
            protocol.CLOSE_UNSUPPORTED_VERSION,
        ),
        (
            "hello without proof",
            json.dumps({k: v for k, v in raw.hello("noproof").items() if k != "proof"}),
            protocol.E_INVALID_MESSAGE,
            protocol.CLOSE_PROTOCOL,
        ),
    ]


async def test_malformed_frames_get_an_error_and_a_clean_close_and_nothing_else_changes(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any, start_device: Any
) -> None:
    """Each bad frame closes only its own connection; the good device stays connected."""
    good = start_device(endpoint_url, GOOD)
    await wait_for(lambda: state_of(hass, GOOD_RELAY) == "on", what="good device connected")

    probe = await raw_device(endpoint_url)
    for what, frame, code, close_code in _bad_first_frames(probe):
        raw = await raw_device(endpoint_url)
        if isinstance(frame, bytes):
            await raw.ws.send_bytes(frame)
        else:
            await raw.ws.send_str(frame)
        error = await raw.next()
        assert error is not None, what
        assert (error["type"], error["code"]) == ("error", code), what
        assert await raw.closed_with() == close_code, what

    # After the handshake too: a second hello, then garbage from a pending device.
    for what, frame, code in (
        ("second hello", json.dumps(probe.hello("pending-1")), protocol.E_INVALID_MESSAGE),
        ("garbage", "}{", protocol.E_INVALID_JSON),
    ):
        raw = await raw_device(endpoint_url)
        await raw.send(raw.hello("pending-1"))
        assert (await raw.next())["type"] == "pending"
        await raw.ws.send_str(frame)
        error = await raw.next()
        assert error is not None, what
        assert error["code"] == code, what
        assert await raw.closed_with() == protocol.CLOSE_PROTOCOL, what

    await hass.async_block_till_done()
    assert state_of(hass, GOOD_RELAY) == "on"
    assert good.client.connections == 1
    assert good.client.authenticated


async def test_a_silent_client_is_dropped_after_the_handshake_timeout(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any
) -> None:
    """No hello in time: handshake_timeout and close 4008."""
    router = get_router(hass)
    assert router is not None
    router.limits.handshake_timeout_s = 0.3
    raw = await raw_device(endpoint_url)
    assert raw.challenge["type"] == "challenge"
    assert raw.challenge["protocol_min"] == raw.challenge["protocol_max"] == 1
    error = await raw.next()
    assert error is not None
    assert error["code"] == protocol.E_HANDSHAKE_TIMEOUT
    assert await raw.closed_with() == protocol.CLOSE_HANDSHAKE_TIMEOUT


async def test_a_device_that_stops_reporting_is_dropped_and_unavailable(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any
) -> None:
    """Reachable means connected and reporting: silence ends the link."""
    router = get_router(hass)
    assert router is not None
    router.limits.silence_timeout_s = 0.5
    raw = await raw_device(endpoint_url)
    await raw.send(raw.hello(KNOWN))
    assert (await raw.next())["type"] == "welcome"
    await wait_for(lambda: state_of(hass, KNOWN_RELAY) == "on", what="connected")
    assert await raw.closed_with() == 1001
    await wait_for(lambda: state_of(hass, KNOWN_RELAY) == "unavailable", what="dropped")


async def test_a_newer_connection_of_a_device_replaces_the_older_one(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any
) -> None:
    """error{replaced} and close 4009 for the old link; the device stays available."""
    old = await raw_device(endpoint_url)
    await old.send(old.hello(KNOWN))
    assert (await old.next())["type"] == "welcome"
    await wait_for(lambda: state_of(hass, KNOWN_RELAY) == "on", what="connected")
    new = await raw_device(endpoint_url)
    await new.send(new.hello(KNOWN, state={**VALID_STATE, "power_w": 42.0}))
    assert (await new.next())["type"] == "welcome"
    error = await old.next()
    assert error is not None
    assert error["code"] == protocol.E_REPLACED
    assert await old.closed_with() == protocol.CLOSE_REPLACED
    await wait_for(lambda: state_of(hass, "sensor.raw_device_power") == "42.0", what="new link")
    assert state_of(hass, KNOWN_RELAY) == "on"
    # Reports on the new link keep flowing; an error report without a command is only logged.
    await new.send({"type": "error", "code": "sensor_fault", "message": "meter unreadable"})
    await new.send({"type": "state", "state": {**VALID_STATE, "power_w": 7.0}})
    await wait_for(lambda: state_of(hass, "sensor.raw_device_power") == "7.0", what="report")


async def test_a_device_refusing_the_challenge_is_let_go(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any
) -> None:
    """A device speaking another version answers the challenge with an error and closes."""
    raw = await raw_device(endpoint_url)
    await raw.send(
        protocol.error(protocol.E_UNSUPPORTED_VERSION, "this device speaks protocol 2 only")
    )
    assert await raw.closed_with() == 1001
    assert state_of(hass, KNOWN_RELAY) == "unavailable"
