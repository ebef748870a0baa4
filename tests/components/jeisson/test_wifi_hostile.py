"""The WiFi actuator endpoint under attack: floods, impostors, slow and failing peers, outsiders.

Home Assistant's own HTTP server runs on a real socket with ``use_x_forwarded_for`` and
127.0.0.1 as trusted proxy, so hand-driven clients can come "from" any address (the way a
reverse proxy in front of Home Assistant forwards them); the homeowner's device is the project's
reference device (real device logic and session loop) connecting directly.
"""

# ruff: noqa: F811 - the fixtures imported from wifi_support are parameters of the tests

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
import pytest
from homeassistant.config_entries import SOURCE_IGNORE
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from markdown_it import MarkdownIt  # CommonMark, as the frontend's renderer (rich pulls it in)
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.config_flow import escape_markdown
from custom_components.jeisson.const import CONF_WIFI_REMOTE_DEVICES, DOMAIN
from custom_components.jeisson.wifi_admission import ThrottledLog
from custom_components.jeisson.wifi_endpoint import WifiRouter, get_router, pairing_unique_id
from jeisson.actuator import protocol
from tests.helpers import wait_for

from .wifi_support import (
    KEY,
    OTHER_KEY,
    endpoint_url,  # noqa: F401 - fixture
    pair,
    paired_record,
    pairing_flows,
    raw_device,  # noqa: F401 - fixture
    start_device,  # noqa: F401 - fixture
    state_of,
    store_paired,
    wait_for_pairing_flow,
)

KNOWN = "known-relay"
REAL = "boiler-1"


@pytest.fixture
async def config_entry(hass: HomeAssistant, config_entry: MockConfigEntry) -> MockConfigEntry:
    """Home Assistant behind a trusted proxy (127.0.0.1) before the home loads."""
    assert await async_setup_component(
        hass, "http", {"http": {"use_x_forwarded_for": True, "trusted_proxies": ["127.0.0.1"]}}
    )
    return config_entry


@pytest.fixture
def default_loads(hass_storage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """No loads; one device already paired with the home."""
    store_paired(hass_storage, paired_record(KNOWN, name="Known relay"))
    return {}


def router_of(hass: HomeAssistant) -> WifiRouter:
    """Return the endpoint's router."""
    router = get_router(hass)
    assert router is not None
    return router


def jeisson_flows(hass: HomeAssistant) -> list[dict[str, Any]]:
    """Return every Jeisson flow in progress (what the homeowner sees as discovered)."""
    return [dict(flow) for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)]


