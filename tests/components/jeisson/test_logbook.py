"""Debug logs and logbook rows of a whole event: what was offered, bid, awarded and switched."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.jeisson.const import DOMAIN, EVENT_ENDED
from tests.helpers import wait_for

from .aggregator_process import AggregatorProcess
from .common import HEATER, is_state, of_type, record_events


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """The recorder (the logbook reads from it) must start before Home Assistant does.

    Overrides conftest's fixture of the same name, which asks for ``hass`` first.
    """


async def test_an_event_is_logged_at_debug_and_described_in_the_logbook(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    aggregator: AggregatorProcess,
    config_entry: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Heater and pump awarded: one distinct logbook row per step, loads by name."""
    caplog.set_level(logging.DEBUG, logger="custom_components.jeisson")
    # The logbook registers its panel with the frontend, whose build is not installed here.
    hass.config.components.add("frontend")
    assert await async_setup_component(hass, "logbook", {})
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    since = dt_util.utcnow()
    events = record_events(hass)
    await aggregator.create_event(target_kw=3.0, duration=2.0)
    await wait_for(lambda: bool(of_type(events, EVENT_ENDED)), what="event end")
    await wait_for(lambda: is_state(hass, HEATER, "on"), timeout=5, what="heater restored")
    await hass.async_block_till_done()

    for logged in (
        "Offer for event",
        "Bid on event",
        "accepted",
        "Switched off load heater",
        "Switched off load pump",
        "Switched load heater back on",
    ):
        assert logged in caplog.text, logged

    await async_wait_recording_done(hass)
    client = await hass_ws_client(hass)
    await client.send_json_auto_id({"type": "logbook/get_events", "start_time": since.isoformat()})
    answer = await client.receive_json()
    assert answer["success"], answer
    rows: list[dict[str, Any]] = [row for row in answer["result"] if row.get("domain") == DOMAIN]
    messages = [row["message"] for row in rows]
    assert len(rows) == 5, messages  # offered, bid, awarded, started, ended
    assert len(set(messages)) == len(messages)
    assert {row["name"] for row in rows} == {"Jeisson home"}
    awarded = next(message for message in messages if message.startswith("was awarded"))
    assert "Water heater, Pool pump" in awarded
    assert "3.5 kW" in awarded
    started = next(message for message in messages if message.startswith("started"))
    assert "switched off Water heater, Pool pump" in started
    ended = next(message for message in messages if message.startswith("ended"))
    assert "restoring Water heater, Pool pump" in ended
    await hass.config_entries.async_unload(config_entry.entry_id)
