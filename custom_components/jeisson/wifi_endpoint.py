"""The WiFi actuator endpoint on Home Assistant's HTTP server: handshake, routing and pairing.

``ActuatorView`` serves ``jeisson.actuator.protocol.WS_PATH`` without HTTP authentication (devices
have no HA account; they prove their key inside the websocket). The :class:`WifiRouter` (one per
Home Assistant) runs each connection: ``challenge`` first, ``hello`` within the handshake timeout,
then

* a device paired with a loaded home goes to that home's :class:`~.wifi_devices.WifiHub`, which
  checks its proof (``auth_failed``, close 4003, on a wrong key) and welcomes it;
* an unknown device is told ``pending`` and a discovered config flow asks the user for the key
  printed on it; the flow checks the typed key against that ``hello`` and pairs it here.

Every frame is decoded with :func:`jeisson.actuator.protocol.decode_from_device`; a refused one gets
an ``error`` frame and the matching close code, and ends only that connection. While no Jeisson home
is loaded the endpoint answers HTTP 503 (the device retries with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from aiohttp import web
from homeassistant.config_entries import SOURCE_INTEGRATION_DISCOVERY
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import discovery_flow
from homeassistant.helpers.http import HomeAssistantView
from homeassistant.util.hass_dict import HassKey

from jeisson.actuator import protocol

from .const import DOMAIN, LOGGER
from .wifi_connection import (
    TRANSPORT_MAX_MSG_BYTES,
    ConnectionLostError,
    DeviceConnection,
    Message,
    replaced_error,
)
from .wifi_devices import IDENTIFIER_PREFIX, PairedDevice, WifiHub
from .wifi_discovery import Announcement

DATA_ROUTER: HassKey[WifiRouter] = HassKey(f"{DOMAIN}_wifi_router")
VIEW_NAME: Final = "api:jeisson:actuator"
PENDING_MESSAGE: Final = "Confirm this device in Home Assistant with the key on its label"
SILENCE_TIMEOUT_S: Final = 45.0
"""A connection with no frame (report, ping) for this long is dropped: devices report every
10 s and ping every 20 s."""
CLOSE_TIMEOUT_S: Final = 2.0
"""How long a close waits for the device's close frame."""

# Discovery flow data keys.
DISCOVERY_DEVICE_ID: Final = "device_id"
DISCOVERY_NAME: Final = "name"
DISCOVERY_MODEL: Final = "model"
DISCOVERY_FIRMWARE: Final = "firmware"
DISCOVERY_RATED_KW: Final = "rated_kw"


class NotPendingError(Exception):
    """The device is not waiting to be paired (paired already, or no home is loaded)."""


class WrongKeyError(Exception):
    """The typed key is not the pending device's key (its ``hello`` proof does not match)."""


def pairing_unique_id(device_id: str) -> str:
    """Return the unique id of a device's discovered config flow."""
    return IDENTIFIER_PREFIX + device_id


@dataclass(kw_only=True)
class EndpointTimings:
    """Timeouts of the endpoint (seconds); tests shorten them."""

    handshake_timeout_s: float = protocol.HANDSHAKE_TIMEOUT_S
    silence_timeout_s: float = SILENCE_TIMEOUT_S


@dataclass(kw_only=True)
class PendingDevice:
    """An unknown device's ``hello`` with the nonce it answered, waiting for the user."""

    hello: Message
    nonce: str
    conn: DeviceConnection | None


class ActuatorView(HomeAssistantView):
    """The websocket devices connect to."""

    url = protocol.WS_PATH
    name = VIEW_NAME
    requires_auth = False

    def __init__(self, router: WifiRouter) -> None:
        """Serve connections through ``router``."""
        self._router = router

    async def get(self, request: web.Request) -> web.StreamResponse:
        """Upgrade to a websocket and run the device's connection."""
        return await self._router.async_handle(request)


@callback
def async_get_router(hass: HomeAssistant) -> WifiRouter:
    """Return the router, creating it and registering the view on first use."""
    if (router := hass.data.get(DATA_ROUTER)) is None:
        router = hass.data[DATA_ROUTER] = WifiRouter(hass)
        hass.http.register_view(ActuatorView(router))
    return router


