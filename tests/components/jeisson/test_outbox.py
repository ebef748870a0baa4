"""The client's outbox survives Home Assistant restarts: what the aggregator did not get yet
(award acks, opt-outs, telemetry) is saved with HA's Store and re-sent by the next run."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.jeisson.outbox import (
    OUTBOX_STORAGE_KEY_PREFIX,
    OUTBOX_STORAGE_VERSION,
    OutboxStore,
)
from jeisson.common.protocol import Inventory, OptOut, OptOutReason, dump_message
from tests.helpers import wait_for

from .aggregator_process import AggregatorProcess
from .common import HEATER, is_state

CONNECTED = "binary_sensor.jeisson_home_aggregator_connected"


def outbox_key(entry_id: str) -> str:
    """Return the Store key of an entry's outbox."""
    return f"{OUTBOX_STORAGE_KEY_PREFIX}.{entry_id}"


async def test_an_opt_out_made_offline_reaches_the_aggregator_after_a_restart(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    aggregator: AggregatorProcess,
    loaded_entry: MockConfigEntry,
) -> None:
    """Opt out while the aggregator is down, reload the entry (as a restart would; with no
    open event and no aggregator the setup is retried), bring the aggregator back: the saved
    opt-out is re-sent and the aggregator records the award opted out."""
    created = await aggregator.create_event(target_kw=1.0, duration=60.0)
    event_id = created["id"]
    await wait_for(lambda: is_state(hass, HEATER, "off"), what="heater switched off")
    aggregator.kill()
    await wait_for(lambda: is_state(hass, CONNECTED, "off"), what="connection lost")

    await hass.services.async_call(
        "button", "press", {"entity_id": "button.jeisson_home_opt_out"}, blocking=True
    )
    await hass.async_block_till_done()
    assert is_state(hass, HEATER, "on")
    queued = loaded_entry.runtime_data.client.queued_messages
    assert [(m.event_id, m.load_id) for m in queued if isinstance(m, OptOut)] == [(event_id, None)]

    assert not await hass.config_entries.async_reload(loaded_entry.entry_id)
    assert loaded_entry.state is ConfigEntryState.SETUP_RETRY
    saved = hass_storage[outbox_key(loaded_entry.entry_id)]["data"]["messages"]
    assert any('"type":"opt_out"' in frame and event_id in frame for frame in saved)

    await hass.async_add_executor_job(aggregator.start)
    assert (await aggregator.event(event_id))["awards"][0]["status"] == "acked"
    assert await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()

    async def opted_out() -> bool:
        return (await aggregator.event(event_id))["awards"][0]["status"] == "opted_out"

    await wait_for(opted_out, what="the saved opt-out reaching the aggregator")
    assert is_state(hass, HEATER, "on")


async def test_saved_messages_that_cannot_be_read_are_dropped(
    hass: HomeAssistant, hass_storage: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Only valid award acks, opt-outs and telemetry come back; the rest is logged and dropped."""
    opt_out = OptOut(event_id="evt-1", load_id="heater", reason=OptOutReason.OVERRIDE)
    hass_storage[outbox_key("entry")] = {
        "version": OUTBOX_STORAGE_VERSION,
        "minor_version": 1,
        "key": outbox_key("entry"),
        "data": {
            "messages": [
                "not json",
                42,
                dump_message(Inventory(loads=[])),
                dump_message(opt_out),
            ]
        },
    }
    store = OutboxStore(hass, "entry")
    assert await store.async_load() == [opt_out]
    assert caplog.text.count("Dropping an unreadable saved message") == 3

    store.async_bind(lambda: [opt_out])
    await store.async_save()
    assert hass_storage[outbox_key("entry")]["data"] == {"messages": [dump_message(opt_out)]}
    store.async_schedule_save()  # closed after the final save: nothing more is scheduled
    await store.async_remove()
    await hass.async_block_till_done()
    assert outbox_key("entry") not in hass_storage
    assert await OutboxStore(hass, "nothing saved").async_load() == []
    await OutboxStore(hass, "unbound").async_save()  # before a client is bound: empty
    assert hass_storage[outbox_key("unbound")]["data"] == {"messages": []}


async def test_removing_the_entry_deletes_its_outbox(
    hass: HomeAssistant, hass_storage: dict[str, Any], loaded_entry: MockConfigEntry
) -> None:
    """The saved outbox goes with the entry."""
    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    assert outbox_key(loaded_entry.entry_id) in hass_storage
    await hass.config_entries.async_remove(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert outbox_key(loaded_entry.entry_id) not in hass_storage
