"""The Jeisson WiFi actuators paired with one home: keys, live connections, commands and holds.

A :class:`WifiHub` belongs to one loaded Jeisson entry. It keeps the paired devices and their
keys in a private HA ``Store`` (never in logs; redacted in diagnostics), one live connection per
device (a newer one replaces an older: ``error{replaced}``, close 4009), and the last state each
device reported. Every command is built fresh with a new id and waits for its ``ack``.

Fail-safe: an ``off`` always carries its end. For a load Jeisson holds in an event, the end is
the event's window end plus a fixed share of the award's restore stagger (so devices left alone
do not all come back at once), or the restore time once the runner chose it; the schedule saved
by the event runner is the source of truth, so this survives restarts. A manual ``off`` (outside
an event) is a 24 h hold that the hub renews every hour while it lasts. When a device (re)connects
the hub brings it in line before showing it: it re-sends the hold it should be in (a device that
rebooted reconnects before the old link is seen dead, so the load is not taken for an override),
unless the homeowner pressed the device's button: a ``local`` override is never fought.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util

from jeisson.actuator import protocol
from jeisson.common.protocol import HomeEventStatus

from .const import DOMAIN, LOGGER
from .models import loads_from_options
from .schedule import Schedule
from .wifi_connection import (
    ConnectionLostError,
    DeviceConnection,
    DeviceRefusedError,
    Message,
    replaced_error,
)

WIFI_ACTUATOR_PREFIX: Final = "jeisson_wifi:"
"""A load's ``actuator`` option that names a paired WiFi device (never a valid entity id)."""
IDENTIFIER_PREFIX: Final = "actuator:"
"""Device registry identifier (and entity unique id) prefix of a WiFi device."""
STORAGE_VERSION: Final = 1
STORAGE_KEY_PREFIX: Final = f"{DOMAIN}.wifi_devices"
MANUFACTURER: Final = "Jeisson"
DEFAULT_MODEL: Final = "WiFi actuator"
RELAY_KEY: Final = "relay"
POWER_KEY: Final = "power"

ACK_TIMEOUT_S: Final = 5.0
"""Seconds a command waits for the device's ``ack``."""
MIN_HOLD_S: Final = 1.0
"""Shortest ``off`` sent (a hold that is already over still gets a valid command)."""
MANUAL_HOLD = timedelta(seconds=protocol.MAX_HOLD_S)
"""How long a manual ``off`` holds the load (renewed while it lasts): the longest a device takes."""
RENEW_INTERVAL: Final = timedelta(hours=1)
"""How often holds are checked and renewed (manual holds, events longer than a day)."""
RENEW_SLACK: Final = timedelta(seconds=60)
"""A device hold ending this much before the wanted end is renewed."""
_SPREAD_BYTES = 4


def wifi_store(hass: HomeAssistant, entry_id: str) -> Store[dict[str, Any]]:
    """Return the private store of a home's paired devices and their keys."""
    return Store(hass, STORAGE_VERSION, f"{STORAGE_KEY_PREFIX}.{entry_id}", private=True)


def signal_device_paired(entry_id: str) -> str:
    """Return the dispatcher signal sent with the :class:`PairedDevice` when one is paired."""
    return f"{DOMAIN}_wifi_paired_{entry_id}"


def actuator_ref(device_id: str) -> str:
    """Return the load ``actuator`` option value that names WiFi device ``device_id``."""
    return WIFI_ACTUATOR_PREFIX + device_id


def device_id_from_actuator(actuator: str) -> str | None:
    """Return the WiFi device id a load's ``actuator`` option names (None for an entity)."""
    if actuator.startswith(WIFI_ACTUATOR_PREFIX):
        return actuator.removeprefix(WIFI_ACTUATOR_PREFIX)
    return None


def device_identifier(device_id: str) -> tuple[str, str]:
    """Return the device registry identifier of WiFi device ``device_id``."""
    return (DOMAIN, IDENTIFIER_PREFIX + device_id)


def device_id_from_identifiers(identifiers: Iterable[tuple[str, str]]) -> str | None:
    """Return the WiFi device id among device registry ``identifiers`` (None if not one)."""
    for domain, value in identifiers:
        if domain == DOMAIN and value.startswith(IDENTIFIER_PREFIX):
            return value.removeprefix(IDENTIFIER_PREFIX)
    return None


