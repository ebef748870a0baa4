"""The operator REST API and the enrolment endpoint (aiohttp handlers, auth, errors).

Operator routes need ``Authorization: Bearer <operator token>``. Every request body is validated
with a strict pydantic model (``aggregator.api_models``); bad input gets HTTP 400 with
``{"error": "invalid_request", "message"}``. Answers are built from the response models there.
A database that cannot be reached is HTTP 503 ``store_unavailable`` with ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from aggregator.api_models import (
    AwardView,
    CancelBody,
    CodeIssued,
    EnrollBody,
    Enrolled,
    EventBody,
    EventDetail,
    EventList,
    EventSummary,
    Health,
    HomeBody,
    HomeCreated,
    HomeView,
    RoundView,
    StoreProblemView,
    VenShareView,
    kw,
)
from aggregator.app_keys import MANAGER, REGISTRY, SERVER_INFO, STORE
from aggregator.auth import bearer_token
from aggregator.metrics import EventFigures
from aggregator.negotiation import EventNotFoundError, InvalidTransitionError, StoreProblem
from aggregator.participants import NOTHING, outside_figures, running_outside
from aggregator.records import AwardRecord, EventRecord, HomeRecord, RoundRecord
from aggregator.store import EnrolmentRejected, StoreUnavailableError

__all__ = ["CancelBody", "EnrollBody", "EventBody", "HomeBody", "routes"]

_LOGGER = logging.getLogger(__name__)

MAX_LIST: Final = 500
RETRY_AFTER_OUTAGE_S: Final = 5
DATABASE_ERRORS: Final = (
    StoreUnavailableError,
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    ConnectionError,
    TimeoutError,
)
"""Errors that mean the database cannot be reached now (not that the request is wrong)."""
_ENROLMENT_STATUS: Final = {
    EnrolmentRejected.Reason.UNKNOWN: 404,
    EnrolmentRejected.Reason.USED: 409,
    EnrolmentRejected.Reason.EXPIRED: 410,
}

routes = web.RouteTableDef()


def json_error(status: int, error: str, message: str) -> web.Response:
    """Return a JSON error response."""
    return web.json_response({"error": error, "message": message}, status=status)


async def parse_body[ModelT: BaseModel](request: web.Request, model: type[ModelT]) -> ModelT:
    """Validate a JSON body against ``model``; raise HTTP 400 with the reasons otherwise."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as err:
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in err.errors(include_url=False)
        )
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "invalid_request", "message": reasons}),
            content_type="application/json",
        ) from err


def answer(model: BaseModel, status: int = 200) -> web.Response:
    """Return ``model`` as the JSON answer."""
    return web.json_response(model.model_dump(mode="json"), status=status)


