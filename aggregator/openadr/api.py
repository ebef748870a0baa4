"""The operator's REST API for OpenADR: VTN clients (credentials) and the utility VTNs followed.

Operator-authenticated like the rest of ``/api/v1`` (``aggregator.api.operator_only``). A new
client's secret is in the creation response only; a VTN's client secret is never returned.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from aggregator.api import json_error, operator_only, parse_body
from aggregator.auth import bearer_token, secrets_match
from aggregator.openadr.mapping import ProgramMapping
from aggregator.openadr.problems import ProblemError, parse_json_object, problem
from aggregator.openadr.ven import VenService
from aggregator.openadr.ven_store import VenStore, VtnConfig
from aggregator.openadr.ven_webhook import (
    NOTIFICATIONS_PATH,
    READ_AGAIN,
    NotificationError,
    callback_url,
    parse_notification,
)
from aggregator.openadr.vtn_auth import VTN_STORE
from aggregator.openadr.vtn_store import ClientRole, VtnClient
from aggregator.records import new_id
from jeisson.common.protocol import utc_now

VEN_STORE = web.AppKey("openadr_ven_store", VenStore)
VEN_SERVICE = web.AppKey("openadr_ven_service", VenService)
MAX_NOTIFICATION_BYTES: Final = 256 * 1024
MAX_ECHO_CHARS: Final = 256
MAX_VEN_CAPACITY_KW: Final = 10_000.0
"""A third-party VEN may be a whole site; more than 10 MW is a typo."""

routes = web.RouteTableDef()


class ClientBody(BaseModel):
    """``POST /api/v1/openadr/clients``: a business-logic or VEN client of Jeisson's VTN."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    role: ClientRole = ClientRole.VEN
    capacity_kw: float | None = Field(default=None, gt=0, le=MAX_VEN_CAPACITY_KW)
    """A VEN taking part in Jeisson's own events: the kW it sheds when dispatched."""

    @model_validator(mode="after")
    def _capacity_for_vens(self) -> ClientBody:
        if self.capacity_kw is not None and self.role is not ClientRole.VEN:
            raise ValueError("only a VEN client has a capacity")
        return self


def client_view(client: VtnClient) -> dict[str, Any]:
    """Return the JSON view of a VTN client (no secret)."""
    return {
        "client_id": client.client_id,
        "name": client.name,
        "role": client.role.value,
        "capacity_kw": client.capacity_kw,
        "created_at": client.created_at.isoformat(),
        "revoked": client.revoked_at is not None,
    }


@routes.post("/api/v1/openadr/clients")
@operator_only
async def add_client(request: web.Request) -> web.Response:
    """Create a VTN client; the response carries its secret, shown this once."""
    body = await parse_body(request, ClientBody)
    client, secret = await request.app[VTN_STORE].add_client(body.name, body.role, body.capacity_kw)
    return web.json_response({**client_view(client), "client_secret": secret}, status=201)


@routes.get("/api/v1/openadr/clients")
@operator_only
async def list_clients(request: web.Request) -> web.Response:
    """List the VTN's clients."""
    clients = await request.app[VTN_STORE].list_clients()
    return web.json_response({"clients": [client_view(client) for client in clients]})


@routes.delete("/api/v1/openadr/clients/{client_id}")
@operator_only
async def revoke_client(request: web.Request) -> web.Response:
    """Revoke a VTN client and every token it holds."""
    client_id = request.match_info["client_id"]
    if not await request.app[VTN_STORE].revoke_client(client_id):
        return json_error(404, "not_found", f"no live client {client_id}")
    return web.json_response({"client_id": client_id, "revoked": True})


class VtnBody(BaseModel):
    """``POST /api/v1/openadr/vtns``: a utility VTN for Jeisson to follow as a VEN."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    base_url: str = Field(pattern=r"^https?://", max_length=2000)
    """The VTN's base URL, e.g. ``https://vtn.example/openadr3/3.1.0``."""
    client_id: str | None = Field(default=None, min_length=1, max_length=256)
    client_secret: SecretStr | None = None
    """Stored encrypted; never returned or logged."""
    token_url: str | None = Field(default=None, pattern=r"^https?://", max_length=2000)
    """Where tokens come from; found through the VTN's ``auth/server`` when not given."""
    ven_name: str = Field(default="jeisson", min_length=1, max_length=128)
    programs: list[ProgramMapping] = Field(min_length=1, max_length=50)
    poll_interval_s: float = Field(default=30.0, ge=0.2, le=3600)
    """How often the VTN is read in full (with a webhook subscription: ten times less often)."""
    public_url: str | None = Field(default=None, pattern=r"^https?://", max_length=1000)
    """This aggregator's base URL as the VTN reaches it, for webhook notifications (default:
    ``JEISSON_PUBLIC_URL``; neither: polling only)."""
    enabled: bool = True


