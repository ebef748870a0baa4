"""Zeroconf announcement of the WiFi actuator endpoint, so devices find Home Assistant.

The service (``_jeisson-actuator._tcp.local.``, TXT ``path``/``protocol_min``/``protocol_max``/
``tls``, see docs/wifi-actuator.md) is registered on Home Assistant's own zeroconf instance while
at least one Jeisson home is loaded, and unregistered (a goodbye packet) when the last one
unloads. Without the zeroconf integration (it is part of ``default_config``) nothing is
announced and devices need a configured URL.

The service type's first label is 16 bytes, one more than RFC 6763 section 7.2 allows, so
python-zeroconf's strict name check is turned off for it; DNS-SD browsers and the devices'
own one-shot query handle it fine.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from homeassistant.components import network, zeroconf
from homeassistant.core import HomeAssistant
from homeassistant.helpers import instance_id
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from jeisson.actuator import protocol

from .const import LOGGER

ZEROCONF_DOMAIN: Final = "zeroconf"
MAX_INSTANCE_NAME_BYTES: Final = 63
"""Longest DNS label (the instance name is one label)."""
DEFAULT_INSTANCE_NAME: Final = "Home Assistant"


def instance_name(location_name: str | None) -> str:
    """Return the service instance label for Home Assistant's location name."""
    name = (location_name or DEFAULT_INSTANCE_NAME).replace(".", " ").strip()
    name = name or DEFAULT_INSTANCE_NAME
    return name.encode()[:MAX_INSTANCE_NAME_BYTES].decode("utf-8", "ignore")


async def async_service_info(hass: HomeAssistant) -> AsyncServiceInfo:
    """Return the endpoint's DNS-SD record: Home Assistant's host, HTTP port and TXT keys."""
    api = hass.config.api
    tls = api is not None and api.use_ssl
    return AsyncServiceInfo(
        protocol.MDNS_SERVICE_TYPE,
        name=f"{instance_name(hass.config.location_name)}.{protocol.MDNS_SERVICE_TYPE}",
        server=f"{await instance_id.async_get(hass)}.local.",
        parsed_addresses=await network.async_get_announce_addresses(hass),
        port=hass.http.server_port,
        properties={
            protocol.TXT_PATH: protocol.WS_PATH,
            protocol.TXT_PROTOCOL_MIN: str(protocol.MIN_PROTOCOL_VERSION),
            protocol.TXT_PROTOCOL_MAX: str(protocol.PROTOCOL_VERSION),
            protocol.TXT_TLS: "1" if tls else "0",
        },
    )


class Announcement:
    """The endpoint's zeroconf service: registered in the background, unregistered on stop."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Prepare (nothing is sent until :meth:`async_start`)."""
        self._hass = hass
        self._task: asyncio.Task[None] | None = None
        self._registered: tuple[AsyncZeroconf, AsyncServiceInfo] | None = None

    @property
    def registered(self) -> bool:
        """Return True while the service is announced."""
        return self._registered is not None

    def async_start(self) -> None:
        """Announce the service (probing takes about two seconds; it runs in the background)."""
        if ZEROCONF_DOMAIN not in self._hass.config.components:
            LOGGER.debug("Zeroconf is not loaded; WiFi actuators need a configured URL")
            return
        if self._task is None:
            self._task = self._hass.async_create_background_task(
                self._async_register(), "jeisson wifi zeroconf announcement"
            )

    async def _async_register(self) -> None:
        aiozc = await zeroconf.async_get_async_instance(self._hass)
        info = await async_service_info(self._hass)
        try:
            registration = await aiozc.async_register_service(
                info, allow_name_change=True, strict=False
            )
            self._registered = (aiozc, info)
            await registration
        except ZeroconfError as err:
            LOGGER.warning("Could not announce the WiFi actuator endpoint: %s", err)
            return
        LOGGER.debug("Announced %s on port %s", info.name, info.port)

    async def async_stop(self) -> None:
        """Stop announcing (sends the zeroconf goodbye)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        registered, self._registered = self._registered, None
        if registered is not None:
            aiozc, info = registered
            with contextlib.suppress(ZeroconfError):
                await (await aiozc.async_unregister_service(info))
