"""Handshake, commands and reports between a device and a real aiohttp stand-in for HA.

Every test runs with both websocket clients: aiohttp's and the minimal one the ESP32 uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from actuator.session import OUTCOME_REJECTED, ActuatorClient, Settings
from jeisson.actuator import protocol
from tests.helpers import wait_for

from .common import FAST, KEY, OTHER_KEY, make_device
from .ha_endpoint import HAEndpoint

StartClient = Callable[..., ActuatorClient]


async def test_confirmed_device_is_welcomed_and_obeys(
    ha: HAEndpoint, start_client: StartClient, transport: str
) -> None:
    ha.keys["dev-1"] = KEY
    device, relay = make_device()
    client = start_client(device, ha.url, transport)
    link = await ha.next_link()
    hello = await link.next(protocol.HELLO)
    assert hello["device_id"] == "dev-1"
    assert hello["name"] == "Water heater"
    assert hello["rated_kw"] == 2.0
    assert hello["firmware"] == "0.1.0"
    assert hello["protocol"] == protocol.PROTOCOL_VERSION
    assert hello["meter"] is True
    assert hello["state"]["relay"] == "on"
    assert KEY.hex() not in str(link.received)  # the key itself never crosses the wire
    await wait_for(lambda: client.authenticated, what="welcome")

    command_id = await link.command_off(0.6)
    ack = await link.next(protocol.ACK)
    assert ack["reply_to"] == command_id
    assert ack["state"]["relay"] == "off"
    assert ack["state"]["hold"]["command_id"] == command_id
    assert not relay.is_on()

    restored = await link.next(protocol.STATE)
    while restored["state"]["relay"] != "on":
        restored = await link.next(protocol.STATE)
    assert restored["state"]["cause"] == "failsafe"
    assert restored["state"]["hold"] is None

    await link.send(protocol.command_off(command_id, 30, time.time() + 30))  # retransmission
    again = await link.next(protocol.ACK)
    assert again["duplicate"] is True
    assert relay.is_on()

    await link.command_off(30)
    await link.next(protocol.ACK)
    await link.send(protocol.command_on("on-1"))
    on_ack = await link.next(protocol.ACK)
    assert on_ack["state"]["relay"] == "on"
    assert on_ack["state"]["hold"] is None


async def test_wrong_key_is_rejected(
    ha: HAEndpoint, start_client: StartClient, transport: str
) -> None:
    ha.keys["dev-1"] = OTHER_KEY  # Home Assistant holds a different key for this device
    device, relay = make_device()
    client = start_client(device, ha.url, transport)
    link = await ha.next_link()
    hello = await link.next(protocol.HELLO)
    await wait_for(link.closed.is_set, what="close")
    assert link.sent_close_code == protocol.CLOSE_AUTH_FAILED
    assert not client.authenticated
    await wait_for(lambda: client.last_outcome == OUTCOME_REJECTED, what="rejected outcome")
    # The proof was genuine: the right key verifies it, the wrong one does not.
    assert protocol.check_device_proof(KEY, link.nonce, hello)
    assert not protocol.check_device_proof(OTHER_KEY, link.nonce, hello)
    assert relay.is_on()


async def test_new_device_waits_for_the_user_to_type_its_key(
    ha: HAEndpoint, start_client: StartClient, transport: str
) -> None:
    device, relay = make_device(device_id="new-one")
    client = start_client(device, ha.url, transport)
    link = await ha.next_link()
    hello = await link.next(protocol.HELLO)
    assert hello["state"]["relay"] == "on"

    await link.command_off(60, "early")
    refusal = await link.next(protocol.ERROR)
    assert refusal["code"] == protocol.E_NOT_AUTHENTICATED
    assert refusal["reply_to"] == "early"
    assert relay.is_on()

    assert not await ha.confirm(link, protocol.format_key(OTHER_KEY))  # a typo is caught
    assert not client.authenticated
    assert await ha.confirm(link, protocol.format_key(KEY).upper())
    await wait_for(lambda: client.authenticated, what="welcome after confirmation")
    await link.command_off(60, "after")
    assert (await link.next(protocol.ACK))["reply_to"] == "after"
    assert not relay.is_on()


async def test_a_server_that_cannot_prove_the_key_is_never_obeyed(
    ha: HAEndpoint, start_client: StartClient, transport: str
) -> None:
    device, relay = make_device(device_id="victim")
    client = start_client(device, ha.url, transport)
    link = await ha.next_link()
    await link.next(protocol.HELLO)
    await link.send(protocol.welcome("0" * 64, time.time()))  # a rogue "Home Assistant"
    refusal = await link.next(protocol.ERROR)
    assert refusal["code"] == protocol.E_AUTH_FAILED
    await wait_for(link.closed.is_set, what="close")
    assert link.close_code == protocol.CLOSE_AUTH_FAILED
    assert not client.authenticated
    assert relay.is_on()


async def test_an_unsupported_protocol_version_is_refused(
    ha: HAEndpoint, start_client: StartClient, transport: str
) -> None:
    ha.challenge_overrides = {"protocol_min": 2, "protocol_max": 3}
    device, _ = make_device()
    client = start_client(device, ha.url, transport)
    link = await ha.next_link()
    refusal = await link.next(protocol.ERROR)
    assert refusal["code"] == protocol.E_UNSUPPORTED_VERSION
    assert "2-3" in refusal["message"]
    await wait_for(link.closed.is_set, what="close")
    assert link.close_code == protocol.CLOSE_UNSUPPORTED_VERSION
    assert link.hello is None
    await wait_for(lambda: client.last_outcome == OUTCOME_REJECTED, what="rejected outcome")


async def test_periodic_reports_follow_the_welcome_interval(
    ha: HAEndpoint, start_client: StartClient, transport: str
) -> None:
    ha.keys["dev-1"] = KEY
    ha.report_interval_s = 1
    device, _ = make_device()
    start_client(device, ha.url, transport)
    link = await ha.next_link()
    await link.next(protocol.HELLO)
    first = await link.next(protocol.STATE, timeout=3)
    second = await link.next(protocol.STATE, timeout=3)
    gap = second["state"]["uptime_s"] - first["state"]["uptime_s"]
    assert 0.8 <= gap <= 1.5
    assert second["state"]["power_measured"] is True
    assert 1900 <= second["state"]["power_w"] <= 2100


async def test_a_silent_server_is_dropped_and_the_device_reconnects(
    ha: HAEndpoint, start_client: StartClient, transport: str
) -> None:
    ha.keys["dev-1"] = KEY
    ha.autoping = False  # pings are never answered
    device, _ = make_device()
    settings = Settings(tick_s=0.02, heartbeat_s=0.3, backoff_base_s=0.05, backoff_max_s=0.1)
    start_client(device, ha.url, transport, settings)
    first = await ha.next_link()
    await wait_for(first.closed.is_set, timeout=5, what="the device dropping the link")
    second = await ha.next_link()
    assert (await second.next(protocol.HELLO))["device_id"] == "dev-1"


async def test_the_hold_ends_on_time_while_home_assistant_is_gone(
    ha: HAEndpoint, start_client: StartClient, transport: str
) -> None:
    ha.keys["dev-1"] = KEY
    device, relay = make_device()
    client = start_client(device, ha.url, transport, FAST)
    link = await ha.next_link()
    await wait_for(lambda: client.authenticated, what="welcome")
    await link.command_off(0.8)
    await link.next(protocol.ACK)
    sent = time.monotonic()
    await ha.stop()  # Home Assistant dies mid-event
    assert not relay.is_on()
    await wait_for(relay.is_on, timeout=5, what="fail-safe restore")
    elapsed = time.monotonic() - sent
    assert 0.7 <= elapsed <= 2.0
    assert device.state_payload()["cause"] == "failsafe"