def vtn_view(config: VtnConfig) -> dict[str, Any]:
    """Return the JSON view of a followed VTN (never its secret)."""
    return {
        "vtn_id": config.vtn_id,
        "name": config.name,
        "base_url": config.base_url,
        "token_url": config.token_url,
        "client_id": config.client_id,
        "has_secret": config.secret_box is not None,
        "ven_name": config.ven_name,
        "programs": [item.model_dump() for item in config.programs],
        "poll_interval_s": config.poll_interval_s,
        "enabled": config.enabled,
        "remote_ven_id": config.remote_ven_id,
        "last_poll_at": config.last_poll_at.isoformat() if config.last_poll_at else None,
        "last_error": config.last_error,
        "callback_url": config.callback_url,
        "subscription_id": config.remote_subscription_id,
    }


@routes.post("/api/v1/openadr/vtns")
@operator_only
async def add_vtn(request: web.Request) -> web.Response:
    """Follow a utility's VTN as a VEN."""
    body = await parse_body(request, VtnBody)
    service = request.app[VEN_SERVICE]
    sealed = service.box.seal(body.client_secret.get_secret_value()) if body.client_secret else None
    store = request.app[VEN_STORE]
    if any(item.name == body.name for item in await store.list_vtns()):
        return json_error(409, "conflict", f"a VTN named {body.name!r} is followed already")
    vtn_id = new_id("vtn")
    config = await store.add_vtn(
        VtnConfig(
            vtn_id=vtn_id,
            name=body.name,
            base_url=body.base_url.rstrip("/"),
            ven_name=body.ven_name,
            programs=tuple(body.programs),
            poll_interval_s=body.poll_interval_s,
            created_at=utc_now(),
            token_url=body.token_url,
            client_id=body.client_id,
            secret_box=sealed,
            enabled=body.enabled,
            callback_url=callback_url(body.public_url, vtn_id),
        )
    )
    service.follow(config)
    return web.json_response(vtn_view(config), status=201)


@routes.get("/api/v1/openadr/vtns")
@operator_only
async def list_vtns(request: web.Request) -> web.Response:
    """List the VTNs followed."""
    configs = await request.app[VEN_STORE].list_vtns()
    return web.json_response({"vtns": [vtn_view(config) for config in configs]})


@routes.get("/api/v1/openadr/vtns/{vtn_id}")
@operator_only
async def show_vtn(request: web.Request) -> web.Response:
    """Show a followed VTN: its events and what became of them, and the reports sent."""
    store = request.app[VEN_STORE]
    config = await store.get_vtn(request.match_info["vtn_id"])
    if config is None:
        return json_error(404, "not_found", "no such VTN")
    links = [
        {
            "event": link.remote_event_id,
            "program": link.remote_program_id,
            "status": link.status,
            "jeisson_event_id": link.jeisson_event_id,
            "note": link.note,
        }
        for link in await store.links(config.vtn_id)
    ]
    reports = await store.reports(config.vtn_id)
    return web.json_response({**vtn_view(config), "events": links, "reports": reports})


@routes.delete("/api/v1/openadr/vtns/{vtn_id}")
@operator_only
async def remove_vtn(request: web.Request) -> web.Response:
    """Stop following a VTN (Jeisson events already made run on)."""
    vtn_id = request.match_info["vtn_id"]
    await request.app[VEN_SERVICE].remove(vtn_id)
    if not await request.app[VEN_STORE].remove_vtn(vtn_id):
        return json_error(404, "not_found", "no such VTN")
    return web.json_response({"vtn_id": vtn_id, "removed": True})


async def _calling_vtn(request: web.Request) -> VtnConfig | None:
    """Return the followed VTN whose subscription token the request bears (None: no such)."""
    config = await request.app[VEN_STORE].get_vtn(request.match_info["vtn_id"])
    token = bearer_token(request.headers.get("Authorization"))
    if (
        config is None
        or token is None
        or config.callback_token_hash is None
        or not secrets_match(token, config.callback_token_hash)
    ):
        return None
    return config


