"""The operator's REST API for OpenADR: VTN clients (credentials) and the utility VTNs followed.

Operator-authenticated like the rest of ``/api/v1`` (``aggregator.api.operator_only``). A new
client's secret is in the creation response only; a VTN's client secret is never returned.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from aggregator.api import json_error, operator_only, parse_body
from aggregator.openadr.vtn_auth import VTN_STORE
from aggregator.openadr.vtn_store import ClientRole, VtnClient

routes = web.RouteTableDef()


class ClientBody(BaseModel):
    """``POST /api/v1/openadr/clients``: a business-logic or VEN client of Jeisson's VTN."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    role: ClientRole = ClientRole.VEN


def client_view(client: VtnClient) -> dict[str, Any]:
    """Return the JSON view of a VTN client (no secret)."""
    return {
        "client_id": client.client_id,
        "name": client.name,
        "role": client.role.value,
        "created_at": client.created_at.isoformat(),
        "revoked": client.revoked_at is not None,
    }


@routes.post("/api/v1/openadr/clients")
@operator_only
async def add_client(request: web.Request) -> web.Response:
    """Create a VTN client; the response carries its secret, shown this once."""
    body = await parse_body(request, ClientBody)
    client, secret = await request.app[VTN_STORE].add_client(body.name, body.role)
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


def openapi_schemas() -> dict[str, Any]:
    """Return the request models of these routes as OpenAPI component schemas."""
    return {
        model.__name__: model.model_json_schema(ref_template="#/components/schemas/{model}")
        for model in (ClientBody,)
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
        "/api/v1/openadr/clients/{client_id}": {
            "parameters": [client_id],
            "delete": operation(
                "Revoke a VTN client and its tokens", ("200", "revoked"), errors=("401", "404")
            ),
        },
    }
