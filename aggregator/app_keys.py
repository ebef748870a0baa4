"""Typed keys of what the aiohttp application holds (store, negotiation, sessions, settings)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from aggregator.metrics import Metrics
from aggregator.negotiation import EventManager
from aggregator.sessions import SessionRegistry, SessionSettings
from aggregator.settlement.courier import StatementCourier
from aggregator.settlement.settler import Settler
from aggregator.store import GroupCommitter, Store


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """Facts about this aggregator shown to homes and operators."""

    aggregator_id: str


STORE = web.AppKey("store", Store)
COMMITTER = web.AppKey("committer", GroupCommitter)
MANAGER = web.AppKey("manager", EventManager)
REGISTRY = web.AppKey("registry", SessionRegistry)
SERVER_INFO = web.AppKey("server_info", ServerInfo)
SESSION_SETTINGS = web.AppKey("session_settings", SessionSettings)
METRICS = web.AppKey("metrics", Metrics)
SETTLER = web.AppKey("settler", Settler)
COURIER = web.AppKey("courier", StatementCourier)
