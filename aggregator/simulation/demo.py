"""The demo behind ``scripts/demo``: a real aggregator, simulated homes and negotiated events.

:func:`run_demo` starts an aggregator in-process on a free 127.0.0.1 port with an embedded SQLite
store in a temporary directory, enrols a fleet of virtual homes, and has an operator create one
market event over the REST API. Mid-event the home carrying the most load drops off the network;
after the drop-off grace the aggregator re-negotiates the shortfall with the homes that still have
capacity. A short power-up event follows (:mod:`.power_up`). Committed and delivered kW are read
from ``GET /api/v1/events/{id}`` every second. :func:`run_demo` returns the report
(``jeisson-aggregator demo`` prints it as text or JSON) and tells a ``progress`` callback, in one
line each, what happens as it happens.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

from aggregator.app_keys import STORE
from aggregator.negotiation import NegotiationSettings
from aggregator.server import ServerConfig, create_app
from aggregator.simulation.fleet import Fleet, FleetConfig, SimulatorError
from aggregator.simulation.home import HomeTiming, VirtualHome
from aggregator.simulation.power_up import run_power_up
from jeisson.common.protocol import HomeEventStatus, utc_now

_LOGGER = logging.getLogger(__name__)

HOST: Final = "127.0.0.1"
EVENTS_PATH: Final = "/api/v1/events"
HOMES_PATH: Final = "/api/v1/homes"
HOMES_PAGE: Final = 500
TERMINAL: Final = frozenset({"completed", "cancelled"})
KW_DIGITS: Final = 3
TIME_DIGITS: Final = 1
_OK: Final = frozenset({200, 201})

type ProgressFn = Callable[[str], None]
"""Receives one line of progress at a time (the CLI prints it on stderr)."""


def _silent(_: str) -> None:
    """Progress that goes nowhere (the default)."""


class DemoError(RuntimeError):
    """The demo could not run its scenario (the aggregator refused a request)."""


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """The demo's scenario and timing (seconds), short enough to finish in well under a minute."""

    target_share: float = 0.40
    """Event target as a share of the fleet's flexible kW."""
    price_cap: float = 0.40
    bid_window_s: float = 3.0
    lead_s: float = 2.0
    """Time between the bid window and the event start (for awards and acks)."""
    duration_s: float = 15.0
    drop_after_s: float = 3.0
    """When, after the event start, the most loaded home drops off."""
    stagger_s: float = 2.0
    sample_every_s: float = 1.0
    power_up_share: float = 0.3
    """The power-up event's target as a share of what the shiftable loads could add."""
    power_up_s: float = 5.0
    negotiation: NegotiationSettings = field(
        default_factory=lambda: NegotiationSettings(
            ack_timeout_s=3.0,
            drop_grace_s=2.0,
            renegotiation_window_s=2.0,
            telemetry_stale_s=3.0,
        )
    )
    timing: HomeTiming = field(
        default_factory=lambda: HomeTiming(
            event_sample_s=0.5,
            event_report_s=1.0,
            idle_sample_s=5.0,
            idle_report_s=10.0,
            bid_delay_max_s=0.5,
        )
    )


