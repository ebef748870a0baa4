"""The operator REST API and the enrolment endpoint (aiohttp handlers and their request models).

Operator routes need ``Authorization: Bearer <operator token>``. Every request body is validated
with a pydantic model; bad input gets HTTP 400 with ``{"error": "invalid_request", "message"}``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any, Final

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from aggregator.app_keys import MANAGER, REGISTRY, SERVER_INFO, STORE
from aggregator.auth import bearer_token
from aggregator.negotiation import (
    EventNotFoundError,
    EventRequest,
    InvalidTransitionError,
    StoreProblem,
)
from aggregator.records import AwardRecord, EventRecord, HomeRecord, RoundRecord
from aggregator.settlement.baselines import BaselineMethod
from aggregator.store import EnrolmentRejected, StoreUnavailableError
from jeisson.common.protocol import EventKind, utc_now

MAX_EVENT_DURATION: Final = timedelta(hours=24)
MAX_LIST: Final = 500
KW_DIGITS: Final = 3
"""kW figures in answers are rounded to watts (sums of floats carry binary noise otherwise)."""
_ENROLMENT_STATUS: Final = {
    EnrolmentRejected.Reason.UNKNOWN: 404,
    EnrolmentRejected.Reason.USED: 409,
    EnrolmentRejected.Reason.EXPIRED: 410,
}

routes = web.RouteTableDef()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnrollBody(_Body):
    """``POST /api/v1/enroll``."""

    code: str = Field(min_length=4, max_length=64)


class HomeBody(_Body):
    """``POST /api/v1/homes``."""

    name: str = Field(min_length=1, max_length=100)


class EventBody(_Body):
    """``POST /api/v1/events``: what the operator asks for."""

    name: str = Field(default="DR event", min_length=1, max_length=200)
    kind: EventKind = EventKind.MARKET
    target_kw: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
    price_cap: Annotated[float, Field(ge=0, le=1_000, allow_inf_nan=False)]
    """Market: the highest price per kWh accepted. Direct: the flat incentive per kWh."""
    start: AwareDatetime
    end: AwareDatetime
    bid_window_s: Annotated[float, Field(ge=1, le=3600)] = 30.0
    restore_stagger_s: Annotated[float, Field(ge=0, le=3600)] = 300.0
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    baseline: BaselineMethod = BaselineMethod.RESIDENTIAL
    """How settlement computes each home's baseline."""

    @model_validator(mode="after")
    def _check_window(self) -> EventBody:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start > MAX_EVENT_DURATION:
            raise ValueError("an event lasts at most 24 hours")
        if self.kind is EventKind.MARKET:
            if self.target_kw <= 0:
                raise ValueError("a market event needs target_kw > 0")
            earliest = utc_now() + timedelta(seconds=self.bid_window_s)
            if self.start < earliest:
                raise ValueError("start must leave time for the bid window (now + bid_window_s)")
        elif self.end <= utc_now():
            raise ValueError("end must be in the future")
        return self

    def to_request(self) -> EventRequest:
        """Return the negotiation's view of this request."""
        return EventRequest(
            name=self.name,
            kind=self.kind,
            target_kw=self.target_kw,
            price_cap=self.price_cap,
            start=self.start,
            end=self.end,
            bid_window_s=self.bid_window_s,
            restore_stagger_s=self.restore_stagger_s,
            currency=self.currency,
            baseline_method=self.baseline.value,
        )


class CancelBody(_Body):
    """``POST /api/v1/events/{id}/cancel`` (the body is optional)."""

    reason: str = Field(default="", max_length=200)


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
    return web.json_response(
        {
            "home_id": enrolled.home_id,
            "token": enrolled.token,
            "aggregator_id": request.app[SERVER_INFO].aggregator_id,
        }
    )


# --- homes ------------------------------------------------------------------------------------


def home_view(home: HomeRecord, connected: bool) -> dict[str, Any]:
    """Return the operator's JSON view of a home (no secrets)."""
    return {
        "home_id": home.home_id,
        "name": home.name,
        "created_at": home.created_at.isoformat(),
        "enrolled": home.enrolled_at is not None,
        "connected": connected,
        "participating": home.participating,
        "flexible_kw": round(home.flexible_kw, KW_DIGITS),
        "loads": [load.model_dump(mode="json") for load in home.loads],
        "last_seen_at": home.last_seen_at.isoformat() if home.last_seen_at else None,
        "software_version": home.software_version,
    }


