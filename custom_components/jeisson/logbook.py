"""Logbook descriptions of Jeisson's bus events: one readable row per lifecycle step.

Each row names the home (the entry's title) and says what happened with the loads' names,
the event's window in local time and the figures, so two steps never read the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from homeassistant.components.logbook.const import LOGBOOK_ENTRY_MESSAGE, LOGBOOK_ENTRY_NAME
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.util import dt as dt_util

from .const import (
    ATTR_ENTRY_ID,
    DOMAIN,
    EVENT_AWARDED,
    EVENT_BID,
    EVENT_CANCELLED,
    EVENT_ENDED,
    EVENT_OFFERED,
    EVENT_OPTED_OUT,
    EVENT_SETTLED,
    EVENT_STARTED,
)
from .models import loads_from_options

type Describe = Callable[[Event], dict[str, str]]
type Message = Callable[[Mapping[str, Any], Callable[[Iterable[str]], str]], str]

FALLBACK_NAME = "Jeisson"


def _time(value: Any) -> str:
    """Return an ISO timestamp as local HH:MM (the value itself when it is not one)."""
    try:
        return dt_util.as_local(datetime.fromisoformat(str(value))).strftime("%H:%M")
    except ValueError:
        return str(value)


def _window(data: Mapping[str, Any]) -> str:
    return f"{_time(data.get('window_start'))} to {_time(data.get('window_end'))}"


def _kw(value: Any) -> str:
    return f"{float(value or 0):g} kW"


def _offered(data: Mapping[str, Any], _names: Callable[[Iterable[str]], str]) -> str:
    return (
        f"was offered event {data.get('event_id')} (round {data.get('round')}, "
        f"{_window(data)}, up to {data.get('price_cap')} {data.get('currency')}/kWh)"
    )


def _bid(data: Mapping[str, Any], names: Callable[[Iterable[str]], str]) -> str:
    steps = data.get("steps") or []
    if not steps:
        return f"did not bid on event {data.get('event_id')} (no load can take part)"
    loads = [load for step in steps for load in step.get("loads", [])]
    return (
        f"bid {_kw(data.get('kw'))} on event {data.get('event_id')} "
        f"(round {data.get('round')}): {names(loads)}"
    )


def _awarded(data: Mapping[str, Any], names: Callable[[Iterable[str]], str]) -> str:
    return (
        f"was awarded event {data.get('event_id')}: {names(data.get('loads') or [])}, "
        f"{_kw(data.get('kw'))} at {data.get('price')} {data.get('currency')}/kWh, {_window(data)}"
    )


def _started(data: Mapping[str, Any], names: Callable[[Iterable[str]], str]) -> str:
    loads = data.get("loads") or []
    if not loads:
        return f"started event {data.get('event_id')} with no load to switch off"
    return (
        f"started event {data.get('event_id')}: switched off {names(loads)} "
        f"({_kw(data.get('shed_kw'))}) until {_time(data.get('window_end'))}"
    )


def _restoring(data: Mapping[str, Any], names: Callable[[Iterable[str]], str]) -> str:
    restore = data.get("restore_at") or {}
    return f"restoring {names(restore)}" if restore else "nothing to restore"


def _ended(data: Mapping[str, Any], names: Callable[[Iterable[str]], str]) -> str:
    return f"ended event {data.get('event_id')}: {_restoring(data, names)}"


def _cancelled(data: Mapping[str, Any], names: Callable[[Iterable[str]], str]) -> str:
    reason = f" ({data['reason']})" if data.get("reason") else ""
    return f"event {data.get('event_id')} was cancelled{reason}: {_restoring(data, names)}"


def _opted_out(data: Mapping[str, Any], names: Callable[[Iterable[str]], str]) -> str:
    load_id = data.get("load_id")
    who = names([load_id]) if load_id else "the home"
    return f"opted {who} out of event {data.get('event_id')} ({data.get('reason')})"


def _settled(data: Mapping[str, Any], _names: Callable[[Iterable[str]], str]) -> str:
    return (
        f"was paid {float(data.get('payment') or 0):.2f} {data.get('currency')} for event "
        f"{data.get('event_id')} ({data.get('paid_kwh')} kWh paid, statement "
        f"v{data.get('version')})"
    )


MESSAGES: dict[str, Message] = {
    EVENT_OFFERED: _offered,
    EVENT_BID: _bid,
    EVENT_AWARDED: _awarded,
    EVENT_STARTED: _started,
    EVENT_ENDED: _ended,
    EVENT_CANCELLED: _cancelled,
    EVENT_OPTED_OUT: _opted_out,
    EVENT_SETTLED: _settled,
}


@callback
def describe(hass: HomeAssistant, event_type: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """Return (the home's name, what happened) for a Jeisson bus event."""
    entry = hass.config_entries.async_get_entry(str(data.get(ATTR_ENTRY_ID)))
    loads = loads_from_options(entry.options) if entry is not None else {}

    def names(load_ids: Iterable[str]) -> str:
        shown = [loads[key].name if key in loads else key for key in load_ids]
        return ", ".join(shown) or "no load"

    home = entry.title if entry is not None else FALLBACK_NAME
    return home, MESSAGES[event_type](data, names)


@callback
def async_describe_events(
    hass: HomeAssistant, async_describe_event: Callable[[str, str, Describe], None]
) -> None:
    """Describe every Jeisson lifecycle event for the logbook."""

    @callback
    def _describe(event: Event) -> dict[str, str]:
        home, message = describe(hass, str(event.event_type), event.data)
        return {LOGBOOK_ENTRY_NAME: home, LOGBOOK_ENTRY_MESSAGE: message}

    for event_type in MESSAGES:
        async_describe_event(DOMAIN, event_type, _describe)
