"""``jeisson-aggregator openadr ...``: clients of Jeisson's VTN and the utility VTNs it follows.

Like the other operator commands, these talk to a running aggregator over its REST API, print
for people by default and JSON with ``--json``. A utility VTN's client secret is never taken on
the command line (it would show in ``ps`` and the shell history): it comes from the environment
(``JEISSON_VTN_CLIENT_SECRET``), a file (``--client-secret-file``) or a prompt.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from aggregator.cli.output import MISSING, Column, emit, fields, table, when
from aggregator.cli.rest import CommandError, OperatorClient

CLIENTS_PATH: Final = "/api/v1/openadr/clients"
VTNS_PATH: Final = "/api/v1/openadr/vtns"
SECRET_ENV: Final = "JEISSON_VTN_CLIENT_SECRET"  # noqa: S105 - a variable name
SIMPLE_LEVELS: Final = 4
_MAPPING_OPTIONS: Final = (
    ("kind", "kind"),
    ("price_cap", "default_price_cap"),
    ("currency", "currency"),
    ("site_baseline_kw", "site_baseline_kw"),
    ("simple_levels", "simple_levels_kw"),
    ("bid_window", "bid_window_s"),
    ("stagger", "restore_stagger_s"),
)
"""(option, program-mapping field) pairs applied to every ``--program`` given."""


def add_parser(commands: Any, operator: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``openadr`` command (``operator``: the parents of REST commands)."""
    openadr = commands.add_parser("openadr", help="OpenADR 3: VTN clients, utility VTNs")
    groups = openadr.add_subparsers(dest="group", required=True)
    client = groups.add_parser("client", help="clients of Jeisson's VTN")
    client_actions = client.add_subparsers(dest="action", required=True)
    add = client_actions.add_parser("add", help="add a client, print its secret", parents=operator)
    add.add_argument("--name", required=True)
    add.add_argument("--role", choices=["bl", "ven"], default="ven")
    add.add_argument(
        "--capacity-kw", type=float, help="a VEN taking part in Jeisson's events: kW it sheds"
    )
    client_actions.add_parser("list", help="list clients", parents=operator)
    revoke = client_actions.add_parser("revoke", help="revoke a client", parents=operator)
    revoke.add_argument("client_id")
    _add_vtn_parser(groups, operator)


def _add_vtn_parser(groups: Any, operator: Sequence[argparse.ArgumentParser]) -> None:
    vtn = groups.add_parser("vtn", help="utility VTNs Jeisson follows as a VEN")
    actions = vtn.add_subparsers(dest="action", required=True)
    add = actions.add_parser(
        "add",
        help=f"follow a utility's VTN (secret: ${SECRET_ENV}, a file or a prompt)",
        parents=operator,
    )
    add.add_argument("--name", required=True, help="a name for this VTN")
    add.add_argument("--base-url", required=True, help="e.g. https://vtn.example/openadr3/3.1.0")
    add.add_argument("--client-id", help="Jeisson's client id on that VTN")
    add.add_argument("--client-secret-file", type=Path, help="a file holding the client secret")
    add.add_argument("--token-url", help="default: found through the VTN's auth/server")
    add.add_argument("--ven-name", default="jeisson", help="Jeisson's venName there")
    add.add_argument(
        "--program",
        action="append",
        default=[],
        metavar="NAME",
        help="a program to follow, by programName or id (repeat for several)",
    )
    add.add_argument("--programs-file", type=Path, help="JSON list of full program mappings")
    add.add_argument("--kind", choices=["market", "direct"], help="Jeisson event kind (market)")
    add.add_argument("--price-cap", type=float, help="per kWh when an event has no PRICE (0.4)")
    add.add_argument("--currency", help="when the event names none (EUR)")
    add.add_argument("--site-baseline-kw", type=float, help="for IMPORT_CAPACITY_LIMIT")
    add.add_argument("--simple-levels", type=_levels, help="kW for SIMPLE 0,1,2,3: 0,5,10,20")
    add.add_argument("--bid-window", type=float, help="seconds (30)")
    add.add_argument("--stagger", type=float, help="restore stagger, seconds (300)")
    add.add_argument("--poll-interval", type=float, default=30.0, help="seconds (30)")
    add.add_argument(
        "--public-url", help="this aggregator's base URL as the VTN reaches it (webhooks)"
    )
    add.add_argument("--disabled", action="store_true", help="store it without following it")
    actions.add_parser("list", help="list the VTNs followed", parents=operator)
    show = actions.add_parser("show", help="a VTN's events and reports", parents=operator)
    show.add_argument("vtn_id")
    remove = actions.add_parser("remove", help="stop following a VTN", parents=operator)
    remove.add_argument("vtn_id")


def _levels(text: str) -> list[float]:
    try:
        levels = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not four kW figures") from None
    if len(levels) != SIMPLE_LEVELS:
        raise argparse.ArgumentTypeError("give four kW figures, for SIMPLE levels 0,1,2,3")
    return levels


async def run(args: argparse.Namespace) -> None:
    """Run an ``openadr`` subcommand."""
    body = _vtn_body(args) if args.group == "vtn" and args.action == "add" else None
    async with OperatorClient(args.url, args.token) as api:
        if args.group == "client":
            await _client(args, api)
        else:
            await _vtn(args, api, body)


# --- clients of Jeisson's VTN -----------------------------------------------------------------


def _render_secret(created: dict[str, Any]) -> str:
    return (
        f"client_id:     {created['client_id']}\n"
        f"client_secret: {created['client_secret']}  (shown once)"
    )