class _Operator:
    """The operator's side of the demo: REST calls with the operator token."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self._session = session
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._session.request(
            method, self._url + path, json=body, headers=self._headers
        ) as response:
            payload = await response.json()
            if response.status not in _OK:
                raise DemoError(f"{method} {path}: HTTP {response.status} {payload}")
            return payload


async def _connected_homes(operator: _Operator) -> list[dict[str, Any]]:
    """Return every connected home, reading ``GET /api/v1/homes`` a page at a time."""
    homes: list[dict[str, Any]] = []
    while True:
        page = await operator.call(
            "GET", f"{HOMES_PATH}?online=true&limit={HOMES_PAGE}&offset={len(homes)}"
        )
        homes.extend(page["homes"])
        if not page["homes"] or len(homes) >= page["total"]:
            return homes


def _seconds(moment: str, origin: datetime) -> float:
    return round((datetime.fromisoformat(moment) - origin).total_seconds(), TIME_DIGITS)


def _pick_dropout(detail: dict[str, Any], fleet: Fleet) -> tuple[VirtualHome, float] | None:
    """Return the connected home with the most committed kW in the event, and that kW."""
    committed: dict[str, float] = {}
    for award in detail["awards"]:
        if award["status"] == "acked":
            committed[award["home_id"]] = committed.get(award["home_id"], 0.0) + float(
                award["committed_kw"]
            )
    candidates = [
        (kw, home_id)
        for home_id, kw in committed.items()
        if kw > 0 and fleet.is_connected(fleet.home(home_id))
    ]
    if not candidates:
        return None
    kw, home_id = max(candidates)
    return fleet.home(home_id), kw


@dataclass(slots=True)
class _Watch:
    """What the demo records while the event runs, and the progress it reported."""

    start: datetime
    currency: str
    progress: ProgressFn
    timeline: list[dict[str, Any]] = field(default_factory=list)
    drop: dict[str, Any] | None = None
    status: str = ""
    rounds_told: set[int] = field(default_factory=set)

    def report_changes(self, detail: dict[str, Any]) -> None:
        """Tell progress about newly cleared rounds and a new event status."""
        for item in detail["rounds"]:
            if item["status"] == "cleared" and item["round"] not in self.rounds_told:
                self.rounds_told.add(item["round"])
                price = item["clearing_price"]
                at = "" if price is None else f" at {price:.3f} {self.currency}/kWh"
                self.progress(
                    f"Round {item['round']} cleared: {item['bids']} bids, "
                    f"{item['accepted_kw']:.1f} of {item['target_kw']:.1f} kW accepted{at}"
                )
        if detail["status"] != self.status:
            self.status = detail["status"]
            if self.status != "negotiating":
                self.progress(f"Event {self.status}: {detail['committed_kw']:.1f} kW committed")


async def _watch_event(
    operator: _Operator, fleet: Fleet, event_id: str, watch: _Watch, config: DemoConfig
) -> dict[str, Any]:
    """Sample the event every second until it ends; drop the most loaded home mid-event."""
    loop = asyncio.get_running_loop()
    tick = loop.time()
    while True:
        detail: dict[str, Any] = await operator.call("GET", f"{EVENTS_PATH}/{event_id}")
        elapsed = round((utc_now() - watch.start).total_seconds(), TIME_DIGITS)
        watch.timeline.append(
            {
                "t_s": elapsed,
                "status": detail["status"],
                "round": len(detail["rounds"]),
                "committed_kw": detail["committed_kw"],
                "delivered_kw": detail["delivered_kw"],
            }
        )
        watch.report_changes(detail)
        if detail["status"] in TERMINAL:
            return detail
        if watch.drop is None and detail["status"] == "active" and elapsed >= config.drop_after_s:
            picked = _pick_dropout(detail, fleet)
            if picked is not None:
                home, kw = picked
                await fleet.drop(home)
                watch.drop = {
                    "home": home.name,
                    "home_id": home.home_id,
                    "at_s": elapsed,
                    "lost_kw": round(kw, KW_DIGITS),
                    "committed_before_kw": detail["committed_kw"],
                }
                _LOGGER.info("Demo: %s (%.1f kW committed) dropped off", home.name, kw)
                watch.progress(
                    f"{home.name} dropped off the network, taking {kw:.1f} kW of the "
                    f"{detail['committed_kw']:.1f} kW committed: the shortfall is re-negotiated"
                )
        tick += config.sample_every_s
        await asyncio.sleep(max(0.0, tick - loop.time()))


async def _wait_for_restores(fleet: Fleet, event_id: str, limit_s: float) -> None:
    """Wait (at most ``limit_s``) until every home finished restoring the event's loads."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        busy = any(
            holding.award.event_id == event_id and holding.status is not HomeEventStatus.DONE
            for home in fleet.homes
            for holding in home.holdings.values()
        )
        if not busy:
            return
        await asyncio.sleep(0.1)


