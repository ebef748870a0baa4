"""Jeisson WiFi actuator: the reference relay device and its simulator.

The same modules run under MicroPython on an ESP32 relay board and under CPython as a simulator:

- ``protocol``  the local protocol between Home Assistant and a device (plain Python; Home
  Assistant's side imports it too).
- ``device``    the relay logic: state machine, fail-safe hold timer, idempotent commands.
- ``hal``       the hardware shim: clock, relay pin, power meter, persistent state; a simulated
  relay and load under CPython.
- ``session``   one device's connection loop to Home Assistant (handshake, reports, commands,
  reconnects); ``transport`` carries its websocket frames (aiohttp or a minimal client).
- ``mdns``      finds Home Assistant's endpoint through its zeroconf announcement.
- ``__main__``  ``python -m actuator`` (the simulator); ``main_esp32`` the MicroPython entry point.

See ``docs/wifi-actuator.md``. This package must stay importable under MicroPython: no
``typing`` at run time, no ``from __future__`` imports, no dataclasses or enums.
"""

FIRMWARE_VERSION = "0.1.0"
"""Version of this reference firmware, sent in the device's hello."""
