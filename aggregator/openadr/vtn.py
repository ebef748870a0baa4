"""Jeisson's VTN: the OpenADR 3.1.0 HTTP API for business-logic clients and third-party VENs.

A minimal, correct subset: programs, events, reports, subscriptions (webhooks) and VENs, with
search filters and pagination, each request body checked against the official schema and each
client limited to what its role may do (business logic: programs and events, reading everything;
VEN: reading programs and events — those without targets and those targeting one of its
venNames — writing its own reports, subscriptions and VEN object). The program Jeisson
publishes its own events in (``publisher.py``) and those events are Jeisson's alone to change.
MQTT notifiers and resources are not offered (see docs/openadr.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from aggregator.openadr import BASE_PATH
from aggregator.openadr.notifier import Notifier
from aggregator.openadr.problems import ProblemError, parse_json_object, problem
from aggregator.openadr.schema import schema_errors
from aggregator.openadr.vtn_auth import VTN_STORE, auth_server, authenticated, fetch_token
from aggregator.openadr.vtn_store import PUBLISHER, ClientRole, StoredObject, VtnClient

MAX_PAGE: Final = 50
MAX_BODY_BYTES: Final = 256 * 1024
NOTIFIER: Final = web.AppKey("openadr_notifier", Notifier)
MAX_OWNED_BY_VEN: Final = {"REPORT": 1000, "SUBSCRIPTION": 20, "VEN": 10}
"""What one VEN client may hold: reports per event, subscriptions, VEN objects."""
_BL: Final = frozenset({ClientRole.BL})
_VEN: Final = frozenset({ClientRole.VEN})
_BOTH: Final = frozenset(ClientRole)


@dataclass(frozen=True, slots=True)
class Kind:
    """How the VTN handles one kind of object."""

    object_type: str
    path: str
    id_name: str
    request_schema: str
    writers: frozenset[ClientRole]
    owned: bool
    """Owned objects are visible to (and changeable by) their creator and business logic only."""
    unique_name: str | None = None
    filters: tuple[tuple[str, str], ...] = ()
    """(query parameter, body field) pairs a search filters on."""


KINDS: Final = (
    Kind("PROGRAM", "programs", "programID", "programRequest", _BL, False, "programName"),
    Kind(
        "EVENT",
        "events",
        "eventID",
        "eventRequest",
        _BL,
        False,
        filters=(("programID", "programID"),),
    ),
    Kind(
        "REPORT",
        "reports",
        "reportID",
        "reportRequest",
        _VEN,
        True,
        filters=(("eventID", "eventID"), ("clientName", "clientName")),
    ),
    Kind(
        "SUBSCRIPTION",
        "subscriptions",
        "subscriptionID",
        "subscriptionRequest",
        _BOTH,
        True,
        filters=(("programID", "programID"), ("clientName", "clientName")),
    ),
    Kind("VEN", "vens", "venID", "venRequest", _BOTH, True, "venName", (("venName", "venName"),)),
)
KINDS_BY_TYPE: Final = {kind.object_type: kind for kind in KINDS}


def without_nulls(value: Any) -> Any:
    """Return ``value`` with null members of objects dropped (a null is taken as absent).

    Some clients send ``null`` for every optional field, also where the schema does not allow
    it; every such field's default is absence, so reading null as absent loses nothing.
    """
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def _check_body(kind: Kind, body: dict[str, Any], client: VtnClient) -> dict[str, Any]:
    """Validate a request body; return the object content the VTN stores."""
    body = without_nulls(body)
    reasons = schema_errors(kind.request_schema, body)
    if reasons:
        raise ProblemError(400, "; ".join(reasons))
    content = dict(body)
    if kind.object_type == "VEN":
        # A VEN names itself; business logic says which client the VEN object belongs to.
        expected = "VEN_VEN_REQUEST" if client.role is ClientRole.VEN else "BL_VEN_REQUEST"
        if content.pop("objectType") != expected:
            raise ProblemError(400, f"a {client.role.value} client sends a {expected}")
        if client.role is ClientRole.VEN:
            content["clientID"] = client.client_id
    elif kind.owned:
        content["clientID"] = client.client_id
    return content


async def _names(request: web.Request, client: VtnClient) -> frozenset[str]:
    """Return the venNames a VEN client reads targeted objects by (business logic: none)."""
    if client.role is ClientRole.BL:
        return frozenset()
    return frozenset(await request.app[VTN_STORE].ven_names(client.client_id))


def visible(kind: Kind, stored: StoredObject, client: VtnClient, names: frozenset[str]) -> bool:
    """Return True when a client may see an object.

    Business logic sees everything. A VEN sees its own owned objects (reports, subscriptions,
    its VEN), and programs and events that have no targets or target one of its venNames.
    """
    if client.role is ClientRole.BL:
        return True
    if kind.object_type == "VEN":
        return stored.body.get("clientID") == client.client_id
    if kind.owned:
        return stored.owner == client.client_id
    targets = stored.body.get("targets")
    return not targets or not names.isdisjoint(targets)


async def _references_exist(
    request: web.Request, kind: Kind, content: dict[str, Any], client: VtnClient
) -> None:
    store = request.app[VTN_STORE]
    if kind.object_type == "EVENT":
        program = await store.get_object("PROGRAM", content["programID"])
        if program is None:
            raise ProblemError(400, f"no program {content['programID']}")
        if program.owner == PUBLISHER:
            raise ProblemError(403, "Jeisson publishes the events of its own program itself")
    if kind.object_type == "REPORT":
        event = await store.get_object("EVENT", content["eventID"])
        names = await _names(request, client)
        if event is None or not visible(KINDS_BY_TYPE["EVENT"], event, client, names):
            raise ProblemError(400, f"no event {content['eventID']}")


async def _check_room(
    request: web.Request, kind: Kind, content: dict[str, Any], client: VtnClient
) -> None:
    """Refuse (409) a VEN's object past its bound: VENs are untrusted and cannot fill the store."""
    bound = MAX_OWNED_BY_VEN.get(kind.object_type)
    if client.role is not ClientRole.VEN or bound is None:
        return
    event_id = content.get("eventID") if kind.object_type == "REPORT" else None
    held = await request.app[VTN_STORE].count_objects(kind.object_type, client.client_id, event_id)
    if held >= bound:
        where = f" on event {event_id}" if event_id else ""
        raise ProblemError(409, f"a VEN holds at most {bound} {kind.path}{where}")


