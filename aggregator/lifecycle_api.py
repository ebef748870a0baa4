"""REST for what the operator can take away: a home's lifecycle and operator tokens.

Suspending, removing or revoking a home is stored first, then closes the home's open websocket
sessions (close code ``CLOSE_REVOKED``); its next connection is refused (401 without a token,
403 while suspended). A new enrolment code voids the older ones. Operator tokens are listed
(never their secrets), issued with an optional expiry, and revoked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from aggregator.api import answer, json_error, operator_only, parse_body
from aggregator.api_models import HomeView, IsoTime, Text
from aggregator.app_keys import REGISTRY, STORE
from aggregator.auth import bearer_token
from aggregator.history.routes import FLEET_INDEX
from aggregator.records import HomeRecord, HomeStatus
from aggregator.store import OperatorToken, Store
from jeisson.common.protocol import utc_now

MAX_TOKEN_DAYS: Final = 3650
"""The longest expiry an operator token may be issued with."""

routes = web.RouteTableDef()

type HomeChange = Callable[[Store, str], Awaitable[HomeRecord | None]]


class OperatorTokenBody(BaseModel):
    """``POST /api/v1/operator-tokens``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Text = Field(min_length=1, max_length=100)
    expires_in_days: Annotated[int, Field(ge=1, le=MAX_TOKEN_DAYS)] | None = None
    """None: the token never expires (revoke it when it is no longer needed)."""


class TokenStatus(StrEnum):
    """Whether an operator token still opens the API."""

    LIVE = "live"
    EXPIRED = "expired"
    REVOKED = "revoked"


class OperatorTokenView(BaseModel):
    """An operator token as the operator sees it (never the secret)."""

    model_config = ConfigDict(frozen=True)

    token_id: str
    name: str
    created_at: IsoTime
    expires_at: IsoTime | None
    revoked_at: IsoTime | None
    status: TokenStatus

    @classmethod
    def of(cls, token: OperatorToken, now: datetime) -> Self:
        """Return the view of a stored token at ``now``."""
        if token.revoked_at is not None:
            status = TokenStatus.REVOKED
        elif token.is_live(now):
            status = TokenStatus.LIVE
        else:
            status = TokenStatus.EXPIRED
        return cls(
            token_id=token.token_id,
            name=token.name,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
            status=status,
        )


class OperatorTokenIssued(OperatorTokenView):
    """A new operator token: ``token`` is shown this once (the aggregator keeps its hash)."""

    token: str


class OperatorTokenList(BaseModel):
    """Every operator token, oldest first."""

    model_config = ConfigDict(frozen=True)

    tokens: list[OperatorTokenView]
    current_token_id: str | None = None
    """The token this request was made with (the dashboard warns before revoking it)."""


# --- homes ------------------------------------------------------------------------------------


async def _change_home(request: web.Request, change: HomeChange, close: str | None) -> web.Response:
    """Apply a lifecycle change to a home (stored first), then close its sessions if asked."""
    home_id = request.match_info["home_id"]
    store = request.app[STORE]
    before = await store.get_home(home_id)
    if before is None:
        return json_error(404, "not_found", f"no home {home_id}")
    if before.status is HomeStatus.REMOVED:
        return json_error(409, "home_removed", f"home {home_id} was removed")
    home = await change(store, home_id)
    if home is None:  # removed meanwhile
        return json_error(409, "home_removed", f"home {home_id} was removed")
    if FLEET_INDEX in request.app:
        request.app[FLEET_INDEX].invalidate()
    registry = request.app[REGISTRY]
    if close is not None:
        await registry.close_home(home_id, close)
    view = HomeView.of(home, connected=registry.is_connected(home_id))
    if close is not None and home.status is not HomeStatus.SUSPENDED:
        view = view.model_copy(update={"enrolled": False})  # its token is void now
    return answer(view)


@routes.post("/api/v1/homes/{home_id}/suspend")
@operator_only
async def suspend_home(request: web.Request) -> web.Response:
    """Suspend a home: its sessions close and it may not connect until resumed."""
    return await _change_home(
        request,
        lambda store, home_id: store.suspend_home(home_id, suspended=True),
        "the operator suspended this home",
    )


@routes.post("/api/v1/homes/{home_id}/resume")
@operator_only
async def resume_home(request: web.Request) -> web.Response:
    """Resume a suspended home: it may connect again with its token."""
    return await _change_home(
        request, lambda store, home_id: store.suspend_home(home_id, suspended=False), None
    )


