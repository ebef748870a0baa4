"""The home's event schedule: the awards it holds, what it switched off, and its history.

Everything here is plain data that is saved with HA's ``Store`` *before* the home acts on it, so
a restart or reload of Home Assistant mid-event resumes exactly where it was. That includes the
loads Jeisson still owes a switch-on (:class:`PendingRestore`): recorded before each restore is
attempted, kept while the actuator cannot be reached, cleared once the load is on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from jeisson.common.protocol import EventKind, HeldAward, HomeEventStatus

from .const import HISTORY_LIMIT

SECONDS_PER_HOUR = 3600.0


class Outcome(StrEnum):
    """How a held award finished."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    OPTED_OUT = "opted_out"
    REJECTED = "rejected"


@dataclass(kw_only=True)
class HeldEvent:
    """One award the home took on, and what it did about it."""

    event_id: str
    award_id: str
    kind: EventKind
    price: float
    currency: str
    window_start: datetime
    window_end: datetime
    restore_stagger_s: float
    loads: list[str]
    """Loads awarded (market) or chosen by the home (direct)."""
    committed_kw: float
    load_kw: dict[str, float] = field(default_factory=dict)
    """The kW each taken load counts for (what it bid, or its expected kW in a direct event)."""
    status: HomeEventStatus = HomeEventStatus.AWARDED
    outcome: Outcome | None = None
    switched_off: dict[str, float] = field(default_factory=dict)
    """Loads Jeisson decided to move → the power (kW) that moves: a switched load's power just
    before, a setting load's power before less its level (saved before acting)."""
    levels: dict[str, float] = field(default_factory=dict)
    """Loads awarded a partial step → the power (kW) they run at."""
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Setting loads → their setting before Jeisson moved them (saved before acting)."""
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Setting loads → the setting Jeisson put them at (another one is an override)."""
    preconditioned: list[str] = field(default_factory=list)
    """Thermostats Jeisson pre-conditioned before the window (restored if the award ends early)."""
    confirmed_off: list[str] = field(default_factory=list)
    """Loads of ``switched_off`` whose switch-off was carried out."""
    off_since: dict[str, datetime] = field(default_factory=dict)
    restore_at: dict[str, datetime] = field(default_factory=dict)
    """Loads waiting for their staggered restore → when."""
    released: list[str] = field(default_factory=list)
    """Loads given back (restored, or switched on by the homeowner)."""
    opted_out: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    """Loads given back because their actuator could not be reached after Jeisson switched them
    off (reported as ``unavailable``): not held any more, but restored with the others at the end
    unless they are seen on meanwhile."""
    declined: list[str] = field(default_factory=list)
    """Loads of an award the home refused (``loads`` is then empty)."""
    delivered_kwh: float = 0.0
    earnings: float = 0.0

    @property
    def finished(self) -> bool:
        """Return True when nothing is left to do for this award."""
        return self.status is HomeEventStatus.DONE

    def preconditioned_only(self) -> list[str]:
        """Return the pre-conditioned loads the window has not taken over (nor given back)."""
        return [
            load_id
            for load_id in self.preconditioned
            if load_id not in self.confirmed_off and load_id not in self.released
        ]

    def held_loads(self) -> list[str]:
        """Return the loads Jeisson holds off right now."""
        return [
            load_id
            for load_id in self.confirmed_off
            if load_id not in self.released and load_id not in self.restore_at
        ]

    def remaining_kw(self, rated_kw: Mapping[str, float]) -> float:
        """Return the kW still committed: the award's, less its loads that opted out.

        An opt-out takes off what the load counts for, as the aggregator counts it: the kW it bid
        (``load_kw``; awards saved before it was kept: its rating, ``rated_kw``). With every load
        out nothing is.
        """
        out = set(self.opted_out) & set(self.loads)
        if not out:
            return self.committed_kw
        if out >= set(self.loads):
            return 0.0
        taken = sum(self.load_kw.get(load_id, rated_kw.get(load_id, 0.0)) for load_id in out)
        return max(0.0, self.committed_kw - taken)

    def shed_kw(self) -> float:
        """Return the power Jeisson holds off for this award (measured before switch-off)."""
        return sum(self.switched_off[load_id] for load_id in self.held_loads())

    def release(self, load_id: str, when: datetime) -> None:
        """Mark ``load_id`` given back at ``when`` and book the energy it delivered.

        A load already given back (an unreachable one being restored at the end) only leaves
        ``restore_at``; its energy was booked the first time.
        """
        self.restore_at.pop(load_id, None)
        if load_id in self.released:
            return
        self.released.append(load_id)
        since = self.off_since.get(load_id)
        if since is None:
            return
        end = min(when, self.window_end)
        hours = max(0.0, (end - max(since, self.window_start)).total_seconds() / SECONDS_PER_HOUR)
        kwh = self.switched_off.get(load_id, 0.0) * hours
        self.delivered_kwh += kwh
        self.earnings += kwh * self.price

    def to_held_award(self) -> HeldAward:
        """Return how the home reports this award in its hello."""
        return HeldAward(
            event_id=self.event_id,
            award_id=self.award_id,
            status=self.status,
            loads=list(self.loads),
        )

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form for the Store."""
        return {
            "event_id": self.event_id,
            "award_id": self.award_id,
            "kind": self.kind.value,
            "price": self.price,
            "currency": self.currency,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "restore_stagger_s": self.restore_stagger_s,
            "loads": list(self.loads),
            "committed_kw": self.committed_kw,
            "load_kw": dict(self.load_kw),
            "status": self.status.value,
            "outcome": self.outcome.value if self.outcome else None,
            "switched_off": dict(self.switched_off),
            "levels": dict(self.levels),
            "settings": dict(self.settings),
            "targets": dict(self.targets),
            "preconditioned": list(self.preconditioned),
            "confirmed_off": list(self.confirmed_off),
            "off_since": {key: value.isoformat() for key, value in self.off_since.items()},
            "restore_at": {key: value.isoformat() for key, value in self.restore_at.items()},
            "released": list(self.released),
            "opted_out": list(self.opted_out),
            "unreachable": list(self.unreachable),
            "declined": list(self.declined),
            "delivered_kwh": self.delivered_kwh,
            "earnings": self.earnings,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> HeldEvent:
        """Rebuild a held event saved by :meth:`as_dict`."""
        start = datetime.fromisoformat(raw["window_start"])
        end = datetime.fromisoformat(raw["window_end"])
        outcome = raw.get("outcome")
        return cls(
            event_id=raw["event_id"],
            award_id=raw["award_id"],
            kind=EventKind(raw["kind"]),
            price=float(raw["price"]),
            currency=raw["currency"],
            window_start=start,
            window_end=end,
            restore_stagger_s=float(raw["restore_stagger_s"]),
            loads=list(raw["loads"]),
            committed_kw=float(raw["committed_kw"]),
            load_kw={key: float(value) for key, value in raw.get("load_kw", {}).items()},
            status=HomeEventStatus(raw["status"]),
            outcome=Outcome(outcome) if outcome else None,
            switched_off={key: float(value) for key, value in raw["switched_off"].items()},
            levels={key: float(value) for key, value in raw.get("levels", {}).items()},
            settings=dict(raw.get("settings", {})),
            targets=dict(raw.get("targets", {})),
            preconditioned=list(raw.get("preconditioned", [])),
            confirmed_off=list(raw["confirmed_off"]),
            off_since={key: datetime.fromisoformat(v) for key, v in raw["off_since"].items()},
            restore_at={key: datetime.fromisoformat(v) for key, v in raw["restore_at"].items()},
            released=list(raw["released"]),
            opted_out=list(raw["opted_out"]),
            unreachable=list(raw.get("unreachable", [])),
            declined=list(raw.get("declined", [])),
            delivered_kwh=float(raw["delivered_kwh"]),
            earnings=float(raw["earnings"]),
        )


@dataclass(kw_only=True)
class PendingRestore:
    """A load Jeisson switched off and still has to switch back on (one per load)."""

    event_id: str
    """The event it was switched off for (for the logs)."""
    since: datetime
    """When the restore fell due; retries stop some time after this."""
    failed: bool = False
    """An attempt failed (the warning was logged; a later success is logged at info)."""
    saved: dict[str, Any] = field(default_factory=dict)
    """A setting load's setting to put back (empty for a switched load: it is switched on)."""
    target: dict[str, Any] = field(default_factory=dict)
    """The setting Jeisson left it at: once it is elsewhere, nothing is owed."""

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form for the Store."""
        raw: dict[str, Any] = {
            "event_id": self.event_id,
            "since": self.since.isoformat(),
            "failed": self.failed,
        }
        if self.saved or self.target:
            raw |= {"saved": self.saved, "target": self.target}
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PendingRestore:
        """Rebuild a pending restore saved by :meth:`as_dict`."""
        return cls(
            event_id=raw["event_id"],
            since=datetime.fromisoformat(raw["since"]),
            failed=bool(raw.get("failed", False)),
            saved=dict(raw.get("saved", {})),
            target=dict(raw.get("target", {})),
        )


@dataclass(kw_only=True)
class Schedule:
    """Every award the home holds or held, and its lifetime earnings."""

    events: dict[str, HeldEvent] = field(default_factory=dict)
    """By award id."""
    earnings_total: float = 0.0
    currency: str | None = None
    to_restore: dict[str, PendingRestore] = field(default_factory=dict)
    """Loads still to switch back on (their restore is under way or failed) → what is owed."""

    def open_events(self) -> list[HeldEvent]:
        """Return the awards not finished yet, earliest window first."""
        return sorted(
            (event for event in self.events.values() if not event.finished),
            key=lambda event: event.window_start,
        )

    def for_event(self, event_id: str) -> list[HeldEvent]:
        """Return the open awards of one event."""
        return [event for event in self.open_events() if event.event_id == event_id]

    def loads_named_in(self, event_id: str) -> set[str]:
        """Return every load named in any award of ``event_id``, finished or not.

        Held, given back (opted out of, overridden) or declined: in one event the aggregator
        does not ask for a load twice, and refuses a whole bid that names one of them.
        """
        return {
            load_id
            for event in self.events.values()
            if event.event_id == event_id
            for load_id in (*event.loads, *event.declined)
        }

    def prune(self) -> None:
        """Keep at most ``HISTORY_LIMIT`` finished awards (the oldest go first)."""
        finished = sorted(
            (event for event in self.events.values() if event.finished),
            key=lambda event: event.window_start,
        )
        for event in finished[: max(0, len(finished) - HISTORY_LIMIT)]:
            del self.events[event.award_id]

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form for the Store (``to_restore`` only when not empty)."""
        raw: dict[str, Any] = {
            "events": [event.as_dict() for event in self.events.values()],
            "earnings_total": self.earnings_total,
            "currency": self.currency,
        }
        if self.to_restore:
            raw["to_restore"] = {key: item.as_dict() for key, item in self.to_restore.items()}
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Schedule:
        """Rebuild a schedule saved by :meth:`as_dict` (None gives an empty one)."""
        if not raw:
            return cls()
        events = [HeldEvent.from_dict(item) for item in raw.get("events", [])]
        return cls(
            events={event.award_id: event for event in events},
            earnings_total=float(raw.get("earnings_total", 0.0)),
            currency=raw.get("currency"),
            to_restore={
                key: PendingRestore.from_dict(item)
                for key, item in raw.get("to_restore", {}).items()
            },
        )