def _not_jeissons(stored: StoredObject) -> None:
    if stored.owner == PUBLISHER:
        raise ProblemError(403, "Jeisson publishes this object itself; it cannot be changed")


async def _check_name_free(
    request: web.Request, kind: Kind, content: dict[str, Any], keep: str | None = None
) -> None:
    """Refuse (409) a second object of a kind whose name must be unique."""
    if kind.unique_name is None:
        return
    name = content[kind.unique_name]
    same = await request.app[VTN_STORE].find_objects(kind.object_type, name=name)
    if any(item.object_id != keep for item in same):
        raise ProblemError(409, f"{kind.unique_name} {name!r} is taken")


def _page(request: web.Request) -> tuple[int, int]:
    try:
        skip = int(request.query.get("skip", "0"))
        limit = int(request.query.get("limit", str(MAX_PAGE)))
    except ValueError as err:
        raise ProblemError(400, "skip and limit must be integers") from err
    if skip < 0 or not 0 <= limit <= MAX_PAGE:
        raise ProblemError(400, f"skip must be >= 0 and limit within 0..{MAX_PAGE}")
    return skip, limit


async def _read_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ProblemError(413, f"a body is at most {MAX_BODY_BYTES} bytes")
    return parse_json_object(await request.read())


def _may_write(kind: Kind, client: VtnClient) -> None:
    if client.role not in kind.writers:
        raise ProblemError(403, f"a {client.role.value} client may not write {kind.path}")


