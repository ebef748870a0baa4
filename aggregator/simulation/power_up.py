"""The demo's second event: a short power-up event, homes absorbing surplus renewable power.

After the shed event, :func:`run_power_up` has the operator create an event with direction
``up`` sized to a share of what the connected homes' shiftable loads (batteries, water heaters,
EV chargers) could add, waits until it completes, and summarises which kinds of load took it.
Only homes that speak protocol schema 3 are offered it; every simulated home does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Final

from aggregator.simulation.fleet import Fleet
from jeisson.common.protocol import utc_now

type CallFn = Callable[[str, str, dict[str, Any] | None], Awaitable[Any]]
"""The operator's REST call: method, path, body -> JSON."""

EVENTS_PATH: Final = "/api/v1/events"
TERMINAL: Final = frozenset({"completed", "cancelled"})
POLL_S: Final = 0.5
KW_DIGITS: Final = 3


def headroom_kw(fleet: Fleet) -> float:
    """Return what the connected homes' loads that can power up could add (rating less draw)."""
    return sum(
        max(0.0, load.rated_kw - (home.recent_power.mean_kw(load.load_id) or 0.0))
        for home in fleet.homes
        if fleet.is_connected(home)
        for load in home.loads.values()
        if load.flex.can_power_up and load.curtailable and load.relay_on
    )


def _kinds(fleet: Fleet, event_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for home in fleet.homes:
        for holding in home.holdings.values():
            if holding.award.event_id != event_id:
                continue
            for load_id in holding.loads:
                kind = home.loads[load_id].spec.kind.value
                counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


async def run_power_up(
    call: CallFn,
    fleet: Fleet,
    *,
    share: float,
    price_cap: float,
    bid_window_s: float,
    lead_s: float,
    duration_s: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Run one power-up event to its end; return what it achieved."""
    target = round(share * headroom_kw(fleet), 1)
    start = utc_now() + timedelta(seconds=bid_window_s + lead_s)
    created = await call(
        "POST",
        EVENTS_PATH,
        {
            "name": "Demo surplus",
            "direction": "up",
            "target_kw": target,
            "price_cap": price_cap,
            "start": start.isoformat(),
            "end": (start + timedelta(seconds=duration_s)).isoformat(),
            "bid_window_s": bid_window_s,
            "restore_stagger_s": 0.0,
        },
    )
    event_id = created["id"]
    progress(f"Power-up event {event_id} created: absorb {target:.1f} kW for {duration_s:.0f} s")
    while True:
        detail: dict[str, Any] = await call("GET", f"{EVENTS_PATH}/{event_id}", None)
        if detail["status"] in TERMINAL:
            break
        await asyncio.sleep(POLL_S)
    first = detail["rounds"][0] if detail["rounds"] else {}
    progress(
        f"Power-up event {detail['status']}: {first.get('accepted_kw', 0.0):.1f} kW taken by "
        f"{len(detail['awards'])} homes"
    )
    return {
        "id": event_id,
        "target_kw": target,
        "status": detail["status"],
        "offered_homes": first.get("offered_homes", 0),
        "bids": first.get("bids", 0),
        "accepted_kw": round(first.get("accepted_kw", 0.0), KW_DIGITS),
        "clearing_price": detail["clearing_price"],
        "homes_awarded": len({award["home_id"] for award in detail["awards"]}),
        "loads_by_kind": _kinds(fleet, event_id),
    }
