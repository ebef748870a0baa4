"""The REST client of ``jeisson-aggregator``: one session, the operator token, clear errors.

Commands other than ``serve``, ``operator-token`` and ``db`` talk to a running aggregator through
:class:`OperatorClient`, so the running negotiation sees every change. Failures become
:class:`CommandError` with the server's own message (printed without a traceback).
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Final, Self

import aiohttp

_OK_STATUSES: Final = frozenset({200, 201})
REQUEST_TIMEOUT_S: Final = 30.0


class CommandError(Exception):
    """A command failed in a way the operator should read (printed without a traceback)."""


class OperatorClient:
    """REST calls to ``url`` with the operator ``token`` (use as ``async with``)."""

    def __init__(self, url: str, token: str | None) -> None:
        """Prepare the client; raise :class:`CommandError` when there is no token."""
        if not token:
            raise CommandError("an operator token is needed: --token or JEISSON_OPERATOR_TOKEN")
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        """Open the HTTP session."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """Return the open session (only inside ``async with``)."""
        if self._session is None:
            raise RuntimeError("OperatorClient is used outside 'async with'")
        return self._session

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """Send a request and return the JSON answer; raise CommandError on any failure."""
        try:
            async with self.session.request(
                method, self.url + path, json=body, params=query, headers=self._headers
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as err:
            raise CommandError(f"cannot reach {self.url}: {err or type(err).__name__}") from err
        payload = _json_or_none(text)
        if status not in _OK_STATUSES:
            raise CommandError(_error_text(status, payload, text))
        if payload is None:
            raise CommandError(f"{method} {path}: the answer is not JSON")
        return payload

    async def text(self, path: str, query: dict[str, str] | None = None) -> str:
        """GET ``path`` and return the body as text (for CSV downloads)."""
        try:
            async with self.session.get(
                self.url + path, params=query, headers=self._headers
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as err:
            raise CommandError(f"cannot reach {self.url}: {err or type(err).__name__}") from err
        if status not in _OK_STATUSES:
            raise CommandError(_error_text(status, _json_or_none(text), text))
        return text


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _error_text(status: int, payload: Any, text: str) -> str:
    """Return ``401 unauthorized: a valid operator token is required`` from an error answer."""
    if isinstance(payload, dict) and "error" in payload:
        return f"{status} {payload['error']}: {payload.get('message', '')}".rstrip(": ")
    return f"{status}: {text.strip()[:200]}"
