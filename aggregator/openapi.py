"""The OpenAPI 3.1 document of the REST API, built from its request and response models.

Every model's schema, and every schema nested in one (enums, loads), is a component, so each
``$ref`` resolves; ``tests/aggregator/test_openapi.py`` validates the document with
openapi-spec-validator and runs schemathesis against the real server.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel

from aggregator import __version__, lifecycle_api
from aggregator.api_models import (
    REQUEST_MODELS,
    RESPONSE_MODELS,
    CancelBody,
    CodeIssued,
    EnrollBody,
    Enrolled,
    EventBody,
    EventDetail,
    EventList,
    Health,
    HomeBody,
    HomeCreated,
)
from aggregator.history.models import (
    MAX_PAGE,
    EventHistory,
    EventHomes,
    FleetHistory,
    FleetNow,
    HomeSort,
    HomesPage,
    RoundBids,
)
from aggregator.openadr import api as openadr_api
from aggregator.settlement.api import ProgramBody
from aggregator.settlement.baselines import BaselineMethod

_FORMAT: Final = {
    "name": "format",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["json", "csv"]},
}
_BEARER: Final[list[dict[str, list[str]]]] = [{"operatorToken": []}]
_ERROR: Final = {
    "description": "Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorAnswer"}}},
}
_JSON: Final = "application/json"


def _body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }


_ANSWERS: Final[tuple[type[BaseModel], ...]] = (
    *RESPONSE_MODELS,
    *lifecycle_api.RESPONSE_MODELS,
    HomesPage,
    FleetNow,
    FleetHistory,
    EventHistory,
    RoundBids,
    EventHomes,
)
"""Answers described by a model (the others are JSON objects described in words, or text)."""


def _ok(
    description: str, model: type[BaseModel] | None = None, media: str = _JSON
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    if model is not None:
        schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    elif media != _JSON:
        schema = {"type": "string"}
    return {"description": description, "content": {media: {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_PAGE: Final = [
    _query("offset", {"type": "integer", "minimum": 0, "default": 0}, "rows to skip"),
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
        "rows in the page",
    ),
]
_HOMES_QUERY: Final = [
    _query("q", {"type": "string", "maxLength": 100}, "part of the name or home id"),
    _query("online", {"type": "boolean"}, "only homes connected (true) or not (false)"),
    _query("participating", {"type": "boolean"}, "only homes taking part (true) or not"),
    _query("min_reliability", {"type": "number", "minimum": 0, "maximum": 1}, "at least"),
    _query("max_reliability", {"type": "number", "minimum": 0, "maximum": 1}, "at most"),
    _query(
        "sort",
        {"type": "string", "enum": [item.value for item in HomeSort], "default": "name"},
        "order; a leading - is descending",
    ),
    *_PAGE,
]
_RANGE: Final = [
    _query("since", {"type": "string", "format": "date-time"}, "default: until - 24 h"),
    _query("until", {"type": "string", "format": "date-time"}, "default: now"),
]


def _operation(
    summary: str,
    ok: tuple[str, str],
    *,
    body: dict[str, Any] | None = None,
    operator: bool = True,
    errors: tuple[str, ...] = ("400", "401"),
    answer: type[BaseModel] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    media: str = _JSON,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {ok[0]: _ok(ok[1], answer, media), **dict.fromkeys(errors, _ERROR)},
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    if operator:
        operation["security"] = _BEARER
    return operation


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI document served at ``/api/v1/openapi.json``."""
    event_id = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}
    home_id = {"name": "home_id", "in": "path", "required": True, "schema": {"type": "string"}}
    schemas: dict[str, Any] = {}
    requests: tuple[type[BaseModel], ...] = (
        *REQUEST_MODELS,
        *lifecycle_api.REQUEST_MODELS,
        ProgramBody,
    )
    for model in requests:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for model in _ANSWERS:
        schema = model.model_json_schema(
            ref_template="#/components/schemas/{model}", mode="serialization"
        )
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas.update(openadr_api.openapi_schemas())
    for schema in list(schemas.values()):
        # Nested models (enums, items) become components of their own, so every $ref resolves.
        schemas.update(schema.pop("$defs", {}))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Jeisson aggregator", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"operatorToken": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/api/v1/enroll": {
                "post": _operation(
                    "Exchange a one-time enrolment code for a home token",
                    ("200", "home_id, token (shown once), aggregator_id"),
                    body=_body(EnrollBody),
                    operator=False,
                    answer=Enrolled,
                    errors=("400", "404", "409", "410"),
                )
            },
            "/api/v1/homes": {
                "post": _operation(
                    "Add a home; returns its one-time enrolment code",
                    ("201", "the home and its code"),
                    body=_body(HomeBody),
                    answer=HomeCreated,
                ),
                "get": _operation(
                    "List homes a page at a time: search, filters, order",
                    ("200", "a page of homes and how many match"),
                    answer=HomesPage,
                    parameters=_HOMES_QUERY,
                ),
            },
            "/api/v1/fleet": {
                "get": _operation(
                    "The fleet now: homes, online, taking part, flexible kW",
                    ("200", "the fleet"),
                    answer=FleetNow,
                    errors=("401",),
                )
            },
            "/api/v1/fleet/history": {
                "get": _operation(
                    "The fleet over time (a sample a minute) and events started per day",
                    ("200", "samples and events per day"),
                    answer=FleetHistory,
                    parameters=_RANGE,
                )
            },
            "/api/v1/events/{event_id}/history": {
                "parameters": [event_id],
                "get": _operation(
                    "An event's target/committed/delivered kW over time and its activity",
                    ("200", "chart points and activity"),
                    answer=EventHistory,
                    errors=("401", "404"),
                ),
            },
            "/api/v1/events/{event_id}/rounds/{round}/bids": {
                "parameters": [
                    event_id,
                    {
                        "name": "round",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    },
                ],
                "get": _operation(
                    "A round's bid curve in merit order, with the steps accepted",
                    ("200", "the bid curve"),
                    answer=RoundBids,
                    errors=("400", "401", "404"),
                ),
            },
            "/api/v1/events/{event_id}/homes": {
                "parameters": [event_id],
                "get": _operation(
                    "An event's homes, most committed first: awarded, committed, delivered kW",
                    ("200", "a page of the event's homes"),
                    answer=EventHomes,
                    errors=("400", "401", "404"),
                    parameters=_PAGE,
                ),
            },
            "/api/v1/homes/{home_id}/code": {
                "parameters": [home_id],
                "post": _operation(
                    "Issue a new enrolment code (voids older codes; enrolling revokes the old "
                    "token and closes the home's sessions)",
                    ("201", "the new code"),
                    errors=("401", "404"),
                    answer=CodeIssued,
                ),
            },
            "/api/v1/events": {
                "post": _operation(
                    "Create an event (negotiation starts at once)",
                    ("201", "the event"),
                    body=_body(EventBody),
                    errors=("400", "401", "503"),
                    answer=EventDetail,
                ),
                "get": _operation("List recent events", ("200", "events"), answer=EventList),
            },
            "/api/v1/events/{event_id}": {
                "parameters": [event_id],
                "get": _operation(
                    "Event status, committed/delivered kW, rounds and awards",
                    ("200", "the event"),
                    errors=("401", "404"),
                    answer=EventDetail,
                ),
            },
            "/api/v1/events/{event_id}/cancel": {
                "parameters": [event_id],
                "post": _operation(
                    "Cancel an event",
                    ("200", "the cancelled event"),
                    body=_body(CancelBody, required=False),
                    errors=("400", "401", "404", "409", "503"),
                    answer=EventDetail,
                ),
            },
            "/api/v1/events/{event_id}/settlement": {
                "parameters": [
                    event_id,
                    _FORMAT,
                    {
                        "name": "version",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ],
                "get": _operation(
                    "The event's stored statement (latest version, or ?version=N); 409 until "
                    "settled (settlement runs after the late-telemetry window)",
                    ("200", "the statement (JSON, or CSV with format=csv)"),
                    errors=("400", "401", "404", "409"),
                ),
                "post": _operation(
                    "Settle a finished event now (a new version only when a payment changed)",
                    ("201", "the new statement version (200: unchanged, the current one)"),
                    errors=("401", "404", "409"),
                ),
            },
            "/api/v1/events/{event_id}/settlement/versions": {
                "parameters": [event_id],
                "get": _operation(
                    "Every version of the event's statement (headers: reason, totals)",
                    ("200", "the versions, oldest first"),
                    errors=("401",),
                ),
            },
            "/api/v1/events/{event_id}/settlement/preview": {
                "parameters": [
                    event_id,
                    _FORMAT,
                    {
                        "name": "baseline",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": [m.value for m in BaselineMethod]},
                    },
                ],
                "get": _operation(
                    "Compute the settlement without storing it (e.g. with another baseline)",
                    ("200", "the computed settlement (JSON, or CSV with format=csv)"),
                    errors=("400", "401", "404", "409"),
                ),
            },
            "/api/v1/homes/{home_id}/ledger": {
                "parameters": [
                    home_id,
                    _FORMAT,
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "format": "date-time"},
                    },
                ],
                "get": _operation(
                    "A home's bookings (statements, corrections) and totals per local month",
                    ("200", "the ledger (JSON, or CSV with format=csv)"),
                    errors=("400", "401", "404"),
                ),
            },
            "/api/v1/reliability": {
                "get": _operation(
                    "Every home's reliability score (delivered / committed, Beta prior)",
                    ("200", "scores"),
                    errors=("401",),
                ),
            },
            "/api/v1/settlement/program": {
                "get": _operation(
                    "The settlement program: time zone, holidays, late window, estimate ratio",
                    ("200", "the settings"),
                    errors=("401",),
                ),
                "put": _operation(
                    "Change the settlement program settings",
                    ("200", "the new settings"),
                    body=_body(ProgramBody),
                ),
            },
            "/api/v1/stream": {
                "get": _operation(
                    "Live snapshots for the dashboard (Server-Sent Events: history, snapshot)",
                    ("200", "Server-Sent Events"),
                    errors=("401",),
                    media="text/event-stream",
                )
            },
            **openadr_api.openapi_paths(_operation, _body),
            **lifecycle_api.openapi_paths(_operation, _body),
            "/metrics": {
                "get": _operation(
                    "Prometheus metrics",
                    ("200", "text exposition format (per-event kW with an operator token)"),
                    operator=False,
                    errors=("401",),
                    media="text/plain",
                )
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness and store check",
                    "responses": {
                        "200": _ok("healthy", Health),
                        "503": _ok("the store does not answer", Health),
                    },
                }
            },
        },
    }
