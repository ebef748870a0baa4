"""Unknown WiFi actuators waiting for the user: their hellos, bounded and expiring.

A device that is not paired is told ``pending`` and a discovered config flow asks the user for
the key printed on it. Anyone who reaches the endpoint can claim to be a new device, so:

* at most ``max_pending_devices`` ids wait at once (at most that many flows in the UI); another
  new id is refused with ``error{busy}`` (close 1013) until one is paired, ignored or expired;
* each id is forgotten ``pending_expiry_s`` after its first ``hello``: its flow is aborted and
  its connections closed (a real device reconnects and is offered again);
* a connection re-using a pending id adds its ``hello`` (up to ``max_hellos_per_device``; the
  oldest closed one makes room) instead of replacing the first one: whoever only knows the id
  cannot push the homeowner's real device out. The typed key is checked against every kept
  ``hello`` and pairs the one it proves;
* a flow the user ignores forgets its device and closes its connections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later

from jeisson.actuator import protocol

from .const import DOMAIN
from .wifi_admission import EndpointLimits
from .wifi_connection import DeviceConnection, Message
from .wifi_devices import IDENTIFIER_PREFIX


class NotPendingError(Exception):
    """The device is not waiting to be paired (paired already, or no home is loaded)."""


class PendingFullError(Exception):
    """No room for another pending device, or for another hello of this one."""


def pairing_unique_id(device_id: str) -> str:
    """Return the unique id of a device's discovered config flow."""
    return IDENTIFIER_PREFIX + device_id


def busy_error(text: str) -> protocol.ProtocolError:
    """Return the refusal of a device that cannot wait for pairing now."""
    return protocol.ProtocolError(protocol.E_BUSY, text)


@dataclass(kw_only=True)
class PendingHello:
    """One connection's ``hello`` and the nonce it answered (``conn`` None once closed)."""

    hello: Message
    nonce: str
    conn: DeviceConnection | None

    def proves(self, key: bytes) -> bool:
        """Return True when this ``hello`` was made with ``key``."""
        return protocol.check_device_proof(key, self.nonce, self.hello)


@dataclass
class PendingDevice:
    """A device id waiting for the user, with every ``hello`` that used it."""

    device_id: str
    hellos: list[PendingHello] = field(default_factory=list)
    cancel_expiry: CALLBACK_TYPE | None = None

    def connections(self) -> list[DeviceConnection]:
        """Return the open connections of this id."""
        return [item.conn for item in self.hellos if item.conn is not None]


class PendingDevices:
    """The pending devices of one Home Assistant (see the module docstring)."""

    def __init__(self, hass: HomeAssistant, limits: EndpointLimits) -> None:
        """Start with none."""
        self._hass = hass
        self._limits = limits
        self._devices: dict[str, PendingDevice] = {}

    def __len__(self) -> int:
        """Return how many device ids wait."""
        return len(self._devices)

    def __contains__(self, device_id: object) -> bool:
        """Return True when ``device_id`` waits for the user."""
        return device_id in self._devices

    def add(self, conn: DeviceConnection, hello: Message) -> bool:
        """Keep ``hello`` (received on ``conn``); return True for a new id (start its flow).

        Raises :class:`PendingFullError` when there is no room.
        """
        device_id = str(hello["device_id"])
        device = self._devices.get(device_id)
        new = device is None
        if device is None:
            if len(self._devices) >= self._limits.max_pending_devices:
                raise PendingFullError("too many devices wait for pairing; try again later")
            device = PendingDevice(device_id)
        elif len(device.hellos) >= self._limits.max_hellos_per_device:
            closed = next((item for item in device.hellos if item.conn is None), None)
            if closed is None:
                raise PendingFullError("too many connections use this device id; try again later")
            device.hellos.remove(closed)
        device.hellos.append(PendingHello(hello=hello, nonce=conn.nonce, conn=conn))
        if new:
            self._devices[device_id] = device
            device.cancel_expiry = async_call_later(
                self._hass, self._limits.pending_expiry_s, partial(self._async_expire, device_id)
            )
        return new

    def matching(self, device_id: str, key: bytes) -> PendingHello | None:
        """Return the ``hello`` ``key`` proves (an open connection first), or None.

        Raises :class:`NotPendingError` when ``device_id`` is not waiting.
        """
        device = self._devices.get(device_id)
        if device is None:
            raise NotPendingError(device_id)
        proven = [item for item in reversed(device.hellos) if item.proves(key)]
        return next((item for item in proven if item.conn is not None), None) or next(
            iter(proven), None
        )

    def pop(self, device_id: str) -> PendingDevice | None:
        """Stop keeping ``device_id`` (paired or forgotten) and return what was kept."""
        device = self._devices.pop(device_id, None)
        if device is not None and device.cancel_expiry is not None:
            device.cancel_expiry()
        return device

    @callback
    def async_on_closed(self, conn: DeviceConnection) -> None:
        """Keep a closed connection's ``hello`` while its device's flow waits for the user."""
        device = self._devices.get(conn.device_id or "")
        held = next((i for i in device.hellos if i.conn is conn), None) if device else None
        if device is None or held is None:
            return
        held.conn = None
        if not self._flows(device.device_id):
            device.hellos.remove(held)
            if not device.hellos:
                self.pop(device.device_id)

    async def async_forget(
        self, device_id: str, error: protocol.ProtocolError, *, abort_flow: bool = True
    ) -> None:
        """Forget ``device_id``: abort its flow, refuse its connections with ``error``."""
        device = self.pop(device_id)
        for flow_id in self._flows(device_id) if abort_flow else []:
            self._hass.config_entries.flow.async_abort(flow_id)
        if device is not None:
            for conn in device.connections():
                await conn.refuse(error)

    async def async_clear(self) -> None:
        """Forget every pending device and close its connections (no home is loaded)."""
        devices, self._devices = self._devices, {}
        for device in devices.values():
            if device.cancel_expiry is not None:
                device.cancel_expiry()
            for conn in device.connections():
                await conn.close()

    def _flows(self, device_id: str) -> list[str]:
        return [
            flow["flow_id"]
            for flow in self._hass.config_entries.flow.async_progress_by_handler(
                DOMAIN, match_context={"unique_id": pairing_unique_id(device_id)}
            )
        ]

    @callback
    def _async_expire(self, device_id: str, _now: datetime) -> None:
        self._hass.async_create_background_task(
            self.async_forget(device_id, busy_error("waited too long for pairing")),
            f"jeisson wifi pending expiry {device_id}",
        )
