"""The aggregator's aiohttp application: routes, start-up (store, negotiation) and shutdown.

:func:`serve` runs it on a listening socket of its own with the limits of
:mod:`aggregator.http_limits` (header/idle timeout, connection cap) and, given a certificate and
key, TLS (``https://`` and ``wss://``) served directly.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from aiohttp import web

from aggregator import dashboard, lifecycle_api
from aggregator.api import database_unavailable, json_error, operator_auth, routes
from aggregator.app_keys import (
    COMMITTER,
    COURIER,
    MANAGER,
    METRICS,
    REGISTRY,
    SERVER_INFO,
    SESSION_SETTINGS,
    SETTLER,
    STORE,
    ServerInfo,
)
from aggregator.auth import bearer_token
from aggregator.cluster.node import ClusterManager
from aggregator.cluster.presence import ClusterRegistry
from aggregator.cluster.settings import ClusterSettings, require_postgresql
from aggregator.history.recorder import HistorySettings
from aggregator.home_limits import RateLimits
from aggregator.http_limits import CappedProtocolFactory, HttpLimits, Listener, listening_socket
from aggregator.metrics import CONTENT_TYPE, Metrics
from aggregator.negotiation import EventManager, NegotiationSettings
from aggregator.openadr import service as openadr
from aggregator.openapi import openapi_document
from aggregator.participants import with_outside
from aggregator.sessions import HomeSession, SessionRegistry, SessionSettings
from aggregator.settlement import api as settlement_api
from aggregator.settlement.courier import StatementCourier
from aggregator.settlement.program import ProgramSettings
from aggregator.settlement.reliability import ReliabilityScores
from aggregator.settlement.repository import SettlementRepository
from aggregator.settlement.settler import POLL_INTERVAL, Settler
from aggregator.settlement.statements import Statement
from aggregator.store import GroupCommitter, Store
from jeisson.common.const import WS_PATH
from jeisson.common.protocol import MAX_FRAME_BYTES

_LOGGER = logging.getLogger(__name__)

DEFAULT_DB_URL: Final = "sqlite:///jeisson.db"
LISTEN_BACKLOG: Final = 128
"""Connections the kernel queues before they are accepted (each accept batch is at most this)."""
SHUTDOWN_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How to run an aggregator."""

    db_url: str = DEFAULT_DB_URL
    heartbeat_interval: float = 30.0
    negotiation: NegotiationSettings = field(default_factory=NegotiationSettings)
    program: ProgramSettings | None = None
    """Settlement program settings to store at start (None: keep the stored ones)."""
    settle_poll: timedelta = POLL_INTERVAL
    limits: HttpLimits = field(default_factory=HttpLimits)
    home_limits: RateLimits = field(default_factory=RateLimits)
    """How much each home may send over its websocket."""
    tls_cert: str | None = None
    """PEM certificate chain: serve TLS directly (with ``tls_key``)."""
    tls_key: str | None = None
    history: HistorySettings = field(default_factory=HistorySettings)
    """How often the dashboard's history is sampled."""
    cluster: ClusterSettings | None = None
    """Run as one process of a cluster (PostgreSQL and NATS); None: a single process."""

    def __post_init__(self) -> None:
        """Refuse a certificate without its key (or the reverse), a cluster without PostgreSQL."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key")
        if self.cluster is not None:
            require_postgresql(self.db_url)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """Return the server TLS context for a PEM certificate chain and its key (TLS 1.2+)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def home_websocket(request: web.Request) -> web.StreamResponse:
    """Serve one home's websocket (``Authorization: Bearer <home token>``)."""
    store = request.app[STORE]
    admitted_at = time.monotonic()
    token = bearer_token(request.headers.get("Authorization"))
    home = await store.home_for_token(token) if token else None
    if home is None:
        return json_error(401, "unauthorized", "a valid home token is required")
    if home.suspended_at is not None:
        return json_error(403, "home_suspended", "the operator suspended this home")
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, autoping=True)
    await ws.prepare(request)
    session = HomeSession(
        ws,
        home,
        store=store,
        committer=request.app[COMMITTER],
        manager=request.app[MANAGER],
        registry=request.app[REGISTRY],
        settings=request.app[SESSION_SETTINGS],
        courier=request.app[COURIER],
        admitted_at=admitted_at,
    )
    await session.run()
    return ws


async def prometheus_metrics(request: web.Request) -> web.Response:
    """Serve the metrics in Prometheus text format; per-event figures for operators only."""
    token = bearer_token(request.headers.get("Authorization"))
    operator = token is not None and await request.app[STORE].operator_token_is_valid(token)
    if token is not None and not operator:
        return json_error(401, "unauthorized", "this operator token is not valid")
    body = request.app[METRICS].render(include_events=operator)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def openapi_json(_request: web.Request) -> web.Response:
    """Serve the OpenAPI document of the REST API."""
    return web.json_response(openapi_document())


