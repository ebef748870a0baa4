"""Bridge pytest-homeassistant-custom-component 0.13.375 (built for HA 2026.10.4) to HA 2026.11.

Loaded first, with ``-p tests.components.ha_2026_11``, by ``scripts/test-ha`` when
``JEISSON_HA=2026.11`` (the Python 3.14 root's /opt/venv-2026.11, see
requirements/ha-test-2026.11.txt). No plugin release for 2026.11 is on this machine's index; the
plugin runs on 2026.11.0 with exactly two differences bridged here, before it is imported:

- HA 2026.11 aliases ``httpx`` to its ``httpx2`` when the ``homeassistant`` package is imported
  and must do so before anything imports ``httpx``; the plugin imports respx (and so httpx)
  first. Importing ``homeassistant`` here, before the plugin loads, puts the order right.
- ``homeassistant.components.logger._clear_logger_overwrites``, which the plugin's ``common``
  module imports, moved to ``homeassistant.components.logger.helpers``; it is made reachable
  under its old name as well.

The ZHA tests are left out (not collected) on 2026.11: HA 2026.11's ZHA needs zha 2.4.2, which
this index does not serve. They run on 2026.10.4, in the same ``scripts/test``.
"""

from __future__ import annotations

from pathlib import Path

import homeassistant  # noqa: F401 - first, so HA's httpx alias precedes every httpx import
import homeassistant.components.logger as ha_logger
import pytest
from homeassistant.components.logger.helpers import _clear_logger_overwrites
from homeassistant.const import __version__ as ha_version

BRIDGED_MAJOR = "2026.11."
ZHA_TEST_MODULES = frozenset(
    {"test_zha_harness.py", "test_zigbee_actuator.py", "test_zigbee_loads.py"}
)
ZHA_REASON = (
    "ZHA tests left out on Home Assistant {version}: its ZHA needs zha 2.4.2, which this "
    "machine's package index does not serve; they run on 2026.10.4 (scripts/test runs both)"
)

if not ha_version.startswith(BRIDGED_MAJOR):
    raise pytest.UsageError(
        f"tests.components.ha_2026_11 bridges Home Assistant 2026.11, not {ha_version}"
    )
if not hasattr(ha_logger, "_clear_logger_overwrites"):
    ha_logger._clear_logger_overwrites = _clear_logger_overwrites  # type: ignore[attr-defined]


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """Leave the ZHA test modules out (they cannot import zha here); decide nothing else."""
    if collection_path.name in ZHA_TEST_MODULES:
        return True
    return None


def pytest_report_header() -> str:
    """Say at the top of the run what is left out and why."""
    return ZHA_REASON.format(version=ha_version)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say it again at the end, where a reader of the summary looks."""
    terminalreporter.write_line(ZHA_REASON.format(version=ha_version))
