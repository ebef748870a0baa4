"""Home Assistant integration tests (pytest-homeassistant-custom-component, Python 3.14)."""
