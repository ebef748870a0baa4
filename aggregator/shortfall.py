"""Live delivery below commitment: awarded loads seen on for a sustained period (pure).

An award commits named loads. While the event runs, every telemetry sample reports each load's
power (``Sample.loads``). A held load reads (about) 0 kW, or at most its awarded level when
partial steps were awarded (``attribution.level_ceiling``); one that reads on — the homeowner
switched it on without the home reporting an override, the relay failed, the integration lost
control — is not delivering. One sample on means little (a relay settling, a stale reading); a
load seen on continuously for :attr:`ShortfallRule.sustained` (3 minutes), once
:attr:`ShortfallRule.grace` (1 minute) of the event has passed, is a **shortfall**: the
negotiation releases it like an opt-out of that load, so its kW leave the commitment and are
re-negotiated with other homes. Homes that report no per-load figures are not judged this way
(nothing to attribute); they are still settled on measured energy.

:class:`DeliveryWatch` keeps, per (event, home, load), when the load was first seen on; it is
fed samples and asked which loads fell short. It holds no I/O and no clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from aggregator.settlement.attribution import level_ceiling

DEFAULT_GRACE: Final = timedelta(minutes=1)
DEFAULT_SUSTAINED: Final = timedelta(minutes=3)


@dataclass(frozen=True, slots=True)
class ShortfallRule:
    """When a held load seen on counts as a shortfall."""

    grace: timedelta = DEFAULT_GRACE
    """After the event starts, loads get this long to be switched off."""
    sustained: timedelta = DEFAULT_SUSTAINED
    """A load must be seen on this long without a break."""


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A held load that has not been delivering."""

    event_id: str
    home_id: str
    load_id: str
    on_since: datetime


@dataclass
class DeliveryWatch:
    """When each awarded load of each home was first seen on, per event."""

    rule: ShortfallRule = field(default_factory=ShortfallRule)
    _on_since: dict[tuple[str, str, str], datetime] = field(default_factory=dict)

    def observe(
        self,
        event_id: str,
        home_id: str,
        held_loads: Iterable[str],
        sample_ts: datetime,
        load_kw: Mapping[str, float],
        *,
        levels: Mapping[str, float] | None = None,
    ) -> None:
        """Record one sample of a home's ``held_loads`` (loads it reports no figure for: skip).

        ``levels`` gives the power a load held by partial steps may run at (absent: off).
        """
        for load_id in held_loads:
            key = (event_id, home_id, load_id)
            kw = load_kw.get(load_id)
            if kw is None:
                continue
            if kw >= level_ceiling(levels, load_id):
                since = self._on_since.get(key)
                if since is None or sample_ts < since:
                    self._on_since[key] = sample_ts
            else:
                self._on_since.pop(key, None)

    def shortfalls(self, event_id: str, event_start: datetime, now: datetime) -> list[Shortfall]:
        """Return the event's loads seen on for the sustained period (once the grace is over)."""
        if now < event_start + self.rule.grace:
            return []
        earliest = event_start + self.rule.grace
        return [
            Shortfall(event_id, home_id, load_id, since)
            for (event, home_id, load_id), since in sorted(self._on_since.items())
            if event == event_id and now - max(since, earliest) >= self.rule.sustained
        ]

    def forget(self, event_id: str, home_id: str | None = None, load_id: str | None = None) -> None:
        """Stop watching an event (or one home's load of it: released, opted out)."""
        for key in [key for key in self._on_since if key[0] == event_id]:
            if (home_id is None or key[1] == home_id) and (load_id is None or key[2] == load_id):
                del self._on_since[key]