async def refused_status(url: str, peer: str) -> tuple[int, str | None]:
    """Open the endpoint from ``peer``; return the refusal's HTTP status and Retry-After."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, headers={"X-Forwarded-For": peer})
    headers = refused.value.headers or {}
    return refused.value.status, headers.get("Retry-After")


async def test_a_flood_of_fake_devices_leaves_the_cap_of_flows_and_the_real_device_pairs(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any, start_device: Any
) -> None:
    """60 fake hellos from 10 addresses (some re-using the real id): at most the cap of flows.

    The homeowner's device, pending first, is paired with its key and switches its relay.
    """
    router = router_of(hass)
    router.limits.max_pending_devices = 5
    router.limits.max_hellos_per_device = 3
    real = start_device(endpoint_url, REAL, name="Boiler")
    await wait_for_pairing_flow(hass, REAL)

    answers: dict[str, int] = {}
    for index in range(60):
        peer = f"192.168.7.{10 + index % 10}"
        raw = await raw_device(endpoint_url, peer=peer)
        device_id = REAL if index % 10 == 0 else f"fake-{index}"
        await raw.send(raw.hello(device_id, OTHER_KEY, name=f"Fake {index}"))
        answer = await raw.next()
        assert answer is not None
        kind = answer["code"] if answer["type"] == "error" else answer["type"]
        answers[kind] = answers.get(kind, 0) + 1
        if kind == protocol.E_BUSY:
            assert await raw.closed_with() == protocol.CLOSE_TRY_LATER
    await hass.async_block_till_done()

    # The real device and 4 fakes wait; 2 impostors share the real id; the rest are refused.
    assert answers == {"pending": 6, protocol.E_BUSY: 54}
    flows = jeisson_flows(hass)
    assert len(flows) == 5
    assert len({flow["context"]["unique_id"] for flow in flows}) == 5
    assert len(pending := pairing_flows(hass, REAL)) == 1
    assert pending[0]["context"]["title_placeholders"] == {"name": "Boiler"}

    result = await pair(hass, REAL)
    assert result["reason"] == "wifi_paired"
    await wait_for(lambda: real.client.authenticated, what="real device welcomed")
    await wait_for(lambda: state_of(hass, "switch.boiler_relay") == "on", what="relay shown")
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.boiler_relay"}, blocking=True
    )
    await wait_for(lambda: not real.relay.is_on(), what="relay off")
    assert state_of(hass, "switch.boiler_relay") == "off"
    assert len(jeisson_flows(hass)) == 4  # the fakes' flows stay until they expire


async def test_pending_devices_expire_with_their_flow(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any
) -> None:
    """A device nobody pairs is forgotten: flow aborted, connection closed with busy."""
    router_of(hass).limits.pending_expiry_s = 0.5
    raw = await raw_device(endpoint_url)
    await raw.send(raw.hello("left-alone"))
    assert (await raw.next())["type"] == "pending"
    await wait_for_pairing_flow(hass, "left-alone")
    error = await raw.next(timeout=5)
    assert error is not None
    assert error["code"] == protocol.E_BUSY
    assert await raw.closed_with() == protocol.CLOSE_TRY_LATER
    await hass.async_block_till_done()
    assert not pairing_flows(hass, "left-alone")
    assert "left-alone" not in router_of(hass).pending


async def test_an_ignored_device_is_forgotten_and_refused(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any
) -> None:
    """Ignoring the flow closes the device (ignored, 4010); it is not offered again."""
    raw = await raw_device(endpoint_url)
    await raw.send(raw.hello("unwanted"))
    assert (await raw.next())["type"] == "pending"
    await wait_for_pairing_flow(hass, "unwanted")
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_IGNORE},
        data={"unique_id": pairing_unique_id("unwanted"), "title": "Raw device"},
    )
    assert result["type"] == "create_entry"
    error = await raw.next()
    assert error is not None
    assert error["code"] == protocol.E_IGNORED
    assert await raw.closed_with() == protocol.CLOSE_IGNORED
    await hass.async_block_till_done()
    assert not pairing_flows(hass, "unwanted")
    assert "unwanted" not in router_of(hass).pending

    again = await raw_device(endpoint_url)
    await again.send(again.hello("unwanted"))
    assert (await again.next())["code"] == protocol.E_IGNORED
    await hass.async_block_till_done()
    assert not pairing_flows(hass, "unwanted")
    assert "unwanted" not in router_of(hass).pending


async def test_the_handshake_deadline_is_absolute(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any
) -> None:
    """A client that only pings is cut at the deadline all the same."""
    router_of(hass).limits.handshake_timeout_s = 0.5
    raw = await raw_device(endpoint_url)
    started = time.monotonic()
    answer: dict[str, Any] | None = None
    while answer is None and time.monotonic() - started < 5:
        await raw.ws.ping()
        try:
            answer = await raw.next(timeout=0.1)
        except TimeoutError:
            continue
    assert answer is not None
    assert answer["code"] == protocol.E_HANDSHAKE_TIMEOUT
    assert time.monotonic() - started < 2
    assert await raw.closed_with() == protocol.CLOSE_HANDSHAKE_TIMEOUT


async def test_unauthenticated_connections_are_capped_per_peer_and_in_all(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any
) -> None:
    """Over a cap: HTTP 503 with Retry-After; a welcomed device no longer counts."""
    router = router_of(hass)
    router.limits.max_unauthenticated_per_peer = 2
    router.limits.max_unauthenticated = 3
    known = await raw_device(endpoint_url, peer="192.168.1.2")
    await known.send(known.hello(KNOWN))
    assert (await known.next())["type"] == "welcome"
    assert router.admission.unauthenticated == 0

    await raw_device(endpoint_url, peer="192.168.1.3")
    last_of_peer = await raw_device(endpoint_url, peer="192.168.1.3")
    assert await refused_status(endpoint_url, "192.168.1.3") == (503, "30")
    await raw_device(endpoint_url, peer="192.168.1.4")
    assert await refused_status(endpoint_url, "192.168.1.5") == (503, "30")
    assert router.admission.unauthenticated == 3

    await last_of_peer.close()
    await wait_for(lambda: router.admission.unauthenticated == 2, what="place given back")
    assert (await raw_device(endpoint_url, peer="192.168.1.5")).challenge["type"] == "challenge"
    assert not known.ws.closed


async def test_wrong_proofs_are_rate_limited_per_peer_and_logged_once(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """After the allowed failures the peer gets HTTP 429; one warning; others unaffected."""
    caplog.set_level(logging.WARNING)
    router_of(hass).limits.max_failures_per_peer = 3
    attacker = "192.168.9.66"
    for _ in range(3):
        raw = await raw_device(endpoint_url, peer=attacker)
        await raw.send(raw.hello(KNOWN, OTHER_KEY))
        assert (await raw.next())["code"] == protocol.E_AUTH_FAILED
        assert await raw.closed_with() == protocol.CLOSE_AUTH_FAILED
    status, retry_after = await refused_status(endpoint_url, attacker)
    assert status == 429
    assert retry_after is not None
    assert 1 <= int(retry_after) <= 60
    wrong_key = [r for r in caplog.records if "wrong device key" in r.getMessage()]
    assert len(wrong_key) == 1

    device = await raw_device(endpoint_url, peer="192.168.9.2")
    await device.send(device.hello(KNOWN, KEY))
    assert (await device.next())["type"] == "welcome"


async def test_peers_outside_the_local_network_are_refused_unless_allowed(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, endpoint_url: str, raw_device: Any
) -> None:
    """A public address gets HTTP 403; the homeowner's option lets it in."""
    assert await refused_status(endpoint_url, "203.0.113.7") == (403, None)
    assert not pairing_flows(hass, "outsider")
    hass.config_entries.async_update_entry(
        loaded_entry, options={**loaded_entry.options, CONF_WIFI_REMOTE_DEVICES: True}
    )
    await hass.async_block_till_done()
    raw = await raw_device(endpoint_url, peer="203.0.113.7")
    await raw.send(raw.hello("outsider"))
    assert (await raw.next())["type"] == "pending"