def _handlers(kind: Kind) -> list[web.RouteDef]:
    """Return the five routes of one kind of object."""

    async def search(request: web.Request, client: VtnClient) -> web.StreamResponse:
        skip, limit = _page(request)
        found = await request.app[VTN_STORE].find_objects(kind.object_type)
        names = await _names(request, client)
        selected = [
            item.body
            for item in found
            if visible(kind, item, client, names)
            and all(
                item.body.get(field) == request.query[parameter]
                for parameter, field in kind.filters
                if parameter in request.query
            )
        ]
        return web.json_response(selected[skip : skip + limit])

    async def create(request: web.Request, client: VtnClient) -> web.StreamResponse:
        _may_write(kind, client)
        content = _check_body(kind, await _read_body(request), client)
        await _references_exist(request, kind, content, client)
        await _check_name_free(request, kind, content)
        await _check_room(request, kind, content, client)
        stored = await request.app[VTN_STORE].insert_object(
            kind.object_type, client.client_id, content
        )
        await request.app[NOTIFIER].changed(stored, "CREATE")
        return web.json_response(stored.body, status=201)

    async def load(request: web.Request, client: VtnClient) -> StoredObject:
        object_id = request.match_info["object_id"]
        stored = await request.app[VTN_STORE].get_object(kind.object_type, object_id)
        if stored is None or not visible(kind, stored, client, await _names(request, client)):
            raise ProblemError(404, f"no {kind.object_type.lower()} {object_id}")
        return stored

    async def read(request: web.Request, client: VtnClient) -> web.StreamResponse:
        return web.json_response((await load(request, client)).body)

    async def replace(request: web.Request, client: VtnClient) -> web.StreamResponse:
        _may_write(kind, client)
        stored = await load(request, client)
        _not_jeissons(stored)
        content = _check_body(kind, await _read_body(request), client)
        await _references_exist(request, kind, content, client)
        await _check_name_free(request, kind, content, keep=stored.object_id)
        updated = await request.app[VTN_STORE].replace_object(stored, content)
        await request.app[NOTIFIER].changed(updated, "UPDATE")
        return web.json_response(updated.body)

    async def remove(request: web.Request, client: VtnClient) -> web.StreamResponse:
        _may_write(kind, client)
        stored = await load(request, client)
        _not_jeissons(stored)
        await request.app[VTN_STORE].delete_object(stored.object_id)
        await request.app[NOTIFIER].changed(stored, "DELETE")
        return web.json_response(stored.body)

    collection = f"{BASE_PATH}/{kind.path}"
    item = f"{collection}/{{object_id}}"
    return [
        web.get(collection, _answering(search)),
        web.post(collection, _answering(create)),
        web.get(item, _answering(read)),
        web.put(item, _answering(replace)),
        web.delete(item, _answering(remove)),
    ]


def _answering(handler: Any) -> Any:
    """Authenticate, then turn :class:`ProblemError` into its problem response."""

    async def guarded(request: web.Request, client: VtnClient) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request, client)
        except ProblemError as err:
            return err.response()
        return response

    return authenticated(guarded)


async def notifiers(_request: web.Request, _client: VtnClient) -> web.StreamResponse:
    """List the notification bindings offered: webhooks only."""
    return web.json_response({"WEBHOOK": True})


def vtn_routes() -> list[web.RouteDef]:
    """Return every route of the VTN."""
    routes = [
        web.get(f"{BASE_PATH}/auth/server", auth_server),
        web.post(f"{BASE_PATH}/auth/token", fetch_token),
        web.get(f"{BASE_PATH}/notifiers", authenticated(notifiers)),
    ]
    for kind in KINDS:
        routes.extend(_handlers(kind))
    return routes


__all__ = ["KINDS", "NOTIFIER", "Kind", "problem", "vtn_routes"]
