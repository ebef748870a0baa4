"""``home`` and ``event``: the operator's commands against a running aggregator's REST API.

Each action fetches or changes one thing through :class:`~aggregator.cli.rest.OperatorClient` and
prints it with a renderer below (``--json`` prints the API's answer instead).
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from functools import partial
from typing import Any, Final

from aggregator.cli.output import (
    Column,
    emit,
    fields,
    kw,
    price,
    table,
    when,
)
from aggregator.cli.rest import OperatorClient
from aggregator.settlement import cli as settlement_cli

HOMES_PATH: Final = "/api/v1/homes"
EVENTS_PATH: Final = "/api/v1/events"
ENERGY_DECIMALS: Final = 2


# --- homes ------------------------------------------------------------------------------------


HOME_CHANGES: Final = {
    "suspend": ("POST", "/suspend"),
    "resume": ("POST", "/resume"),
    "revoke": ("POST", "/revoke"),
    "remove": ("DELETE", ""),
}
"""A home's lifecycle actions: the REST method and path suffix of each."""
_DONE: Final = {
    "suspend": "suspended (its sessions were closed)",
    "resume": "resumed",
    "revoke": "token and codes revoked (its sessions were closed; it must enrol again)",
    "remove": "removed (token and codes void, sessions closed, history kept)",
}


def render_home_change(home: dict[str, Any], *, action: str) -> str:
    """Return what a lifecycle action did to a home."""
    return f"home {home['home_id']} ({home['name']}): {_DONE[action]}"


def render_code(home: dict[str, Any]) -> str:
    """Return a new home's (or a new code's) lines: who, and the one-time code."""
    name = f"{home['name']} " if "name" in home else ""
    return (
        f"home {name}({home['home_id']})\n"
        f"enrolment code: {home['code']}  (one use: the homeowner enters it in Home Assistant)"
    )


def _home_state(home: dict[str, Any]) -> str:
    """Return a listed home's state: suspended, online or offline."""
    if home.get("suspended"):
        return "suspended"
    return "online" if home["connected"] else "offline"


def render_homes(answer: dict[str, Any], *, filtered: bool = False) -> str:
    """Return a page of homes as a table, and which part of how many it is."""
    columns = (
        Column("home id"),
        Column("name"),
        Column("state"),
        Column("taking part"),
        Column("flexible", numeric=True),
        Column("loads", numeric=True),
        Column("reliability", numeric=True),
        Column("last seen"),
    )
    rows = [
        (
            home["home_id"],
            home["name"],
            _home_state(home),
            "yes" if home["participating"] else "no",
            kw(home["flexible_kw"]),
            str(len(home["loads"])),
            "-" if home["reliability"] is None else f"{home['reliability']:.0%}",
            when(home["last_seen_at"]),
        )
        for home in answer["homes"]
    ]
    if not rows:
        if filtered or answer["total"]:
            return "no homes match"
        return "no homes yet (jeisson-aggregator home add)"
    first = answer["offset"] + 1
    shown = f"homes {first}-{answer['offset'] + len(rows)} of {answer['total']}"
    return table(columns, rows) + f"\n({shown})"


async def run_home(args: argparse.Namespace) -> None:
    """Run ``home add|list|code|suspend|resume|revoke|remove|ledger|reliability``."""
    async with OperatorClient(args.url, args.token) as api:
        if args.action in settlement_cli.HOME_ACTIONS:
            await settlement_cli.run_home_action(api, args)
        elif args.action == "add":
            home = await api.call("POST", HOMES_PATH, {"name": args.name})
            emit(home, render_code, as_json=args.json)
        elif args.action == "code":
            code = await api.call("POST", f"{HOMES_PATH}/{args.home_id}/code")
            emit(code, render_code, as_json=args.json)
        elif args.action in HOME_CHANGES:
            method, suffix = HOME_CHANGES[args.action]
            home = await api.call(method, f"{HOMES_PATH}/{args.home_id}{suffix}")
            emit(home, partial(render_home_change, action=args.action), as_json=args.json)
        else:
            filtered = bool(args.search or args.online or args.offline)
            emit(
                await api.call("GET", HOMES_PATH, query=_homes_query(args)),
                partial(render_homes, filtered=filtered),
                as_json=args.json,
            )


def _homes_query(args: argparse.Namespace) -> dict[str, str]:
    query = {"sort": args.sort, "limit": str(args.limit), "offset": str(args.offset)}
    if args.search:
        query["q"] = args.search
    if args.online or args.offline:
        query["online"] = "true" if args.online else "false"
    return query


# --- events -----------------------------------------------------------------------------------


def _event_fields(event: dict[str, Any]) -> list[tuple[str, str]]:
    currency = event["currency"]
    pairs = [
        ("event", f"{event['id']}  {event['name']}"),
        ("status", event["status"]),
        ("kind", event["kind"]),
        ("direction", event.get("direction", "down")),
        ("window", f"{when(event['start'])} .. {when(event['end'])}"),
        ("target", kw(event["target_kw"])),
        ("price cap", price(event["price_cap"], currency)),
        ("clearing price", price(event["clearing_price"], currency)),
    ]
    if "committed_kw" in event:
        pairs += [
            ("committed", kw(event["committed_kw"])),
            ("delivered", kw(event["delivered_kw"])),
            ("shortfall", kw(event["shortfall_kw"])),
        ]
    if event.get("cancel_reason"):
        pairs.append(("cancelled because", event["cancel_reason"]))
    return pairs


