"""Built-in notifications of awards, starts, ends and statements (optional, off by default).

*Configure → Participation → Notifications* picks where they go: a persistent notification in
Home Assistant (one per event, replaced as the event goes on), a notify action such as the
Companion app's ``notify.mobile_app_<phone>``, or a notify entity. The text is the logbook's.
"""

from __future__ import annotations

from homeassistant.components import persistent_notification
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError

from .const import (
    ATTR_ENTRY_ID,
    ATTR_EVENT_ID,
    CONF_NOTIFY,
    DOMAIN,
    EVENT_AWARDED,
    EVENT_ENDED,
    EVENT_SETTLED,
    EVENT_STARTED,
    LOGGER,
    NOTIFY_OFF,
    NOTIFY_PERSISTENT,
)
from .coordinator import JeissonConfigEntry
from .logbook import describe

NOTIFIED = (EVENT_AWARDED, EVENT_STARTED, EVENT_ENDED, EVENT_SETTLED)
NOTIFY_DOMAIN = "notify"
SERVICE_PREFIX = "service:"
ENTITY_PREFIX = "entity:"


def notify_targets(hass: HomeAssistant) -> dict[str, str]:
    """Return every notify action and notify entity as a choice (value → label).

    These are the notifications option's choices besides off and persistent.
    """
    services = sorted(
        name
        for name in hass.services.async_services_for_domain(NOTIFY_DOMAIN)
        if name not in ("send_message", NOTIFY_PERSISTENT)
    )
    choices = {
        f"{SERVICE_PREFIX}{NOTIFY_DOMAIN}.{name}": f"{NOTIFY_DOMAIN}.{name}" for name in services
    }
    for entity_id in sorted(hass.states.async_entity_ids(NOTIFY_DOMAIN)):
        state = hass.states.get(entity_id)
        name = state.name if state is not None else entity_id
        choices[f"{ENTITY_PREFIX}{entity_id}"] = f"{name} ({entity_id})"
    return choices


@callback
def async_setup_notifications(hass: HomeAssistant, entry: JeissonConfigEntry) -> CALLBACK_TYPE:
    """Notify the user's choice of every award, start, end and statement of ``entry``."""

    @callback
    def _on_event(event: Event) -> None:
        target = str(entry.options.get(CONF_NOTIFY, NOTIFY_OFF))
        if target == NOTIFY_OFF or event.data.get(ATTR_ENTRY_ID) != entry.entry_id:
            return
        title, message = describe(hass, str(event.event_type), event.data)
        message = f"{title} {message}"
        if target == NOTIFY_PERSISTENT:
            persistent_notification.async_create(
                hass,
                message,
                title=title,
                notification_id=f"{DOMAIN}_{entry.entry_id}_{event.data.get(ATTR_EVENT_ID)}",
            )
            return
        entry.async_create_background_task(
            hass, _async_send(hass, target, title, message), f"jeisson notify {target}"
        )

    unsubscribes = [hass.bus.async_listen(event_type, _on_event) for event_type in NOTIFIED]

    @callback
    def _unsubscribe() -> None:
        for unsubscribe in unsubscribes:
            unsubscribe()

    return _unsubscribe


async def _async_send(hass: HomeAssistant, target: str, title: str, message: str) -> None:
    """Send through a notify action or entity; a failure is logged, never raised."""
    try:
        if target.startswith(ENTITY_PREFIX):
            await hass.services.async_call(
                NOTIFY_DOMAIN,
                "send_message",
                {
                    "entity_id": target.removeprefix(ENTITY_PREFIX),
                    "title": title,
                    "message": message,
                },
                blocking=True,
            )
        else:
            domain, _, service = target.removeprefix(SERVICE_PREFIX).partition(".")
            await hass.services.async_call(
                domain, service, {"title": title, "message": message}, blocking=True
            )
    except HomeAssistantError as err:
        LOGGER.warning("Could not send the Jeisson notification through %s: %s", target, err)