def entity_unique_id(device_id: str, key: str) -> str:
    """Return the unique id of a WiFi device's entity (``relay``, ``power``)."""
    return f"{IDENTIFIER_PREFIX}{device_id}:{key}"


def device_id_for_relay_entity(hass: HomeAssistant, entity_id: str) -> str | None:
    """Return the WiFi device whose relay switch ``entity_id`` is (None for any other entity)."""
    entry = er.async_get(hass).async_get(entity_id)
    if entry is None or entry.platform != DOMAIN:
        return None
    prefix, suffix = IDENTIFIER_PREFIX, f":{RELAY_KEY}"
    if entry.unique_id.startswith(prefix) and entry.unique_id.endswith(suffix):
        return entry.unique_id.removeprefix(prefix).removesuffix(suffix)
    return None


def new_command_id() -> str:
    """Return a fresh command id (commands are idempotent by id, so never reuse one)."""
    return uuid.uuid4().hex


def stagger_share(device_id: str, award_id: str) -> float:
    """Return a stable number in [0, 1): this device's share of an award's restore stagger."""
    digest = hashlib.sha256(f"{device_id}\n{award_id}".encode()).digest()
    return int.from_bytes(digest[:_SPREAD_BYTES], "big") / float(1 << (8 * _SPREAD_BYTES))


def event_hold_end(
    schedule: Schedule | None, load_ids: Iterable[str], device_id: str
) -> datetime | None:
    """Return when the event runner gives back the loads on this device (None: not held).

    A load waiting for its staggered restore ends then; a load held in an active event ends
    at the window end plus this device's share of the restore stagger.
    """
    if schedule is None:
        return None
    ends: list[datetime] = []
    wanted = set(load_ids)
    for event in schedule.open_events():
        for load_id in wanted:
            if load_id in event.released or load_id in event.opted_out:
                continue
            if load_id in event.restore_at:
                ends.append(event.restore_at[load_id])
            elif event.status is HomeEventStatus.ACTIVE and load_id in event.switched_off:
                share = stagger_share(device_id, event.award_id)
                ends.append(event.window_end + timedelta(seconds=event.restore_stagger_s * share))
    return max(ends, default=None)


