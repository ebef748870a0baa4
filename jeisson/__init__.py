"""Jeisson's home-side library: what a home needs to take part in demand response.

``jeisson.common`` holds the wire protocol between homes and the aggregator (message models,
limits, close codes, paths) and its errors; ``jeisson.client`` is a home's connection to the
aggregator; ``jeisson.actuator`` is the local protocol between Home Assistant and Jeisson WiFi
actuators. This is all the Home Assistant integration installs. The aggregator server, its
settlement and the fleet simulator are a separate distribution (``jeisson-aggregator``).

This file and ``jeisson.actuator`` must stay importable under MicroPython (the ESP32 firmware
carries them): no ``typing`` at run time, no ``from __future__`` imports.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
