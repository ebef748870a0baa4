"""``serve``, ``operator-token``, ``db``, ``simulate`` and ``demo``: commands that run things.

``serve``, ``operator-token`` and ``db`` work on the database directly; ``simulate`` runs virtual
homes against a running aggregator; ``demo`` runs a whole system once. Heavy imports happen inside
each command so ``--help`` and the REST commands start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aggregator.cli.output import Column, Progress, emit, fields, table
from aggregator.cli.rest import CommandError

if TYPE_CHECKING:
    from aggregator.cluster.settings import ClusterSettings
    from aggregator.server import ServerConfig
    from aggregator.settlement.program import ProgramSettings


def _stop_on_signals() -> asyncio.Event:
    """Return an event set by SIGINT (Ctrl-C) or SIGTERM, for a clean stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def run_serve(args: argparse.Namespace) -> None:
    """Run the aggregator until SIGINT or SIGTERM."""
    from aggregator.server import serve  # noqa: PLC0415
    from aggregator.settlement.api import ProgramBody  # noqa: PLC0415
    from aggregator.settlement.calendar import CalendarError  # noqa: PLC0415
    from aggregator.settlement.cli import program_body  # noqa: PLC0415

    if (args.tls_cert is None) != (args.tls_key is None):
        raise CommandError("--tls-cert and --tls-key go together")
    body = program_body(args)
    try:
        program = None if body is None else ProgramBody.model_validate(body).to_settings()
    except (ValueError, CalendarError) as err:
        raise CommandError(f"program settings: {err}") from err
    try:
        cluster = _cluster_settings(args)
        config = _server_config(args, program, cluster)
    except ValueError as err:  # ClusterConfigError: says what to change
        raise CommandError(str(err)) from err
    await serve(config, args.host, args.port, _stop_on_signals())


def _cluster_settings(args: argparse.Namespace) -> ClusterSettings | None:
    """Return the cluster settings ``--cluster`` asks for (None: a single process)."""
    from aggregator.cluster.settings import ClusterSettings  # noqa: PLC0415

    if args.cluster is None:
        return None
    return ClusterSettings(
        nats_url=args.cluster,
        subject_prefix=args.cluster_prefix,
        lease_ttl_s=args.lease_ttl,
        sweep_interval_s=min(1.0, args.lease_ttl / 3),
    )


