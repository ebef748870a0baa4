"""Settlement on the command line: statements, corrections, ledgers, reliability, the program.

``event settlement|settle|statements|preview``, ``home ledger|reliability`` and ``program
show|set`` talk to a running aggregator over its REST API (``docs/settlement.md``), print for
people by default, JSON with ``--json`` and, where a CSV export exists, CSV with ``--csv``.
``serve --timezone ... --holidays ...`` stores the program settings at start.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, Final

from aggregator.cli.output import Column, emit, fields, table
from aggregator.cli.rest import CommandError, OperatorClient

EVENTS_PATH: Final = "/api/v1/events"
PROGRAM_PATH: Final = "/api/v1/settlement/program"
ENERGY_DECIMALS: Final = 2
EVENT_ACTIONS: Final = frozenset({"settlement", "settle", "statements", "preview"})
HOME_ACTIONS: Final = frozenset({"ledger", "reliability"})
_PROGRAM_OPTIONS: Final = ("timezone", "holidays", "settle_after", "estimated_pay_ratio")

type Parents = Sequence[argparse.ArgumentParser]
type DurationParser = Callable[[str], float]
type TimeParser = Callable[[str], Any]


def add_program_options(parser: argparse.ArgumentParser, duration: DurationParser) -> None:
    """Add the program settings options (``serve`` and ``program set``)."""
    parser.add_argument("--timezone", help="program time zone (IANA), e.g. America/Santiago")
    parser.add_argument("--holidays", help="holiday calendar: country[-subdivision], e.g. CL")
    parser.add_argument("--settle-after", type=duration, help="late-telemetry window (24h)")
    parser.add_argument(
        "--estimated-pay-ratio", type=float, help="pay for estimated kWh, 0..1 (0.5)"
    )


def add_event_actions(actions: Any, operator: Parents) -> None:
    """Add ``event settlement|settle|statements|preview``."""
    show = actions.add_parser(
        "settlement", help="an event's final statement (table, --json or --csv)", parents=operator
    )
    show.add_argument("event_id")
    show.add_argument("--version", type=int, help="an earlier version")
    show.add_argument("--csv", action="store_true", help="print the CSV export")
    settle = actions.add_parser(
        "settle", help="settle a finished event now (again later: a correction)", parents=operator
    )
    settle.add_argument("event_id")
    versions = actions.add_parser(
        "statements", help="every version of an event's statement", parents=operator
    )
    versions.add_argument("event_id")
    preview = actions.add_parser(
        "preview", help="compute a settlement without storing it", parents=operator
    )
    preview.add_argument("event_id")
    preview.add_argument("--baseline", help="baseline method, e.g. caiso_10_of_10")
    preview.add_argument("--csv", action="store_true", help="print the CSV export")


def add_home_actions(actions: Any, operator: Parents, when: TimeParser) -> None:
    """Add ``home ledger|reliability``."""
    ledger = actions.add_parser(
        "ledger", help="a home's payments and monthly totals", parents=operator
    )
    ledger.add_argument("home_id")
    ledger.add_argument("--since", type=when, help="booked from (ISO time)")
    ledger.add_argument("--until", type=when, help="booked before (ISO time)")
    ledger.add_argument("--csv", action="store_true", help="print the CSV export")
    actions.add_parser("reliability", help="every home's reliability score", parents=operator)


def add_program(commands: Any, operator: Parents, duration: DurationParser) -> None:
    """Add ``program show|set``."""
    program = commands.add_parser("program", help="settlement program: time zone, holidays")
    actions = program.add_subparsers(dest="action", required=True)
    actions.add_parser("show", help="print the program settings", parents=operator)
    add_program_options(actions.add_parser("set", help="change them", parents=operator), duration)


def program_body(args: argparse.Namespace) -> dict[str, Any] | None:
    """Return the program settings the options give (None when none is given)."""
    if all(getattr(args, name, None) is None for name in _PROGRAM_OPTIONS):
        return None
    body: dict[str, Any] = {"timezone": args.timezone or "UTC"}
    if args.holidays:
        country, _, subdivision = args.holidays.partition("-")
        body["holiday_country"] = country
        body["holiday_subdivision"] = subdivision or None
    if args.settle_after is not None:
        body["settle_after_s"] = args.settle_after
    if args.estimated_pay_ratio is not None:
        body["estimated_pay_ratio"] = args.estimated_pay_ratio
    return body


def _energy(value: float | None) -> str:
    return "-" if value is None else f"{value:.{ENERGY_DECIMALS}f} kWh"


def render_versions(answer: dict[str, Any]) -> str:
    """Return one line per statement version."""
    columns = (
        Column("version", numeric=True),
        Column("settled at"),
        Column("payment", numeric=True),
        Column("correction", numeric=True),
        Column("reason"),
    )
    rows = [
        (
            f"v{item['version']}",
            item["settled_at"],
            f"{item['payment']:.2f} {item['currency']}",
            f"{item['correction']:+.2f}",
            item["reason"],
        )
        for item in answer["versions"]
    ]
    return table(columns, rows, empty=f"event {answer['event_id']} is not settled yet")


def render_ledger(ledger: dict[str, Any]) -> str:
    """Return a home's bookings, then its totals per period."""
    columns = (
        Column("booked at"),
        Column("event"),
        Column("version", numeric=True),
        Column("delivered", numeric=True),
        Column("amount", numeric=True),
    )
    rows = [
        (
            entry["booked_at"],
            entry["event_id"],
            f"v{entry['version']}",
            _energy(entry["delivered_kwh"]),
            f"{entry['amount']:+.2f} {entry['currency']}",
        )
        for entry in ledger["entries"]
    ]
    totals = [
        (f"total {total['period']}", f"{total['amount']:.2f} {total['currency']}")
        for total in ledger["totals"]
    ]
    body = table(columns, rows, empty="no payments yet")
    return f"home: {ledger['home_id']}\n\n{body}" + (f"\n\n{fields(totals)}" if totals else "")


