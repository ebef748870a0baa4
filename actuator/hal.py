"""Hardware shim of the actuator: clock, relay, power meter, button and persistent state.

Each piece has a CPython implementation (the simulator: a simulated relay driving a simulated
load) and a MicroPython one (ESP32: ``machine.Pin``, ``machine.UART``, ``time.ticks_ms``). The
device logic (``actuator.device``) only sees these interfaces, so it runs the same code path on
both. MicroPython-only classes import ``machine`` in their constructor, so this module imports
anywhere; they are marked ``MicroPython only`` and cannot run on the host.

Pure helpers (Modbus CRC, PZEM-004T frames, HLW8012 pulse maths, relay pin levels) are plain
functions so the host tests can check them.
"""

import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CLOCK_SANE_AFTER = 1_735_689_600.0
"""2025-01-01T00:00:00Z: a wall clock showing an earlier time was never set (ESP32 after power
loss) and is not trusted until Home Assistant sets it."""
_EPOCH_2000 = 946_684_800
"""Seconds from 1970-01-01 to 2000-01-01 (the epoch of older MicroPython ports)."""
_MS = 1000.0

PZEM_DEFAULT_ADDRESS = 0xF8
"""The PZEM-004T v3 "general" Modbus address (any single meter answers it)."""
PZEM_READ_INPUT = 0x04
"""Modbus function: read input registers."""
PZEM_REGISTERS = 10
"""Input registers read from a PZEM-004T v3 (voltage ... alarm)."""
PZEM_RESPONSE_LEN = 5 + 2 * PZEM_REGISTERS
"""Bytes in the answer: address, function, byte count, registers, CRC (2)."""
PZEM_BAUD = 9600
PZEM_TIMEOUT_MS = 200
_PZEM_POWER_SCALE = 0.1
"""PZEM power registers count tenths of a watt."""
_MODBUS_POLY = 0xA001
_WORD = 0xFFFF
_BYTE = 0xFF


class Clock:
    """Monotonic and wall-clock time.

    ``monotonic()`` never jumps (hold timers use it). ``wall()`` is Unix time, or None while it
    cannot be trusted; :meth:`sync` aligns it with Home Assistant's clock (sent in the
    authenticated ``welcome``), so persisted hold end times survive a reboot.
    """

    def __init__(self) -> None:
        """Start unsynced, offset zero."""
        self._offset = 0.0
        self._synced = False

    def monotonic(self) -> float:
        """Return seconds from an arbitrary start; never goes back."""
        raise NotImplementedError

    def raw_wall(self) -> float:
        """Return the platform's Unix time, uncorrected."""
        raise NotImplementedError

    def set_platform_time(self, now: float) -> bool:
        """Set the platform clock to ``now`` (Unix time); return True when it was set."""
        return False

    def wall(self) -> "float | None":
        """Return the trusted Unix time, or None when the clock was never set."""
        raw = self.raw_wall()
        if not self._synced and raw < CLOCK_SANE_AFTER:
            return None
        return raw + self._offset

    def sync(self, now: float) -> None:
        """Align the wall clock with ``now`` (Home Assistant's Unix time)."""
        if self.set_platform_time(now):
            self._offset = 0.0
        else:
            self._offset = now - self.raw_wall()
        self._synced = True


class SystemClock(Clock):
    """CPython clock: ``time.monotonic`` and ``time.time``."""

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def raw_wall(self) -> float:
        """Return ``time.time()``."""
        return time.time()


class TicksClock(Clock):
    """MicroPython clock: ``time.ticks_ms`` (accumulated across wrap-around) and the RTC.

    MicroPython only. ``monotonic`` must be called at least every few days (the device loop calls
    it twice a second) so a ticks wrap-around is never missed.
    """

    def __init__(self) -> None:
        """Start counting from now; learn the port's epoch."""
        super().__init__()
        self._last = time.ticks_ms()  # type: ignore[attr-defined]
        self._elapsed_ms = 0
        self._epoch = _EPOCH_2000 if time.gmtime(0)[0] == 2000 else 0

    def monotonic(self) -> float:
        """Return seconds since this clock was created."""
        now = time.ticks_ms()  # type: ignore[attr-defined]
        self._elapsed_ms += time.ticks_diff(now, self._last)  # type: ignore[attr-defined]
        self._last = now
        return self._elapsed_ms / _MS

    def raw_wall(self) -> float:
        """Return the RTC's time as Unix seconds."""
        return float(time.time() + self._epoch)

    def set_platform_time(self, now: float) -> bool:
        """Set the RTC (it survives soft resets and watchdog resets, not power loss)."""
        try:
            import machine  # noqa: PLC0415
        except ImportError:
            return False
        t = time.gmtime(int(now) - self._epoch)
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))
        return True


