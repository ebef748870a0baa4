"""The ``jeisson-aggregator`` command: run the server and operate it.

``serve``, ``operator-token`` and ``db`` work on the database directly; ``home``, ``event`` and
``simulate`` talk to a running aggregator over its REST API (``--url``, ``--token`` or
``JEISSON_URL`` / ``JEISSON_OPERATOR_TOKEN``), so the running negotiation sees every change.
Every command that prints data prints it for people by default and as JSON with ``--json``;
logs go to stderr (``serve``: INFO; the others only warnings unless ``-v``).

The package: :mod:`~aggregator.cli.parser` (arguments), :mod:`~aggregator.cli.rest` (the REST
client), :mod:`~aggregator.cli.output` (tables, JSON, progress), and the commands in
:mod:`~aggregator.cli.operator_commands` and :mod:`~aggregator.cli.server_commands`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Final

from aggregator.cli.operator_commands import run_event, run_home
from aggregator.cli.parser import build_parser, log_level, parse_duration, parse_when
from aggregator.cli.rest import CommandError
from aggregator.cli.server_commands import (
    run_db,
    run_demo,
    run_operator_token,
    run_serve,
    run_simulate,
)
from aggregator.logs import configure_logging
from aggregator.openadr import cli as openadr_cli
from aggregator.settlement import cli as settlement_cli

__all__ = ["CommandError", "build_parser", "main", "parse_duration", "parse_when"]

EXIT_ERROR: Final = 1
EXIT_INTERRUPTED: Final = 130


async def _run_openadr(args: argparse.Namespace) -> None:
    # Looked up when run: aggregator.openadr.cli imports this package's output helpers.
    await openadr_cli.run(args)


_COMMANDS: Final[dict[str, Callable[[argparse.Namespace], Coroutine[None, None, None]]]] = {
    "serve": run_serve,
    "operator-token": run_operator_token,
    "db": run_db,
    "home": run_home,
    "event": run_event,
    "simulate": run_simulate,
    "demo": run_demo,
    "openadr": _run_openadr,
    "program": settlement_cli.run_program,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(log_level(args), args.log_format)
    try:
        asyncio.run(_COMMANDS[args.command](args))
    except CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0
