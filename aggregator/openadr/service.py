"""Wires OpenADR into the aggregator's application: routes, and the services they need."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from aggregator.app_keys import STORE
from aggregator.openadr import api
from aggregator.openadr.api import VEN_SERVICE, VEN_STORE
from aggregator.openadr.notifier import Notifier
from aggregator.openadr.publisher import Publisher
from aggregator.openadr.ven import VenService
from aggregator.openadr.ven_store import VenStore
from aggregator.openadr.vtn import NOTIFIER, vtn_routes
from aggregator.openadr.vtn_auth import VTN_STORE
from aggregator.openadr.vtn_store import VtnStore
from aggregator.participants import OUTSIDE_PARTICIPANTS


async def _openadr_services(app: web.Application) -> AsyncIterator[None]:
    """Start the VTN (store, notifier, publisher) and the VEN side; stop them at shutdown."""
    vtn_store = VtnStore(app[STORE].engine)
    notifier = Notifier(vtn_store)
    app[VTN_STORE] = vtn_store
    app[NOTIFIER] = notifier
    publisher = Publisher(app, vtn_store, notifier)
    app[OUTSIDE_PARTICIPANTS] = publisher
    ven_store = VenStore(app[STORE].engine)
    ven_service = VenService(app, ven_store)
    app[VEN_STORE] = ven_store
    app[VEN_SERVICE] = ven_service
    await ven_service.start()
    await publisher.start()
    yield
    await publisher.stop()
    await ven_service.stop()
    await notifier.close()


def setup(app: web.Application) -> None:
    """Add the OpenADR routes; register after the aggregator's own start-up (it needs STORE)."""
    app.add_routes(vtn_routes())
    app.add_routes(api.routes)
    app.cleanup_ctx.append(_openadr_services)