@routes.post("/api/v1/homes")
@operator_only
async def add_home(request: web.Request) -> web.Response:
    """Add a home; the response carries its one-time enrolment code."""
    body = await parse_body(request, HomeBody)
    home, code = await request.app[STORE].add_home(body.name)
    view = home_view(home, connected=False)
    return web.json_response({**view, "code": code}, status=201)


@routes.post("/api/v1/homes/{home_id}/code")
@operator_only
async def new_home_code(request: web.Request) -> web.Response:
    """Issue a new one-time code for a home (re-enrolment revokes its old token)."""
    home_id = request.match_info["home_id"]
    code = await request.app[STORE].new_enrolment_code(home_id)
    if code is None:
        return json_error(404, "not_found", f"no home {home_id}")
    return web.json_response({"home_id": home_id, "code": code}, status=201)


# --- events -----------------------------------------------------------------------------------


def round_view(record: RoundRecord, offered: int) -> dict[str, Any]:
    """Return the JSON view of one negotiation round (``offered``: how many homes were)."""
    return {
        "round": record.round,
        "status": record.status.value,
        "target_kw": round(record.target_kw, KW_DIGITS),
        "opened_at": record.opened_at.isoformat(),
        "deadline": record.deadline.isoformat(),
        "offered_homes": offered,
        "bids": record.bids,
        "steps": record.steps,
        "offered_kw": round(record.offered_kw, KW_DIGITS),
        "accepted_kw": round(record.accepted_kw, KW_DIGITS),
        "clearing_price": record.clearing_price,
        "shortfall_kw": round(record.shortfall_kw, KW_DIGITS),
    }


def award_view(award: AwardRecord) -> dict[str, Any]:
    """Return the JSON view of one award."""
    return {
        "award_id": award.award_id,
        "home_id": award.home_id,
        "round": award.round,
        "status": award.status.value,
        "loads": list(award.loads),
        "kw": round(award.kw, KW_DIGITS),
        "committed_kw": round(award.committed_kw, KW_DIGITS),
        "price": award.price,
        "opted_out_loads": list(award.opted_out_loads),
        "sent_at": award.sent_at.isoformat(),
        "acked_at": award.acked_at.isoformat() if award.acked_at else None,
    }


def problem_view(problem: StoreProblem | None) -> dict[str, Any] | None:
    """Return the JSON view of why an event's steps are not being stored (None: they are)."""
    if problem is None:
        return None
    return {
        "since": problem.since.isoformat(),
        "attempts": problem.attempts,
        "step": problem.step,
        "error": problem.error,
        "retrying": problem.retry_at is not None,
        "retry_at": problem.retry_at.isoformat() if problem.retry_at else None,
    }


def store_unavailable(err: StoreUnavailableError) -> web.Response:
    """Answer a request whose change could not be stored (nothing changed; retry may work)."""
    return json_error(
        503, "store_unavailable", f"nothing was changed: the database refused the write ({err})"
    )


def event_summary(record: EventRecord) -> dict[str, Any]:
    """Return the short JSON view of an event (lists)."""
    return {
        "id": record.event_id,
        "name": record.name,
        "kind": record.kind.value,
        "status": record.status.value,
        "target_kw": record.target_kw,
        "price_cap": record.price_cap,
        "currency": record.currency,
        "start": record.start.isoformat(),
        "end": record.end.isoformat(),
        "bid_window_s": record.bid_window_s,
        "restore_stagger_s": record.restore_stagger_s,
        "clearing_price": record.clearing_price,
        "created_at": record.created_at.isoformat(),
        "cancel_reason": record.cancel_reason,
        "baseline_method": record.baseline_method,
    }


async def event_detail(app: web.Application, event_id: str) -> dict[str, Any] | None:
    """Return the full JSON view of an event, with live figures while it runs."""
    manager = app[MANAGER]
    store = app[STORE]
    live = manager.live(event_id)
    problem = manager.problem(event_id)
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
        delivered = 0.0
    committed = sum(award.committed_kw for award in awards)
    return {
        **event_summary(record),
        "committed_kw": round(committed, KW_DIGITS),
        "delivered_kw": round(delivered, KW_DIGITS),
        "shortfall_kw": round(max(0.0, record.target_kw - committed), KW_DIGITS),
        "rounds": [round_view(item, offered.get(item.round, 0)) for item in rounds],
        "awards": [award_view(award) for award in awards],
        "store_error": problem_view(problem),
    }


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
    return web.json_response({"events": [event_summary(record) for record in events]})


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
        return web.json_response({"status": "unhealthy", "store": type(err).__name__}, status=503)
    return web.json_response({"status": "ok", "homes_connected": len(request.app[REGISTRY])})
