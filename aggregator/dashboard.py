"""The operator dashboard over HTTP: the page at ``/``, its assets and the live stream.

``GET /`` serves the single-page dashboard and ``/static/`` its script, styles and the vendored
charting library (no CDN: control rooms are often offline). ``GET /api/v1/stream`` is a
Server-Sent Events stream of :mod:`aggregator.live_feed` snapshots; it needs
``Authorization: Bearer <operator token>`` like every operator route, which is why the page reads
it with ``fetch()`` and a stream reader rather than ``EventSource`` (which cannot send headers).
Frames: ``event: history`` once (chart points so far, by running event), then ``event: snapshot``
every second or on change.

Call :func:`setup` once from the application factory.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from pathlib import Path
from typing import Final

from aiohttp import web

from aggregator.api import operator_only
from aggregator.app_keys import MANAGER, REGISTRY, STORE
from aggregator.auth import bearer_token
from aggregator.history import routes as history_routes
from aggregator.history.recorder import HistorySettings
from aggregator.history.routes import FLEET_INDEX
from aggregator.live_feed import FeedSettings, LiveFeed, Snapshot, build_snapshot
from aggregator.participants import running_outside

STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_PREFIX: Final = "/static"
STREAM_PATH: Final = "/api/v1/stream"
TOKEN_RECHECK_S: Final = 30.0
"""How often a stream checks that its operator token is still valid."""
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_STREAM_HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}

FEED = web.AppKey("dashboard_feed", LiveFeed)

routes = web.RouteTableDef()


@routes.get("/")
async def index(_request: web.Request) -> web.FileResponse:
    """Serve the dashboard page (it asks for the operator token itself)."""
    return web.FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)


@routes.get(STREAM_PATH)
@operator_only
async def stream(request: web.Request) -> web.StreamResponse:
    """Stream live snapshots as Server-Sent Events until the viewer leaves or the server stops."""
    token = bearer_token(request.headers.get("Authorization")) or ""
    store = request.app[STORE]
    clock = asyncio.get_running_loop().time
    response = web.StreamResponse(headers=_STREAM_HEADERS)
    await response.prepare(request)
    checked_at = clock()
    async with contextlib.aclosing(request.app[FEED].frames()) as frames:
        async for frame in frames:
            if clock() - checked_at >= TOKEN_RECHECK_S:
                if not await store.operator_token_is_valid(token):
                    break  # revoked: the page reconnects, gets 401 and asks for a token again
                checked_at = clock()
            try:
                await response.write(frame)
            except ConnectionError:
                break  # the viewer left
    return response


routes.static(STATIC_PREFIX, STATIC_DIR)


async def _snapshot(app: web.Application) -> Snapshot:
    await app[FLEET_INDEX].ensure_fresh()  # names of homes and loads
    return await build_snapshot(
        app[STORE],
        app[MANAGER],
        app[REGISTRY],
        app[FEED].settings.max_awards,
        app[FLEET_INDEX],
        outside=running_outside(app),
    )


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Forbid content sniffing of the page and its assets."""
    if request.path == "/" or request.path.startswith(f"{STATIC_PREFIX}/"):
        response.headers["X-Content-Type-Options"] = "nosniff"


async def _close_feed(app: web.Application) -> None:
    """End every stream so shutdown does not wait for them."""
    await app[FEED].close()


def setup(
    app: web.Application,
    settings: FeedSettings | None = None,
    history_settings: HistorySettings | None = None,
) -> None:
    """Add the dashboard's routes, live feed, history and shutdown hook to the application."""
    app.add_routes(routes)
    history_routes.setup(app, history_settings)
    app[FEED] = LiveFeed(partial(_snapshot, app), settings)
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_close_feed)
