"""Prometheus metrics of one aggregator (served at ``GET /metrics``; no secrets, no home names).

Each application gets its own :class:`prometheus_client.CollectorRegistry`, so several servers in
one process (tests, the demo) never share counters. ``/metrics`` needs no token and shows only
counts and timings; the per-event gauges (event ids and their target, committed and delivered
kW) are in a registry of their own, added to the answer only for a valid operator token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
ROUND_BUCKETS: Final = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300)
CLEARING_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
COMMIT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
BATCH_BUCKETS: Final = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True, slots=True)
class EventFigures:
    """Live figures of one running event, read at scrape time."""

    event_id: str
    status: str
    target_kw: float
    committed_kw: float
    delivered_kw: float
    store_failing: bool = False
    """The event's last step could not be stored (it is being retried)."""


class _PublicCollector(Collector):
    """Reads the gauges anyone may scrape: connected homes, events failing to store."""

    def __init__(
        self,
        connected_homes: Callable[[], int],
        events: Callable[[], Iterable[EventFigures]],
    ) -> None:
        self._connected_homes = connected_homes
        self._events = events

    def collect(self) -> Iterator[Metric]:
        """Yield the connected-homes gauge and the count of events whose store fails."""
        yield GaugeMetricFamily(
            "jeisson_homes_connected", "Homes with a live session", value=self._connected_homes()
        )
        yield GaugeMetricFamily(
            "jeisson_events_store_failing",
            "Running events whose last step could not be stored and is being retried",
            value=sum(figures.store_failing for figures in self._events()),
        )


class _EventsCollector(Collector):
    """Reads each running event's kW figures when an operator scrapes."""

    def __init__(self, events: Callable[[], Iterable[EventFigures]]) -> None:
        self._events = events

    def collect(self) -> Iterator[Metric]:
        """Yield the per-event kW gauges."""
        target = GaugeMetricFamily(
            "jeisson_event_target_kw", "Reduction target of a running event", labels=["event_id"]
        )
        committed = GaugeMetricFamily(
            "jeisson_event_committed_kw",
            "Acknowledged commitment of a running event",
            labels=["event_id"],
        )
        delivered = GaugeMetricFamily(
            "jeisson_event_delivered_kw",
            "Reduction homes report now for a running event",
            labels=["event_id"],
        )
        for figures in self._events():
            target.add_metric([figures.event_id], figures.target_kw)
            committed.add_metric([figures.event_id], figures.committed_kw)
            delivered.add_metric([figures.event_id], figures.delivered_kw)
        yield target
        yield committed
        yield delivered


class Metrics:
    """The counters and histograms the server updates, and the live gauges it exposes."""

    def __init__(self) -> None:
        """Create the metrics in a registry of their own."""
        self.registry = CollectorRegistry()
        self._in: dict[str, Counter] = {}
        self._out: dict[str, Counter] = {}
        self.event_registry = CollectorRegistry()
        """Per-event figures: shown to operators only."""
        self.messages_in = Counter(
            "jeisson_messages_received",
            "Messages received from homes, by type",
            ["type"],
            registry=self.registry,
        )
        self.messages_out = Counter(
            "jeisson_messages_sent",
            "Messages queued for homes, by type",
            ["type"],
            registry=self.registry,
        )
        self.errors = Counter(
            "jeisson_errors",
            "Refused messages and failures, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.round_seconds = Histogram(
            "jeisson_negotiation_round_seconds",
            "From a round's offer to its awards being sent",
            buckets=ROUND_BUCKETS,
            registry=self.registry,
        )
        self.clearing_seconds = Histogram(
            "jeisson_clearing_seconds",
            "Time to clear one round (merit order over every bid step)",
            buckets=CLEARING_BUCKETS,
            registry=self.registry,
        )

        self.store_commit_seconds = Histogram(
            "jeisson_store_commit_seconds",
            "Time to write one group-commit transaction",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.store_batch_requests = Histogram(
            "jeisson_store_batch_requests",
            "Requests (home messages, negotiation steps) written per transaction",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.step_failures = Counter(
            "jeisson_negotiation_step_failures",
            "Negotiation steps whose transaction failed (state unchanged; retried), by step",
            ["step"],
            registry=self.registry,
        )
        self.store_failures = Counter(
            "jeisson_store_failed_requests",
            "Requests whose transaction failed (nothing stored; homes told to re-send)",
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "jeisson_http_connections_refused",
            "Connections refused (503) because the connection cap was reached",
            registry=self.registry,
        )

    def count_in(self, kind: str) -> None:
        """Count one message received (the labelled child is looked up once per type)."""
        child = self._in.get(kind)
        if child is None:
            child = self._in[kind] = self.messages_in.labels(kind)
        child.inc()

    def count_out(self, kind: str, amount: int = 1) -> None:
        """Count messages queued for homes."""
        child = self._out.get(kind)
        if child is None:
            child = self._out[kind] = self.messages_out.labels(kind)
        child.inc(amount)

    def observe_commit(self, requests: int, changes: int, seconds: float) -> None:
        """Record one committed group-commit transaction."""
        del changes
        self.store_commit_seconds.observe(seconds)
        self.store_batch_requests.observe(requests)

    def observe_store_failure(self, requests: int) -> None:
        """Record one failed transaction and the requests it failed."""
        self.store_failures.inc(requests)

    def watch(
        self,
        connected_homes: Callable[[], int],
        events: Callable[[], Iterable[EventFigures]],
    ) -> None:
        """Expose live gauges read from the running server at scrape time."""
        self.registry.register(_PublicCollector(connected_homes, events))
        self.event_registry.register(_EventsCollector(events))

    def render(self, *, include_events: bool = False) -> bytes:
        """Return the metrics in Prometheus text format (per-event gauges for operators)."""
        text = generate_latest(self.registry)
        if include_events:
            text += generate_latest(self.event_registry)
        return text