@web.middleware
async def database_unavailable(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answer 503 with a clear body when the database cannot be reached (outermost)."""
    try:
        response: web.StreamResponse = await handler(request)
    except DATABASE_ERRORS as err:
        _LOGGER.warning("Database unavailable (%s): %s", request.path, type(err).__name__)
        return _unavailable("the database is unavailable; try again in a few seconds")
    return response


def _unavailable(message: str) -> web.Response:
    refusal = json_error(503, "store_unavailable", message)
    refusal.headers["Retry-After"] = str(RETRY_AFTER_OUTAGE_S)
    return refusal


@web.middleware
async def operator_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """Require an operator token on operator routes (marked with ``operator=True``)."""
    if getattr(handler, "operator_only", False):
        token = bearer_token(request.headers.get("Authorization"))
        if token is None or not await request.app[STORE].operator_token_is_valid(token):
            return json_error(401, "unauthorized", "a valid operator token is required")
    response: web.StreamResponse = await handler(request)
    return response


def operator_only[HandlerT](handler: HandlerT) -> HandlerT:
    """Mark a handler as needing an operator token."""
    handler.operator_only = True  # type: ignore[attr-defined]
    return handler


# --- enrolment --------------------------------------------------------------------------------


@routes.post("/api/v1/enroll")
async def enroll_home(request: web.Request) -> web.Response:
    """Exchange a one-time enrolment code for a home token (shown once, stored hashed)."""
    body = await parse_body(request, EnrollBody)
    try:
        enrolled = await request.app[STORE].enroll(body.code)
    except EnrolmentRejected as err:
        messages = {
            EnrolmentRejected.Reason.UNKNOWN: "unknown enrolment code",
            EnrolmentRejected.Reason.USED: "this enrolment code was already used",
            EnrolmentRejected.Reason.EXPIRED: "this enrolment code has expired",
        }
        return json_error(_ENROLMENT_STATUS[err.reason], err.reason.value, messages[err.reason])
    # Whoever held the old token is cut off: its sessions close, it cannot reconnect.
    await request.app[REGISTRY].close_home(enrolled.home_id, "the home enrolled again")
    return answer(
        Enrolled(
            home_id=enrolled.home_id,
            token=enrolled.token,
            aggregator_id=request.app[SERVER_INFO].aggregator_id,
            name=enrolled.name,
        )
    )


# --- homes ------------------------------------------------------------------------------------


def home_view(home: HomeRecord, connected: bool) -> dict[str, Any]:
    """Return the operator's JSON view of a home (no secrets)."""
    return HomeView.of(home, connected=connected).model_dump(mode="json")


@routes.post("/api/v1/homes")
@operator_only
async def add_home(request: web.Request) -> web.Response:
    """Add a home; the response carries its one-time enrolment code."""
    body = await parse_body(request, HomeBody)
    home, code = await request.app[STORE].add_home(body.name)
    view = HomeView.of(home, connected=False)
    return answer(HomeCreated(**view.model_dump(), code=code), status=201)


@routes.post("/api/v1/homes/{home_id}/code")
@operator_only
async def new_home_code(request: web.Request) -> web.Response:
    """Issue a new one-time code for a home, voiding its older ones.

    Enrolling with it revokes the old token and closes the home's sessions.
    """
    home_id = request.match_info["home_id"]
    code = await request.app[STORE].new_enrolment_code(home_id)
    if code is None:
        return json_error(404, "not_found", f"no home {home_id}")
    return answer(CodeIssued(home_id=home_id, code=code), status=201)


# --- events -----------------------------------------------------------------------------------


def round_view(record: RoundRecord, offered: int) -> dict[str, Any]:
    """Return the JSON view of one negotiation round (``offered``: how many homes were)."""
    return RoundView.of(record, offered).model_dump(mode="json")


def award_view(award: AwardRecord) -> dict[str, Any]:
    """Return the JSON view of one award."""
    return AwardView.of(award).model_dump(mode="json")


def problem_view(problem: StoreProblem | None) -> dict[str, Any] | None:
    """Return the JSON view of why an event's steps are not being stored (None: they are)."""
    return None if problem is None else StoreProblemView.of(problem).model_dump(mode="json")


def store_unavailable(err: StoreUnavailableError) -> web.Response:
    """Answer a request whose change could not be stored (nothing changed; retry may work)."""
    return _unavailable(f"nothing was changed: the database refused the write ({err})")


def event_summary(record: EventRecord) -> dict[str, Any]:
    """Return the short JSON view of an event (lists)."""
    return EventSummary(**EventSummary.fields_of(record)).model_dump(mode="json")


async def event_detail(app: web.Application, event_id: str) -> dict[str, Any] | None:
    """Return the full JSON view of an event, with live figures while it runs."""
    detail = await event_detail_model(app, event_id)
    return None if detail is None else detail.model_dump(mode="json")


async def event_detail_model(app: web.Application, event_id: str) -> EventDetail | None:
    """Return the full view of an event, with live figures while it runs."""
    manager = app[MANAGER]
    store = app[STORE]
    live = manager.live(event_id)
    problem = manager.problem(event_id)
    running: list[EventFigures] = []
    if live is not None:
        record = live.record
        rounds = [live.rounds[number] for number in sorted(live.rounds)]
        offered = {number: len(homes) for number, homes in live.offered.items()}
        awards = list(live.awards.values())
        delivered = manager.delivered_kw(live)
    else:
        stored = await store.get_event(event_id)
        if stored is None:
            return None
        record = stored
        rounds = await store.rounds_for(event_id)
        offered = await store.offered_counts(event_id)
        awards = await store.awards_for(event_id)
        # Coordinated by another process of a cluster: its live delivery as last published.
        running = [item for item in manager.figures() if item.event_id == event_id]
        delivered = running[0].delivered_kw if running else 0.0
    # Third-party OpenADR VENs: a running event's figures come from memory (as of their last
    # update) when the database cannot be read, so the live view outlives an outage.
    try:
        outside = await outside_figures(app, event_id)
    except DATABASE_ERRORS:
        if live is None:
            raise
        outside = running_outside(app).get(event_id, NOTHING)
    committed = sum(award.committed_kw for award in awards) + outside.committed_kw
    if live is not None or running:
        delivered += outside.delivered_kw
    return EventDetail(
        **EventSummary.fields_of(record),
        committed_kw=kw(committed),
        delivered_kw=kw(delivered),
        shortfall_kw=kw(max(0.0, record.target_kw - committed)),
        rounds=[RoundView.of(item, offered.get(item.round, 0)) for item in rounds],
        awards=[AwardView.of(award) for award in awards],
        vens=[VenShareView.of(share) for share in outside.shares],
        store_error=None if problem is None else StoreProblemView.of(problem),
    )


@routes.post("/api/v1/events")
@operator_only
async def create_event(request: web.Request) -> web.Response:
    """Create an event; negotiation starts at once."""
    body = await parse_body(request, EventBody)
    try:
        record = await request.app[MANAGER].create_event(body.to_request())
    except StoreUnavailableError as err:
        return store_unavailable(err)
    detail = await event_detail(request.app, record.event_id)
    return web.json_response(detail, status=201)


@routes.get("/api/v1/events")
@operator_only
async def list_events(request: web.Request) -> web.Response:
    """List recent events, newest first (``?limit=``, at most 500)."""
    try:
        limit = min(MAX_LIST, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        return json_error(400, "invalid_request", "limit must be an integer")
    events = await request.app[STORE].list_events(limit)
    return answer(
        EventList(events=[EventSummary(**EventSummary.fields_of(record)) for record in events])
    )


@routes.get("/api/v1/events/{event_id}")
@operator_only
async def show_event(request: web.Request) -> web.Response:
    """Show an event: status, target, committed and delivered kW, price, rounds, awards."""
    detail = await event_detail(request.app, request.match_info["event_id"])
    if detail is None:
        return json_error(404, "not_found", "no such event")
    return web.json_response(detail)


@routes.post("/api/v1/events/{event_id}/cancel")
@operator_only
async def cancel_event(request: web.Request) -> web.Response:
    """Cancel an event; homes restore their loads, staggered."""
    body = await parse_body(request, CancelBody)
    event_id = request.match_info["event_id"]
    try:
        await request.app[MANAGER].cancel_event(event_id, body.reason)
    except EventNotFoundError:
        return json_error(404, "not_found", "no such event")
    except InvalidTransitionError as err:
        return json_error(409, "invalid_state", str(err))
    except StoreUnavailableError as err:
        return store_unavailable(err)
    detail = await event_detail(request.app, event_id)
    return web.json_response(detail)


# --- health -----------------------------------------------------------------------------------


@routes.get("/healthz")
async def health(request: web.Request) -> web.Response:
    """Report liveness and whether the store answers."""
    try:
        await request.app[STORE].ping()
    except Exception as err:
        unhealthy = Health(status="unhealthy", store=type(err).__name__)
        return web.json_response(unhealthy.model_dump(exclude_none=True), status=503)
    healthy = Health(status="ok", homes_connected=len(request.app[REGISTRY]))
    return web.json_response(healthy.model_dump(exclude_none=True))
