"""Malformed frames from Home Assistant: the device answers with an error, closes the connection
cleanly, reconnects, and keeps working (both websocket clients)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from actuator.session import ActuatorClient
from jeisson.actuator import protocol
from tests.helpers import wait_for

from .common import KEY, make_device
from .ha_endpoint import DeviceLink, HAEndpoint

StartClient = Callable[..., ActuatorClient]


async def _welcomed(ha: HAEndpoint, client: ActuatorClient) -> DeviceLink:
    link = await ha.next_link()
    await link.next(protocol.HELLO)
    await wait_for(lambda: client.authenticated, what="welcome")
    return link


@pytest.mark.parametrize(
    "case",
    [
        ("{not json", protocol.E_INVALID_JSON, protocol.CLOSE_PROTOCOL),
        ("[1, 2, 3]", protocol.E_INVALID_MESSAGE, protocol.CLOSE_PROTOCOL),
        ('{"type": "reboot"}', protocol.E_UNKNOWN_TYPE, protocol.CLOSE_PROTOCOL),
        ('{"type": "command", "id": "c1", "command": "off"}', "invalid_message", 4000),
        (b"\x00binary", protocol.E_INVALID_MESSAGE, protocol.CLOSE_PROTOCOL),
        ("x" * (protocol.MAX_FRAME_BYTES + 10), protocol.E_FRAME_TOO_LARGE, None),
    ],
)
async def test_malformed_frame_gets_an_error_and_a_clean_close(
    ha: HAEndpoint,
    start_client: StartClient,
    transport: str,
    case: tuple[str | bytes, str, int | None],
) -> None:
    frame, code, close_code = case
    ha.keys["dev-1"] = KEY
    device, relay = make_device()
    client = start_client(device, ha.url, transport)
    link = await _welcomed(ha, client)
    await link.command_off(60, "held")
    await link.next(protocol.ACK)

    if isinstance(frame, bytes):
        await link.ws.send_bytes(frame)
    else:
        await link.send_raw(frame)
    await wait_for(link.closed.is_set, what="the device closing the connection")
    if close_code is not None:
        error = await link.next(protocol.ERROR)
        assert error["code"] == code
        assert link.close_code == close_code
    else:  # oversized: closed with 1009; aiohttp's client closes before anything is sent
        assert link.close_code == protocol.CLOSE_TOO_BIG
        if transport == "mini":
            assert (await link.next(protocol.ERROR))["code"] == code

    # Nothing else is affected: the hold goes on, the device reconnects and obeys again.
    assert not relay.is_on()
    assert device.hold is not None
    assert device.hold.command_id == "held"
    again = await _welcomed(ha, client)
    hello = again.hello
    assert hello is not None
    assert hello["state"]["hold"]["command_id"] == "held"
    await again.send(protocol.command_on("release"))
    assert (await again.next(protocol.ACK))["state"]["relay"] == "on"
    assert relay.is_on()


async def test_unknown_command_is_refused_and_the_connection_stays(
    ha: HAEndpoint, start_client: StartClient, transport: str
) -> None:
    ha.keys["dev-1"] = KEY
    device, relay = make_device()
    client = start_client(device, ha.url, transport)
    link = await _welcomed(ha, client)
    await link.send_raw('{"type": "command", "id": "c9", "command": "self_destruct"}')
    error = await link.next(protocol.ERROR)
    assert error == {
        "type": "error",
        "code": "unknown_command",
        "message": "unknown command: self_destruct",
        "reply_to": "c9",
    }
    await link.send(protocol.command_off("c10", 30, time.time() + 30))
    assert (await link.next(protocol.ACK))["reply_to"] == "c10"
    assert not relay.is_on()
    assert not link.closed.is_set()
    assert len(ha.links) == 1
