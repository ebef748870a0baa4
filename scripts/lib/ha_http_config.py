"""Confirm Home Assistant's HTTP settings in its storage, as a user confirming them would.

Runs INSIDE the Python 3.14 root (scripts/develop; scripts/lib/release_load.py imports it):

    python scripts/lib/ha_http_config.py CONFIG_DIR HOST PORT

Home Assistant (2026.10.4 and 2026.11.0 as installed here) keeps its HTTP settings in storage
(``.storage/http``), not in ``http:`` YAML: YAML settings become a *pending* trial that reverts
(and restarts Home Assistant) after five minutes unless the user confirms it. This sets the
wanted settings as pending and promotes them with Home Assistant's own store -- the two steps of
a user's confirmation -- and records the YAML migration as done, before Home Assistant starts.
Settings already in place are left as they are.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, cast

from homeassistant.components.http.config import HTTP_STORAGE_SCHEMA, ConfData, HTTPConfigStore
from homeassistant.core import HomeAssistant

USAGE = "usage: ha_http_config.py CONFIG_DIR HOST PORT"
ARGUMENTS = 3


async def confirm(config_dir: str, host: str, port: int) -> None:
    """Make ``host``:``port`` the confirmed (stable) HTTP settings in ``config_dir``."""
    hass = HomeAssistant(config_dir)
    try:
        store = HTTPConfigStore(hass)
        await store.async_load()
        wanted: dict[str, Any] = HTTP_STORAGE_SCHEMA({"server_host": [host], "server_port": port})
        # created_at/error/error_message are the store's own bookkeeping; it fills them in.
        await store.async_set_pending(
            cast(ConfData, {**wanted, "created_at": None, "error": None, "error_message": None})
        )
        if store.pending is not None:  # None: the stable settings are these already
            await store.async_promote_pending()
        if not store.yaml_migration_done:
            await store.async_mark_yaml_migration_done()
    finally:
        await hass.async_stop(force=True)


def main(argv: list[str]) -> int:
    """Parse the arguments and confirm the settings."""
    if len(argv) != ARGUMENTS or not argv[2].isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    asyncio.run(confirm(argv[0], argv[1], int(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
