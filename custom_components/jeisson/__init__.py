"""The Jeisson demand-response integration: takes part in grid events for this home."""

from __future__ import annotations

import asyncio
from typing import Any

from homeassistant.const import CONF_TOKEN, CONF_URL, EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryError,
    ConfigEntryNotReady,
    HomeAssistantError,
)
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.storage import Store
from homeassistant.helpers.typing import ConfigType

from jeisson.client import HomeClient
from jeisson.common.errors import (
    AuthenticationFailed,
    CannotConnect,
    UnsupportedSchemaVersion,
)
from jeisson.common.protocol import OptOutReason

from .const import (
    CONNECT_TIMEOUT,
    DOMAIN,
    LOGGER,
    SOFTWARE_VERSION,
    STORAGE_KEY_PREFIX,
    STORAGE_VERSION,
)
from .coordinator import JeissonConfigEntry, JeissonCoordinator, JeissonRuntimeData
from .entity import async_register_device
from .issues import async_clear_protocol_issue, async_raise_protocol_issue
from .models import inventory_from_options
from .notifications import async_setup_notifications
from .outbox import OutboxStore
from .services import async_setup_services
from .statements import StatementBook
from .wifi import async_remove_config_entry_device as async_remove_config_entry_device
from .wifi import async_remove_wifi_store

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

PLATFORMS = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.CALENDAR,
    Platform.SENSOR,
    Platform.SWITCH,
]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the integration's service actions."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: JeissonConfigEntry) -> bool:
    """Connect to the aggregator, resume the saved schedule and set up the entities."""
    store: Store[dict[str, Any]] = Store(
        hass, STORAGE_VERSION, f"{STORAGE_KEY_PREFIX}.{entry.entry_id}"
    )
    outbox = OutboxStore(hass, entry.entry_id)
    statements = StatementBook(hass, entry.entry_id)
    await statements.async_load()
    coordinator = JeissonCoordinator(hass, entry, store, outbox, statements)
    runner = coordinator.runner
    await runner.async_load()

    client = HomeClient(
        entry.data[CONF_URL],
        entry.data[CONF_TOKEN],
        session=async_get_clientsession(hass),
        software_version=SOFTWARE_VERSION,
        inventory_provider=lambda: inventory_from_options(entry.options),
        held_awards_provider=runner.held_awards,
        # What the previous run could not deliver (acks, opt-outs, telemetry) is re-sent.
        outbox=await outbox.async_load(),
    )
    # Subscribe before connecting: the server sends pending offers and awards right after the
    # handshake, and the client delivers each message once.
    async_register_device(hass, entry)
    unsubscribe = coordinator.async_attach(client)
    # The home is autonomous: a saved event resumes whether or not the aggregator answers.
    await runner.async_resume()

    async def _give_up() -> None:
        runner.async_shutdown()
        unsubscribe()
        await client.close()
        await outbox.async_save()

    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await client.connect()
    except (TimeoutError, CannotConnect) as err:
        if not runner.schedule.open_events():
            await _give_up()
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"error": str(err) or type(err).__name__},
            ) from err
        LOGGER.warning(
            "Aggregator unreachable (%s); carrying on with the saved event schedule", err
        )
    except (AuthenticationFailed, UnsupportedSchemaVersion) as err:
        # Not retryable: give back what this home holds before failing.
        await runner.async_opt_out(None, OptOutReason.USER)
        await _give_up()
        raise _setup_error(hass, err) from err
    except BaseException:
        await _give_up()
        raise
    else:
        async_clear_protocol_issue(hass)
    coordinator.async_publish()

    entry.runtime_data = JeissonRuntimeData(
        client=client,
        coordinator=coordinator,
        runner=runner,
        outbox=outbox,
        statements=statements,
    )
    entry.async_on_unload(unsubscribe)
    entry.async_on_unload(runner.async_shutdown)

    @callback
    def _on_stop(_event: Event) -> None:
        """Queue the buffered telemetry and save the outbox at Home Assistant's final write."""
        runner.telemetry.async_flush()
        outbox.async_schedule_save()

    entry.async_on_unload(hass.bus.async_listen(EVENT_HOMEASSISTANT_STOP, _on_stop))
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    entry.async_on_unload(async_setup_notifications(hass, entry))
    if not coordinator.participating:
        await runner.async_opt_out(None, OptOutReason.USER)

    entry.async_create_background_task(
        hass, _async_listen(hass, entry), name=f"jeisson listen {entry.title}"
    )
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def _async_options_updated(hass: HomeAssistant, entry: JeissonConfigEntry) -> None:
    """Apply changed options in place: a reload would drop every WiFi actuator's link."""
    await entry.runtime_data.coordinator.async_apply_options()


def _setup_error(
    hass: HomeAssistant, err: AuthenticationFailed | UnsupportedSchemaVersion
) -> HomeAssistantError:
    """Map a connection error no retry can fix to the config entry exception HA expects."""
    if isinstance(err, AuthenticationFailed):
        return ConfigEntryAuthFailed(
            translation_domain=DOMAIN, translation_key="authentication_failed"
        )
    async_raise_protocol_issue(hass, err)
    return ConfigEntryError(
        translation_domain=DOMAIN,
        translation_key="unsupported_protocol",
        translation_placeholders={"server": str(err.server_version)},
    )


async def _async_listen(hass: HomeAssistant, entry: JeissonConfigEntry) -> None:
    """Keep the connection (the client reconnects by itself) until unload or a fatal error."""
    data = entry.runtime_data
    try:
        await data.client.run()
    except AuthenticationFailed:
        data.coordinator.mark_disconnected()
        entry.async_start_reauth(hass)
    except UnsupportedSchemaVersion as err:
        data.coordinator.mark_disconnected()
        async_raise_protocol_issue(hass, err)


async def async_unload_entry(hass: HomeAssistant, entry: JeissonConfigEntry) -> bool:
    """Stop the entities, the timers and the connection (schedule and outbox are kept)."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        data = entry.runtime_data
        data.runner.async_shutdown()  # queues the buffered telemetry in the client's outbox
        await data.client.close()
        await data.outbox.async_save()
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: JeissonConfigEntry) -> None:
    """Delete the saved schedule, outbox and statements when the entry is removed."""
    await Store[dict[str, Any]](
        hass, STORAGE_VERSION, f"{STORAGE_KEY_PREFIX}.{entry.entry_id}"
    ).async_remove()
    await OutboxStore(hass, entry.entry_id).async_remove()
    await StatementBook(hass, entry.entry_id).async_remove()
    await async_remove_wifi_store(hass, entry)