def get_router(hass: HomeAssistant) -> WifiRouter | None:
    """Return the router if the endpoint was ever set up."""
    return hass.data.get(DATA_ROUTER)


async def async_pair_with_key(hass: HomeAssistant, device_id: str, key: bytes) -> PairedDevice:
    """Pair a pending device if ``key`` is its key (else WrongKeyError or NotPendingError)."""
    router = get_router(hass)
    if router is None:
        raise NotPendingError(device_id)
    if not router.check_key(device_id, key):
        raise WrongKeyError(device_id)
    return await router.async_pair(device_id, key)


class WifiRouter:
    """Runs device connections and sends each to its home, or to the user for pairing."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Start with no home loaded."""
        self.hass = hass
        self.timings = EndpointTimings()
        self.setup_lock = asyncio.Lock()
        self._hubs: dict[str, WifiHub] = {}
        self._pending: dict[str, PendingDevice] = {}
        self._announcement = Announcement(hass)

    # --- homes ----------------------------------------------------------------------------

    @property
    def announced(self) -> bool:
        """Return True while the endpoint is announced over zeroconf."""
        return self._announcement.registered

    def hub(self, entry_id: str) -> WifiHub | None:
        """Return the hub of a loaded home."""
        return self._hubs.get(entry_id)

    def hub_for_device(self, device_id: str) -> WifiHub | None:
        """Return the hub of the loaded home this device is paired with."""
        return next((hub for hub in self._hubs.values() if hub.get(device_id)), None)

    @callback
    def async_add_hub(self, hub: WifiHub) -> None:
        """Serve a loaded home's devices (and announce the endpoint for the first one)."""
        self._hubs[hub.entry.entry_id] = hub
        self._announcement.async_start()

    async def async_remove_hub(self, entry_id: str) -> None:
        """Stop serving a home; with none left, close pending devices and stop announcing."""
        hub = self._hubs.pop(entry_id, None)
        if hub is not None:
            await hub.async_stop()
        if self._hubs:
            return
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if item.conn is not None:
                await item.conn.close()
        await self._announcement.async_stop()

    # --- pairing --------------------------------------------------------------------------

    def check_key(self, device_id: str, key: bytes) -> bool:
        """Return True when ``key`` is the key of the pending device (its ``hello`` proof)."""
        pending = self._pending.get(device_id)
        if pending is None:
            raise NotPendingError(device_id)
        return protocol.check_device_proof(key, pending.nonce, pending.hello)

    async def async_pair(self, device_id: str, key: bytes) -> PairedDevice:
        """Pair the pending device with the first loaded home and welcome it if connected."""
        pending = self._pending.pop(device_id, None)
        hub = next(iter(self._hubs.values()), None)
        if pending is None or hub is None:  # pending devices are dropped with the last home
            raise NotPendingError(device_id)
        device = await hub.async_pair(pending.hello, key)
        conn = pending.conn
        if conn is not None and not conn.closed:
            with contextlib.suppress(ConnectionLostError):
                await hub.async_attach(conn, pending.hello)
        return device

    def _start_flow(self, hello: Message) -> None:
        discovery_flow.async_create_flow(
            self.hass,
            DOMAIN,
            context={"source": SOURCE_INTEGRATION_DISCOVERY},
            data={
                DISCOVERY_DEVICE_ID: hello["device_id"],
                DISCOVERY_NAME: hello["name"],
                DISCOVERY_MODEL: hello.get("model"),
                DISCOVERY_FIRMWARE: hello["firmware"],
                DISCOVERY_RATED_KW: hello["rated_kw"],
            },
        )

    # --- pending connections (this router owns them) --------------------------------------

    @callback
    def async_on_message(self, conn: DeviceConnection, message: Message) -> None:
        """Ignore a pending device's reports (its state is shown once it is paired)."""
        if message["type"] == protocol.ERROR:
            LOGGER.debug("Pending WiFi actuator %s reports %s", conn.device_id, message["code"])

    @callback
    def async_on_closed(self, conn: DeviceConnection) -> None:
        """Keep a pending device's ``hello`` while its flow waits for the user."""
        device_id = conn.device_id
        pending = self._pending.get(device_id) if device_id else None
        if pending is None or pending.conn is not conn:
            return
        pending.conn = None
        if not self.hass.config_entries.flow.async_progress_by_handler(
            DOMAIN, match_context={"unique_id": pairing_unique_id(pending.hello["device_id"])}
        ):
            del self._pending[pending.hello["device_id"]]

    # --- connections ----------------------------------------------------------------------

    async def async_handle(self, request: web.Request) -> web.StreamResponse:
        """Run one device connection from upgrade to close."""
        if not self._hubs:
            return web.Response(
                status=HTTPStatus.SERVICE_UNAVAILABLE, text="No Jeisson home is loaded"
            )
        ws = web.WebSocketResponse(
            max_msg_size=TRANSPORT_MAX_MSG_BYTES,
            autoping=True,
            compress=False,
            timeout=CLOSE_TIMEOUT_S,
        )
        await ws.prepare(request)
        conn = DeviceConnection(ws, protocol.new_nonce(), request.remote)
        try:
            await self._async_serve(conn)
        except ConnectionLostError:
            LOGGER.debug("WiFi actuator connection from %s lost", conn.peer)
        finally:
            if conn.owner is not None:  # unavailable at once, not after the close handshake
                conn.owner.async_on_closed(conn)
            await conn.close()
        return ws

    async def _async_serve(self, conn: DeviceConnection) -> None:
        await conn.send(protocol.challenge(conn.nonce, time.time()))
        try:
            first = await conn.receive(self.timings.handshake_timeout_s)
        except TimeoutError:
            await self._refuse(
                conn, protocol.ProtocolError(protocol.E_HANDSHAKE_TIMEOUT, "no hello in time")
            )
            return
        except protocol.ProtocolError as err:
            await self._refuse(conn, err)
            return
        if first is None:
            return
        if first["type"] == protocol.ERROR:
            LOGGER.warning(
                "WiFi actuator at %s refused the challenge: %s: %s",
                conn.peer,
                first["code"],
                first["message"],
            )
            return
        if first["type"] != protocol.HELLO:
            await self._refuse(conn, _out_of_order("the first message must be hello"))
            return
        conn.hello = first
        if not await self._async_route(conn, first):
            return
        await self._async_read(conn)

    async def _async_read(self, conn: DeviceConnection) -> None:
        """Hand the device's messages to its owner until the connection ends."""
        while True:
            try:
                message = await conn.receive(self.timings.silence_timeout_s)
            except TimeoutError:
                LOGGER.info("WiFi actuator %s went silent; dropping its connection", conn.device_id)
                return
            except protocol.ProtocolError as err:
                await self._refuse(conn, err)
                return
            if message is None:
                return
            if message["type"] == protocol.HELLO:
                await self._refuse(conn, _out_of_order("hello is sent once per connection"))
                return
            if conn.owner is not None:
                conn.owner.async_on_message(conn, message)

    async def _refuse(self, conn: DeviceConnection, error: protocol.ProtocolError) -> None:
        LOGGER.warning(
            "Refused a frame from WiFi actuator %s at %s: %s (%s)",
            conn.device_id or "(no hello yet)",
            conn.peer,
            error.message,
            error.code,
        )
        await conn.refuse(error)

    async def _async_route(self, conn: DeviceConnection, hello: Message) -> bool:
        """Welcome a known device, refuse a wrong key, or hold an unknown one for the user."""
        device_id = str(hello["device_id"])
        if (hub := self.hub_for_device(device_id)) is not None:
            if not hub.proof_matches(conn, hello):
                await self._refuse(
                    conn, protocol.ProtocolError(protocol.E_AUTH_FAILED, "wrong device key")
                )
                return False
            await hub.async_attach(conn, hello)
            return True
        previous = self._pending.get(device_id)
        conn.owner = self
        self._pending[device_id] = PendingDevice(hello=hello, nonce=conn.nonce, conn=conn)
        if previous is not None and previous.conn is not None:
            self.hass.async_create_background_task(
                previous.conn.refuse(replaced_error()), f"jeisson wifi replace pending {device_id}"
            )
        await conn.send(protocol.pending(PENDING_MESSAGE))
        LOGGER.info("New Jeisson WiFi actuator %s (%s) waits for pairing", device_id, hello["name"])
        self._start_flow(hello)
        return True


def _out_of_order(text: str) -> protocol.ProtocolError:
    return protocol.ProtocolError(protocol.E_INVALID_MESSAGE, text)
