"""Telemetry all the time: slow outside events (baselines), fast during them, never lost.

The cadence is checked with Home Assistant's time travel on an entry whose aggregator is
unreachable (batches then wait in the client's outbox, where they can be inspected); the end
to end test runs the real aggregator and reads what reached its SQLite store.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import EVENT_HOMEASSISTANT_FINAL_WRITE, EVENT_HOMEASSISTANT_STOP
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.jeisson.const import CONF_HOME_ID, SAMPLE_INTERVAL, SAMPLES_PER_BATCH
from custom_components.jeisson.outbox import OUTBOX_STORAGE_KEY_PREFIX
from custom_components.jeisson.schedule import Outcome
from custom_components.jeisson.telemetry import IDLE_BATCH_INTERVAL, IDLE_SAMPLE_INTERVAL
from jeisson.common.protocol import Telemetry
from tests.helpers import wait_for

from .aggregator_process import AggregatorProcess
from .common import ENTRY_ID, award, take

FAST_IDLE_SAMPLE = timedelta(seconds=0.2)
FAST_IDLE_BATCH = timedelta(seconds=1)


def queued_telemetry(entry: MockConfigEntry) -> list[Telemetry]:
    """Return the telemetry batches waiting in the client's outbox, oldest first."""
    return [m for m in entry.runtime_data.client.queued_messages if isinstance(m, Telemetry)]


async def travel(hass: HomeAssistant, step: timedelta, times: int = 1) -> None:
    """Move Home Assistant's clock forward ``times`` steps of ``step``, one timer run each."""
    start = dt_util.utcnow()
    for number in range(1, times + 1):
        async_fire_time_changed(hass, start + step * number)
        await hass.async_block_till_done()


