"""A calendar of the home's demand-response events: upcoming, active and past."""

from __future__ import annotations

from datetime import datetime

from homeassistant.components.calendar import (
    CalendarEntity,
    CalendarEntityDescription,
    CalendarEvent,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .coordinator import CalendarItem, JeissonConfigEntry
from .entity import JeissonEntity

PARALLEL_UPDATES = 0

_CALLED_OFF = frozenset({"cancelled", "opted_out"})
"""Outcomes of events that will not (or no longer) happen for this home."""

EVENTS = CalendarEntityDescription(key="events", translation_key="events")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: JeissonConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the events calendar."""
    async_add_entities([JeissonCalendar(entry.runtime_data.coordinator, EVENTS)])


def _to_calendar_event(item: CalendarItem) -> CalendarEvent:
    loads = ", ".join(item.loads) or "-"
    summary = f"Demand response: {item.committed_kw:g} kW at {item.price:g} {item.currency}/kWh"
    settled = ""
    if (statement := item.settled) is not None:
        summary += f", paid {statement.payment:.2f} {statement.currency}"
        settled = (
            f"; settled (statement v{statement.version}): {statement.paid_kwh:g} kWh paid, "
            f"{statement.payment:.2f} {statement.currency}, {statement.data_quality}"
        )
    return CalendarEvent(
        start=item.start,
        end=item.end,
        summary=summary,
        description=(
            f"Event {item.event_id} ({item.kind}); status {item.status}"
            f"{f', {item.outcome}' if item.outcome else ''}; loads: {loads}{settled}"
        ),
        uid=item.award_id,
    )


class JeissonCalendar(JeissonEntity, CalendarEntity):
    """The events this home is committed to or took part in."""

    @property
    def available(self) -> bool:
        """Return False when the schedule may be stale (aggregator gone for a while)."""
        return super().available and not self.coordinator.data.stale

    @property
    def event(self) -> CalendarEvent | None:
        """Return the active event, else the next upcoming one."""
        now = dt_util.utcnow()
        items = [
            item
            for item in self.coordinator.data.calendar
            if item.end > now and item.outcome not in _CALLED_OFF
        ]
        return _to_calendar_event(items[0]) if items else None

    async def async_get_events(
        self, hass: HomeAssistant, start_date: datetime, end_date: datetime
    ) -> list[CalendarEvent]:
        """Return the events overlapping ``[start_date, end_date)``."""
        return [
            _to_calendar_event(item)
            for item in self.coordinator.data.calendar
            if item.start < end_date and start_date < item.end
        ]
