"""Which process holds which home's connection, known to every process of the cluster.

Each process announces the homes it holds on one subject, numbered in order (``seq``): a home
ready (with what the negotiation needs of it: loads, participation, when it last curtailed), its
inventory changed, or it left. Each process also sends a heartbeat with its latest number. A
receiver that sees a number skipped, or a heartbeat ahead of what it applied (NATS delivers at
most once; a reconnection loses messages), fetches that process's whole list again, page by
page from a snapshot, then applies what came after it. A process not heard from for
``node_ttl_s`` is gone, and so are its homes — unless this process is itself cut off from NATS,
when nobody can tell who died, so nobody is declared gone.

A home that moves (its connection drops on one process, it reconnects to another) is wherever it
arrived last; the old process's "left" for its old connection changes nothing. The listener
hears of homes arriving anywhere in the cluster (also here), changing and leaving, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

from nats.aio.subscription import Subscription

from aggregator.cluster.bus import Bus, BusUnavailableError, Json
from aggregator.records import HomeRecord
from jeisson.common.protocol import SCHEMA_VERSION, Load

_LOGGER = logging.getLogger(__name__)

SYNC_PAGE_SIZE: Final = 1000
"""Homes per page of a directory sync (well under NATS's payload limit)."""
SNAPSHOT_LIFETIME_S: Final = 30.0
"""How long a process keeps a snapshot for others paging through it."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class DirectoryListener(Protocol):
    """What hears of homes arriving, changing and leaving anywhere in the cluster."""

    def home_arrived(
        self, home: HomeRecord, schema_version: int, held: Mapping[str, frozenset[str]]
    ) -> None:
        """Take a home ready on some process (also called when it moved to another one).

        ``schema_version`` is what it said in its hello; ``held`` the awards it said it still
        executes (award id → the loads it still holds).
        """

    def home_changed(self, home: HomeRecord) -> None:
        """Take a connected home's new loads or participation."""

    def home_left(self, home_id: str) -> None:
        """Forget a home connected to no process any more."""


def card(
    home: HomeRecord,
    schema_version: int = SCHEMA_VERSION,
    held: Mapping[str, frozenset[str]] | None = None,
) -> Json:
    """Return what the negotiation needs of a home, as JSON (no name, no secrets)."""
    return {
        "id": home.home_id,
        "schema": schema_version,
        "held": {award_id: sorted(loads) for award_id, loads in (held or {}).items()},
        "loads": [load.model_dump(mode="json") for load in home.loads],
        "participating": home.participating,
        "curtailed_at": home.last_curtailed_at.isoformat() if home.last_curtailed_at else None,
    }


def from_card(data: Json) -> HomeRecord:
    """Return the home a card describes (the fields the negotiation reads)."""
    curtailed = data.get("curtailed_at")
    return HomeRecord(
        home_id=str(data["id"]),
        name="",
        created_at=_EPOCH,
        loads=tuple(Load.model_validate(load) for load in data["loads"]),
        participating=bool(data["participating"]),
        last_curtailed_at=datetime.fromisoformat(curtailed) if curtailed else None,
    )


def card_extras(data: Json) -> tuple[int, dict[str, frozenset[str]]]:
    """Return the schema version and held awards a card carries."""
    held = data.get("held") or {}
    return int(data.get("schema", SCHEMA_VERSION)), {
        str(award_id): frozenset(str(load) for load in loads) for award_id, loads in held.items()
    }


@dataclass(slots=True)
class _Held:
    connection: str
    home: HomeRecord
    schema_version: int = SCHEMA_VERSION
    held: dict[str, frozenset[str]] = field(default_factory=dict)

    def card(self) -> Json:
        return card(self.home, self.schema_version, self.held)


@dataclass(slots=True)
class _Node:
    """What one process holds, as far as this process knows."""

    node_id: str
    homes: dict[str, _Held] = field(default_factory=dict)
    seq: int = -1
    heard: float = field(default_factory=time.monotonic)
    syncing: bool = False
    buffered: list[Json] = field(default_factory=list)


class HomeDirectory:
    """The cluster's connected homes: where each is, and what the negotiation needs of it."""

    def __init__(
        self, bus: Bus, node_id: str, listener: DirectoryListener, heartbeat_s: float, ttl_s: float
    ) -> None:
        """Serve as ``node_id``; tell ``listener`` what changes."""
        self._bus = bus
        self.node_id = node_id
        self._listener = listener
        self._heartbeat_s = heartbeat_s
        self._ttl_s = ttl_s
        self._own = _Node(node_id, seq=0)
        self._nodes: dict[str, _Node] = {node_id: self._own}
        self._where: dict[str, tuple[str, str]] = {}
        """home id → (node id, connection id) of the connection it arrived on last."""
        self._snapshots: dict[str, tuple[float, int, list[Json]]] = {}
        self._outgoing: asyncio.Queue[Json] = asyncio.Queue()
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._syncs: set[asyncio.Task[None]] = set()
        self._connected_since: float | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen to the others, start the heartbeat, and ask everybody for their homes."""
        subjects = self._bus.subjects
        self._subscriptions = [
            await self._bus.subscribe(subjects.presence, self._on_presence),
            await self._bus.subscribe(subjects.heartbeat, self._on_heartbeat),
            await self._bus.subscribe(subjects.sync(self.node_id), self._on_sync_request),
        ]
        self._connected_since = time.monotonic()
        self._bus.on_reconnected(self._reconnected)
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="directory-publish"),
            asyncio.create_task(self._heartbeat_loop(), name="directory-heartbeat"),
        ]

    async def stop(self) -> None:
        """Stop the tasks and subscriptions (the others see this process go)."""
        for task in [*self._tasks, *self._syncs]:
            task.cancel()
        for task in [*self._tasks, *self._syncs]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions.clear()

    async def _reconnected(self) -> None:
        self._connected_since = time.monotonic()

    # --- this process's homes ------------------------------------------------------------------

    def announce_ready(
        self,
        home: HomeRecord,
        schema_version: int = SCHEMA_VERSION,
        held: Mapping[str, frozenset[str]] | None = None,
    ) -> str:
        """Announce a home ready on this process; return the connection's id."""
        connection = uuid.uuid4().hex[:12]
        self._local("ready", home.home_id, connection, card(home, schema_version, held))
        return connection

    def announce_changed(
        self, home: HomeRecord, connection: str, schema_version: int = SCHEMA_VERSION
    ) -> None:
        """Announce a new inventory of a home connected here."""
        self._local("changed", home.home_id, connection, card(home, schema_version))

    def announce_gone(self, home_id: str, connection: str) -> None:
        """Announce that a home's connection here closed."""
        self._local("gone", home_id, connection, None)

    def _local(self, op: str, home_id: str, connection: str, home: Json | None) -> None:
        self._own.seq += 1
        message: Json = {
            "node": self.node_id,
            "seq": self._own.seq,
            "op": op,
            "home_id": home_id,
            "conn": connection,
            "home": home,
        }
        self._apply(self._own, message)
        self._outgoing.put_nowait(message)

    # --- what the cluster has -----------------------------------------------------------------

    def __len__(self) -> int:
        """Return how many homes are connected to the cluster."""
        return len(self._where)

    def is_connected(self, home_id: str) -> bool:
        """Return True when the home is connected to some process."""
        return home_id in self._where

    def node_of(self, home_id: str) -> str | None:
        """Return the process holding the home's connection, or None."""
        where = self._where.get(home_id)
        return where[0] if where is not None else None

    def by_node(self, home_ids: Iterable[str]) -> dict[str, list[str]]:
        """Group connected homes by the process holding them (unknown homes are left out)."""
        groups: dict[str, list[str]] = {}
        for home_id in home_ids:
            where = self._where.get(home_id)
            if where is not None:
                groups.setdefault(where[0], []).append(home_id)
        return groups

    def nodes(self) -> Mapping[str, int]:
        """Return each known process and how many homes it holds."""
        return {node_id: len(node.homes) for node_id, node in self._nodes.items()}

    # --- applying announcements ---------------------------------------------------------------

    def _apply(self, node: _Node, message: Json) -> None:
        home_id = str(message["home_id"])
        connection = str(message["conn"])
        if message["op"] == "gone":
            entry = node.homes.get(home_id)
            if entry is not None and entry.connection == connection:
                del node.homes[home_id]
                self._unpoint(home_id, node.node_id, connection)
            return
        home = from_card(message["home"])
        schema_version, held = card_extras(message["home"])
        node.homes[home_id] = _Held(connection, home, schema_version, held)
        previous = self._where.get(home_id)
        self._where[home_id] = (node.node_id, connection)
        if message["op"] == "changed" and previous == (node.node_id, connection):
            self._listener.home_changed(home)
        else:
            self._listener.home_arrived(home, schema_version, held)

    def _unpoint(self, home_id: str, node_id: str, connection: str) -> None:
        """Move a home whose connection closed to another process holding it, or let it go."""
        if self._where.get(home_id) != (node_id, connection):
            return
        for other in self._nodes.values():
            held = other.homes.get(home_id)
            if held is not None:
                self._where[home_id] = (other.node_id, held.connection)
                self._listener.home_arrived(held.home, held.schema_version, held.held)
                return
        del self._where[home_id]
        self._listener.home_left(home_id)

    async def _on_presence(self, message: Json) -> Json | None:
        node_id = str(message.get("node", ""))
        if node_id == self.node_id or not node_id:
            return None
        node = self._remote(node_id)
        node.heard = time.monotonic()
        seq = int(message["seq"])
        if node.syncing:
            node.buffered.append(message)
        elif seq == node.seq + 1:
            node.seq = seq
            self._apply(node, message)
        elif seq > node.seq + 1:
            node.buffered.append(message)
            self._sync(node)
        return None

    async def _on_heartbeat(self, message: Json) -> Json | None:
        node_id = str(message.get("node", ""))
        if node_id == self.node_id or not node_id:
            return None
        node = self._remote(node_id)
        node.heard = time.monotonic()
        if not node.syncing and int(message["seq"]) > node.seq:
            self._sync(node)
        return None

    def _remote(self, node_id: str) -> _Node:
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = _Node(node_id)
            _LOGGER.info("Aggregator process %s joined", node_id)
        return node

    # --- syncing with one process --------------------------------------------------------------

    def _sync(self, node: _Node) -> None:
        node.syncing = True
        task = asyncio.create_task(self._fetch(node), name=f"directory-sync-{node.node_id}")
        self._syncs.add(task)
        task.add_done_callback(self._syncs.discard)

    async def _fetch(self, node: _Node) -> None:
        """Fetch a process's homes from a snapshot, then apply what came after it."""
        try:
            homes: dict[str, _Held] = {}
            request: Json = {"page": 0}
            while True:
                page = await self._bus.request(
                    self._bus.subjects.sync(node.node_id), request, timeout=self._ttl_s
                )
                for item in page["homes"]:
                    home = from_card(item["home"])
                    homes[home.home_id] = _Held(str(item["conn"]), home, *card_extras(item["home"]))
                if not page["more"]:
                    break
                request = {"snapshot": page["snapshot"], "page": int(page["page"]) + 1}
        except (BusUnavailableError, KeyError, ValueError, TypeError) as err:
            _LOGGER.debug("Sync with %s failed (%s); the next heartbeat retries", node.node_id, err)
            node.syncing = False
            return
        if self._nodes.get(node.node_id) is not node:
            return  # the process was declared gone meanwhile
        self._replace(node, homes, int(page["seq"]))
        buffered, node.buffered = sorted(node.buffered, key=lambda m: int(m["seq"])), []
        node.syncing = False
        for message in buffered:
            seq = int(message["seq"])
            if seq == node.seq + 1:
                node.seq = seq
                self._apply(node, message)
            elif seq > node.seq + 1:
                break  # another gap: the next heartbeat syncs again

    def _replace(self, node: _Node, homes: dict[str, _Held], seq: int) -> None:
        old = node.homes
        node.homes = homes
        node.seq = seq
        for home_id, held in old.items():
            if home_id not in homes or homes[home_id].connection != held.connection:
                self._unpoint(home_id, node.node_id, held.connection)
        for home_id, held in homes.items():
            if self._where.get(home_id) != (node.node_id, held.connection):
                self._where[home_id] = (node.node_id, held.connection)
                self._listener.home_arrived(held.home, held.schema_version, held.held)

    async def _on_sync_request(self, request: Json) -> Json:
        """Answer one page of this process's homes, from a snapshot taken at page 0."""
        now = time.monotonic()
        old = [key for key, (at, _, _) in self._snapshots.items() if now - at > SNAPSHOT_LIFETIME_S]
        for key in old:
            del self._snapshots[key]
        token = str(request.get("snapshot", ""))
        if token not in self._snapshots:
            token = uuid.uuid4().hex
            entries = [
                {"conn": held.connection, "home": held.card()} for held in self._own.homes.values()
            ]
            self._snapshots[token] = (now, self._own.seq, entries)
        _, seq, entries = self._snapshots[token]
        page = int(request.get("page", 0))
        start = page * SYNC_PAGE_SIZE
        more = start + SYNC_PAGE_SIZE < len(entries)
        if not more:
            self._snapshots.pop(token, None)
        return {
            "snapshot": token,
            "page": page,
            "seq": seq,
            "homes": entries[start : start + SYNC_PAGE_SIZE],
            "more": more,
        }

    # --- tasks ---------------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        """Publish this process's announcements in order (lost ones are caught by heartbeats)."""
        while True:
            message = await self._outgoing.get()
            try:
                await self._bus.publish(self._bus.subjects.presence, message)
            except BusUnavailableError as err:
                _LOGGER.debug("Presence not published (%s); heartbeats will catch up", err)

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self._bus.publish(
                    self._bus.subjects.heartbeat,
                    {"node": self.node_id, "seq": self._own.seq, "homes": len(self._own.homes)},
                )
            except BusUnavailableError as err:
                _LOGGER.debug("Heartbeat not published: %s", err)
            self._expire()
            await asyncio.sleep(self._heartbeat_s)

    def _expire(self) -> None:
        """Declare gone the processes not heard from for ``ttl_s`` — if we can hear at all."""
        now = time.monotonic()
        if not self._bus.connected or self._connected_since is None:
            return
        if now - self._connected_since < self._ttl_s:
            return
        for node in [n for n in self._nodes.values() if n is not self._own]:
            if now - node.heard <= self._ttl_s:
                continue
            _LOGGER.warning(
                "Aggregator process %s silent for %.1f s: its %d homes count as disconnected",
                node.node_id,
                now - node.heard,
                len(node.homes),
            )
            del self._nodes[node.node_id]
            for home_id, held in node.homes.items():
                self._unpoint(home_id, node.node_id, held.connection)
