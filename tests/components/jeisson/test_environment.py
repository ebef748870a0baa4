"""Smoke test for the Python 3.14 root that runs the Home Assistant side (scripts/py314)."""

import os
import re
import sys
from importlib.metadata import distribution
from pathlib import Path

import homeassistant.const

import aggregator
from tests.helpers import CHECKOUT

from .common import TESTED_HA_RELEASES

MINIMUM_PYTHON = (3, 14, 2)
CHECKOUT_MOUNT = Path("/src")
PY314_LIB = CHECKOUT / "scripts" / "lib" / "py314.sh"
HA_VERSIONS = re.compile(r'^readonly _PY314_HA_VERSIONS="([^"]+)"$', re.MULTILINE)


def test_root_has_home_assistant_python_and_the_checkout() -> None:
    """The release JEISSON_HA names and Python >= 3.14.2 run here; `aggregator` is from /src."""
    assert homeassistant.const.__version__ == TESTED_HA_RELEASES[os.environ["JEISSON_HA"]]
    assert sys.version_info >= MINIMUM_PYTHON
    assert Path(aggregator.__file__).resolve().is_relative_to(CHECKOUT_MOUNT)
    assert distribution("jeisson").metadata["Name"] == "jeisson"


def test_the_root_builds_a_venv_for_every_tested_release() -> None:
    """scripts/lib/py314.sh offers exactly the releases the tests name, and no other."""
    found = HA_VERSIONS.search(PY314_LIB.read_text("utf-8"))
    assert found
    assert found.group(1).split() == list(TESTED_HA_RELEASES)
