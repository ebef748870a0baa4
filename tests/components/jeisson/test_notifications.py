"""Built-in notifications (off by default): a notify action, or a persistent notification."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_mock_service
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.jeisson.const import EVENT_ENDED
from tests.helpers import wait_for

from .aggregator_process import AggregatorProcess
from .common import HEATER, is_state, of_type, record_events


async def _run_event(hass: HomeAssistant, aggregator: AggregatorProcess) -> None:
    """Run a short event (the heater is awarded) to its end and the heater's restore."""
    events = record_events(hass)
    await aggregator.create_event(target_kw=1.0, duration=2.0)
    await wait_for(lambda: bool(of_type(events, EVENT_ENDED)), what="event end")
    await wait_for(lambda: is_state(hass, HEATER, "on"), timeout=5, what="heater restored")
    await hass.async_block_till_done()


async def _choose(hass: HomeAssistant, entry: MockConfigEntry, target: str) -> dict[str, Any]:
    """Pick the notifications target in Configure → Participation; return the form shown."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "settings"}
    )
    form = dict(result)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"participating": True, "wifi_remote_devices": False, "notify": target},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    return form


async def test_notifications_are_off_then_sent_where_the_user_chose(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    aggregator: AggregatorProcess,
    loaded_entry: MockConfigEntry,
) -> None:
    """Off: nothing. A notify action (the phone is mocked: no phone here): award, start, end
    with the loads by name. Persistent: one notification for the event, updated."""
    assert await async_setup_component(hass, "persistent_notification", {})
    phone = async_mock_service(hass, "notify", "mobile_app_phone")
    await _run_event(hass, aggregator)
    assert phone == []  # off by default

    form = await _choose(hass, loaded_entry, "service:notify.mobile_app_phone")
    selector = next(
        value for marker, value in form["data_schema"].schema.items() if marker == "notify"
    )
    choices = [option["value"] for option in selector.config["options"]]
    assert choices[:2] == ["off", "persistent_notification"]
    assert "service:notify.mobile_app_phone" in choices
    await _run_event(hass, aggregator)
    messages = [call.data["message"] for call in phone]
    assert len(messages) == 3, messages  # awarded, started, ended
    assert messages[0].startswith("Jeisson home was awarded event")
    assert all("Water heater" in message for message in messages)
    assert {call.data["title"] for call in phone} == {"Jeisson home"}

    await _choose(hass, loaded_entry, "persistent_notification")
    await _run_event(hass, aggregator)
    assert len(phone) == 3
    client = await hass_ws_client(hass)
    await client.send_json_auto_id({"type": "persistent_notification/get"})
    notifications = (await client.receive_json())["result"]
    assert len(notifications) == 1  # one per event, replaced as it goes on
    assert notifications[0]["title"] == "Jeisson home"
    assert notifications[0]["message"].startswith("Jeisson home ended event")
