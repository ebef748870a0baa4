"""The argument parser of ``jeisson-aggregator``: every command, its options and value parsers.

Shared option groups are argparse parent parsers: ``-v`` (more log output, anywhere on the line),
``--json`` (on every command that prints data) and ``--url``/``--token`` (commands that talk to
a running aggregator; ``JEISSON_URL`` / ``JEISSON_OPERATOR_TOKEN`` by default).
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timedelta
from typing import Any, Final

from aggregator import __version__
from aggregator.openadr import cli as openadr_cli
from aggregator.settlement import cli as settlement_cli

DEFAULT_URL: Final = "http://127.0.0.1:8080"
DEFAULT_DB: Final = "sqlite:///jeisson.db"
DB_HELP: Final = "sqlite:///file.db or postgresql://..."
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str) -> datetime:
    """Parse ``+90`` (seconds from now), ``+15m``, ``+2h`` or an ISO 8601 time into aware UTC."""
    from jeisson.common.protocol import utc_now  # noqa: PLC0415 - keep start-up light

    if text.startswith("+"):
        unit = text[-1] if text[-1] in _UNITS else "s"
        number = text[1:-1] if text[-1] in _UNITS else text[1:]
        try:
            return utc_now() + timedelta(seconds=float(number) * _UNITS[unit])
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not +SECONDS, +15m or +2h") from None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time or +SECONDS") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z or +00:00")
    return parsed


def parse_duration(text: str) -> float:
    """Parse ``90``, ``90s``, ``15m``, ``1h`` or ``30d`` into seconds."""
    try:
        if text and text[-1] in _UNITS:
            return float(text[:-1]) * _UNITS[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90, 15m or 1h") from None


def _verbosity(default: Any) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="show log lines: -v INFO, -vv DEBUG (serve shows INFO without it)",
    )
    return parent


_VERBOSE_SUB: Final = _verbosity(argparse.SUPPRESS)
"""``-v`` after the command name too; SUPPRESS keeps a ``-v`` given before it."""

_JSON: Final = argparse.ArgumentParser(add_help=False)
_JSON.add_argument("--json", action="store_true", help="print the result as JSON")

_REST: Final = argparse.ArgumentParser(add_help=False)
_REST.add_argument(
    "--url", default=os.environ.get("JEISSON_URL", DEFAULT_URL), help="the aggregator's URL"
)
_REST.add_argument(
    "--token", default=os.environ.get("JEISSON_OPERATOR_TOKEN"), help="an operator token"
)

_QUIET: Final = argparse.ArgumentParser(add_help=False)
_QUIET.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")

_DATA: Final = [_VERBOSE_SUB, _JSON]
_OPERATOR: Final = [_VERBOSE_SUB, _JSON, _REST]

type Commands = Any  # argparse's private _SubParsersAction


def _add_serve(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="run the aggregator", parents=[_VERBOSE_SUB])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--db", default=DEFAULT_DB, help=DB_HELP)
    serve.add_argument("--heartbeat", type=float, default=30.0, help="home ping interval (s)")
    serve.add_argument("--ack-timeout", type=float, default=15.0)
    serve.add_argument("--drop-grace", type=float, default=60.0)
    serve.add_argument("--renegotiation-window", type=float, default=10.0)
    settlement_cli.add_program_options(serve, parse_duration)
    serve.add_argument(
        "--tls-cert", help="PEM certificate chain: serve https:// and wss:// (with --tls-key)"
    )
    serve.add_argument("--tls-key", help="the certificate's PEM private key")
    serve.add_argument(
        "--cluster",
        metavar="NATS_URL",
        help="run as one process of a cluster, e.g. nats://127.0.0.1:4222 (needs PostgreSQL)",
    )
    serve.add_argument(
        "--cluster-prefix",
        default="jeisson",
        help="NATS subject prefix: processes with the same one form one cluster",
    )
    serve.add_argument(
        "--lease-ttl",
        type=float,
        default=5.0,
        help="seconds until a dead coordinator's events are taken over (cluster)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="open connections at most; more get 503 (default: the file limit minus 256)",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=15.0,
        help="seconds a connection may stay without a request (s)",
    )


def _add_operator_token(commands: Commands) -> None:
    token = commands.add_parser("operator-token", help="manage operator tokens")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token and print it once", parents=_DATA)
    create.add_argument("--name", default="operator")
    create.add_argument(
        "--expires-in", type=parse_duration, help="the token expires after this (e.g. 30d)"
    )
    create.add_argument("--db", default=DEFAULT_DB, help=DB_HELP)
    listing = actions.add_parser("list", help="list tokens (never their secrets)", parents=_DATA)
    listing.add_argument("--db", default=DEFAULT_DB, help=DB_HELP)
    revoke = actions.add_parser("revoke", help="revoke a token at once", parents=_DATA)
    revoke.add_argument("token_id")
    revoke.add_argument("--db", default=DEFAULT_DB, help=DB_HELP)


def _add_db(commands: Commands) -> None:
    database = commands.add_parser("db", help="database schema: migrate, show the revision")
    actions = database.add_subparsers(dest="action", required=True)
    for action, text in (
        ("upgrade", "apply every pending migration (serve does this at start too)"),
        ("current", "print the revision the database is at"),
    ):
        sub = actions.add_parser(action, help=text, parents=_DATA)
        sub.add_argument("--db", default=DEFAULT_DB, help=DB_HELP)


def _add_home(commands: Commands) -> None:
    home = commands.add_parser("home", help="manage homes")
    actions = home.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a home, print its code", parents=_OPERATOR)
    add.add_argument("--name", required=True)
    listing = actions.add_parser("list", help="list homes, a page at a time", parents=_OPERATOR)
    listing.add_argument("--search", default="", help="part of the name or home id")
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--online", action="store_true", help="only connected homes")
    state.add_argument("--offline", action="store_true", help="only homes not connected")
    listing.add_argument(
        "--sort",
        default="name",
        help="name, flexible_kw, last_seen, reliability or created; --sort=-NAME: descending",
    )
    listing.add_argument("--limit", type=int, default=50, help="homes per page (max 500)")
    listing.add_argument("--offset", type=int, default=0, help="homes to skip")
    code = actions.add_parser(
        "code", help="new enrolment code for a home (voids its older codes)", parents=_OPERATOR
    )
    code.add_argument("home_id")
    for action, text in (
        ("suspend", "suspend a home: its sessions close, it may not connect until resumed"),
        ("resume", "resume a suspended home"),
        ("revoke", "revoke a home's token and codes: its sessions close, it must enrol again"),
        ("remove", "remove a home: token and codes void, sessions closed, history kept"),
    ):
        change = actions.add_parser(action, help=text, parents=_OPERATOR)
        change.add_argument("home_id")
    settlement_cli.add_home_actions(actions, _OPERATOR, parse_when)


def _add_event(commands: Commands) -> None:
    event = commands.add_parser("event", help="manage events")
    actions = event.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create an event", parents=_OPERATOR)
    create.add_argument("--name", default="DR event")
    create.add_argument("--kind", choices=["market", "direct"], default="market")
    create.add_argument(
        "--direction",
        choices=["down", "up"],
        default="down",
        help="down: homes shed load; up: a power-up event, homes add load",
    )
    create.add_argument("--target-kw", type=float, required=True)
    create.add_argument("--price-cap", type=float, required=True, help="per kWh")
    create.add_argument("--start", type=parse_when, required=True, help="ISO time or +SECONDS")
    create.add_argument("--duration", type=parse_duration, required=True, help="e.g. 3600, 1h")
    create.add_argument("--bid-window", type=float, default=30.0)
    create.add_argument("--stagger", type=float, default=300.0, help="restore stagger (s)")
    create.add_argument("--currency", default="EUR")
    listing = actions.add_parser("list", help="list recent events", parents=_OPERATOR)
    listing.add_argument("--limit", type=int, default=100, help="at most this many (max 500)")
    show = actions.add_parser("show", help="show an event", parents=_OPERATOR)
    show.add_argument("event_id")
    cancel = actions.add_parser("cancel", help="cancel an event", parents=_OPERATOR)
    cancel.add_argument("event_id")
    cancel.add_argument("--reason", default="")
    settlement_cli.add_event_actions(actions, _OPERATOR)


def _add_simulation(commands: Commands) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="run N simulated homes against a server",
        parents=[*_OPERATOR, _QUIET],
    )
    simulate.add_argument("--homes", type=int, default=10)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--duration", type=parse_duration, default=None, help="stop after")

    demo = commands.add_parser(
        "demo", help="a server, simulated homes and one negotiated event", parents=[*_DATA, _QUIET]
    )
    demo.add_argument("--homes", type=int, default=20)
    demo.add_argument("--seed", type=int, default=7)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="jeisson-aggregator",
        description="Jeisson demand-response aggregator",
        parents=[_verbosity(0)],
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--log-level",
        default=None,
        help="DEBUG, INFO, WARNING (default: INFO for serve, WARNING otherwise; see -v)",
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="json: one object a line"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_serve, _add_operator_token, _add_db, _add_home, _add_event, _add_simulation):
        add(commands)
    openadr_cli.add_parser(commands, _OPERATOR)
    settlement_cli.add_program(commands, _OPERATOR, parse_duration)
    return parser


def log_level(args: argparse.Namespace) -> str:
    """Return the log level a command runs with.

    ``--log-level`` wins; else ``-vv`` is DEBUG and ``-v`` INFO; else ``serve`` logs INFO (it
    is a service: its log is its output) and every other command WARNING, so what it prints is
    not buried in log lines.
    """
    if args.log_level:
        return str(args.log_level).upper()
    verbose = int(args.verbose)
    if verbose >= 2:
        return "DEBUG"
    if verbose == 1 or args.command == "serve":
        return "INFO"
    return "WARNING"