def render_reliability(answer: dict[str, Any]) -> str:
    """Return one line per home: its score and what it rests on."""
    columns = (
        Column("home id"),
        Column("score", numeric=True),
        Column("events", numeric=True),
        Column("delivered", numeric=True),
        Column("committed", numeric=True),
    )
    rows = [
        (
            item["home_id"],
            f"{item['score']:.3f}",
            str(item["events"]),
            _energy(item["delivered_kwh"]),
            _energy(item["committed_kwh"]),
        )
        for item in answer["homes"]
    ]
    return table(columns, rows, empty="no homes yet")


def render_program(program: dict[str, Any]) -> str:
    """Return the program settings."""
    holidays = program["holiday_country"] or "none"
    if program["holiday_subdivision"]:
        holidays += f"-{program['holiday_subdivision']}"
    return fields(
        [
            ("time zone", program["timezone"]),
            ("holidays", holidays),
            ("settled after", f"{program['settle_after_s'] / 3600:g} h"),
            ("estimated kWh paid at", f"{program['estimated_pay_ratio']:g}"),
        ]
    )


async def run_event_action(
    api: OperatorClient, args: argparse.Namespace, render: Callable[[dict[str, Any]], str]
) -> None:
    """Run ``event settlement|settle|statements|preview`` (``render``: a statement's table)."""
    path = f"{EVENTS_PATH}/{args.event_id}/settlement"
    if args.action == "statements":
        emit(await api.call("GET", f"{path}/versions"), render_versions, as_json=args.json)
        return
    query: dict[str, str] = {}
    if args.action == "settlement" and args.version is not None:
        query["version"] = str(args.version)
    if args.action == "preview":
        path += "/preview"
        if args.baseline:
            query["baseline"] = args.baseline
    if args.action == "settle":
        emit(await api.call("POST", path), render, as_json=args.json)
        return
    if args.csv:
        print((await api.text(path, {**query, "format": "csv"})).rstrip("\n"))
        return
    emit(await api.call("GET", path, query=query), render, as_json=args.json)


async def run_home_action(api: OperatorClient, args: argparse.Namespace) -> None:
    """Run ``home ledger|reliability``."""
    if args.action == "reliability":
        emit(await api.call("GET", "/api/v1/reliability"), render_reliability, as_json=args.json)
        return
    path = f"/api/v1/homes/{args.home_id}/ledger"
    query = {
        name: getattr(args, name).isoformat()
        for name in ("since", "until")
        if getattr(args, name) is not None
    }
    if args.csv:
        print((await api.text(path, {**query, "format": "csv"})).rstrip("\n"))
        return
    emit(await api.call("GET", path, query=query), render_ledger, as_json=args.json)


async def run_program(args: argparse.Namespace) -> None:
    """Run ``program show|set``."""
    async with OperatorClient(args.url, args.token) as api:
        if args.action == "show":
            emit(await api.call("GET", PROGRAM_PATH), render_program, as_json=args.json)
            return
        body = program_body(args)
        if body is None:
            raise CommandError("give at least one of --timezone, --holidays, --settle-after, ...")
        emit(await api.call("PUT", PROGRAM_PATH, body), render_program, as_json=args.json)
