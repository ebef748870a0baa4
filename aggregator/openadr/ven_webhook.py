"""Webhook notifications from a utility's VTN to Jeisson's VEN: the subscription and its token.

Where the VTN offers webhooks (``GET notifiers`` answers ``WEBHOOK: true``) and Jeisson has a
public base URL (the VTN's ``public_url``, else ``JEISSON_PUBLIC_URL``), the VEN subscribes to
event and program changes with a callback on the aggregator,
``<public url>/api/v1/openadr/vtns/<vtn_id>/notifications``, and a bearer token it generates. Only
the token's digest is stored; the callback refuses any other token. The subscription is checked
at each full poll and made again when the VTN lost it (with a new token).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Final

from aggregator.auth import hash_secret, new_token
from aggregator.openadr.schema import schema_errors
from aggregator.openadr.ven_client import VtnClient, VtnError
from aggregator.openadr.ven_store import VenStore, VtnConfig

_LOGGER = logging.getLogger(__name__)
PUBLIC_URL_ENV: Final = "JEISSON_PUBLIC_URL"
NOTIFICATIONS_PATH: Final = "/api/v1/openadr/vtns/{vtn_id}/notifications"
SAFETY_POLL_FACTOR: Final = 10
"""With webhooks, the VTN is read in full every this many poll intervals (a safety net)."""
SUBSCRIBED_OBJECTS: Final = ("EVENT", "PROGRAM")
SUBSCRIBED_OPERATIONS: Final = ("CREATE", "UPDATE", "DELETE")


def callback_url(public_url: str | None, vtn_id: str) -> str | None:
    """Return the callback URL for a VTN (None without a public URL: polling only)."""
    base = public_url or os.environ.get(PUBLIC_URL_ENV)
    if not base:
        return None
    return base.rstrip("/") + NOTIFICATIONS_PATH.format(vtn_id=vtn_id)


@dataclass(frozen=True, slots=True)
class Notification:
    """A checked notification: which object changed, how, and the object."""

    object_type: str
    operation: str
    object: dict[str, Any]


READ_AGAIN: Final = Notification("", "READ_AGAIN", {})
"""The VTN said something changed in a form Jeisson does not act on: read it in full now."""


class NotificationError(ValueError):
    """A callback body that is not a valid OpenADR notification."""


def parse_notification(body: Any) -> Notification:
    """Return a notification checked against the official schema; raise NotificationError."""
    reasons = schema_errors("notification", body)
    if not reasons and body["objectType"] in SUBSCRIBED_OBJECTS:
        reasons = schema_errors(body["objectType"].lower(), body["object"])
    if reasons:
        raise NotificationError("; ".join(reasons))
    return Notification(body["objectType"], body["operation"], dict(body["object"]))


class Subscription:
    """Keeps Jeisson's webhook subscription on one VTN alive."""

    def __init__(self, store: VenStore, config: VtnConfig) -> None:
        """Manage the subscription of ``config`` (its stored id, if any, is reused)."""
        self._store = store
        self._config = config
        self._subscription_id = config.remote_subscription_id
        self._offered: bool | None = None
        self.active = False
        """True while notifications are expected (the poll then slows down)."""

    async def ensure(self, vtn: VtnClient) -> bool:
        """Make sure the subscription exists (creating it if needed); return whether it does.

        A VTN that offers no webhooks, or fails or refuses any step of subscribing, is polled
        instead: subscribing never stops the VEN from following the VTN (it is tried again at
        the next full poll).
        """
        if self._config.callback_url is None:
            return False
        try:
            self.active = await self._ensure(vtn, self._config.callback_url)
        except VtnError as err:
            _LOGGER.warning("VTN %s: no subscription (%s): polling", self._config.name, err)
            self.active = False
        return self.active

    async def _ensure(self, vtn: VtnClient, url: str) -> bool:
        if self._offered is None:
            self._offered = await vtn.webhooks_offered()
            if not self._offered:
                _LOGGER.info("VTN %s offers no webhooks: polling", self._config.name)
        if not self._offered:
            return False
        if self._subscription_id is not None and await vtn.subscription_exists(
            self._subscription_id, url
        ):
            return True
        token = new_token()
        body = {
            "clientName": self._config.ven_name,
            "objectOperations": [
                {
                    "objects": list(SUBSCRIBED_OBJECTS),
                    "operations": list(SUBSCRIBED_OPERATIONS),
                    "callbackUrl": url,
                    "bearerToken": token,
                }
            ],
        }
        # The token is known before the VTN is asked: some VTNs call back while subscribing.
        await self._store.note_subscription(self._config.vtn_id, None, hash_secret(token))
        self._subscription_id = await vtn.subscribe(body)
        await self._store.note_subscription(
            self._config.vtn_id, self._subscription_id, hash_secret(token)
        )
        _LOGGER.info("Subscribed to VTN %s's notifications at %s", self._config.name, url)
        return True

    async def remove(self, vtn: VtnClient) -> None:
        """Delete the subscription on the VTN (when Jeisson stops following it)."""
        if self._subscription_id is not None:
            await vtn.unsubscribe(self._subscription_id)
            self._subscription_id = None
        self.active = False