async def test_device_text_is_shown_literally_in_the_pairing_dialog(
    hass: HomeAssistant, endpoint_url: str, raw_device: Any
) -> None:
    """A markdown link or HTML in the model or name is escaped: rendered, it is plain text."""
    model = "[Claim your reward](https://evil.example/x) <img src=x onerror=alert(1)>"
    name = "**Boiler**\n# big"
    raw = await raw_device(endpoint_url)
    await raw.send(raw.hello("sneaky", name=name, model=model))
    flow = await wait_for_pairing_flow(hass, "sneaky")
    assert flow["context"]["title_placeholders"] == {"name": "**Boiler** # big"}
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {"key": protocol.format_key(OTHER_KEY)}
    )
    placeholders = result["description_placeholders"]
    rendered = MarkdownIt("commonmark").render(
        f"A device **{placeholders['name']}** ({placeholders['model']}) connected."
    )
    assert "<a" not in rendered
    assert "<img" not in rendered
    assert "<h1>" not in rendered
    assert "<strong>**Boiler** # big</strong>" in rendered
    assert "[Claim your reward](https://evil.example/x) &lt;img src=x onerror=alert(1)&gt;" in (
        rendered
    )


def test_escaped_text_renders_as_itself() -> None:
    """Every ASCII punctuation character and a GFM-style bare URL come out literally."""
    text = "".join(chr(c) for c in range(33, 127)) + " www.evil.example https://evil.example"
    rendered = MarkdownIt("commonmark").enable("linkify").render(escape_markdown(text))
    html_text = (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
    assert rendered == f"<p>{html_text}</p>\n"


def test_throttled_log_says_how_many_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    """One warning per kind per interval; the next one counts the held-back ones."""
    now = [0.0]
    log = ThrottledLog(logging.getLogger("jeisson.test"), interval_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for second in range(0, 120, 2):
            now[0] = float(second)
            log.emit("kind", "failure at %d", second)
        log.emit("other", "another kind")
    assert [record.getMessage() for record in caplog.records] == [
        "failure at 0",
        "failure at 60 (29 more like this in the last 60 s were not logged)",
        "another kind",
    ]


async def test_a_real_device_that_waited_too_long_is_offered_again(
    hass: HomeAssistant, endpoint_url: str, start_device: Any
) -> None:
    """Expiry closes the homeowner's device too; it reconnects by itself and gets a new flow."""
    router_of(hass).limits.pending_expiry_s = 0.5
    real = start_device(endpoint_url, "late-1", name="Late")
    first = await wait_for_pairing_flow(hass, "late-1")
    await wait_for(
        lambda: any(f["flow_id"] != first["flow_id"] for f in pairing_flows(hass, "late-1")),
        what="offered again",
    )
    assert real.client.connections >= 2
    assert len(pairing_flows(hass, "late-1")) == 1
