"""The ``jeisson-aggregator`` command: run the server and operate it.

``serve`` and ``operator-token`` work on the database directly; the other operator commands talk
to a running aggregator over its REST API (``--url``, ``--token`` or ``JEISSON_URL`` /
``JEISSON_OPERATOR_TOKEN``), so the running negotiation sees every change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import aiohttp

from aggregator import __version__
from aggregator.logs import configure_logging

DEFAULT_URL: Final = "http://127.0.0.1:8080"
DEFAULT_DB: Final = "sqlite:///jeisson.db"
_OK_STATUSES: Final = (200, 201)


class CommandError(Exception):
    """A command failed in a way the operator should read (printed without a traceback)."""


def parse_when(text: str) -> datetime:
    """Parse ``+90`` (seconds from now), ``+15m``, ``+2h`` or an ISO 8601 time into aware UTC."""
    from jeisson.common.protocol import utc_now  # noqa: PLC0415 - keep start-up light

    if text.startswith("+"):
        units = {"s": 1, "m": 60, "h": 3600}
        unit = text[-1] if text[-1] in units else "s"
        number = text[1:-1] if text[-1] in units else text[1:]
        return utc_now() + timedelta(seconds=float(number) * units[unit])
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z or +00:00")
    return parsed


def parse_duration(text: str) -> float:
    """Parse ``90``, ``90s``, ``15m`` or ``1h`` into seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def _rest_options(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of commands that talk to a running aggregator."""
    sub.add_argument("--url", default=os.environ.get("JEISSON_URL", DEFAULT_URL))
    sub.add_argument("--token", default=os.environ.get("JEISSON_OPERATOR_TOKEN"))
    return sub


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the aggregator")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--db", default=DEFAULT_DB, help="sqlite:///file.db or postgresql://...")
    serve.add_argument("--heartbeat", type=float, default=30.0, help="home ping interval (s)")
    serve.add_argument("--ack-timeout", type=float, default=15.0)
    serve.add_argument("--drop-grace", type=float, default=60.0)
    serve.add_argument("--renegotiation-window", type=float, default=10.0)


def _add_operator_token(commands: Any) -> None:
    token = commands.add_parser("operator-token", help="manage operator tokens")
    token_commands = token.add_subparsers(dest="action", required=True)
    create_token = token_commands.add_parser("create", help="create a token and print it once")
    create_token.add_argument("--name", default="operator")
    create_token.add_argument("--db", default=DEFAULT_DB)


def _add_db(commands: Any) -> None:
    database = commands.add_parser("db", help="database schema: migrate, show the revision")
    db_commands = database.add_subparsers(dest="action", required=True)
    for action, text in (
        ("upgrade", "apply every pending migration (serve does this at start too)"),
        ("current", "print the revision the database is at"),
    ):
        sub = db_commands.add_parser(action, help=text)
        sub.add_argument("--db", default=DEFAULT_DB, help="sqlite:///file.db or postgresql://...")


def _add_home(commands: Any) -> None:
    home = commands.add_parser("home", help="manage homes")
    home_commands = home.add_subparsers(dest="action", required=True)
    add = _rest_options(home_commands.add_parser("add", help="add a home, print its code"))
    add.add_argument("--name", required=True)
    _rest_options(home_commands.add_parser("list", help="list homes"))
    code = _rest_options(home_commands.add_parser("code", help="new enrolment code for a home"))
    code.add_argument("home_id")


def _add_event(commands: Any) -> None:
    event = commands.add_parser("event", help="manage events")
    event_commands = event.add_subparsers(dest="action", required=True)
    create = _rest_options(event_commands.add_parser("create", help="create an event"))
    create.add_argument("--name", default="DR event")
    create.add_argument("--kind", choices=["market", "direct"], default="market")
    create.add_argument("--target-kw", type=float, required=True)
    create.add_argument("--price-cap", type=float, required=True, help="per kWh")
    create.add_argument("--start", type=parse_when, required=True, help="ISO time or +SECONDS")
    create.add_argument("--duration", type=parse_duration, required=True, help="e.g. 3600, 1h")
    create.add_argument("--bid-window", type=float, default=30.0)
    create.add_argument("--stagger", type=float, default=300.0, help="restore stagger (s)")
    create.add_argument("--currency", default="EUR")
    _rest_options(event_commands.add_parser("list", help="list recent events"))
    show = _rest_options(event_commands.add_parser("show", help="show an event"))
    show.add_argument("event_id")
    cancel = _rest_options(event_commands.add_parser("cancel", help="cancel an event"))
    cancel.add_argument("event_id")
    cancel.add_argument("--reason", default="")
    settle = _rest_options(
        event_commands.add_parser("settlement", help="settle an ended event (JSON or --csv)")
    )
    settle.add_argument("event_id")
    settle.add_argument("--csv", action="store_true", help="print CSV instead of JSON")
    settle.add_argument("--baseline", help="override the baseline method, e.g. caiso_10_of_10")


def _add_simulation(commands: Any) -> None:
    simulate = _rest_options(
        commands.add_parser("simulate", help="run N simulated homes against a server")
    )
    simulate.add_argument("--homes", type=int, default=10)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--duration", type=parse_duration, default=None, help="stop after")

    demo = commands.add_parser("demo", help="a server, simulated homes and one negotiated event")
    demo.add_argument("--homes", type=int, default=20)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="jeisson-aggregator", description="Jeisson demand-response aggregator"
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="json: one object a line"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_serve, _add_operator_token, _add_db, _add_home, _add_event, _add_simulation):
        add(commands)
    return parser


async def _rest(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    if not args.token:
        raise CommandError("an operator token is needed: --token or JEISSON_OPERATOR_TOKEN")
    headers = {"Authorization": f"Bearer {args.token}"}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, args.url.rstrip("/") + path, json=body, headers=headers
            ) as response,
        ):
            payload: dict[str, Any] = await response.json(content_type=None)
            if response.status not in _OK_STATUSES:
                raise CommandError(
                    f"{response.status} {payload.get('error')}: {payload.get('message')}"
                )
            return payload
    except aiohttp.ClientError as err:
        raise CommandError(f"cannot reach {args.url}: {err}") from err


async def _rest_text(args: argparse.Namespace, path: str, query: dict[str, str]) -> str:
    """GET a path as the operator and return the body text (JSON pretty-printed)."""
    if not args.token:
        raise CommandError("an operator token is needed: --token or JEISSON_OPERATOR_TOKEN")
    headers = {"Authorization": f"Bearer {args.token}"}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(args.url.rstrip("/") + path, params=query, headers=headers) as response,
        ):
            text = await response.text()
            if response.status not in _OK_STATUSES:
                raise CommandError(f"{response.status}: {text}")
    except aiohttp.ClientError as err:
        raise CommandError(f"cannot reach {args.url}: {err}") from err
    if response.content_type == "application/json":
        return json.dumps(json.loads(text), indent=2)
    return text.rstrip("\n")


async def _run_serve(args: argparse.Namespace) -> None:
    from aggregator.negotiation import NegotiationSettings  # noqa: PLC0415
    from aggregator.server import ServerConfig, serve  # noqa: PLC0415

    config = ServerConfig(
        db_url=args.db,
        heartbeat_interval=args.heartbeat,
        negotiation=NegotiationSettings(
            ack_timeout_s=args.ack_timeout,
            drop_grace_s=args.drop_grace,
            renegotiation_window_s=args.renegotiation_window,
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, args.host, args.port, stop)


async def _run_operator_token(args: argparse.Namespace) -> None:
    from aggregator.store import Store  # noqa: PLC0415

    store = await Store.open(args.db)
    try:
        print(await store.create_operator_token(args.name))
    finally:
        await store.close()


async def _run_db(args: argparse.Namespace) -> None:
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from aggregator import migrations  # noqa: PLC0415
    from aggregator.store import make_engine  # noqa: PLC0415

    try:
        engine = make_engine(args.db)
    except ValueError as err:
        raise CommandError(str(err)) from err
    head = migrations.head_revision()
    try:
        if args.action == "upgrade":
            reached = await migrations.upgrade(engine)
            print(f"database at revision {reached} (head)")
            return
        current = await migrations.current_revision(engine)
    except (OSError, SQLAlchemyError, migrations.MigrationError) as err:
        raise CommandError(f"database: {err}") from err
    finally:
        await engine.dispose()
    if current == head:
        print(f"{current} (head)")
    elif current is None:
        print(f"none (no schema yet; head is {head}: run jeisson-aggregator db upgrade)")
    else:
        print(f"{current} (head is {head}: run jeisson-aggregator db upgrade)")


async def _run_home(args: argparse.Namespace) -> None:
    if args.action == "add":
        home = await _rest(args, "POST", "/api/v1/homes", {"name": args.name})
        print(f"home {home['home_id']} enrolment code: {home['code']}")
    elif args.action == "code":
        home = await _rest(args, "POST", f"/api/v1/homes/{args.home_id}/code")
        print(f"home {home['home_id']} enrolment code: {home['code']}")
    else:
        homes = (await _rest(args, "GET", "/api/v1/homes"))["homes"]
        for item in homes:
            state = "online" if item["connected"] else "offline"
            print(f"{item['home_id']}  {state:7}  {item['flexible_kw']:7.2f} kW  {item['name']}")


async def _run_event(args: argparse.Namespace) -> None:
    if args.action == "create":
        body = {
            "name": args.name,
            "kind": args.kind,
            "target_kw": args.target_kw,
            "price_cap": args.price_cap,
            "start": args.start.isoformat(),
            "end": (args.start + timedelta(seconds=args.duration)).isoformat(),
            "bid_window_s": args.bid_window,
            "restore_stagger_s": args.stagger,
            "currency": args.currency,
        }
        print(json.dumps(await _rest(args, "POST", "/api/v1/events", body), indent=2))
    elif args.action == "list":
        for item in (await _rest(args, "GET", "/api/v1/events"))["events"]:
            print(
                f"{item['id']}  {item['status']:11}  {item['target_kw']:8.1f} kW  "
                f"{item['start']} .. {item['end']}  {item['name']}"
            )
    elif args.action == "settlement":
        query = {"format": "csv"} if args.csv else {}
        if args.baseline:
            query["baseline"] = args.baseline
        print(await _rest_text(args, f"/api/v1/events/{args.event_id}/settlement", query))
    elif args.action == "show":
        detail = await _rest(args, "GET", f"/api/v1/events/{args.event_id}")
        print(json.dumps(detail, indent=2))
    else:
        path = f"/api/v1/events/{args.event_id}/cancel"
        detail = await _rest(args, "POST", path, {"reason": args.reason})
        print(f"event {detail['id']} {detail['status']}")


async def _run_simulate(args: argparse.Namespace) -> None:
    from aggregator.simulation.fleet import SimulatorError, run_fleet  # noqa: PLC0415

    if not args.token:
        raise CommandError("an operator token is needed to enrol homes: --token")
    try:
        await run_fleet(
            args.url, args.token, homes=args.homes, seed=args.seed, duration=args.duration
        )
    except SimulatorError as err:
        raise CommandError(str(err)) from err


async def _run_demo(args: argparse.Namespace) -> None:
    from aggregator.simulation.demo import run_demo  # noqa: PLC0415
    from aggregator.simulation.fleet import SimulatorError  # noqa: PLC0415

    try:
        await run_demo(homes=args.homes, seed=args.seed, as_json=args.json)
    except SimulatorError as err:
        raise CommandError(str(err)) from err


_COMMANDS: Final = {
    "serve": _run_serve,
    "operator-token": _run_operator_token,
    "db": _run_db,
    "home": _run_home,
    "event": _run_event,
    "simulate": _run_simulate,
    "demo": _run_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        asyncio.run(_COMMANDS[args.command](args))
    except CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
