"""``jeisson-aggregator openadr ...``: clients of Jeisson's VTN and the utility VTNs it follows.

Like the other operator commands, these talk to a running aggregator over its REST API, print
for people by default and JSON with ``--json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from aggregator.cli.output import emit
from aggregator.cli.rest import OperatorClient

CLIENTS_PATH = "/api/v1/openadr/clients"


def add_parser(commands: Any, operator: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``openadr`` command (``operator``: the parents of REST commands)."""
    openadr = commands.add_parser("openadr", help="OpenADR 3: VTN clients, utility VTNs")
    groups = openadr.add_subparsers(dest="group", required=True)
    client = groups.add_parser("client", help="clients of Jeisson's VTN")
    client_actions = client.add_subparsers(dest="action", required=True)
    add = client_actions.add_parser("add", help="add a client, print its secret", parents=operator)
    add.add_argument("--name", required=True)
    add.add_argument("--role", choices=["bl", "ven"], default="ven")
    client_actions.add_parser("list", help="list clients", parents=operator)
    revoke = client_actions.add_parser("revoke", help="revoke a client", parents=operator)
    revoke.add_argument("client_id")


async def run(args: argparse.Namespace) -> None:
    """Run an ``openadr`` subcommand."""
    async with OperatorClient(args.url, args.token) as api:
        if args.group == "client":
            await _client(args, api)


def _render_secret(created: dict[str, Any]) -> str:
    return (
        f"client_id:     {created['client_id']}\n"
        f"client_secret: {created['client_secret']}  (shown once)"
    )


def _render_clients(listing: dict[str, Any]) -> str:
    return "\n".join(
        f"{item['client_id']}  {item['role']:3}  "
        f"{'revoked' if item['revoked'] else 'active':7}  {item['name']}"
        for item in listing["clients"]
    )


async def _client(args: argparse.Namespace, api: OperatorClient) -> None:
    if args.action == "add":
        body = {"name": args.name, "role": args.role}
        emit(await api.call("POST", CLIENTS_PATH, body), _render_secret, as_json=args.json)
    elif args.action == "list":
        emit(await api.call("GET", CLIENTS_PATH), _render_clients, as_json=args.json)
    else:
        result = await api.call("DELETE", f"{CLIENTS_PATH}/{args.client_id}")
        emit(result, lambda item: f"client {item['client_id']} revoked", as_json=args.json)
