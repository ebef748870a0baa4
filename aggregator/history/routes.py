"""The operator routes of the dashboard's history: homes (paged), the fleet, an event's story.

| route | answer |
|---|---|
| ``GET /api/v1/homes`` | :class:`HomesPage` — search ``q``, filters, ``sort``, a page |
| ``GET /api/v1/fleet`` | :class:`FleetNow` |
| ``GET /api/v1/fleet/history`` | :class:`FleetHistory` (``since``/``until``, default 24 h) |
| ``GET /api/v1/events/{id}/history`` | :class:`EventHistory` — chart points and activity |
| ``GET /api/v1/events/{id}/rounds/{round}/bids`` | :class:`RoundBids` — the bid curve |
| ``GET /api/v1/events/{id}/homes`` | :class:`EventHomes` — committed vs delivered per home |

Call :func:`setup` once: it adds the routes and runs the :class:`HistoryRecorder` with the app.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Final

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from aggregator.api import json_error, operator_only
from aggregator.app_keys import MANAGER, REGISTRY, STORE
from aggregator.history.index import FleetIndex
from aggregator.history.models import (
    DEFAULT_PAGE,
    MAX_PAGE,
    FleetNow,
    FleetPoint,
    HomesQuery,
)
from aggregator.history.queries import event_history, event_homes, fleet_history, round_bids
from aggregator.history.recorder import HistoryRecorder, HistorySettings
from aggregator.records import EventRecord
from jeisson.common.protocol import utc_now

FLEET_INDEX = web.AppKey("fleet_index", FleetIndex)
RECORDER = web.AppKey("history_recorder", HistoryRecorder)
SETTINGS = web.AppKey("history_settings", HistorySettings)
DEFAULT_RANGE: Final = timedelta(hours=24)
MAX_RANGE: Final = timedelta(days=400)
KW_DIGITS: Final = 3

routes = web.RouteTableDef()


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RangeQuery(_Query):
    """``since`` and ``until`` (ISO 8601 with a zone); the last 24 h by default."""

    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


class PageQuery(_Query):
    """``offset`` and ``limit`` of a paged answer."""

    offset: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE


def _query[QueryT: BaseModel](request: web.Request, model: type[QueryT]) -> QueryT:
    """Validate the query string; raise HTTP 400 with the reasons otherwise."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as err:
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'query'}: {error['msg']}"
            for error in err.errors(include_url=False)
        )
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "invalid_request", "message": reasons}),
            content_type="application/json",
        ) from err


def _answer(model: BaseModel) -> web.Response:
    return web.json_response(text=model.model_dump_json())


async def _event(request: web.Request) -> EventRecord:
    record = await request.app[STORE].get_event(request.match_info["event_id"])
    if record is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "not_found", "message": "no such event"}),
            content_type="application/json",
        )
    return record


@routes.get("/api/v1/homes")
@operator_only
async def list_homes(request: web.Request) -> web.Response:
    """List homes a page at a time: search, filters (online, taking part, reliability), order."""
    query = _query(request, HomesQuery)
    index = request.app[FLEET_INDEX]
    await index.ensure_fresh()
    return _answer(index.page(query))


@routes.get("/api/v1/fleet")
@operator_only
async def fleet_now(request: web.Request) -> web.Response:
    """Return the fleet now: homes, online, taking part, flexible kW, events running."""
    return _answer(await _fleet_now(request.app))


async def _fleet_now(app: web.Application) -> FleetNow:
    index = app[FLEET_INDEX]
    await index.ensure_fresh()
    registry = app[REGISTRY]
    manager = app[MANAGER]
    total, enrolled = index.counts()
    participating = 0
    for home_id in index.home_ids:
        entry = index.entry(home_id)
        participating += bool(entry and entry.participating and registry.is_connected(home_id))
    return FleetNow(
        ts=utc_now(),
        homes_total=total,
        homes_enrolled=enrolled,
        homes_online=len(registry),
        homes_participating=participating,
        flexible_kw=round(manager.flexible_kw(), KW_DIGITS),
        events_running=len(manager.figures()),
    )


@routes.get("/api/v1/fleet/history")
@operator_only
async def fleet_over_time(request: web.Request) -> web.Response:
    """Return the fleet over time (a sample a minute) and the events started per day."""
    query = _query(request, RangeQuery)
    until = query.until or utc_now()
    since = query.since or until - DEFAULT_RANGE
    if since >= until:
        return json_error(400, "invalid_request", "since must be before until")
    if until - since > MAX_RANGE:
        return json_error(400, "invalid_request", "the range is at most 400 days")
    now = await _fleet_now(request.app)
    point = FleetPoint(
        ts=now.ts,
        homes_total=now.homes_total,
        homes_online=now.homes_online,
        homes_participating=now.homes_participating,
        flexible_kw=now.flexible_kw,
    )
    live = point if query.until is None else None
    return _answer(await fleet_history(request.app[STORE], since, until, live))


@routes.get("/api/v1/events/{event_id}/history")
@operator_only
async def event_story(request: web.Request) -> web.Response:
    """Return an event's chart points and its activity, with when each thing happened."""
    record = await _event(request)
    live = next(
        (item for item in request.app[MANAGER].figures() if item.event_id == record.event_id),
        None,
    )
    index = request.app[FLEET_INDEX]
    await index.ensure_fresh()
    return _answer(await event_history(request.app[STORE], index, record, live, utc_now()))


@routes.get("/api/v1/events/{event_id}/rounds/{round}/bids")
@operator_only
async def event_round_bids(request: web.Request) -> web.Response:
    """Return a round's bid curve in merit order with its clearing price."""
    record = await _event(request)
    try:
        number = int(request.match_info["round"])
    except ValueError:
        return json_error(400, "invalid_request", "round must be a number")
    index = request.app[FLEET_INDEX]
    await index.ensure_fresh()
    curve = await round_bids(request.app[STORE], index, record, number)
    if curve is None:
        return json_error(404, "not_found", "no such round")
    return _answer(curve)


@routes.get("/api/v1/events/{event_id}/homes")
@operator_only
async def event_home_list(request: web.Request) -> web.Response:
    """Return an event's homes, most committed first: awarded, committed and delivered kW."""
    record = await _event(request)
    page = _query(request, PageQuery)
    index = request.app[FLEET_INDEX]
    await index.ensure_fresh()
    settlement = f"/api/v1/events/{record.event_id}/settlement"
    answer = await event_homes(
        request.app[STORE],
        index,
        record,
        offset=page.offset,
        limit=page.limit,
        settlement_url=settlement,
    )
    return _answer(answer)


async def _start(app: web.Application) -> None:
    index = FleetIndex(app[STORE], app[REGISTRY].is_connected)
    app[FLEET_INDEX] = index
    recorder = HistoryRecorder(app[STORE], app[MANAGER], app[REGISTRY], index, app[SETTINGS])
    app[RECORDER] = recorder
    recorder.start()


async def _stop(app: web.Application) -> None:
    if RECORDER in app:
        await app[RECORDER].stop()


def setup(app: web.Application, settings: HistorySettings | None = None) -> None:
    """Add the routes; run the recorder from start-up (after the store) to shutdown."""
    app[SETTINGS] = settings or HistorySettings()
    app.add_routes(routes)
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)
