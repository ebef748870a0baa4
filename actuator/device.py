"""The relay logic of a Jeisson WiFi actuator: its state machine and its fail-safe hold timer.

States: the load is ON (no hold) or OFF under a *hold* that ends at a known time. An ``off``
command starts (or replaces) a hold for ``duration_s`` seconds, timed by the device's own
monotonic clock; ``on`` ends it. When the hold's time is up the device switches the load back on
by itself (:meth:`Device.tick`), whether or not Home Assistant is still there: a dead controller
never leaves a load off. Commands are idempotent: a command id seen before is acknowledged again
and changes nothing.

The hold and the recent command ids are persisted (``hal.JsonFileStore``). On boot the load is
switched ON unless a persisted hold is still in the future by a trusted wall clock; then it
stays off until that time and is restored by the device itself. An untrusted clock (an ESP32
after power loss) or an implausible end time restores at once.

No networking here: ``actuator.session`` feeds commands in and reports the state out. All
methods are synchronous and quick, so the same code runs on MicroPython.
"""

from actuator import FIRMWARE_VERSION
from actuator.log import get_logger
from jeisson.actuator import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from actuator.hal import Clock
    from actuator.log import Logger

    class Relay(Protocol):
        """A switch in front of the load."""

        def set(self, on: bool) -> None:
            """Switch the load on or off."""

        def is_on(self) -> bool:
            """Return True when the load is powered."""

    class Meter(Protocol):
        """A power meter on the load's circuit."""

        def read_w(self) -> "float | None":
            """Return the load's power in watts, or None when there is no reading."""

    class Store(Protocol):
        """Where the device keeps its small persistent state."""

        def load(self) -> "dict[str, Any] | None":
            """Return the saved state, or None."""

        def save(self, data: "dict[str, Any]") -> None:
            """Replace the saved state."""


STATE_FORMAT = 1
"""Version of the persisted state's layout."""
RECENT_COMMAND_IDS = 32
"""How many command ids a device remembers to recognise repeats."""
BOOT_HOLD_SLACK_S = 60.0
"""A persisted hold may end at most this much later than ``MAX_HOLD_S`` from now."""
_W_PER_KW = 1000.0


class DeviceInfo:
    """Who a device is: id, name, rated power, key and firmware; checked on creation."""

    def __init__(
        self,
        device_id: str,
        name: str,
        rated_kw: float,
        key: bytes,
        *,
        firmware: str = FIRMWARE_VERSION,
        model: str = "",
    ) -> None:
        """Check and keep the device's identity; raise ``ValueError`` when something is off."""
        if not protocol.is_identifier(device_id):
            raise ValueError("device id must be 1-64 characters of A-Z a-z 0-9 _ . : -")
        if not 1 <= len(name) <= protocol.MAX_NAME_LEN:
            raise ValueError("name must be 1-64 characters")
        if not 0 < rated_kw <= protocol.MAX_RATED_KW:
            raise ValueError("rated power must be more than 0 and at most 100 kW")
        if not protocol.MIN_KEY_BYTES <= len(key) <= protocol.MAX_KEY_BYTES:
            raise ValueError("device key must be 16 to 32 bytes")
        self.device_id = device_id
        self.name = name
        self.rated_kw = float(rated_kw)
        self.key = key
        self.firmware = firmware
        self.model = model


class Hold:
    """An off hold: the command that started it, its end as commanded, its monotonic deadline."""

    def __init__(self, command_id: str, until: float, deadline: float) -> None:
        """Describe a hold ending at monotonic time ``deadline`` (``until`` in HA's clock)."""
        self.command_id = command_id
        self.until = until
        self.deadline = deadline


