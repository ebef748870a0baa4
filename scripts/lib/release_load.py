"""Load the released integration in a real Home Assistant, requirements checked as a home would.

Runs INSIDE the Python 3.14 root, in a fresh venv holding only Home Assistant and the built
``jeisson`` wheel (scripts/release-check makes it):

    python scripts/lib/release_load.py --config-dir NEW_DIR --zip ZIP --url AGGREGATOR_URL \
        --code CODE --port PORT

It unpacks the integration's release zip into a new configuration's
``custom_components/jeisson/`` (as HACS does), boots Home Assistant with its own bootstrap and
requirement handling on (no ``--skip-pip``), runs the config flow with an enrolment code against
a running aggregator and checks that the entry loads. Home Assistant must find the manifest's
``jeisson==<version>`` already satisfied by the wheel (it would otherwise try to install it from
the package index, where an unreleased version is not). Packages Home Assistant does install
(the requirements of the after-dependencies zeroconf and zha, which a home gets the same way)
are listed. Exit status 0 when the entry loaded, 1 with the reason otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import zipfile
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

from ha_http_config import confirm as confirm_http  # scripts/lib, this script's folder
from homeassistant import bootstrap, runner
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import __version__ as ha_version
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.util import package as pkg_util

DOMAIN = "jeisson"
LIBRARY = "jeisson"
SERVER_PACKAGE = "aggregator"
HOST = "127.0.0.1"
CONFIGURATION = """homeassistant:
  name: Jeisson release check
  time_zone: UTC
"""


class CheckFailedError(Exception):
    """The release does not load as a home would load it."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailedError(message)


def _library_from_the_wheel() -> str:
    """Return the installed jeisson version; fail unless it came from a wheel into this venv."""
    dist = distribution(LIBRARY)
    location = Path(str(dist.locate_file(""))).resolve()
    _check(
        location.is_relative_to(Path(sys.prefix).resolve()),
        f"{LIBRARY} is installed at {location}, not in this venv ({sys.prefix})",
    )
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    _check(
        direct_url.get("url", "").endswith(".whl"),
        f"{LIBRARY} was not installed from a wheel file: {direct_url}",
    )
    _check(
        importlib.util.find_spec(SERVER_PACKAGE) is None,
        f"the server package {SERVER_PACKAGE!r} is importable next to Home Assistant",
    )
    return dist.version


async def _load(config_dir: Path, url: str, code: str) -> tuple[str, list[str]]:
    """Boot HA, run the config flow, return the entry's title and what HA installed."""
    installed: list[str] = []
    real_install = pkg_util.install_package

    def recording_install(package: str, *args: Any, **kwargs: Any) -> bool:
        # Observes what HA's requirement handling installs; the install itself is HA's own.
        installed.append(package)
        return real_install(package, *args, **kwargs)

    pkg_util.install_package = recording_install
    hass = await bootstrap.async_setup_hass(
        runner.RuntimeConfig(config_dir=str(config_dir), skip_pip=False)
    )
    if hass is None:
        raise CheckFailedError("Home Assistant did not boot (see home-assistant.log)")
    try:
        await hass.async_start()
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
        _check(result["type"] is FlowResultType.FORM, f"the flow did not open: {result}")
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"url": url, "code": code}
        )
        _check(result["type"] is FlowResultType.CREATE_ENTRY, f"no entry was created: {result}")
        await hass.async_block_till_done()
        entry = result["result"]
        _check(entry.state is ConfigEntryState.LOADED, f"the entry is {entry.state}, not loaded")
        _check(
            all(not package.startswith(f"{LIBRARY}==") for package in installed),
            f"Home Assistant had to install {LIBRARY} itself: {installed}",
        )
        title = entry.title
        await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await hass.async_stop()
    return title, installed


def main(argv: list[str] | None = None) -> int:
    """Set up the configuration, load the integration, print what happened."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config-dir", type=Path, required=True, help="a new Home Assistant configuration folder"
    )
    parser.add_argument("--zip", type=Path, required=True, help="the integration's release zip")
    parser.add_argument("--url", required=True, help="a running aggregator")
    parser.add_argument("--code", required=True, help="an enrolment code of that aggregator")
    parser.add_argument("--port", type=int, required=True, help="Home Assistant's HTTP port")
    args = parser.parse_args(argv)
    config_dir: Path = args.config_dir
    config_dir.mkdir(parents=True)
    with zipfile.ZipFile(args.zip) as archive:
        archive.extractall(config_dir / "custom_components" / DOMAIN)
    manifest = json.loads(
        (config_dir / "custom_components" / DOMAIN / "manifest.json").read_text("utf-8")
    )
    (config_dir / "configuration.yaml").write_text(CONFIGURATION, "utf-8")
    # HTTP settings live in Home Assistant's storage, confirmed (not as a YAML trial).
    asyncio.run(confirm_http(str(config_dir), HOST, args.port))
    try:
        version = _library_from_the_wheel()
        _check(
            manifest["requirements"] == [f"{LIBRARY}=={version}"],
            f"the zip's manifest requires {manifest['requirements']}, the wheel is {version}",
        )
        title, installed = asyncio.run(_load(config_dir, args.url, args.code))
    except CheckFailedError as err:
        print(f"release-check: {err}", file=sys.stderr)
        log = config_dir / "home-assistant.log"
        if log.is_file():
            print(log.read_text("utf-8")[-4000:], file=sys.stderr)
        return 1
    also = ", ".join(sorted(set(installed))) or "nothing"
    print(
        f"release-check: Home Assistant {ha_version} loaded {DOMAIN} {manifest['version']} "
        f"from the zip, requirement {LIBRARY}=={version} satisfied by the wheel; entry "
        f"{title!r} loaded; Home Assistant's installer was asked for: {also}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