@dataclass(kw_only=True, slots=True)
class PairedDevice:
    """A device the user confirmed, with its key (never logged or shown)."""

    device_id: str
    name: str
    firmware: str
    rated_kw: float
    meter: bool
    model: str | None = None
    key: bytes = field(repr=False)
    manual_off: bool = False
    """True while the user holds it off outside any event (the hub renews that hold)."""

    @staticmethod
    def _identity(hello: Mapping[str, Any]) -> dict[str, Any]:
        """Return the identity fields a ``hello`` announces."""
        return {
            "name": str(hello["name"]),
            "firmware": str(hello["firmware"]),
            "rated_kw": float(hello["rated_kw"]),
            "meter": bool(hello["meter"]),
            "model": str(hello["model"]) if "model" in hello else None,
        }

    @classmethod
    def from_hello(cls, hello: Mapping[str, Any], key: bytes) -> PairedDevice:
        """Return the record of a device from its validated ``hello`` and confirmed key."""
        return cls(device_id=str(hello["device_id"]), key=key, **cls._identity(hello))

    def update_from_hello(self, hello: Mapping[str, Any]) -> bool:
        """Take the identity a device announces; return True when something changed."""
        changed = False
        for name, value in self._identity(hello).items():
            if getattr(self, name) != value:
                setattr(self, name, value)
                changed = True
        return changed

    def as_dict(self) -> dict[str, Any]:
        """Return the stored form (the key as hex)."""
        return {
            "device_id": self.device_id,
            "name": self.name,
            "firmware": self.firmware,
            "rated_kw": self.rated_kw,
            "meter": self.meter,
            "model": self.model,
            "key": self.key.hex(),
            "manual_off": self.manual_off,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PairedDevice:
        """Rebuild a record saved by :meth:`as_dict`."""
        return cls(
            device_id=str(raw["device_id"]),
            name=str(raw["name"]),
            firmware=str(raw["firmware"]),
            rated_kw=float(raw["rated_kw"]),
            meter=bool(raw["meter"]),
            model=raw.get("model"),
            key=bytes.fromhex(raw["key"]),
            manual_off=bool(raw.get("manual_off", False)),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceState:
    """What a device last reported (``hello``, ``state`` or ``ack``)."""

    relay_on: bool
    power_w: float
    power_measured: bool
    cause: str
    hold_until: datetime | None
    """The end of the device's current off hold, as Home Assistant commanded it."""

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DeviceState:
        """Return the state of a validated state object."""
        hold = payload.get("hold")
        return cls(
            relay_on=payload["relay"] == protocol.RELAY_ON,
            power_w=float(payload["power_w"]),
            power_measured=bool(payload["power_measured"]),
            cause=str(payload["cause"]),
            hold_until=dt_util.utc_from_timestamp(hold["until"]) if hold else None,
        )

    @property
    def overridden(self) -> bool:
        """Return True when the homeowner's button released the load (never fought)."""
        return self.relay_on and self.cause == protocol.CAUSE_LOCAL


class WifiHub:
    """The paired WiFi devices of one Jeisson home and their live connections."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry[Any],
        *,
        schedule: Callable[[], Schedule | None],
        home_device_id: str | None,
    ) -> None:
        """Prepare the hub of ``entry``; ``schedule`` returns the event runner's schedule."""
        self.hass = hass
        self.entry = entry
        self._schedule = schedule
        self._home_device_id = home_device_id
        self._store = wifi_store(hass, entry.entry_id)
        self._paired: dict[str, PairedDevice] = {}
        self._links: dict[str, DeviceConnection] = {}
        self._ready: set[str] = set()
        self._states: dict[str, DeviceState] = {}
        self._listeners: dict[str, list[CALLBACK_TYPE]] = {}
        self._unsub_renew: CALLBACK_TYPE | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def async_load(self) -> None:
        """Read the paired devices and start renewing holds."""
        raw = await self._store.async_load() or {}
        self._paired = {
            device.device_id: device
            for device in (PairedDevice.from_dict(item) for item in raw.get("devices", []))
        }
        self._unsub_renew = async_track_time_interval(
            self.hass, self._on_renew_time, RENEW_INTERVAL, name="jeisson wifi hold renewal"
        )

    async def async_stop(self) -> None:
        """Stop serving: close every device connection (their holds run out by themselves)."""
        if self._unsub_renew is not None:
            self._unsub_renew()
            self._unsub_renew = None
        links = list(self._links.values())
        self._links.clear()
        self._ready.clear()
        await asyncio.gather(*(conn.close() for conn in links))
        for device_id in list(self._listeners):
            self._notify(device_id)

    async def _async_save(self) -> None:
        await self._store.async_save(
            {"devices": [device.as_dict() for device in self._paired.values()]}
        )

    # --- what the entities and the actuator read --------------------------------------------

    @property
    def devices(self) -> list[PairedDevice]:
        """Return the paired devices."""
        return list(self._paired.values())

    def get(self, device_id: str) -> PairedDevice | None:
        """Return a paired device (None if it is not paired with this home)."""
        return self._paired.get(device_id)

    def is_connected(self, device_id: str) -> bool:
        """Return True when the device is connected, welcomed and brought in line."""
        return device_id in self._ready

    def state(self, device_id: str) -> DeviceState | None:
        """Return the device's last reported state (None when it is not connected)."""
        return self._states.get(device_id) if device_id in self._ready else None

    @callback
    def async_add_listener(self, device_id: str, listener: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call ``listener`` whenever the device connects, disconnects or reports."""
        self._listeners.setdefault(device_id, []).append(listener)

        @callback
        def _remove() -> None:
            self._listeners[device_id].remove(listener)

        return _remove

    def _notify(self, device_id: str) -> None:
        for listener in list(self._listeners.get(device_id, ())):
            listener()

    # --- pairing, connections ------------------------------------------------------------

    def proof_matches(self, conn: DeviceConnection, hello: Message) -> bool:
        """Return True when ``hello`` (received on ``conn``) proves its device's stored key."""
        device = self._paired[str(hello["device_id"])]
        return protocol.check_device_proof(device.key, conn.nonce, hello)

    async def async_pair(self, hello: Mapping[str, Any], key: bytes) -> PairedDevice:
        """Store a device the user confirmed (its key is checked already)."""
        device = PairedDevice.from_hello(hello, key)
        self._paired[device.device_id] = device
        await self._async_save()
        self._register_device(device)
        LOGGER.info("Paired Jeisson WiFi actuator %s (%s)", device.device_id, device.name)
        async_dispatcher_send(self.hass, signal_device_paired(self.entry.entry_id), device)
        return device

    async def async_forget(self, device_id: str) -> None:
        """Forget a device and its key; its next connection is a new, pending device."""
        if self._paired.pop(device_id, None) is None:
            return
        await self._async_save()
        self._ready.discard(device_id)
        self._states.pop(device_id, None)
        if (conn := self._links.pop(device_id, None)) is not None:
            await conn.close()
        LOGGER.info("Forgot Jeisson WiFi actuator %s and its key", device_id)

    def device_info(self, device: PairedDevice) -> dr.DeviceInfo:
        """Return the registry description of a device (a sub-device of the home)."""
        info = dr.DeviceInfo(
            identifiers={device_identifier(device.device_id)},
            manufacturer=MANUFACTURER,
            model=device.model or DEFAULT_MODEL,
            name=device.name,
            sw_version=device.firmware,
        )
        if self._home_device_id is not None:
            info["via_device_id"] = self._home_device_id
        return info

    def _register_device(self, device: PairedDevice) -> None:
        """Create or update the device in the registry."""
        dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.entry.entry_id, **self.device_info(device)
        )

    async def async_attach(self, conn: DeviceConnection, hello: Message) -> None:
        """Welcome a known device whose proof checked out, replacing any older connection."""
        device = self._paired[str(hello["device_id"])]
        device_id = device.device_id
        if device.update_from_hello(hello):
            await self._async_save()
            self._register_device(device)
        old = self._links.get(device_id)
        conn.owner = self
        self._links[device_id] = conn
        self._ready.discard(device_id)
        self._states[device_id] = DeviceState.from_payload(hello["state"])
        if old is not None and old is not conn:
            LOGGER.debug("Jeisson WiFi actuator %s reconnected; dropping the old link", device_id)
            self.entry.async_create_background_task(
                self.hass,
                old.refuse(replaced_error()),
                f"jeisson wifi replace {device_id}",
            )
        proof = protocol.server_proof(device.key, conn.nonce, str(hello["nonce"]), device_id)
        await conn.send(protocol.welcome(proof, time.time()))
        LOGGER.info("Jeisson WiFi actuator %s connected from %s", device_id, conn.peer)
        self.entry.async_create_background_task(
            self.hass, self._async_settle(device_id, conn), f"jeisson wifi settle {device_id}"
        )

    async def _async_settle(self, device_id: str, conn: DeviceConnection) -> None:
        """Bring a (re)connected device in line with the holds it should be in, then show it."""
        try:
            await self._async_reconcile(device_id, conn)
        except HomeAssistantError as err:
            LOGGER.warning("Could not bring WiFi actuator %s in line: %s", device_id, err)
        if self._links.get(device_id) is conn and not conn.closed:
            self._ready.add(device_id)
            self._notify(device_id)

    async def _async_reconcile(self, device_id: str, conn: DeviceConnection) -> None:
        """Re-send the hold the device should be in (it lost it, or it ends too early).

        A hold Home Assistant no longer wants is left to end by itself (it always has an end):
        restoring loads is the event runner's job, which knows whether and when it owes one.
        """
        state = self._states[device_id]
        device = self._paired[device_id]
        if state.overridden:
            await self._async_set_manual(device, False)
            return
        wanted = self._wanted_end(device)
        if wanted is not None and (
            state.hold_until is None or state.hold_until < wanted - RENEW_SLACK
        ):
            await self._async_send_off(conn, device, wanted)

    @callback
    def _on_renew_time(self, _now: datetime) -> None:
        for device_id, conn in list(self._links.items()):
            if device_id in self._ready:
                self.entry.async_create_background_task(
                    self.hass,
                    self._async_settle(device_id, conn),
                    f"jeisson wifi renew {device_id}",
                )

    @callback
    def async_on_message(self, conn: DeviceConnection, message: Message) -> None:
        """Take a report (``state``, ``ack``) or an ``error`` from a paired device."""
        device_id = conn.device_id
        if device_id is None or self._links.get(device_id) is not conn:
            return
        resolved = conn.resolve(message)
        if message["type"] == protocol.ERROR:
            if not resolved:
                LOGGER.warning(
                    "WiFi actuator %s reports %s: %s",
                    device_id,
                    message["code"],
                    message["message"],
                )
            return
        self._apply_state(device_id, message["state"])

    @callback
    def async_on_closed(self, conn: DeviceConnection) -> None:
        """Mark the device unavailable when its current connection ends."""
        device_id = conn.device_id
        if device_id is None or self._links.get(device_id) is not conn:
            return
        del self._links[device_id]
        self._ready.discard(device_id)
        LOGGER.info("Jeisson WiFi actuator %s disconnected", device_id)
        self._notify(device_id)

    def _apply_state(self, device_id: str, payload: Mapping[str, Any]) -> None:
        state = DeviceState.from_payload(payload)
        self._states[device_id] = state
        device = self._paired.get(device_id)
        if state.overridden and device is not None and device.manual_off:
            self.entry.async_create_background_task(
                self.hass, self._async_set_manual(device, False), "jeisson wifi override"
            )
        if device_id in self._ready:
            self._notify(device_id)

    # --- commands -------------------------------------------------------------------------

    def _loads_on(self, device_id: str) -> list[str]:
        ref = actuator_ref(device_id)
        return [
            load_id
            for load_id, load in loads_from_options(self.entry.options).items()
            if load.actuator == ref
        ]

    def event_end(self, device_id: str) -> datetime | None:
        """Return when the running event(s) give back the loads on this device."""
        return event_hold_end(self._schedule(), self._loads_on(device_id), device_id)

    def _wanted_end(self, device: PairedDevice) -> datetime | None:
        """Return the end of the hold the device should be in now (None: no hold)."""
        now = dt_util.utcnow()
        end = self.event_end(device.device_id)
        if end is None and device.manual_off:
            return now + MANUAL_HOLD
        if end is None or end <= now + timedelta(seconds=MIN_HOLD_S):
            return None  # over (or as good as): never switch a load off for a moment
        return end

    async def _async_set_manual(self, device: PairedDevice, manual: bool) -> None:
        if device.manual_off != manual:
            device.manual_off = manual
            await self._async_save()

    def _live(self, device_id: str) -> tuple[DeviceConnection, PairedDevice]:
        device = self._paired.get(device_id)
        conn = self._links.get(device_id)
        if device is None or conn is None:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="wifi_not_connected",
                translation_placeholders={"name": device.name if device else device_id},
            )
        return conn, device

    async def async_turn_off(self, device_id: str) -> None:
        """Hold the load off until its event gives it back, or for a day (renewed) if manual."""
        conn, device = self._live(device_id)
        end = self.event_end(device_id)
        await self._async_set_manual(device, end is None)
        await self._async_send_off(conn, device, end or dt_util.utcnow() + MANUAL_HOLD)

    async def async_turn_on(self, device_id: str) -> None:
        """Release any hold and power the load."""
        conn, device = self._live(device_id)
        await self._async_set_manual(device, False)
        await self._async_send_on(conn, device)

    async def _async_send_off(
        self, conn: DeviceConnection, device: PairedDevice, end: datetime
    ) -> None:
        now = time.time()
        duration = min(max(end.timestamp() - now, MIN_HOLD_S), float(protocol.MAX_HOLD_S))
        command = protocol.command_off(
            new_command_id(), round(duration, 3), round(now + duration, 3)
        )
        await self._async_request(conn, device, command)

    async def _async_send_on(self, conn: DeviceConnection, device: PairedDevice) -> None:
        await self._async_request(conn, device, protocol.command_on(new_command_id()))

    async def _async_request(
        self, conn: DeviceConnection, device: PairedDevice, command: Message
    ) -> None:
        try:
            ack = await conn.request(command, ACK_TIMEOUT_S)
        except (TimeoutError, ConnectionLostError, DeviceRefusedError) as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="wifi_command_failed",
                translation_placeholders={
                    "name": device.name,
                    "error": str(err) or type(err).__name__,
                },
            ) from err
        self._apply_state(device.device_id, ack["state"])

    # --- diagnostics ----------------------------------------------------------------------

    def diagnostics(self) -> list[dict[str, Any]]:
        """Return the paired devices and their live state (keys included: redact them)."""
        result: list[dict[str, Any]] = []
        for device in self._paired.values():
            state = self._states.get(device.device_id)
            result.append(
                {
                    **device.as_dict(),
                    "connected": self.is_connected(device.device_id),
                    "state": None
                    if state is None
                    else {
                        "relay_on": state.relay_on,
                        "power_w": state.power_w,
                        "power_measured": state.power_measured,
                        "cause": state.cause,
                        "hold_until": state.hold_until.isoformat() if state.hold_until else None,
                    },
                }
            )
        return result