def _rounds_table(event: dict[str, Any]) -> str:
    columns = (
        Column("round", numeric=True),
        Column("status"),
        Column("opened"),
        Column("target", numeric=True),
        Column("homes", numeric=True),
        Column("bids", numeric=True),
        Column("bid", numeric=True),
        Column("accepted", numeric=True),
        Column("price", numeric=True),
        Column("shortfall", numeric=True),
    )
    rows = [
        (
            str(item["round"]),
            item["status"],
            when(item["opened_at"]),
            kw(item["target_kw"]),
            str(item["offered_homes"]),
            str(item["bids"]),
            kw(item["offered_kw"]),
            kw(item["accepted_kw"]),
            price(item["clearing_price"], event["currency"]),
            kw(item["shortfall_kw"]),
        )
        for item in event["rounds"]
    ]
    return table(columns, rows, empty="no negotiation rounds yet")


def _awards_table(event: dict[str, Any]) -> str:
    columns = (
        Column("award"),
        Column("home id"),
        Column("round", numeric=True),
        Column("status"),
        Column("awarded", numeric=True),
        Column("committed", numeric=True),
        Column("loads"),
    )
    rows = [
        (
            award["award_id"],
            award["home_id"],
            str(award["round"]),
            award["status"],
            kw(award["kw"]),
            kw(award["committed_kw"]),
            ", ".join(award["loads"]),
        )
        for award in event["awards"]
    ]
    return table(columns, rows, empty="no awards")


def render_event(event: dict[str, Any]) -> str:
    """Return an event's detail: its figures, then its rounds and awards as tables."""
    sections = [fields(_event_fields(event))]
    if "rounds" in event:
        sections += ["Rounds\n" + _rounds_table(event), "Awards\n" + _awards_table(event)]
    if event.get("vens"):
        sections.append("OpenADR VENs\n" + _vens_table(event))
    return "\n\n".join(sections)


def _vens_table(event: dict[str, Any]) -> str:
    columns = (
        Column("ven"),
        Column("client id"),
        Column("dispatched", numeric=True),
        Column("delivered", numeric=True),
    )
    rows = [
        (ven["ven_name"], ven["client_id"], kw(ven["committed_kw"]), kw(ven["delivered_kw"]))
        for ven in event["vens"]
    ]
    return table(columns, rows)


def render_events(answer: dict[str, Any]) -> str:
    """Return the events as a table, newest first."""
    columns = (
        Column("event id"),
        Column("status"),
        Column("kind"),
        Column("target", numeric=True),
        Column("start"),
        Column("end"),
        Column("name"),
    )
    rows = [
        (
            item["id"],
            item["status"],
            item["kind"],
            kw(item["target_kw"]),
            when(item["start"]),
            when(item["end"]),
            item["name"],
        )
        for item in answer["events"]
    ]
    return table(columns, rows, empty="no events yet")


def render_cancelled(event: dict[str, Any]) -> str:
    """Return the line confirming a cancel."""
    return f"event {event['id']} {event['status']}"


def render_settlement(report: dict[str, Any]) -> str:
    """Return a settlement report: a row per home, then the totals."""
    currency = report["currency"]

    def energy(value: float | None) -> str:
        return "-" if value is None else f"{value:.{ENERGY_DECIMALS}f} kWh"

    def money(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} {currency}"

    columns = (
        Column("home id"),
        Column("status"),
        Column("baseline", numeric=True),
        Column("measured", numeric=True),
        Column("delivered", numeric=True),
        Column("price", numeric=True),
        Column("payment", numeric=True),
    )
    rows = [
        (
            home["home_id"],
            home["status"],
            energy(home["baseline_kwh"]),
            energy(home["measured_kwh"]),
            energy(home["delivered_kwh"]),
            price(home["price_per_kwh"], currency),
            money(home["payment"]),
        )
        for home in report["homes"]
    ]
    totals = report["totals"]
    summary = fields(
        [
            ("event", report["event_id"]),
            *(
                [("version", f"v{report['version']}  {report['reason']}")]
                if "version" in report
                else []
            ),
            ("baseline method", report["baseline_method"]),
            ("homes", f"{totals['homes']} ({totals['homes_paid']} paid)"),
            ("delivered", energy(totals["delivered_kwh"])),
            ("payments", money(totals["payment"])),
        ]
    )
    return summary + "\n\n" + table(columns, rows, empty="no homes took part")


def _event_body(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": args.name,
        "kind": args.kind,
        "direction": args.direction,
        "target_kw": args.target_kw,
        "price_cap": args.price_cap,
        "start": args.start.isoformat(),
        "end": (args.start + timedelta(seconds=args.duration)).isoformat(),
        "bid_window_s": args.bid_window,
        "restore_stagger_s": args.stagger,
        "currency": args.currency,
    }


async def run_event(args: argparse.Namespace) -> None:
    """Run ``event create|list|show|cancel`` and the settlement actions."""
    async with OperatorClient(args.url, args.token) as api:
        if args.action == "create":
            event = await api.call("POST", EVENTS_PATH, _event_body(args))
            emit(event, render_event, as_json=args.json)
        elif args.action == "list":
            answer = await api.call("GET", EVENTS_PATH, query={"limit": str(args.limit)})
            emit(answer, render_events, as_json=args.json)
        elif args.action == "show":
            event = await api.call("GET", f"{EVENTS_PATH}/{args.event_id}")
            emit(event, render_event, as_json=args.json)
        elif args.action == "cancel":
            path = f"{EVENTS_PATH}/{args.event_id}/cancel"
            event = await api.call("POST", path, {"reason": args.reason})
            emit(event, render_cancelled, as_json=args.json)
        else:
            await settlement_cli.run_event_action(api, args, render_settlement)