def _round_rows(detail: dict[str, Any], start: datetime) -> list[dict[str, Any]]:
    return [
        {
            "round": item["round"],
            "status": item["status"],
            "opened_at_s": _seconds(item["opened_at"], start),
            "target_kw": round(item["target_kw"], KW_DIGITS),
            "offered_homes": item["offered_homes"],
            "bids": item["bids"],
            "steps": item["steps"],
            "offered_kw": round(item["offered_kw"], KW_DIGITS),
            "accepted_kw": round(item["accepted_kw"], KW_DIGITS),
            "clearing_price": item["clearing_price"],
            "shortfall_kw": round(item["shortfall_kw"], KW_DIGITS),
        }
        for item in detail["rounds"]
    ]


def _drop_outcome(
    drop: dict[str, Any] | None, rounds: list[dict[str, Any]], detail: dict[str, Any]
) -> dict[str, Any] | None:
    """Add what re-negotiation recovered to the drop-out record."""
    if drop is None:
        return None
    later = [item for item in rounds if item["opened_at_s"] > drop["at_s"]]
    left_kw = drop["committed_before_kw"] - drop["lost_kw"]
    recovered = max(0.0, detail["committed_kw"] - left_kw)
    return {
        **drop,
        "committed_left_kw": round(left_kw, KW_DIGITS),
        "renegotiation_rounds": [item["round"] for item in later],
        "renegotiated_target_kw": later[0]["target_kw"] if later else None,
        "recovered_kw": round(recovered, KW_DIGITS),
        "remaining_shortfall_kw": detail["shortfall_kw"],
    }


def _restore_summary(fleet: Fleet, event_id: str, end: datetime) -> dict[str, Any]:
    records = [r for home in fleet.homes for r in home.restores if r.event_id == event_id]
    switched = sum(
        len(holding.switched_off)
        for home in fleet.homes
        for holding in home.holdings.values()
        if holding.award.event_id == event_id
    )
    offsets = [(record.restored_at - end).total_seconds() for record in records]
    return {
        "loads_switched_off": switched,
        "loads_restored": len(records),
        "homes_restored": sum(
            any(record.event_id == event_id for record in home.restores) for home in fleet.homes
        ),
        "max_delay_s": round(max((r.delay_s for r in records), default=0.0), 2),
        "first_after_end_s": round(min(offsets, default=0.0), 2),
        "last_after_end_s": round(max(offsets, default=0.0), 2),
    }


async def _scenario(
    url: str, token: str, *, homes: int, seed: int, config: DemoConfig, progress: ProgressFn
) -> dict[str, Any]:
    """Enrol the fleet, run one event with a drop-out, and return the report."""
    async with (
        aiohttp.ClientSession() as session,
        Fleet(url, token, seed=seed, config=FleetConfig(timing=config.timing)) as fleet,
    ):
        operator = _Operator(session, url, token)
        progress(f"Enrolling and connecting {homes} simulated homes")
        await fleet.start(homes)
        connected = await _connected_homes(operator)
        flexible = sum(item["flexible_kw"] for item in connected)
        target = round(config.target_share * flexible, TIME_DIGITS)
        progress(
            f"{fleet.connected} homes connected with "
            f"{sum(len(home.loads) for home in fleet.homes)} loads, {flexible:.1f} kW flexible"
        )
        start = utc_now() + timedelta(seconds=config.bid_window_s + config.lead_s)
        end = start + timedelta(seconds=config.duration_s)
        created = await operator.call(
            "POST",
            EVENTS_PATH,
            {
                "name": "Demo peak",
                "kind": "market",
                "target_kw": target,
                "price_cap": config.price_cap,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "bid_window_s": config.bid_window_s,
                "restore_stagger_s": config.stagger_s,
            },
        )
        event_id = created["id"]
        progress(
            f"Event {event_id} created: shed {target:.1f} kW for {config.duration_s:.0f} s "
            f"at most {config.price_cap:.3f} {created['currency']}/kWh; "
            f"bids close in {config.bid_window_s:.0f} s"
        )
        watch = _Watch(start=start, currency=created["currency"], progress=progress)
        detail = await _watch_event(operator, fleet, event_id, watch, config)
        progress(f"Waiting for the homes to restore their loads (stagger {config.stagger_s:.0f} s)")
        await _wait_for_restores(fleet, event_id, config.stagger_s + 2 * config.sample_every_s)
        rounds = _round_rows(detail, start)
        power_up = await run_power_up(
            operator.call,
            fleet,
            share=config.power_up_share,
            price_cap=config.price_cap,
            bid_window_s=config.bid_window_s,
            lead_s=config.lead_s,
            duration_s=config.power_up_s,
            progress=progress,
        )
        return {
            "homes": {
                "count": homes,
                "connected": len(connected),
                "loads": sum(len(home.loads) for home in fleet.homes),
                "flexible_kw": round(flexible, KW_DIGITS),
            },
            "event": {
                "id": event_id,
                "kind": created["kind"],
                "target_kw": target,
                "price_cap": config.price_cap,
                "target_share": config.target_share,
                "currency": created["currency"],
                "start": start.isoformat(),
                "end": end.isoformat(),
                "duration_s": config.duration_s,
                "bid_window_s": config.bid_window_s,
                "restore_stagger_s": config.stagger_s,
            },
            "rounds": rounds,
            "drop": _drop_outcome(watch.drop, rounds, detail),
            "timeline": watch.timeline,
            "restore": _restore_summary(fleet, event_id, end),
            "kinds": _kinds_summary(fleet, event_id),
            "power_up": power_up,
            "final": {
                "status": detail["status"],
                "committed_kw": detail["committed_kw"],
                "shortfall_kw": detail["shortfall_kw"],
                "clearing_price": detail["clearing_price"],
                "awards": len(detail["awards"]),
                "awards_by_status": _count_by(detail["awards"], "status"),
            },
        }


