"""The WiFi actuator endpoint on Home Assistant's HTTP server: handshake, routing and pairing.

``ActuatorView`` serves ``jeisson.actuator.protocol.WS_PATH`` without HTTP authentication (devices
have no HA account; they prove their key inside the websocket). The :class:`WifiRouter` (one per
Home Assistant) admits each request (:mod:`.wifi_admission`: local peers only by default, caps on
connections no home accepted yet, failing peers held off), then runs the connection:
``challenge`` first, ``hello`` within an absolute handshake deadline, then

* a device paired with a loaded home goes to that home's :class:`~.wifi_devices.WifiHub` once
  its proof checks out (``auth_failed``, close 4003, on a wrong key);
* an unknown device is told ``pending`` (:mod:`.wifi_pending`: bounded, expiring, several
  hellos per id) and a discovered config flow asks the user for the key printed on it; the
  flow checks the typed key against the kept hellos and pairs the one it proves;
* a device the user ignored is refused (``ignored``, close 4010).

Every frame is decoded with :func:`jeisson.actuator.protocol.decode_from_device`; a refused one gets
an ``error`` frame and the matching close code, and ends only that connection. Warnings a peer
can cause are throttled. While no Jeisson home is loaded the endpoint answers HTTP 503 (the
device retries with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from http import HTTPStatus
from typing import Final

from aiohttp import web
from homeassistant.config_entries import SOURCE_IGNORE, SOURCE_INTEGRATION_DISCOVERY
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import discovery_flow
from homeassistant.helpers.http import HomeAssistantView
from homeassistant.util.hass_dict import HassKey

from jeisson.actuator import protocol

from .const import CONF_WIFI_REMOTE_DEVICES, DOMAIN, LOGGER
from .wifi_admission import Admission, EndpointLimits, ThrottledLog, Ticket
from .wifi_connection import (
    TRANSPORT_MAX_MSG_BYTES,
    ConnectionLostError,
    DeviceConnection,
    Message,
    replaced_error,
)
from .wifi_devices import PairedDevice, WifiHub
from .wifi_discovery import Announcement
from .wifi_pending import (
    NotPendingError,
    PendingDevices,
    PendingFullError,
    busy_error,
    pairing_unique_id,
)

__all__ = ["NotPendingError", "WrongKeyError", "pairing_unique_id"]

DATA_ROUTER: HassKey[WifiRouter] = HassKey(f"{DOMAIN}_wifi_router")
VIEW_NAME: Final = "api:jeisson:actuator"
PENDING_MESSAGE: Final = "Confirm this device in Home Assistant with the key on its label"
CLOSE_TIMEOUT_S: Final = 2.0
"""How long a close waits for the device's close frame."""

# Discovery flow data keys.
DISCOVERY_DEVICE_ID: Final = "device_id"
DISCOVERY_NAME: Final = "name"
DISCOVERY_MODEL: Final = "model"
DISCOVERY_FIRMWARE: Final = "firmware"
DISCOVERY_RATED_KW: Final = "rated_kw"


class WrongKeyError(Exception):
    """The typed key proves none of the pending device's ``hello`` messages."""


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
    return await router.async_pair(device_id, key)


async def async_forget_pending(hass: HomeAssistant, device_id: str) -> None:
    """Forget a pending device the user ignored and close its connections.

    Its discovered flow is aborted by Home Assistant when the ignore entry is created.
    """
    if (router := get_router(hass)) is not None:
        await router.pending.async_forget(device_id, ignored_error(), abort_flow=False)


def ignored_error() -> protocol.ProtocolError:
    """Return the refusal of a device the user ignored."""
    return protocol.ProtocolError(protocol.E_IGNORED, "this device was ignored in Home Assistant")