def _server_config(
    args: argparse.Namespace, program: ProgramSettings | None, cluster: ClusterSettings | None
) -> ServerConfig:
    from aggregator.http_limits import HttpLimits  # noqa: PLC0415
    from aggregator.negotiation import NegotiationSettings  # noqa: PLC0415
    from aggregator.server import ServerConfig  # noqa: PLC0415

    return ServerConfig(
        cluster=cluster,
        program=program,
        db_url=args.db,
        heartbeat_interval=args.heartbeat,
        negotiation=NegotiationSettings(
            ack_timeout_s=args.ack_timeout,
            drop_grace_s=args.drop_grace,
            renegotiation_window_s=args.renegotiation_window,
        ),
        limits=HttpLimits(
            header_timeout_s=args.header_timeout, max_connections=args.max_connections
        ),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


async def run_operator_token(args: argparse.Namespace) -> None:
    """Create (printed once), list or revoke operator tokens, on the database directly."""
    from aggregator.store import Store  # noqa: PLC0415
    from jeisson.common.protocol import utc_now  # noqa: PLC0415

    store = await Store.open(args.db)
    try:
        if args.action == "list":
            now = utc_now()
            tokens = [_token_view(item, now) for item in await store.operator_tokens()]
            emit({"tokens": tokens}, _render_tokens, as_json=args.json)
            return
        if args.action == "revoke":
            record = await store.revoke_operator_token(args.token_id)
            if record is None:
                raise CommandError(f"no operator token {args.token_id}")
            view = _token_view(record, utc_now())
            emit(
                view,
                lambda data: f"{data['token_id']} ({data['name']}): revoked",
                as_json=args.json,
            )
            return
        expires = (
            None if args.expires_in is None else utc_now() + timedelta(seconds=args.expires_in)
        )
        record, token = await store.issue_operator_token(args.name, expires)
    finally:
        await store.close()
    emit(
        {**_token_view(record, record.created_at), "token": token},
        lambda data: str(data["token"]),
        as_json=args.json,
    )


def _token_view(token: Any, now: datetime) -> dict[str, Any]:
    """Return an operator token's JSON view (never its secret)."""
    from aggregator.lifecycle_api import OperatorTokenView  # noqa: PLC0415

    return OperatorTokenView.of(token, now).model_dump(mode="json")


def _render_tokens(data: dict[str, Any]) -> str:
    columns = [Column(name) for name in ("token", "name", "status", "created", "expires")]
    rows = [
        (
            item["token_id"],
            item["name"],
            item["status"],
            item["created_at"][:19],
            (item["expires_at"] or "never")[:19],
        )
        for item in data["tokens"]
    ]
    return table(columns, rows, empty="no operator tokens")


def _render_revision(state: dict[str, Any]) -> str:
    current, head = state["revision"], state["head"]
    if state.get("upgraded"):
        return f"database at revision {current} (head)"
    if current == head:
        return f"{current} (head)"
    if current is None:
        return f"none (no schema yet; head is {head}: run jeisson-aggregator db upgrade)"
    return f"{current} (head is {head}: run jeisson-aggregator db upgrade)"


async def run_db(args: argparse.Namespace) -> None:
    """Apply pending migrations (``upgrade``) or print the database's revision (``current``)."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from aggregator import migrations  # noqa: PLC0415
    from aggregator.store import make_engine  # noqa: PLC0415

    try:
        engine = make_engine(args.db)
    except ValueError as err:
        raise CommandError(str(err)) from err
    head = migrations.head_revision()
    upgrading = args.action == "upgrade"
    try:
        if upgrading:
            current: str | None = await migrations.upgrade(engine)
        else:
            current = await migrations.current_revision(engine)
    except (OSError, SQLAlchemyError, migrations.MigrationError) as err:
        raise CommandError(f"database: {err}") from err
    finally:
        await engine.dispose()
    state = {"revision": current, "head": head, "upgraded": upgrading}
    emit(state, _render_revision, as_json=args.json)


def _render_fleet(stats: dict[str, Any]) -> str:
    return fields(
        [
            ("homes", str(stats["homes"])),
            ("flexible", f"{stats['flexible_kw']:.1f} kW"),
            ("awards carried out", str(stats["awards"])),
            ("loads restored", str(stats["restored"])),
            ("ran for", f"{stats['ran_s']:.0f} s"),
        ]
    )


async def run_simulate(args: argparse.Namespace) -> None:
    """Run virtual homes against a running aggregator until ``--duration`` or Ctrl-C."""
    from aggregator.simulation.fleet import SimulatorError, run_fleet  # noqa: PLC0415

    if not args.token:
        raise CommandError("an operator token is needed to enrol homes: --token")
    try:
        stats = await run_fleet(
            args.url,
            args.token,
            homes=args.homes,
            seed=args.seed,
            duration=args.duration,
            stop=_stop_on_signals(),
            progress=Progress(quiet=args.quiet),
        )
    except SimulatorError as err:
        raise CommandError(str(err)) from err
    emit(stats, _render_fleet, as_json=args.json)


async def run_demo(args: argparse.Namespace) -> None:
    """Run the demo; progress on stderr, the summary (text or JSON) on stdout."""
    from aggregator.simulation.demo import run_demo as demo  # noqa: PLC0415
    from aggregator.simulation.fleet import SimulatorError  # noqa: PLC0415
    from aggregator.simulation.report import render_text  # noqa: PLC0415

    try:
        report = await demo(homes=args.homes, seed=args.seed, progress=Progress(quiet=args.quiet))
    except SimulatorError as err:
        raise CommandError(str(err)) from err
    emit(report, render_text, as_json=args.json)
