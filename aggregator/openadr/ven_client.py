"""HTTP to a utility's VTN as a VEN: OAuth2 client-credentials token, JSON calls, checked bodies.

Objects the VTN returns are checked against the official schema before Jeisson acts on them; a
non-conforming one is skipped and logged (by id), never guessed at.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any, Final

import aiohttp

from aggregator import __version__
from aggregator.openadr.schema import schema_errors
from jeisson.common.protocol import utc_now

_LOGGER = logging.getLogger(__name__)
REQUEST_TIMEOUT_S: Final = 20.0
TOKEN_MARGIN: Final = timedelta(seconds=30)
PAGE: Final = 50
USER_AGENT: Final = f"jeisson-aggregator/{__version__} (OpenADR 3.1 VEN)"


class VtnError(RuntimeError):
    """The VTN could not be reached or refused a request."""


class VtnNotFoundError(VtnError):
    """The VTN answered 404: no such object."""


class VtnClient:
    """One VEN's connection to one VTN (use as ``async with``)."""

    def __init__(
        self,
        base_url: str,
        client_id: str | None,
        client_secret: str | None,
        token_url: str | None = None,
    ) -> None:
        """Talk to ``base_url``; with credentials, fetch tokens (discovering the token URL)."""
        self._base = base_url.rstrip("/")
        self._client_id = client_id
        self._secret = client_secret
        self._token_url = token_url
        self._token: str | None = None
        self._expires = datetime.min.replace(tzinfo=utc_now().tzinfo)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> VtnClient:
        """Open the HTTP session."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            headers={"User-Agent": USER_AGENT},
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()

    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("VtnClient used outside 'async with'")
        return self._session

    async def _headers(self) -> dict[str, str]:
        if self._client_id is None or self._secret is None:
            return {}
        if self._token is None or utc_now() + TOKEN_MARGIN >= self._expires:
            await self._fetch_token()
        return {"Authorization": f"Bearer {self._token}"}

    async def _fetch_token(self) -> None:
        if self._token_url is None:
            info = await self._call("GET", "/auth/server", authenticated=False)
            self._token_url = str(info["tokenURL"])
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id or "",
            "client_secret": self._secret or "",
        }
        try:
            async with self._http.post(self._token_url, data=form) as response:
                body = await response.json(content_type=None)
                if response.status != 200 or not isinstance(body, dict):
                    raise VtnError(f"token endpoint answered {response.status}")
        except aiohttp.ClientError as err:
            raise VtnError(f"token endpoint unreachable: {type(err).__name__}") from err
        self._token = str(body["access_token"])
        self._expires = utc_now() + timedelta(seconds=float(body.get("expires_in", 3600)))

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
        *,
        authenticated: bool = True,
    ) -> Any:
        headers = await self._headers() if authenticated else {}
        try:
            async with self._http.request(
                method, self._base + path, json=body, params=query, headers=headers
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise VtnError(f"{method} {path} failed: {type(err).__name__}") from err
        try:
            payload = json.loads(text) if text.strip() else None
        except ValueError:
            payload = None
            if status < 300:
                raise VtnError(f"{method} {path} did not answer JSON") from None
        if status == 401 and authenticated:
            self._token = None
        if status >= 300:
            detail = payload.get("detail") if isinstance(payload, dict) else None
            error = VtnNotFoundError if status == 404 else VtnError
            raise error(f"{method} {path} answered {status}: {detail}")
        return payload

    async def search(self, path: str, component: str, **query: str) -> list[dict[str, Any]]:
        """Return every object of a search (all pages), keeping only spec-conforming ones."""
        found: list[dict[str, Any]] = []
        while True:
            page = await self._call(
                "GET", path, query={**query, "skip": str(len(found)), "limit": str(PAGE)}
            )
            if not isinstance(page, list):
                raise VtnError(f"GET {path} did not answer a list")
            found.extend(page)
            if len(page) < PAGE:
                break
        valid = []
        for item in found:
            reasons = schema_errors(component, item)
            if reasons:
                _LOGGER.warning(
                    "Skipped %s %s from the VTN: %s", component, item.get("id"), reasons
                )
            else:
                valid.append(item)
        return valid

    async def register_ven(self, ven_name: str) -> str:
        """Return the id of this VEN's object on the VTN, creating it the first time."""
        for ven in await self._call("GET", "/vens", query={"venName": ven_name}):
            if ven.get("venName") == ven_name:
                return str(ven["id"])
        created = await self._call(
            "POST", "/vens", {"objectType": "VEN_VEN_REQUEST", "venName": ven_name}
        )
        return str(created["id"])

    async def webhooks_offered(self) -> bool:
        """Return True when the VTN says it sends webhook notifications (``GET notifiers``)."""
        offered = await self._call("GET", "/notifiers")
        return isinstance(offered, dict) and offered.get("WEBHOOK") is True

    async def subscription_exists(self, subscription_id: str, callback_url: str) -> bool:
        """Return True when the subscription is still there and still calls ``callback_url``."""
        try:
            found = await self._call("GET", f"/subscriptions/{subscription_id}")
        except VtnNotFoundError:
            return False
        return isinstance(found, dict) and any(
            item.get("callbackUrl") == callback_url for item in found.get("objectOperations", [])
        )

    async def subscribe(self, body: dict[str, Any]) -> str:
        """Create a subscription; return its id on the VTN."""
        created = await self._call("POST", "/subscriptions", body)
        return str(created["id"])

    async def unsubscribe(self, subscription_id: str) -> None:
        """Delete a subscription (gone already is fine)."""
        with contextlib.suppress(VtnNotFoundError):
            await self._call("DELETE", f"/subscriptions/{subscription_id}")

    async def post_report(self, report: dict[str, Any]) -> str:
        """Send a report; return its id on the VTN."""
        created = await self._call("POST", "/reports", report)
        return str(created["id"])