def _lifecycle(
    config: ServerConfig,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store = await Store.open(config.db_url)
        metrics = Metrics()
        committer = GroupCommitter(store, metrics)
        registry = SessionRegistry(metrics) if config.cluster is None else ClusterRegistry(metrics)
        repository = SettlementRepository(store)
        scores = ReliabilityScores()
        scores.replace((await repository.reliability()).values())
        if config.cluster is None:
            manager = EventManager(
                store,
                registry,
                config.negotiation,
                metrics=metrics,
                committer=committer,
                reliability=scores.score,
            )
        else:
            manager = ClusterManager(
                store,
                registry,
                config.cluster,
                config.negotiation,
                metrics=metrics,
                committer=committer,
                reliability=scores.score,
            )
            if isinstance(registry, ClusterRegistry):
                registry.count_cluster(manager.online)
        metrics.watch(
            connected_homes=lambda: len(registry),
            events=lambda: with_outside(app, manager.figures()),  # + OpenADR VENs
        )
        app[METRICS] = metrics
        aggregator_id = await store.aggregator_id()
        app[STORE] = store
        app[COMMITTER] = committer
        app[REGISTRY] = registry
        app[MANAGER] = manager
        app[SERVER_INFO] = ServerInfo(aggregator_id=aggregator_id)
        app[SESSION_SETTINGS] = SessionSettings(
            aggregator_id=aggregator_id,
            heartbeat_interval=config.heartbeat_interval,
            limits=config.home_limits,
        )
        if config.program is not None:
            await repository.save_program(config.program)
        settler = Settler(repository, poll_interval=config.settle_poll)
        courier = StatementCourier(repository, registry)
        settler.subscribe(courier.deliver)

        async def rescore(statements: Sequence[Statement]) -> None:
            homes = sorted({line.home_id for item in statements for line in item.lines})
            manager.reliability_changed(
                scores.update((await repository.reliability(homes)).values())
            )

        settler.subscribe(rescore)
        app[SETTLER] = settler
        app[COURIER] = courier
        await manager.start()
        settler.start()
        _LOGGER.info("Aggregator %s ready", aggregator_id)
        yield
        await settler.stop()
        await manager.stop()
        await committer.close()
        await store.close()

    return lifecycle


def create_app(config: ServerConfig | None = None) -> web.Application:
    """Build the aggregator application (the store opens when the app starts)."""
    config = config or ServerConfig()
    app = web.Application(middlewares=[database_unavailable, operator_auth])
    app.add_routes(routes)
    app.add_routes(settlement_api.routes)
    app.add_routes(lifecycle_api.routes)
    dashboard.setup(app, history_settings=config.history)
    app.router.add_get(WS_PATH, home_websocket)
    app.router.add_get("/api/v1/openapi.json", openapi_json)
    app.router.add_get("/metrics", prometheus_metrics)
    app.cleanup_ctx.append(_lifecycle(config))
    openadr.setup(app)
    app.on_shutdown.append(_close_sessions)
    return app


async def _close_sessions(app: web.Application) -> None:
    """Close every home session before aiohttp waits for handlers to finish."""
    await app[REGISTRY].close_all()


GC_THRESHOLDS: Final = (50_000, 20, 100)
"""Young-generation collections every 50,000 allocations rather than CPython's 700: a round of
10,000 homes allocates millions of short-lived objects (frames, messages, records), and each
collection also walks every object younger than the last full one."""


def settle_garbage_collector() -> None:
    """After start-up: freeze what it allocated (never scanned again), collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(config: ServerConfig, host: str, port: int, stop: asyncio.Event) -> None:
    """Run the aggregator on ``host:port`` until ``stop`` is set."""
    limits = config.limits
    context = None
    if config.tls_cert is not None and config.tls_key is not None:
        context = tls_context(config.tls_cert, config.tls_key)
    app = create_app(config)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        keepalive_timeout=limits.header_timeout_s,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    settle_garbage_collector()
    if runner.server is None:  # pragma: no cover - set by setup()
        raise RuntimeError("aiohttp runner has no server after setup")
    factory = CappedProtocolFactory(
        runner.server, limits, on_refused=app[METRICS].connections_refused.inc
    )
    listener = Listener(
        listening_socket(host, port, LISTEN_BACKLOG),
        factory,
        tls=context,
        handshake_timeout_s=limits.header_timeout_s,
    )
    listener.start()
    _LOGGER.info(
        "Listening on %s://%s:%d (at most %d connections)",
        "https" if context else "http",
        host,
        port,
        factory.cap,
    )
    try:
        await stop.wait()
    finally:
        await listener.close()
        await runner.cleanup()