@routes.post(NOTIFICATIONS_PATH)
async def vtn_notification(request: web.Request) -> web.Response:
    """Take a webhook notification from a followed VTN (its subscription's bearer token).

    A body that is not a valid OpenADR notification is refused (400) and not acted on, but
    since the VTN says something changed, the VEN reads it in full at once.
    """
    config = await _calling_vtn(request)
    if config is None:
        return problem(401, "a valid bearer token is required")
    if request.content_length is not None and request.content_length > MAX_NOTIFICATION_BYTES:
        return problem(413, f"a notification is at most {MAX_NOTIFICATION_BYTES} bytes")
    service = request.app[VEN_SERVICE]
    try:
        notification = parse_notification(parse_json_object(await request.read()))
    except (ProblemError, NotificationError) as err:
        service.notify(config.vtn_id, READ_AGAIN)
        detail = err.detail if isinstance(err, ProblemError) else str(err)
        return problem(400, f"not an OpenADR 3.1.0 notification ({detail}); reading the VTN")
    if not service.notify(config.vtn_id, notification):
        return problem(503, "not following this VTN now; the next poll catches up")
    return web.json_response({}, status=200)


@routes.get(NOTIFICATIONS_PATH + "/echo")
async def vtn_callback_echo(request: web.Request) -> web.Response:
    """Answer a VTN checking the callback while subscribing (the reference VTN's echo)."""
    if await _calling_vtn(request) is None:
        return problem(401, "a valid bearer token is required")
    return web.json_response({"echo": request.query.get("echo", "")[:MAX_ECHO_CHARS]})


def openapi_schemas() -> dict[str, Any]:
    """Return the request models of these routes as OpenAPI component schemas."""
    return {
        model.__name__: model.model_json_schema(ref_template="#/components/schemas/{model}")
        for model in (ClientBody, VtnBody)
    }


def openapi_paths(operation: Any, body: Any) -> dict[str, Any]:
    """Return these routes' OpenAPI paths, built with ``aggregator.openapi``'s helpers."""
    client_id = {"name": "client_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/api/v1/openadr/clients": {
            "post": operation(
                "Add a client of Jeisson's OpenADR VTN (business logic or VEN); the response "
                "carries its client_secret, shown once",
                ("201", "the client and its secret"),
                body=body(ClientBody),
            ),
            "get": operation("List the VTN's clients", ("200", "clients"), errors=("401",)),
        },
        "/api/v1/openadr/vtns": {
            "post": operation(
                "Follow a utility's VTN as a VEN (client_secret stored encrypted, never returned)",
                ("201", "the VTN"),
                body=body(VtnBody),
            ),
            "get": operation("List the VTNs followed", ("200", "vtns"), errors=("401",)),
        },
        "/api/v1/openadr/vtns/{vtn_id}": {
            "parameters": [{**client_id, "name": "vtn_id"}],
            "get": operation(
                "A followed VTN: its events, the Jeisson events made, reports sent",
                ("200", "the VTN"),
                errors=("401", "404"),
            ),
            "delete": operation("Stop following a VTN", ("200", "removed"), errors=("401", "404")),
        },
        "/api/v1/openadr/vtns/{vtn_id}/notifications": {
            "parameters": [{**client_id, "name": "vtn_id"}],
            "post": operation(
                "A followed VTN's webhook notification (an OpenADR 3.1.0 notification; bearer: "
                "the token Jeisson gave the VTN in its subscription, not an operator token)",
                ("200", "taken"),
                operator=False,
                errors=("400", "401", "413", "503"),
            ),
        },
        "/api/v1/openadr/vtns/{vtn_id}/notifications/echo": {
            "parameters": [{**client_id, "name": "vtn_id"}],
            "get": operation(
                "Answers ?echo=X with X: a VTN checking the callback while subscribing (the "
                "OpenADR reference VTN does); the subscription's bearer token",
                ("200", "the echo"),
                operator=False,
                errors=("401",),
            ),
        },
        "/api/v1/openadr/clients/{client_id}": {
            "parameters": [client_id],
            "delete": operation(
                "Revoke a VTN client and its tokens", ("200", "revoked"), errors=("401", "404")
            ),
        },
    }
