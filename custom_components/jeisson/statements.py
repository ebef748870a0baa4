"""The settled earnings: every statement the aggregator sent, kept across restarts (HA ``Store``).

A ``statement`` is the operator's final word on what an event pays (after its late-telemetry
window; a correction is a higher version that replaces the one before). It is distinct from the
live estimate the event runner keeps while an event runs. :class:`StatementBook` keeps the
newest version of each event's statement, writes it to storage *before* the home acknowledges
it (an acknowledged statement is never sent again), and sums the running total per currency.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final

from homeassistant.core import HomeAssistant
from homeassistant.helpers.storage import Store

from jeisson.common.protocol import Statement

from .const import DOMAIN

STATEMENTS_STORAGE_VERSION: Final = 1
STATEMENTS_STORAGE_KEY_PREFIX: Final = f"{DOMAIN}.statements"
MAX_KEPT: Final = 500
"""Statements kept (oldest dropped first; the running total keeps counting them)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SettledEvent:
    """The newest statement of one event, as the home keeps it."""

    event_id: str
    version: int
    settled_at: datetime
    window_start: datetime
    window_end: datetime
    status: str
    delivered_kwh: float
    paid_kwh: float
    data_quality: str
    price: float
    payment: float
    previous_payment: float | None
    currency: str
    baseline: str
    baseline_reason: str
    reliability: float | None

    @classmethod
    def from_message(cls, statement: Statement) -> SettledEvent:
        """Return what the home keeps of a statement message."""
        return cls(
            event_id=statement.event_id,
            version=statement.version,
            settled_at=statement.settled_at,
            window_start=statement.window_start,
            window_end=statement.window_end,
            status=statement.status,
            delivered_kwh=statement.delivered_kwh,
            paid_kwh=statement.paid_kwh,
            data_quality=statement.data_quality.value,
            price=statement.price,
            payment=statement.payment,
            previous_payment=statement.previous_payment,
            currency=statement.currency,
            baseline=statement.baseline,
            baseline_reason=statement.baseline_reason,
            reliability=statement.reliability,
        )

    def to_storage(self) -> dict[str, Any]:
        """Return the JSON-ready form kept in storage."""
        data = asdict(self)
        for key in ("settled_at", "window_start", "window_end"):
            data[key] = data[key].isoformat()
        return data

    @classmethod
    def from_storage(cls, raw: dict[str, Any]) -> SettledEvent:
        """Rebuild a kept statement from storage."""
        values = dict(raw)
        for key in ("settled_at", "window_start", "window_end"):
            values[key] = datetime.fromisoformat(values[key])
        return cls(**values)


class StatementBook:
    """The statements of one config entry: newest version per event, and the totals."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Prepare the book of ``entry_id`` (nothing is read until :meth:`async_load`)."""
        self._store: Store[dict[str, Any]] = Store(
            hass, STATEMENTS_STORAGE_VERSION, f"{STATEMENTS_STORAGE_KEY_PREFIX}.{entry_id}"
        )
        self.events: dict[str, SettledEvent] = {}
        self._dropped_totals: dict[str, float] = {}
        """Payments of statements no longer kept, per currency (so totals stay whole)."""

    async def async_load(self) -> None:
        """Read the statements kept by earlier runs."""
        raw = await self._store.async_load() or {}
        self.events = {
            item["event_id"]: SettledEvent.from_storage(item) for item in raw.get("events", [])
        }
        self._dropped_totals = {
            str(currency): float(amount)
            for currency, amount in raw.get("dropped_totals", {}).items()
        }

    async def async_add(self, statement: Statement) -> bool:
        """Keep ``statement`` (stored before returning); False when it is not newer."""
        kept = self.events.get(statement.event_id)
        if kept is not None and kept.version >= statement.version:
            return False
        self.events[statement.event_id] = SettledEvent.from_message(statement)
        if len(self.events) > MAX_KEPT:
            oldest = min(self.events.values(), key=lambda item: item.window_start)
            del self.events[oldest.event_id]
            self._dropped_totals[oldest.currency] = (
                self._dropped_totals.get(oldest.currency, 0.0) + oldest.payment
            )
        await self._store.async_save(self._data())
        return True

    async def async_remove(self) -> None:
        """Delete the kept statements (the entry is removed)."""
        await self._store.async_remove()

    def total(self, currency: str | None = None) -> float:
        """Return the settled earnings in ``currency`` (the most recent one when None)."""
        currency = currency or self.currency
        return math.fsum(
            [
                *(item.payment for item in self.events.values() if item.currency == currency),
                self._dropped_totals.get(currency or "", 0.0),
            ]
        )

    @property
    def currency(self) -> str | None:
        """Return the currency of the newest statement (None before any)."""
        latest = self.latest
        return None if latest is None else latest.currency

    @property
    def latest(self) -> SettledEvent | None:
        """Return the statement settled last."""
        if not self.events:
            return None
        return max(self.events.values(), key=lambda item: (item.settled_at, item.event_id))

    def _data(self) -> dict[str, Any]:
        return {
            "events": [item.to_storage() for item in self.events.values()],
            "dropped_totals": self._dropped_totals,
        }