def _kinds_summary(fleet: Fleet, event_id: str) -> list[dict[str, Any]]:
    """Return, per load kind: loads, loads awarded, moved to a level (not off), kW moved."""
    rows: dict[str, dict[str, Any]] = {}
    for home in fleet.homes:
        for load in home.loads.values():
            row = rows.setdefault(
                load.spec.kind.value,
                {"kind": load.spec.kind.value, "loads": 0, "awarded": 0, "at_level": 0, "kw": 0.0},
            )
            row["loads"] += 1
        for holding in home.holdings.values():
            if holding.award.event_id != event_id:
                continue
            for load_id, awarded in holding.loads.items():
                row = rows[home.loads[load_id].spec.kind.value]
                row["awarded"] += 1
                row["at_level"] += awarded.level_kw is not None
                row["kw"] += awarded.moved_kw(home.loads[load_id].rated_kw)
    return [
        {**row, "kw": round(row["kw"], KW_DIGITS)}
        for row in sorted(rows.values(), key=lambda item: item["kind"])
    ]


def _count_by(items: list[dict[str, Any]], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item[key]] = counts.get(item[key], 0) + 1
    return counts


async def run_demo(
    *,
    homes: int = 20,
    seed: int = 7,
    progress: ProgressFn = _silent,
    config: DemoConfig | None = None,
) -> dict[str, Any]:
    """Run the demo scenario and return its report (figures rounded; JSON-ready).

    ``progress`` receives a line for each step as it happens. Raises
    :class:`~aggregator.simulation.fleet.SimulatorError` for fewer than 2 homes.
    """
    if homes < 2:
        raise SimulatorError("the demo needs at least 2 homes (one of them drops out)")
    config = config or DemoConfig()
    loop = asyncio.get_running_loop()
    began = loop.time()
    with tempfile.TemporaryDirectory(prefix="jeisson-demo-") as directory:
        db_url = f"sqlite:///{Path(directory) / 'jeisson.db'}"
        app = create_app(ServerConfig(db_url=db_url, negotiation=config.negotiation))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, HOST, 0)
            await site.start()
            port = runner.addresses[0][1]
            url = f"http://{HOST}:{port}"
            token = await app[STORE].create_operator_token("demo")
            _LOGGER.info("Demo aggregator on %s (store %s)", url, db_url)
            progress(f"Aggregator running on {url} (a temporary SQLite store)")
            report = await _scenario(
                url, token, homes=homes, seed=seed, config=config, progress=progress
            )
        finally:
            await runner.cleanup()
    return {"seed": seed, **report, "elapsed_s": round(loop.time() - began, TIME_DIGITS)}
