"""manifest.json and hacs.json follow hassfest's and HACS's rules for a custom integration."""

from __future__ import annotations

import json
import struct
from importlib.metadata import version

from awesomeversion import AwesomeVersion
from homeassistant.const import __version__ as ha_version

from custom_components.jeisson.const import DOMAIN, SOFTWARE_VERSION
from tests.helpers import CHECKOUT

from .common import TESTED_HA_RELEASES

ROOT = CHECKOUT
INTEGRATION = ROOT / "custom_components" / DOMAIN
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ICON_SIZE = 256


def test_manifest_has_every_key_hassfest_needs_in_its_order() -> None:
    """domain, name, then the other keys alphabetically; pinned requirement; version."""
    manifest = json.loads((INTEGRATION / "manifest.json").read_text("utf-8"))
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    assert manifest["domain"] == DOMAIN == INTEGRATION.name
    for key in ("codeowners", "config_flow", "documentation", "iot_class", "issue_tracker"):
        assert manifest[key], key
    assert manifest["documentation"].startswith("https://")
    assert manifest["integration_type"] == "hub"
    assert manifest["iot_class"] == "cloud_push"
    assert manifest["after_dependencies"] == ["zeroconf", "zha"]
    assert manifest["dependencies"] == ["http"]
    assert manifest["requirements"] == [f"jeisson=={version('jeisson')}"]
    assert manifest["version"] == SOFTWARE_VERSION


def test_hacs_json_states_the_oldest_home_assistant_the_tests_run_on() -> None:
    """hacs.json's minimum Home Assistant is the oldest release this suite runs on.

    The suite runs on each of TESTED_HA_RELEASES (scripts/test runs them all); this run's
    release is one of them and not older than the minimum HACS is told.
    """
    hacs = json.loads((ROOT / "hacs.json").read_text("utf-8"))
    assert hacs["name"]
    oldest = min(TESTED_HA_RELEASES.values(), key=AwesomeVersion)
    assert hacs["homeassistant"] == oldest
    assert ha_version in TESTED_HA_RELEASES.values()
    assert AwesomeVersion(ha_version) >= AwesomeVersion(hacs["homeassistant"])
    assert hacs["render_readme"] is True


def test_brand_icon_is_a_256_pixel_png() -> None:
    """The brand icon HACS and HA show is a square 256x256 PNG."""
    data = (INTEGRATION / "brand" / "icon.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (ICON_SIZE, ICON_SIZE)