class Device:
    """One relay actuator: obeys commands, enforces hold end times, describes its state.

    ``version`` goes up on every change of the relay or the hold, so a reporter can send a
    report at once when it moves.
    """

    def __init__(
        self,
        info: DeviceInfo,
        relay: "Relay",
        clock: "Clock",
        store: "Store",
        *,
        meter: "Meter | None" = None,
        logger: "Logger | None" = None,
    ) -> None:
        """Wire the device to its hardware; call :meth:`boot` before anything else."""
        self.info = info
        self._relay = relay
        self._clock = clock
        self._store = store
        self._meter = meter
        self._log = logger or get_logger("actuator.device")
        self._hold: Hold | None = None
        self._cause = protocol.CAUSE_BOOT
        self._recent: list[str] = []
        self._started = clock.monotonic()
        self.version = 0

    # --- lifecycle ------------------------------------------------------------------------

    def boot(self) -> None:
        """Restore the load, or keep it off under a persisted hold that is still running."""
        saved = self._store.load() or {}
        recent = saved.get("recent")
        if isinstance(recent, list):
            self._recent = [i for i in recent if protocol.is_identifier(i)][-RECENT_COMMAND_IDS:]
        remaining = self._persisted_remaining(saved.get("hold"))
        if remaining is None:
            self._switch(True, protocol.CAUSE_BOOT)
            self._log.info("boot: load on")
        else:
            hold = saved["hold"]
            self._hold = Hold(
                hold["command_id"], hold["until"], self._clock.monotonic() + remaining
            )
            self._switch(False, protocol.CAUSE_BOOT)
            self._log.info("boot: load held off for %.0f s more (persisted hold)", remaining)
        self._persist()

    def _persisted_remaining(self, hold: object) -> "float | None":
        """Return the seconds left of a persisted hold, or None when the load should be on."""
        if not isinstance(hold, dict):
            return None
        until_wall = hold.get("until_wall")
        command_id = hold.get("command_id")
        until = hold.get("until")
        usable = (
            isinstance(until_wall, (int, float))
            and isinstance(until, (int, float))
            and protocol.is_identifier(command_id)
        )
        if not usable:
            self._log.warning("boot: persisted hold is unreadable; load on")
            return None
        now = self._clock.wall()
        if now is None:
            self._log.warning("boot: clock not set, cannot tell if the hold is over; load on")
            return None
        remaining = float(until_wall) - now  # type: ignore[arg-type]
        if remaining <= 0:
            self._log.info("boot: persisted hold is over")
            return None
        if remaining > protocol.MAX_HOLD_S + BOOT_HOLD_SLACK_S:
            self._log.warning("boot: persisted hold ends implausibly late; load on")
            return None
        return remaining

    def sync_clock(self, now: float) -> None:
        """Align the wall clock with Home Assistant's (from an authenticated ``welcome``)."""
        self._clock.sync(now)
        if self._hold is not None:
            self._persist()

    # --- commands -------------------------------------------------------------------------

    def handle_command(self, message: "dict[str, Any]") -> "dict[str, Any]":
        """Apply a validated ``command`` message and return its ``ack``.

        A repeated command id changes nothing and is acknowledged with ``duplicate: true``.
        """
        command_id = message["id"]
        if command_id in self._recent:
            self._log.info("command %s repeated: already applied", command_id)
            return protocol.ack(command_id, True, self.state_payload())
        self._recent.append(command_id)
        del self._recent[:-RECENT_COMMAND_IDS]
        if message["command"] == protocol.CMD_OFF:
            self._hold_off(command_id, message["duration_s"], message["until"])
        else:
            self._release(protocol.CAUSE_COMMAND)
            self._log.info("command %s: load on", command_id)
        self._persist()
        return protocol.ack(command_id, False, self.state_payload())

    def _hold_off(self, command_id: str, duration_s: float, until: float) -> None:
        """Switch the load off until ``duration_s`` from now (replacing any current hold)."""
        self._hold = Hold(command_id, until, self._clock.monotonic() + duration_s)
        self._switch(False, protocol.CAUSE_COMMAND)
        self.version += 1  # a new end time is a change even when the relay was already off
        self._log.info("command %s: load off for %.0f s", command_id, duration_s)

    def _release(self, cause: str) -> None:
        """End any hold and switch the load on."""
        self._hold = None
        self._switch(True, cause)
        self.version += 1

    def local_override(self) -> None:
        """Someone pressed the device's button: load on now, any hold abandoned."""
        self._log.info("button: load on, hold released")
        self._release(protocol.CAUSE_LOCAL)
        self._persist()

    def tick(self) -> bool:
        """Enforce the hold's end by the device's own clock; return True if the load came on.

        Called every fraction of a second by the device loop, connected or not.
        """
        hold = self._hold
        if hold is None or self._clock.monotonic() < hold.deadline:
            return False
        self._log.info("hold %s is over: load restored by the device", hold.command_id)
        self._release(protocol.CAUSE_FAILSAFE)
        self._persist()
        return True

    # --- state ----------------------------------------------------------------------------

    @property
    def clock(self) -> "Clock":
        """Return the device's clock."""
        return self._clock

    @property
    def has_meter(self) -> bool:
        """Return True when a power meter measures the load."""
        return self._meter is not None

    @property
    def relay_on(self) -> bool:
        """Return True when the load is powered."""
        return self._relay.is_on()

    @property
    def hold(self) -> "Hold | None":
        """Return the active off hold, if any."""
        return self._hold

    def remaining_s(self) -> float:
        """Return the seconds left of the active hold (0 without one)."""
        if self._hold is None:
            return 0.0
        return max(0.0, self._hold.deadline - self._clock.monotonic())

    def power(self) -> "tuple[float, bool]":
        """Return ``(watts, measured)``: the meter's reading, else the rated power when on."""
        if self._meter is not None:
            reading = self._meter.read_w()
            if reading is not None and reading >= 0:
                return min(float(reading), protocol.MAX_POWER_W), True
        return (self.info.rated_kw * _W_PER_KW if self.relay_on else 0.0), False

    def state_payload(self) -> "dict[str, Any]":
        """Return the protocol's state object for this device now."""
        watts, measured = self.power()
        hold = None
        if self._hold is not None:
            hold = protocol.hold_payload(
                self._hold.command_id, self._hold.until, round(self.remaining_s(), 1)
            )
        return protocol.state_payload(
            relay=protocol.RELAY_ON if self.relay_on else protocol.RELAY_OFF,
            power_w=round(watts, 1),
            power_measured=measured,
            hold=hold,
            cause=self._cause,
            uptime_s=round(self._clock.monotonic() - self._started, 1),
        )

    # --- internals ------------------------------------------------------------------------

    def _switch(self, on: bool, cause: str) -> None:
        """Drive the relay and remember why."""
        if on != self._relay.is_on() or cause != self._cause:
            self.version += 1
        self._relay.set(on)
        self._cause = cause

    def _persist(self) -> None:
        """Save the hold (with its wall-clock end, when the clock is trusted) and recent ids."""
        hold = None
        now = self._clock.wall()
        if self._hold is not None and now is not None:
            hold = {
                "command_id": self._hold.command_id,
                "until": self._hold.until,
                "until_wall": now + self.remaining_s(),
            }
        try:
            self._store.save({"format": STATE_FORMAT, "hold": hold, "recent": self._recent})
        except OSError as err:
            self._log.error("could not save state: %s", err)
