"""Authentication of Jeisson's VTN: OAuth2 client-credentials tokens and bearer checks.

``POST auth/token`` exchanges a client's id and secret (form fields, or HTTP Basic as RFC 6749
prefers) for a bearer token; ``GET auth/server`` tells clients where that endpoint is (OpenADR
3.1 discovery). Every other VTN route needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final
from urllib.parse import unquote

from aiohttp import web

from aggregator.auth import bearer_token
from aggregator.openadr import BASE_PATH
from aggregator.openadr.problems import problem
from aggregator.openadr.vtn_store import VtnClient, VtnStore

TOKEN_LIFETIME: Final = timedelta(hours=1)
MAX_CREDENTIAL_LENGTH: Final = 4096
VTN_STORE: Final = web.AppKey("openadr_vtn_store", VtnStore)

type ClientHandler = Callable[[web.Request, VtnClient], Awaitable[web.StreamResponse]]


async def auth_server(request: web.Request) -> web.Response:
    """Tell clients where to get tokens (``authServerInfo``)."""
    token_url = str(request.url.with_path(f"{BASE_PATH}/auth/token").with_query(None))
    return web.json_response({"tokenURL": token_url})


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, separator, secret = decoded.partition(":")
    return (unquote(client_id), unquote(secret)) if separator else None


async def fetch_token(request: web.Request) -> web.Response:
    """Issue a bearer token for valid client credentials (``clientCredentialResponse``)."""
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return problem(400, "grant_type must be client_credentials", error="unsupported_grant_type")
    credentials = _basic_credentials(request.headers.get("Authorization"))
    if credentials is None:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if not isinstance(client_id, str) or not isinstance(secret, str):
            return problem(400, "client_id and client_secret are required", error="invalid_request")
        credentials = (client_id, secret)
    if any(not part or len(part) > MAX_CREDENTIAL_LENGTH for part in credentials):
        return problem(400, "bad client credentials", error="invalid_request")
    issued = await request.app[VTN_STORE].issue_token(*credentials, TOKEN_LIFETIME)
    if issued is None:
        return problem(401, "unknown client or wrong secret", error="invalid_client")
    _client, token = issued
    return web.json_response(
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(TOKEN_LIFETIME.total_seconds()),
        },
        headers={"Cache-Control": "no-store"},
    )


def authenticated(handler: ClientHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a handler so it runs only for a client with a valid bearer token."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        token = bearer_token(request.headers.get("Authorization"))
        client = await request.app[VTN_STORE].client_for_token(token) if token else None
        if client is None:
            return problem(401, "a valid bearer token is required")
        return await handler(request, client)

    wrapper.__doc__ = handler.__doc__
    return wrapper
