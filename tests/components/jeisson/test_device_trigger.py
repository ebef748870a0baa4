"""Device triggers: one per lifecycle step, firing automations on the home's bus events."""

from __future__ import annotations

from homeassistant.components import automation
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers import device_registry as dr
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_get_device_automations,
)

from custom_components.jeisson.const import DOMAIN, EVENT_AWARDED, TRIGGER_TYPES


async def test_every_lifecycle_step_is_a_trigger(
    hass: HomeAssistant, device_registry: dr.DeviceRegistry, loaded_entry: MockConfigEntry
) -> None:
    """The home's device lists the seven lifecycle triggers."""
    device = device_registry.async_get_device_by_identifier(
        (DOMAIN, loaded_entry.unique_id), loaded_entry.entry_id
    )
    assert device is not None
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, device.id)
    ours = [trigger for trigger in triggers if trigger["domain"] == DOMAIN]
    assert sorted(trigger["type"] for trigger in ours) == sorted(TRIGGER_TYPES)


async def test_awarded_trigger_runs_an_automation(
    hass: HomeAssistant,
    device_registry: dr.DeviceRegistry,
    loaded_entry: MockConfigEntry,
    service_calls: list[ServiceCall],
) -> None:
    """An automation on "awarded" runs for this home's award and not for another home's."""
    device = device_registry.async_get_device_by_identifier(
        (DOMAIN, loaded_entry.unique_id), loaded_entry.entry_id
    )
    assert device is not None
    assert await async_setup_component(
        hass,
        automation.DOMAIN,
        {
            automation.DOMAIN: [
                {
                    "trigger": {
                        "platform": "device",
                        "domain": DOMAIN,
                        "device_id": device.id,
                        "type": "awarded",
                    },
                    "action": {
                        "action": "test.automation",
                        "data_template": {"event": "{{ trigger.event.data.event_id }}"},
                    },
                }
            ]
        },
    )
    hass.bus.async_fire(EVENT_AWARDED, {"device_id": "another", "event_id": "evt-0"})
    hass.bus.async_fire(EVENT_AWARDED, {"device_id": device.id, "event_id": "evt-1"})
    await hass.async_block_till_done()
    assert [call.data["event"] for call in service_calls] == ["evt-1"]