class WifiRouter:
    """Runs device connections and sends each to its home, or to the user for pairing."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Start with no home loaded."""
        self.hass = hass
        self.limits = EndpointLimits()
        self.setup_lock = asyncio.Lock()
        self.log = ThrottledLog(LOGGER)
        self.admission = Admission(hass, self.limits, self.log)
        self.pending = PendingDevices(hass, self.limits)
        self._hubs: dict[str, WifiHub] = {}
        self._tickets: dict[DeviceConnection, Ticket] = {}
        self._announcement = Announcement(hass)

    # --- homes ----------------------------------------------------------------------------

    @property
    def announced(self) -> bool:
        """Return True while the endpoint is announced over zeroconf."""
        return self._announcement.registered

    @property
    def allow_remote(self) -> bool:
        """Return True when a loaded home accepts devices outside the local network."""
        return any(
            hub.entry.options.get(CONF_WIFI_REMOTE_DEVICES, False) for hub in self._hubs.values()
        )

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
        await self.pending.async_clear()
        await self._announcement.async_stop()

    # --- pairing --------------------------------------------------------------------------

    async def async_pair(self, device_id: str, key: bytes) -> PairedDevice:
        """Pair the pending device ``key`` proves with the first loaded home; welcome it."""
        hub = next(iter(self._hubs.values()), None)
        if hub is None:  # pending devices are dropped with the last home
            raise NotPendingError(device_id)
        proven = self.pending.matching(device_id, key)
        if proven is None:
            raise WrongKeyError(device_id)
        pending = self.pending.pop(device_id)
        device = await hub.async_pair(proven.hello, key)
        for conn in pending.connections() if pending is not None else []:
            if conn is proven.conn and not conn.closed:
                self._accept(conn)
                with contextlib.suppress(ConnectionLostError):
                    await hub.async_attach(conn, proven.hello)
            else:  # others that used the id; a real one reconnects and proves its key
                await conn.refuse(replaced_error())
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

    def _ignored(self, device_id: str) -> bool:
        entry = self.hass.config_entries.async_entry_for_domain_unique_id(
            DOMAIN, pairing_unique_id(device_id)
        )
        return entry is not None and entry.source == SOURCE_IGNORE

    # --- pending connections (this router owns them) --------------------------------------

    @callback
    def async_on_message(self, conn: DeviceConnection, message: Message) -> None:
        """Ignore a pending device's reports (its state is shown once it is paired)."""
        if message["type"] == protocol.ERROR:
            LOGGER.debug("Pending WiFi actuator %s reports %s", conn.device_id, message["code"])

    @callback
    def async_on_closed(self, conn: DeviceConnection) -> None:
        """Keep a pending device's ``hello`` while its flow waits for the user."""
        self.pending.async_on_closed(conn)

    # --- connections ----------------------------------------------------------------------

    async def async_handle(self, request: web.Request) -> web.StreamResponse:
        """Admit one device connection and run it from upgrade to close."""
        if not self._hubs:
            return web.Response(
                status=HTTPStatus.SERVICE_UNAVAILABLE, text="No Jeisson home is loaded"
            )
        admitted = self.admission.admit(request, allow_remote=self.allow_remote)
        if isinstance(admitted, web.Response):
            return admitted
        try:
            ws = web.WebSocketResponse(
                max_msg_size=TRANSPORT_MAX_MSG_BYTES,
                autoping=True,
                compress=False,
                timeout=CLOSE_TIMEOUT_S,
            )
            await ws.prepare(request)
            conn = DeviceConnection(ws, protocol.new_nonce(), request.remote)
            self._tickets[conn] = admitted
            try:
                await self._async_serve(conn)
            except ConnectionLostError:
                LOGGER.debug("WiFi actuator connection from %s lost", conn.peer)
            finally:
                self._accept(conn)
                if conn.owner is not None:  # unavailable at once, not after the close handshake
                    conn.owner.async_on_closed(conn)
                await conn.close()
        finally:
            admitted.release()
        return ws

    def _accept(self, conn: DeviceConnection) -> None:
        """Stop counting ``conn`` as unauthenticated (a home took it, or it ended)."""
        if (ticket := self._tickets.pop(conn, None)) is not None:
            ticket.release()

    async def _async_serve(self, conn: DeviceConnection) -> None:
        await conn.send(protocol.challenge(conn.nonce, time.time()))
        try:
            async with asyncio.timeout(self.limits.handshake_timeout_s):
                first = await conn.receive()
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
            self.log.emit(
                "device_error",
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
                message = await conn.receive(self.limits.silence_timeout_s)
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
        """Refuse a failing connection; the failure counts against its peer."""
        self.admission.record_failure(conn.peer)
        self.log.emit(
            "refused_" + error.code,
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
            self._accept(conn)
            await hub.async_attach(conn, hello)
            return True
        if self._ignored(device_id):
            LOGGER.debug("WiFi actuator %s was ignored by the user; refusing it", device_id)
            await conn.refuse(ignored_error())
            return False
        try:
            new = self.pending.add(conn, hello)
        except PendingFullError as err:
            self.log.emit(
                "pending_full",
                "Refused WiFi actuator %s at %s: %s",
                device_id,
                conn.peer,
                err,
            )
            await conn.refuse(busy_error(str(err)))
            return False
        conn.owner = self
        await conn.send(protocol.pending(PENDING_MESSAGE))
        if new:
            LOGGER.info("New Jeisson WiFi actuator %s waits for pairing", device_id)
            self._start_flow(hello)
        return True


def _out_of_order(text: str) -> protocol.ProtocolError:
    return protocol.ProtocolError(protocol.E_INVALID_MESSAGE, text)
