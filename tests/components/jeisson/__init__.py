"""Tests of the Jeisson integration (pytest-homeassistant-custom-component, Python 3.14)."""