# --- relay ---------------------------------------------------------------------------------


class SimulatedRelay:
    """A relay in memory (the simulator): remembers its state and counts its switchings."""

    def __init__(self) -> None:
        """Start with the load on, as a de-energised relay wired through its NC contact is."""
        self._on = True
        self.switch_count = 0

    def set(self, on: bool) -> None:
        """Switch the load on or off."""
        if on != self._on:
            self.switch_count += 1
        self._on = on

    def is_on(self) -> bool:
        """Return True when the load is powered."""
        return self._on


def relay_pin_level(load_on: bool, load_on_nc: bool, active_low: bool) -> int:
    """Return the GPIO level that puts the load ``load_on``.

    ``load_on_nc``: the load is wired through the relay's normally-closed contact, so energising
    the coil cuts it (recommended: a dead controller leaves the load on). ``active_low``: the
    relay module energises its coil when its input is driven low (most opto-isolated modules).
    """
    energise = (not load_on) if load_on_nc else load_on
    return int(energise != active_low)


class PinRelay:
    """A relay module on a GPIO (MicroPython only)."""

    def __init__(self, pin: int, load_on_nc: bool = True, active_low: bool = False) -> None:
        """Drive ``pin`` as an output, with the load on from the first instant."""
        import machine  # noqa: PLC0415

        self._load_on_nc = load_on_nc
        self._active_low = active_low
        self._on = True
        self._pin = machine.Pin(
            pin, machine.Pin.OUT, value=relay_pin_level(True, load_on_nc, active_low)
        )

    def set(self, on: bool) -> None:
        """Switch the load on or off."""
        self._pin.value(relay_pin_level(on, self._load_on_nc, self._active_low))
        self._on = on

    def is_on(self) -> bool:
        """Return True when the load is powered."""
        return self._on


# --- power meters --------------------------------------------------------------------------


class SimulatedLoad:
    """The simulator's power meter: the load draws about its rated power while the relay is on.

    Readings vary by up to ``variation`` (a fraction) around the rated power, as a real
    appliance's draw does, and are 0 while the relay is off.
    """

    def __init__(self, relay: SimulatedRelay, rated_w: float, variation: float = 0.03) -> None:
        """Meter the load behind ``relay``."""
        self._relay = relay
        self._rated_w = rated_w
        self._variation = variation

    def read_w(self) -> "float | None":
        """Return the load's power in watts."""
        if not self._relay.is_on():
            return 0.0
        spread = int.from_bytes(os.urandom(2), "big") / float(_WORD) * 2.0 - 1.0
        return round(self._rated_w * (1.0 + self._variation * spread), 1)


def modbus_crc16(data: bytes) -> int:
    """Return the Modbus RTU CRC-16 of ``data`` (sent low byte first)."""
    crc = _WORD
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ _MODBUS_POLY if crc & 1 else crc >> 1
    return crc


def _with_crc(frame: bytes) -> bytes:
    """Return ``frame`` followed by its Modbus CRC (low byte first)."""
    crc = modbus_crc16(frame)
    return frame + bytes((crc & _BYTE, crc >> 8))


def pzem_request(address: int = PZEM_DEFAULT_ADDRESS) -> bytes:
    """Return the Modbus request that reads a PZEM-004T v3's measurement registers."""
    return _with_crc(bytes((address, PZEM_READ_INPUT, 0, 0, 0, PZEM_REGISTERS)))


def pzem_power_w(response: bytes, address: int = PZEM_DEFAULT_ADDRESS) -> "float | None":
    """Return the active power (W) in a PZEM-004T v3 answer, or None when it is not valid.

    The answer is ``address, 0x04, 20, registers..., crc``; power is registers 3 (low word) and
    4 (high word) in tenths of a watt.
    """
    if len(response) != PZEM_RESPONSE_LEN:
        return None
    if response[0] != address or response[1] != PZEM_READ_INPUT:
        return None
    if response[2] != 2 * PZEM_REGISTERS or _with_crc(response[:-2]) != response:
        return None
    low = (response[3 + 6] << 8) | response[3 + 7]
    high = (response[3 + 8] << 8) | response[3 + 9]
    return ((high << 16) | low) * _PZEM_POWER_SCALE


