"""The Jeisson WiFi actuator protocol, shared by Home Assistant and the devices.

``jeisson.actuator.protocol`` is plain Python that runs unchanged under CPython and MicroPython.
The reference device itself lives outside the library, in the repository's ``actuator/``.
"""
