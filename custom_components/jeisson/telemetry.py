"""Report the home's power to the aggregator all the time, for settlement baselines.

The aggregator settles an event against a baseline built from the home's own history (the same
hours on earlier like-days and the hours just before the event, docs/settlement.md), so a home
reports its declared loads' power continuously, not only while it curtails:

* **outside events** one sample every :data:`IDLE_SAMPLE_INTERVAL`, sent as one batch (no
  ``event_id``) every :data:`IDLE_BATCH_INTERVAL`;
* **during an active event** one sample every :data:`~.const.SAMPLE_INTERVAL`, sent with the
  event's id every :data:`~.const.SAMPLES_PER_BATCH` samples (the aggregator tracks delivery
  live and ignores a figure older than 30 s).

Batches go through the client, which queues them while the aggregator is unreachable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.util import dt as dt_util

from jeisson.common.protocol import MAX_SAMPLES_PER_TELEMETRY, Sample

from .const import SAMPLE_INTERVAL, SAMPLES_PER_BATCH

IDLE_SAMPLE_INTERVAL: Final = timedelta(minutes=1)
"""How often power is sampled outside events (15 samples per 15-minute settlement interval, so
a cycling load such as a water heater is averaged fairly)."""
IDLE_BATCH_INTERVAL: Final = timedelta(minutes=15)
"""How often the samples taken outside events are sent (one settlement interval)."""

type SampleFn = Callable[[datetime], Sample]
type SendFn = Callable[[Sequence[Sample], str | None], None]


class TelemetryReporter:
    """Samples the home's power on a timer and sends it in batches, idle or during an event."""

    def __init__(self, hass: HomeAssistant, *, sample: SampleFn, send: SendFn) -> None:
        """Prepare a reporter; nothing runs until :meth:`async_set_event`."""
        self._hass = hass
        self._sample = sample
        self._send = send
        self._samples: list[Sample] = []
        self._event_id: str | None = None
        self._running = False
        self._unsubs: list[CALLBACK_TYPE] = []

    @property
    def event_id(self) -> str | None:
        """Return the event the reporter samples for (None: outside events)."""
        return self._event_id

    @property
    def running(self) -> bool:
        """Return True while the sampling timers run."""
        return self._running

    @property
    def buffered(self) -> int:
        """Return how many samples wait for the next batch."""
        return len(self._samples)

    @callback
    def async_set_event(self, event_id: str | None) -> None:
        """Sample for ``event_id`` (fast cadence) or, with None, outside events (slow cadence).

        Switching mode sends what was sampled under the previous one; entering an event also
        reports a first sample at once, so the aggregator sees the delivery without delay.
        """
        if self._running and event_id == self._event_id:
            return
        self.async_flush()
        self._cancel_timers()
        self._event_id = event_id
        self._running = True
        if event_id is None:
            self._unsubs = [
                async_track_time_interval(
                    self._hass,
                    self._on_sample_time,
                    IDLE_SAMPLE_INTERVAL,
                    name="jeisson idle telemetry sample",
                ),
                async_track_time_interval(
                    self._hass,
                    self._on_batch_time,
                    IDLE_BATCH_INTERVAL,
                    name="jeisson idle telemetry batch",
                ),
            ]
            return
        self.async_report_now(dt_util.utcnow())
        self._unsubs = [
            async_track_time_interval(
                self._hass,
                self._on_sample_time,
                SAMPLE_INTERVAL,
                name="jeisson event telemetry",
            )
        ]

    @callback
    def async_report_now(self, now: datetime) -> None:
        """Take a sample now and send it with everything buffered (e.g. when an event ends)."""
        self._samples.append(self._sample(now))
        self.async_flush()

    @callback
    def async_flush(self) -> None:
        """Send the buffered samples (if any) under the current event id."""
        while self._samples:
            batch = self._samples[:MAX_SAMPLES_PER_TELEMETRY]
            del self._samples[:MAX_SAMPLES_PER_TELEMETRY]
            self._send(batch, self._event_id)

    @callback
    def async_stop(self) -> None:
        """Stop the timers and send what is buffered (on unload and on Home Assistant stop)."""
        self._cancel_timers()
        self._running = False
        self.async_flush()

    def _cancel_timers(self) -> None:
        for unsub in self._unsubs:
            unsub()
        self._unsubs = []

    @callback
    def _on_sample_time(self, now: datetime) -> None:
        self._samples.append(self._sample(now))
        if self._event_id is not None and len(self._samples) >= SAMPLES_PER_BATCH:
            self.async_flush()

    @callback
    def _on_batch_time(self, _now: datetime) -> None:
        self.async_flush()