class Pzem004t:
    """A PZEM-004T v3 power meter on a UART (MicroPython only)."""

    def __init__(self, uart_id: int, tx: int, rx: int, address: int = PZEM_DEFAULT_ADDRESS) -> None:
        """Open the UART at 9600 8N1."""
        import machine  # noqa: PLC0415

        self._address = address
        self._uart = machine.UART(
            uart_id, baudrate=PZEM_BAUD, tx=tx, rx=rx, timeout=PZEM_TIMEOUT_MS
        )

    def read_w(self) -> "float | None":
        """Return the measured power in watts, or None when the meter does not answer."""
        self._uart.read()  # drop stale bytes
        self._uart.write(pzem_request(self._address))
        answer = self._uart.read(PZEM_RESPONSE_LEN)
        return pzem_power_w(answer or b"", self._address)


def hlw8012_power_w(pulses: int, seconds: float, watts_per_hz: float) -> "float | None":
    """Return the power an HLW8012's CF output shows: pulse frequency times the calibration.

    ``watts_per_hz`` comes from calibration with a known resistive load (its watts divided by
    the CF frequency measured with it). None when no time has passed.
    """
    if seconds <= 0:
        return None
    return round(pulses / seconds * watts_per_hz, 1)


class Hlw8012:
    """An HLW8012 power meter: counts CF pulses with an interrupt (MicroPython only)."""

    def __init__(self, cf_pin: int, watts_per_hz: float, clock: Clock) -> None:
        """Count rising edges on ``cf_pin``."""
        import machine  # noqa: PLC0415

        self._watts_per_hz = watts_per_hz
        self._clock = clock
        self._pulses = 0
        self._since = clock.monotonic()
        self._pin = machine.Pin(cf_pin, machine.Pin.IN)
        self._pin.irq(trigger=machine.Pin.IRQ_RISING, handler=self._count)

    def _count(self, _pin: object) -> None:
        """Interrupt handler: one CF pulse (no allocation here)."""
        self._pulses += 1

    def read_w(self) -> "float | None":
        """Return the mean power since the previous reading."""
        now = self._clock.monotonic()
        pulses, self._pulses = self._pulses, 0
        seconds, self._since = now - self._since, now
        return hlw8012_power_w(pulses, seconds, self._watts_per_hz)


# --- button --------------------------------------------------------------------------------


class PinButton:
    """A push button to ground on a GPIO with the internal pull-up (MicroPython only).

    :meth:`pressed` reports each press once; the device loop polls it.
    """

    def __init__(self, pin: int) -> None:
        """Configure ``pin`` as an input with pull-up."""
        import machine  # noqa: PLC0415

        self._pin = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
        self._was_down = False

    def pressed(self) -> bool:
        """Return True once per press (the pin went low since the last call)."""
        down = self._pin.value() == 0
        fired = down and not self._was_down
        self._was_down = down
        return fired


# --- persistent state ----------------------------------------------------------------------


class JsonFileStore:
    """Keeps the device's small persistent state in a JSON file (flash on the ESP32).

    With no path it keeps the state in memory only (nothing survives a restart). Writes go to a
    temporary file first, then replace the old one, so a crash never leaves half a file.
    """

    def __init__(self, path: "str | None") -> None:
        """Use the file at ``path`` (None: memory only)."""
        self.path = path
        self._memory: dict[str, Any] | None = None

    def load(self) -> "dict[str, Any] | None":
        """Return the saved state, or None when there is none or it is unreadable."""
        if self.path is None:
            return self._memory
        try:
            with open(self.path) as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save(self, data: "dict[str, Any]") -> None:
        """Replace the saved state with ``data``."""
        if self.path is None:
            self._memory = data
            return
        temporary = self.path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump(data, handle)
        try:
            os.rename(temporary, self.path)  # atomic replace on POSIX and LittleFS
        except OSError:  # a FAT filesystem refuses to rename over an existing file
            os.remove(self.path)
            os.rename(temporary, self.path)