def _render_clients(listing: dict[str, Any]) -> str:
    return "\n".join(
        f"{item['client_id']}  {item['role']:3}  "
        f"{'revoked' if item['revoked'] else 'active':7}  {item['name']}"
        + (f"  ({item['capacity_kw']:g} kW)" if item.get("capacity_kw") else "")
        for item in listing["clients"]
    )


async def _client(args: argparse.Namespace, api: OperatorClient) -> None:
    if args.action == "add":
        body: dict[str, Any] = {"name": args.name, "role": args.role}
        if args.capacity_kw is not None:
            body["capacity_kw"] = args.capacity_kw
        emit(await api.call("POST", CLIENTS_PATH, body), _render_secret, as_json=args.json)
    elif args.action == "list":
        emit(await api.call("GET", CLIENTS_PATH), _render_clients, as_json=args.json)
    else:
        result = await api.call("DELETE", f"{CLIENTS_PATH}/{args.client_id}")
        emit(result, lambda item: f"client {item['client_id']} revoked", as_json=args.json)


# --- utility VTNs -----------------------------------------------------------------------------


def _client_secret(args: argparse.Namespace) -> str | None:
    """Return the VTN client secret from the environment, a file or a prompt (None: none)."""
    if args.client_id is None:
        return None
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV]
    secret_file: Path | None = args.client_secret_file
    if secret_file is not None:
        try:
            return secret_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise CommandError(f"cannot read {secret_file}: {err}") from err
    if sys.stdin.isatty():
        return getpass.getpass(f"client secret of {args.client_id}: ")
    raise CommandError(f"a client secret is needed: ${SECRET_ENV} or --client-secret-file")


def _programs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Return the program mappings: from --programs-file, or --program with the shared options."""
    if args.programs_file is not None:
        try:
            programs = json.loads(args.programs_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CommandError(f"cannot read {args.programs_file}: {err}") from err
        if not isinstance(programs, list):
            raise CommandError(f"{args.programs_file} must hold a JSON list of program mappings")
        return programs
    if not args.program:
        raise CommandError("name at least one program: --program NAME (or --programs-file)")
    shared = {
        field: getattr(args, option)
        for option, field in _MAPPING_OPTIONS
        if getattr(args, option) is not None
    }
    return [{"program": name, **shared} for name in args.program]


def _vtn_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": args.name,
        "base_url": args.base_url,
        "ven_name": args.ven_name,
        "programs": _programs(args),
        "poll_interval_s": args.poll_interval,
        "enabled": not args.disabled,
    }
    optional = {
        "client_id": args.client_id,
        "client_secret": _client_secret(args),
        "token_url": args.token_url,
        "public_url": args.public_url,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


def _render_vtn(vtn: dict[str, Any]) -> str:
    programs = ", ".join(f"{item['program']} ({item['kind']})" for item in vtn["programs"])
    return fields(
        [
            ("vtn_id", vtn["vtn_id"]),
            ("name", vtn["name"]),
            ("base_url", vtn["base_url"]),
            ("client_id", vtn["client_id"] or MISSING),
            ("ven_name", vtn["ven_name"]),
            ("programs", programs),
            ("poll every", f"{vtn['poll_interval_s']:g} s"),
            ("enabled", "yes" if vtn["enabled"] else "no"),
            ("last poll", when(vtn["last_poll_at"])),
            ("last error", vtn["last_error"] or MISSING),
        ]
    )


def _render_vtns(listing: dict[str, Any]) -> str:
    return table(
        [
            Column("vtn_id"),
            Column("name"),
            Column("programs"),
            Column("last poll"),
            Column("state"),
            Column("base_url"),
        ],
        [
            [
                vtn["vtn_id"],
                vtn["name"],
                ",".join(item["program"] for item in vtn["programs"]),
                when(vtn["last_poll_at"]),
                "disabled" if not vtn["enabled"] else ("error" if vtn["last_error"] else "ok"),
                vtn["base_url"],
            ]
            for vtn in listing["vtns"]
        ],
        empty="no VTNs followed",
    )


def _render_vtn_detail(vtn: dict[str, Any]) -> str:
    events = table(
        [Column("event"), Column("status"), Column("jeisson event"), Column("note")],
        [
            [item["event"], item["status"], item["jeisson_event_id"] or MISSING, item["note"] or ""]
            for item in vtn["events"]
        ],
        empty="no events",
    )
    reports = table(
        [
            Column("event"),
            Column("interval", numeric=True),
            Column("committed kW", numeric=True),
            Column("delivered kW", numeric=True),
            Column("sent"),
        ],
        [
            [
                item["event"],
                str(item["interval"]),
                f"{item['committed_kw']:.2f}",
                f"{item['delivered_kw']:.2f}",
                when(item["sent_at"]),
            ]
            for item in vtn["reports"]
        ],
        empty="no reports sent",
    )
    return f"{_render_vtn(vtn)}\n\n{events}\n\n{reports}"


async def _vtn(args: argparse.Namespace, api: OperatorClient, body: dict[str, Any] | None) -> None:
    if args.action == "add":
        emit(await api.call("POST", VTNS_PATH, body), _render_vtn, as_json=args.json)
    elif args.action == "list":
        emit(await api.call("GET", VTNS_PATH), _render_vtns, as_json=args.json)
    elif args.action == "show":
        shown = await api.call("GET", f"{VTNS_PATH}/{args.vtn_id}")
        emit(shown, _render_vtn_detail, as_json=args.json)
    else:
        result = await api.call("DELETE", f"{VTNS_PATH}/{args.vtn_id}")
        emit(result, lambda item: f"VTN {item['vtn_id']} no longer followed", as_json=args.json)
