"""Webhook notifications of Jeisson's VTN: tell subscribers when objects change.

Each matching subscription gets one POST of an OpenADR ``notification`` to its callback URL, with
its bearer token, in the background (the client's request never waits on a subscriber). A failed
callback is logged (URL and status only, never the token) and not retried: subscribers also poll.
An object with targets is notified only to business logic and to VENs it targets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import aiohttp

from aggregator.openadr.vtn_store import ClientRole, StoredObject, VtnStore

_LOGGER = logging.getLogger(__name__)
CALLBACK_TIMEOUT_S: Final = 10.0
MAX_PENDING: Final = 1000
"""Notifications in flight at most; more are dropped (and logged) rather than queued forever."""


class Notifier:
    """Sends notifications to the subscribers of an object's type and operation."""

    def __init__(self, store: VtnStore) -> None:
        """Read subscriptions from ``store``; call :meth:`close` at shutdown."""
        self._store = store
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Wait briefly for notifications in flight, then close the HTTP session."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CALLBACK_TIMEOUT_S)
        for task in self._tasks:
            task.cancel()
        if self._session is not None:
            await self._session.close()

    async def changed(self, stored: StoredObject, operation: str) -> None:
        """Notify every subscription interested in ``operation`` on this object."""
        program_id = stored.body.get("programID")
        notification = {
            "objectType": stored.object_type,
            "operation": operation,
            "object": stored.body,
        }
        targets = stored.body.get("targets")
        roles = {client.client_id: client.role for client in await self._store.list_clients()}
        for subscription in await self._store.find_objects("SUBSCRIPTION"):
            wanted = subscription.body.get("programID")
            if wanted is not None and wanted not in (program_id, stored.object_id):
                continue
            if targets and not await self._targeted(subscription, targets, roles):
                continue
            for target in _callbacks(subscription.body, stored.object_type, operation):
                self._send(target, notification)

    async def _targeted(
        self, subscription: StoredObject, targets: list[str], roles: dict[str, ClientRole]
    ) -> bool:
        """Return True when the subscriber may see an object with these targets.

        Business logic sees everything; a VEN only objects targeting one of its venNames.
        """
        owner = subscription.owner
        if owner is None or roles.get(owner) is ClientRole.BL:
            return True
        return not (await self._store.ven_names(owner)).isdisjoint(targets)

    def _send(self, target: tuple[str, str | None], notification: dict[str, Any]) -> None:
        if len(self._tasks) >= MAX_PENDING:
            _LOGGER.warning("Dropped a notification to %s: too many in flight", target[0])
            return
        task = asyncio.create_task(self._post(*target, notification))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, token: str | None, notification: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S)
            )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with self._session.post(url, json=notification, headers=headers) as response:
                if response.status >= 300:
                    _LOGGER.warning("Callback %s answered %d", url, response.status)
        except (aiohttp.ClientError, TimeoutError) as err:
            _LOGGER.warning("Callback %s failed: %s", url, type(err).__name__)


def _callbacks(
    subscription: dict[str, Any], object_type: str, operation: str
) -> list[tuple[str, str | None]]:
    """Return the (callback URL, bearer token) pairs a subscription has for this change."""
    return [
        (item["callbackUrl"], item.get("bearerToken"))
        for item in subscription.get("objectOperations", [])
        if object_type in item.get("objects", []) and operation in item.get("operations", [])
    ]