@routes.post("/api/v1/homes/{home_id}/revoke")
@operator_only
async def revoke_home(request: web.Request) -> web.Response:
    """Revoke a home's token and unused codes; its sessions close (it must enrol again)."""
    return await _change_home(
        request,
        lambda store, home_id: store.revoke_home_token(home_id),
        "the operator revoked this home's token",
    )


@routes.delete("/api/v1/homes/{home_id}")
@operator_only
async def remove_home(request: web.Request) -> web.Response:
    """Remove a home: token and codes void, sessions closed, history kept for settlement."""
    return await _change_home(
        request,
        lambda store, home_id: store.remove_home(home_id),
        "the operator removed this home",
    )


# --- operator tokens --------------------------------------------------------------------------


@routes.get("/api/v1/operator-tokens")
@operator_only
async def list_operator_tokens(request: web.Request) -> web.Response:
    """List operator tokens (names, dates, status; never the secrets)."""
    now = utc_now()
    store = request.app[STORE]
    tokens = await store.operator_tokens()
    current = await store.operator_token_id(
        bearer_token(request.headers.get("Authorization")) or ""
    )
    return answer(
        OperatorTokenList(
            tokens=[OperatorTokenView.of(item, now) for item in tokens], current_token_id=current
        )
    )


@routes.post("/api/v1/operator-tokens")
@operator_only
async def issue_operator_token(request: web.Request) -> web.Response:
    """Issue an operator token, optionally expiring; the answer shows it once."""
    body = await parse_body(request, OperatorTokenBody)
    now = utc_now()
    expires = None if body.expires_in_days is None else now + timedelta(days=body.expires_in_days)
    record, token = await request.app[STORE].issue_operator_token(body.name, expires)
    view = OperatorTokenView.of(record, now)
    return answer(OperatorTokenIssued(**view.model_dump(), token=token), status=201)


@routes.delete("/api/v1/operator-tokens/{token_id}")
@operator_only
async def revoke_operator_token(request: web.Request) -> web.Response:
    """Revoke an operator token at once (its open dashboard streams end too)."""
    token_id = request.match_info["token_id"]
    record = await request.app[STORE].revoke_operator_token(token_id)
    if record is None:
        return json_error(404, "not_found", f"no operator token {token_id}")
    return answer(OperatorTokenView.of(record, utc_now()))


# --- the OpenAPI document ---------------------------------------------------------------------

REQUEST_MODELS: Final[tuple[type[BaseModel], ...]] = (OperatorTokenBody,)
RESPONSE_MODELS: Final[tuple[type[BaseModel], ...]] = (
    OperatorTokenView,
    OperatorTokenIssued,
    OperatorTokenList,
)


def openapi_paths(
    operation: Callable[..., dict[str, Any]], body: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """Return this module's paths for the OpenAPI document."""
    home_id = {"name": "home_id", "in": "path", "required": True, "schema": {"type": "string"}}
    token_id = {"name": "token_id", "in": "path", "required": True, "schema": {"type": "string"}}
    home_errors = ("401", "404", "409")
    return {
        "/api/v1/homes/{home_id}": {
            "parameters": [home_id],
            "delete": operation(
                "Remove a home: token and codes void, sessions closed, history kept",
                ("200", "the removed home"),
                errors=home_errors,
                answer=HomeView,
            ),
        },
        "/api/v1/homes/{home_id}/suspend": {
            "parameters": [home_id],
            "post": operation(
                "Suspend a home: sessions closed, connections refused (403) until resumed",
                ("200", "the suspended home"),
                errors=home_errors,
                answer=HomeView,
            ),
        },
        "/api/v1/homes/{home_id}/resume": {
            "parameters": [home_id],
            "post": operation(
                "Resume a suspended home",
                ("200", "the home"),
                errors=home_errors,
                answer=HomeView,
            ),
        },
        "/api/v1/homes/{home_id}/revoke": {
            "parameters": [home_id],
            "post": operation(
                "Revoke a home's token and unused codes; sessions closed (enrol again)",
                ("200", "the home"),
                errors=home_errors,
                answer=HomeView,
            ),
        },
        "/api/v1/operator-tokens": {
            "get": operation(
                "List operator tokens (never their secrets)",
                ("200", "every token, oldest first, and which one the request used"),
                errors=("401",),
                answer=OperatorTokenList,
            ),
            "post": operation(
                "Issue an operator token, optionally expiring (shown once)",
                ("201", "the token"),
                body=body(OperatorTokenBody),
                answer=OperatorTokenIssued,
            ),
        },
        "/api/v1/operator-tokens/{token_id}": {
            "parameters": [token_id],
            "delete": operation(
                "Revoke an operator token at once",
                ("200", "the revoked token"),
                errors=("401", "404"),
                answer=OperatorTokenView,
            ),
        },
    }
