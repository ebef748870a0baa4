"""Smoke test for the Python 3.14 root that runs the Home Assistant side (scripts/py314)."""

import sys
from importlib.metadata import distribution
from pathlib import Path

import homeassistant.const

import aggregator

EXPECTED_HA_VERSION = "2026.10.4"
MINIMUM_PYTHON = (3, 14, 2)
CHECKOUT_MOUNT = Path("/src")


def test_root_has_home_assistant_python_and_the_checkout() -> None:
    """HA's pinned release and Python >= 3.14.2 run here, and `aggregator` comes from /src."""
    assert homeassistant.const.__version__ == EXPECTED_HA_VERSION
    assert sys.version_info >= MINIMUM_PYTHON
    assert Path(aggregator.__file__).resolve().is_relative_to(CHECKOUT_MOUNT)
    assert distribution("jeisson").metadata["Name"] == "jeisson"