async def test_outside_events_samples_every_minute_and_sends_every_15_minutes(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """One sample per IDLE_SAMPLE_INTERVAL; one batch without event_id per
    IDLE_BATCH_INTERVAL, queued in the client's outbox while the aggregator is away."""
    reporter = offline.runtime_data.runner.telemetry
    assert reporter.running
    assert reporter.event_id is None
    assert IDLE_BATCH_INTERVAL // IDLE_SAMPLE_INTERVAL == 15
    assert queued_telemetry(offline) == []

    await travel(hass, IDLE_SAMPLE_INTERVAL, times=14)
    assert reporter.buffered == 14
    assert queued_telemetry(offline) == []

    await travel(hass, IDLE_BATCH_INTERVAL)
    batches = queued_telemetry(offline)
    assert len(batches) == 1
    assert batches[0].event_id is None
    assert len(batches[0].samples) + reporter.buffered == 15
    sample = batches[0].samples[0]
    # Every declared load is reported (all three switches are on: rated power each).
    assert sample.loads == {"heater": 2.0, "pump": 2.0, "car": 2.0}
    assert sample.power_kw == 6.0
    assert sample.shed_kw == 0.0


async def test_an_active_event_reports_fast_with_its_id_then_idle_again(
    hass: HomeAssistant, offline: MockConfigEntry
) -> None:
    """Entering an event sends the idle samples (no event_id), then a first sample with the
    event id at once and a batch every SAMPLES_PER_BATCH fast samples; its end sends a closing
    sample with the event id and the slow cadence resumes."""
    runner = offline.runtime_data.runner
    await travel(hass, IDLE_SAMPLE_INTERVAL, times=2)
    assert runner.telemetry.buffered == 2

    await take(hass, offline, award("fast", starts_in=-1, lasts=600, loads=["heater"]))
    assert runner.telemetry.event_id == "evt-fast"
    idle, first = queued_telemetry(offline)
    assert (idle.event_id, len(idle.samples)) == (None, 2)
    assert (first.event_id, len(first.samples)) == ("evt-fast", 1)
    assert first.samples[0].shed_kw == 2.0
    assert first.samples[0].loads["heater"] == 0.0

    await travel(hass, SAMPLE_INTERVAL, times=SAMPLES_PER_BATCH)
    batch = queued_telemetry(offline)[-1]
    assert (batch.event_id, len(batch.samples)) == ("evt-fast", SAMPLES_PER_BATCH)

    await runner.async_finish_event("evt-fast", Outcome.COMPLETED)
    await hass.async_block_till_done()
    closing = queued_telemetry(offline)[-1]
    assert closing.event_id == "evt-fast"
    assert closing.samples[-1].shed_kw == 0.0
    assert runner.telemetry.event_id is None
    assert runner.telemetry.running

    count = len(queued_telemetry(offline))
    await travel(hass, SAMPLE_INTERVAL, times=SAMPLES_PER_BATCH)  # no fast timer any more
    assert len(queued_telemetry(offline)) == count
    await travel(hass, IDLE_BATCH_INTERVAL)
    assert queued_telemetry(offline)[-1].event_id is None
    assert len(queued_telemetry(offline)) == count + 1


async def test_unload_queues_and_saves_the_buffered_samples(
    hass: HomeAssistant, hass_storage: dict[str, Any], offline: MockConfigEntry
) -> None:
    """Unloading stops the timers and keeps the samples not sent yet: they are saved with the
    outbox and re-sent by the next run (nothing is lost, no timer lingers)."""
    await travel(hass, IDLE_SAMPLE_INTERVAL, times=3)
    assert await hass.config_entries.async_unload(offline.entry_id)
    await hass.async_block_till_done()
    assert offline.state is ConfigEntryState.NOT_LOADED
    saved = hass_storage[f"{OUTBOX_STORAGE_KEY_PREFIX}.{ENTRY_ID}"]["data"]["messages"]
    assert len(saved) == 1
    assert '"type":"telemetry"' in saved[0]

    assert await hass.config_entries.async_setup(offline.entry_id)
    await hass.async_block_till_done()
    (restored,) = queued_telemetry(offline)
    assert restored.event_id is None
    assert len(restored.samples) == 3
    assert offline.runtime_data.runner.telemetry.running


async def test_home_assistant_stop_queues_the_buffer_and_saves_the_outbox(
    hass: HomeAssistant, hass_storage: dict[str, Any], offline: MockConfigEntry
) -> None:
    """On stop the buffered samples go to the outbox, which is written (at the final write)."""
    await travel(hass, IDLE_SAMPLE_INTERVAL, times=2)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    assert offline.runtime_data.runner.telemetry.buffered == 0
    assert len(queued_telemetry(offline)) == 1
    key = f"{OUTBOX_STORAGE_KEY_PREFIX}.{ENTRY_ID}"
    assert key not in hass_storage  # written after OUTBOX_SAVE_DELAY, or at the final write
    hass.bus.async_fire(EVENT_HOMEASSISTANT_FINAL_WRITE)
    await hass.async_block_till_done()
    saved = hass_storage[f"{OUTBOX_STORAGE_KEY_PREFIX}.{ENTRY_ID}"]["data"]["messages"]
    assert len(saved) == 1
    assert '"type":"telemetry"' in saved[0]


async def test_samples_outside_events_reach_the_aggregator_store(
    hass: HomeAssistant, aggregator: AggregatorProcess, loaded_entry: MockConfigEntry
) -> None:
    """End to end (cadence shortened): idle batches land in the aggregator's database without
    an event id, an event's batches with its id, and idle reporting resumes after it."""
    home_id = loaded_entry.data[CONF_HOME_ID]
    with (
        patch("custom_components.jeisson.telemetry.IDLE_SAMPLE_INTERVAL", FAST_IDLE_SAMPLE),
        patch("custom_components.jeisson.telemetry.IDLE_BATCH_INTERVAL", FAST_IDLE_BATCH),
    ):
        assert await hass.config_entries.async_reload(loaded_entry.entry_id)
        await hass.async_block_till_done()

        async def rows(event_id: str | None) -> int:
            return await hass.async_add_executor_job(aggregator.telemetry_count, home_id, event_id)

        async def idle_rows_at_least(count: int) -> bool:
            return await rows(None) >= count

        await wait_for(lambda: idle_rows_at_least(3), what="idle telemetry stored")
        created = await aggregator.create_event(target_kw=1.0, duration=3.0)
        event_id = created["id"]

        async def event_rows() -> bool:
            return await rows(event_id) > 0

        await wait_for(event_rows, what="event telemetry stored")
        runner = loaded_entry.runtime_data.runner
        await wait_for(lambda: runner.telemetry.event_id is None, what="event over")
        after_event = await rows(None)
        await wait_for(lambda: idle_rows_at_least(after_event + 3), what="idle again")
        assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    await hass.async_block_till_done()
