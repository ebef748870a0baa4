"""Zeroconf announcement of the actuator endpoint on Home Assistant's zeroconf instance.

A real python-zeroconf instance (bound to the loopback interface) stands in for the one the
zeroconf integration creates on the LAN; the device's own one-shot mDNS query (actuator.mdns)
finds the endpoint while a home is loaded, and no longer after the goodbye on unload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from homeassistant.components.http import ApiConfig
from homeassistant.components.zeroconf.const import DATA_INSTANCE
from homeassistant.components.zeroconf.models import HaAsyncZeroconf, HaZeroconf
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from zeroconf import IPVersion

from actuator import mdns
from custom_components.jeisson.wifi_discovery import async_service_info, instance_name
from custom_components.jeisson.wifi_endpoint import get_router
from jeisson.actuator import protocol
from tests.helpers import wait_for

MDNS_ON_LOOPBACK = ("127.0.0.1", mdns.MDNS_PORT)
ANNOUNCED_ADDRESS = "10.10.10.10"
"""The address the test harness's network adapters give Home Assistant."""


@pytest.fixture
async def zeroconf_instance(
    hass: HomeAssistant, socket_enabled: None
) -> AsyncIterator[HaAsyncZeroconf]:
    """Home Assistant's shared zeroconf instance, real, answering on 127.0.0.1 only."""
    assert await async_setup_component(hass, "network", {})
    aiozc = HaAsyncZeroconf(zc=HaZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only))
    hass.data[DATA_INSTANCE] = aiozc
    hass.config.components.add("zeroconf")
    yield aiozc
    await aiozc.ha_async_close()


@pytest.mark.usefixtures("zeroconf_instance")
async def test_the_endpoint_is_announced_while_a_home_is_loaded(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """Devices find ws://<HA>:<port>/api/jeisson/actuator; after unload they do not."""
    router = get_router(hass)
    assert router is not None
    await wait_for(lambda: router.announced, what="announcement")
    url = await mdns.discover(timeout_s=3, target=MDNS_ON_LOOPBACK)
    assert url == f"ws://{ANNOUNCED_ADDRESS}:{hass.http.server_port}{protocol.WS_PATH}"

    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    assert not router.announced
    assert await mdns.discover(timeout_s=1, target=MDNS_ON_LOOPBACK) is None


async def test_the_record_says_tls_and_the_instance_name_is_a_valid_label(
    hass: HomeAssistant,
) -> None:
    """TXT tls=1 when Home Assistant serves https; the location name makes the instance."""
    assert await async_setup_component(hass, "http", {})
    assert await async_setup_component(hass, "network", {})
    hass.config.api = ApiConfig("127.0.0.1", "127.0.0.1", 8443, True)
    info = await async_service_info(hass)
    assert info.properties[b"tls"] == b"1"
    assert info.properties[b"path"] == protocol.WS_PATH.encode()
    assert info.properties[b"protocol_min"] == info.properties[b"protocol_max"] == b"1"
    assert info.name == "test home." + protocol.MDNS_SERVICE_TYPE
    assert instance_name("Casa.de.campo") == "Casa de campo"
    assert instance_name(" . ") == "Home Assistant"
    assert instance_name(None) == "Home Assistant"
    assert len(instance_name("ñ" * 40).encode()) <= 63
